"""The defaults of ``convert`` chosen by the zoo ablation (issue 15), issue 19 and the bias
calibration option: channel-wise scales with reset by subtraction and one per layer with reset
to zero; a channel that fires too rarely to be measured takes its layer's scale; the rate
error taken off the bias only when asked (or, by default, for networks with QCFS
activations); the same result from the one-sweep and the per-layer calibration; neither the
model nor the calibration data ever modified."""
import pytest
import torch
from torch import nn

import converters.assemble as assemble
import converters.pipeline as pipeline
import snnedge
from converters import QCFS, CalibratedIF, convert, replace_relu_with_qcfs
from converters.calibration import rare_channels
from converters.membrane import bias_holder, calibrate_membrane, calibrate_membrane_per_layer
from test_convert import X12, rescat, state_hash, vgg_tiny


def test_the_default_normalization_is_channelwise():
    snn = convert(rescat(), X12, timesteps=8)
    info = snn.conversion_
    assert info.normalization == "channelwise" and info.percentile == 99.9
    assert isinstance(info.scales["stem.2"], list) and len(info.scales["stem.2"]) == 6
    assert info.calibration_timesteps == 8 and info.bias_shifts == {}  # no bias calibration
    explicit = convert(rescat(), X12, normalization="channelwise", timesteps=8)
    for a, b in zip(snn.state_dict().values(), explicit.state_dict().values()):
        assert torch.equal(a, b)


def test_a_relu_readout_keeps_one_scale_so_the_classes_keep_their_order():
    """A network whose output is a ReLU layer's spikes (conv -> ReLU -> global average pool,
    as SqueezeNet's classifier): channel-wise scales there would count each class in its own
    unit and change the argmax (on torchvision's squeezenet1_1 the SNN agreed with the ANN
    on 0 of 16 digits). That layer keeps one scale; the hidden ReLU stays channel-wise."""
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    with torch.no_grad():  # classes of very different sizes: 1x, 3x, 9x, 27x
        ann[2].weight.mul_(torch.tensor([1.0, 3.0, 9.0, 27.0]).view(4, 1, 1, 1))
        ann[2].bias.fill_(0.05)
    assert pipeline.readout_activations(pipeline.simplify(pipeline.capture_fx(ann, X12[:2]))[0]) \
        == {"3"}
    snn = convert(ann, X12, calibrate_membrane=False)
    scales = snn.conversion_.scales
    assert isinstance(scales["1"], list) and not isinstance(scales["3"], list)
    res = snnedge.simulate(snn, X12, timesteps=256)
    with torch.no_grad():
        expected = ann(X12)
    assert torch.equal(res.predictions, expected.argmax(1))
    rates = res.output / res.output.sum(1, keepdim=True)
    assert torch.allclose(rates, expected / expected.sum(1, keepdim=True), atol=0.03)


@pytest.mark.parametrize("options", [{}, {"calibrate_bias": True},
                                     {"normalization": "percentile", "calibrate_bias": True}])
@pytest.mark.parametrize("build", [rescat, vgg_tiny])
def test_neither_the_model_nor_the_calibration_data_is_modified(build, options):
    ann, x = build(), X12.clone()
    before = state_hash(ann)
    flags = [(m.training, *(p.requires_grad for p in m.parameters(recurse=False))) for m in ann.modules()]
    snn = convert(ann, x, timesteps=8, **options)
    assert state_hash(ann) == before and torch.equal(x, X12)
    assert flags == [(m.training, *(p.requires_grad for p in m.parameters(recurse=False)))
                     for m in ann.modules()]
    ann_ptrs = {t.data_ptr() for t in ann.state_dict().values()} | {x.data_ptr()}
    assert not ann_ptrs & {t.data_ptr() for t in snn.state_dict().values()}


def test_the_bias_feeding_a_neuron_alone_is_the_one_calibrated():
    snn = convert(rescat(), X12, calibrate_membrane=False)
    # the residual sum: the branch's convolution (the identity shortcut is the stem's spikes)
    assert bias_holder(snn, "layer1.0.relu_1") is snn.layer("layer1.0.conv2")
    assert bias_holder(snn, "layer1.0.relu") is snn.layer("layer1.0.conv1")
    pooled = convert(vgg_tiny(nn.AvgPool2d), X12, calibrate_membrane=False)
    assert bias_holder(pooled, "6") is pooled.layer("4")
    assert bias_holder(pooled, "6", frozen={"4"}) is None  # a stored value is never changed


