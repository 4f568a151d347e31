"""The defaults of ``convert`` chosen by the zoo ablation (issue 15) and the bias calibration
option: channel-wise scales by default, the rate error taken off the bias only when asked
(or, by default, for networks with QCFS activations), the same result from the one-sweep and the per-layer calibration, and neither the model nor
the calibration data ever modified."""
import pytest
import torch
from torch import nn

import converters.pipeline as pipeline
import snnedge
from converters import QCFS, CalibratedIF, convert, replace_relu_with_qcfs
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
    snn = convert(rescat(), X12, calibrate_membrane=False, calibrate_bias=True)
    assert snn.conversion_.bias_shifts == {} and snn.conversion_.calibration_timesteps is None
    assert not any(isinstance(m, CalibratedIF) for m in snn.modules())


@pytest.mark.parametrize("build", [rescat, lambda: vgg_tiny(nn.AvgPool2d)])
def test_one_sweep_bias_calibration_equals_the_per_layer_one(build, monkeypatch):
    def per_layer(*args, bias_shifts=None, **kwargs):  # the reference reports no shifts
        return calibrate_membrane_per_layer(*args, **kwargs)

    out = []
    for method in (calibrate_membrane, per_layer):
        monkeypatch.setattr(pipeline, "calibrate_membrane_", method)
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