def test_bias_calibration_shifts_the_bias_by_the_rate_error():
    ann = rescat()
    plain = convert(ann, X12, timesteps=16)
    shifted = convert(ann, X12, timesteps=16, calibrate_bias=True)
    shifts = shifted.conversion_.bias_shifts
    assert shifts and set(shifts) <= set(shifted.conversion_.membrane_excess)
    assert all(isinstance(shifted.layer(n), CalibratedIF) for n in shifts)
    name = "layer1.0.relu_1"
    assert name in shifts
    conv = "layer1.0.conv2"
    delta = (shifted.layer(conv).bias - plain.layer(conv).bias).detach()
    theta = shifted.layer(name).threshold.reshape(-1)
    # the bias moved by the mean rate error (spikes per step) times the threshold, per channel
    assert float((-delta / theta).mean()) == pytest.approx(shifts[name], abs=1e-5)
    assert float(delta.abs().max()) > 0
    # the weights are untouched: only biases and initial membranes differ
    assert torch.equal(shifted.layer(conv).weight, plain.layer(conv).weight)


def test_qcfs_networks_calibrate_the_bias_by_default_and_relu_networks_do_not():
    qcfs = replace_relu_with_qcfs(vgg_tiny(), levels=8).eval()
    default = convert(qcfs, X12)
    assert default.conversion_.calibration_timesteps == 8 and default.conversion_.bias_shifts
    explicit = convert(qcfs, X12, calibrate_bias=True)
    off = convert(qcfs, X12, calibrate_bias=False)
    assert off.conversion_.bias_shifts == {}
    assert default.state_dict().keys() == explicit.state_dict().keys()
    for k, a in default.state_dict().items():
        assert torch.equal(a, explicit.state_dict()[k]), k
    assert any(not torch.equal(a, off.state_dict()[k]) for k, a in default.state_dict().items())
    # a ReLU network's default is still without: the same network as calibrate_bias=False
    relu, relu_off = convert(rescat(), X12, timesteps=8), convert(rescat(), X12, timesteps=8,
                                                                   calibrate_bias=False)
    assert relu.conversion_.bias_shifts == {}
    for k, a in relu.state_dict().items():
        assert torch.equal(a, relu_off.state_dict()[k]), k


def test_bias_calibration_needs_the_membrane_calibration():
    snn = convert(rescat(), X12, calibrate_membrane=False, calibrate_bias=True, phases="aligned")
    assert snn.conversion_.bias_shifts == {} and snn.conversion_.calibration_timesteps is None
    assert not any(isinstance(m, CalibratedIF) for m in snn.modules())


@pytest.mark.parametrize("build", [rescat, lambda: vgg_tiny(nn.AvgPool2d)])
def test_one_sweep_bias_calibration_equals_the_per_layer_one(build, monkeypatch):
    def per_layer(*args, bias_shifts=None, **kwargs):  # the reference reports no shifts
        return calibrate_membrane_per_layer(*args, **kwargs)

    out = []
    for method in (calibrate_membrane, per_layer):
        monkeypatch.setattr(assemble, "calibrate_membrane", method)
        out.append(convert(build(), X12, timesteps=8, calibrate_bias=True))
    sweep, per_layer = out
    assert sweep.conversion_.bias_shifts  # something was shifted
    for (k, a), (k2, b) in zip(sweep.state_dict().items(), per_layer.state_dict().items()):
        assert k == k2 and torch.allclose(a, b, atol=1e-5), (k, float((a - b).abs().max()))


def test_qcfs_thresholds_from_channelwise_scales_are_refused_with_the_fix():
    """convert's default records per-channel scales (lists); a QCFS threshold is one number,
    so replace_relu_with_qcfs names the layer and says how to get one scale per layer."""
    ann = vgg_tiny()
    scales = convert(ann, X12, calibrate_membrane=False).conversion_.scales
    assert any(isinstance(v, list) for v in scales.values())
    with pytest.raises(ValueError, match="normalization='percentile'") as e:
        replace_relu_with_qcfs(ann, threshold={**scales, "default": 1.0})
    assert repr(next(k for k, v in scales.items() if isinstance(v, list))) in str(e.value)
    layerwise = convert(ann, X12, normalization="percentile", calibrate_membrane=False).conversion_.scales
    qcfs = replace_relu_with_qcfs(ann, threshold={**layerwise, "default": 1.0})
    assert sum(isinstance(m, QCFS) for m in qcfs.modules()) >= 1


def test_reset_to_zero_defaults_to_one_scale_per_layer():
    """Neurons that reset to zero lose their membrane's excess at every spike, most of all
    where channel-wise scales make a channel fire near every step: convert's default
    normalization with reset="zero" is one percentile per layer."""
    snn = convert(rescat(), X12, reset="zero", timesteps=8)
    assert snn.conversion_.normalization == "percentile"
    assert not isinstance(snn.conversion_.scales["stem.2"], list)
    explicit = convert(rescat(), X12, reset="zero", normalization="percentile", timesteps=8)
    for a, b in zip(snn.state_dict().values(), explicit.state_dict().values()):
        assert torch.equal(a, b)
    assert convert(rescat(), X12, reset="zero", normalization="channelwise",
                   timesteps=8).conversion_.normalization == "channelwise"  # asked for: kept


def rare_channel_net() -> nn.Module:
    """Four 1x1 channels reading the pixel; channel 3 is positive only where the pixel
    exceeds 0.999 (once in the data below), with the value 0.001."""
    ann = nn.Sequential(nn.Conv2d(1, 4, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    with torch.no_grad():
        ann[0].weight.fill_(1.0)
        ann[0].bias.copy_(torch.tensor([0.0, -0.1, 0.2, -0.999]))
    return ann


def rare_channel_data() -> torch.Tensor:
    x = 0.99 * torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x[7, 0, 3, 4] = 1.0  # the one value where channel 3 fires: 2,560 values per channel
    return x


def test_a_channel_that_fires_too_rarely_to_measure_takes_its_layers_scale():
    """A channel positive in fewer than 100 - p % of its values would get the percentile of a
    handful of outliers as its scale: here 0.001 against about 1 for the others, so its
    outgoing weights would grow 1,000-fold and a chip with one weight scale per layer would
    round every other channel to zero. It takes the median of the layer's other channels."""
    ann, x = rare_channel_net(), rare_channel_data()
    scales = torch.tensor(convert(ann, x, calibrate_membrane=False).conversion_.scales["1"])
    measured = scales[:3]
    assert torch.all(measured > 0.8)
    assert scales[3] == pytest.approx(float(measured.median()))
    # with p = 99.98 the tail share (0.02 % of 2,560 values = 0.51) is below one value, so the
    # channel counts as measured and keeps its own percentile
    own = convert(ann, x, percentile=99.98, calibrate_membrane=False).conversion_.scales["1"]
    assert own[3] == pytest.approx(0.001, abs=1e-5)


def test_rare_channels_compares_positive_counts_with_the_tail_share():
    values = torch.zeros(3, 1000)
    values[0, :9] = 1.0     # 9 positive < 10 (1 % of 1000): rare
    values[1, :10] = 1.0    # 10 positive: not rare
    values[2, :] = -1.0     # never positive: rare (takes the layer's scale, as before)
    assert rare_channels(values, 99.0).tolist() == [True, False, True]
    # no tail at p = 100: nothing is rare (a channel never positive has no percentile at all
    # and takes the layer's scale anyway)
    assert rare_channels(values, 100.0).tolist() == [False, False, False]


def test_convert_runs_with_tf32_off(monkeypatch):
    """convert calibrates in full float32 as simulate runs (snnedge.engine.exact_float32);
    the flags are plain attributes, so this holds on a machine without CUDA too."""
    seen = []
    original = pipeline.activation_scales

    def spy(*args, **kwargs):
        seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return original(*args, **kwargs)
    monkeypatch.setattr(pipeline, "activation_scales", spy)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    convert(rescat(), X12, timesteps=8)
    assert seen == [(False, False)] and torch.backends.cudnn.allow_tf32
