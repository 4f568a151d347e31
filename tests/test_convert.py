"""ANN-to-SNN conversion on small random networks: exactness, graph forms, errors, purity."""
import hashlib

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import snnedge
from converters import QCFS, SpikingMaxPool2d, UnsupportedLayerError, convert, replace_relu_with_qcfs
from converters.fold import simplify
from converters.graph import capture_fx
from converters.membrane import CalibratedIF

FAST = {"calibrate_membrane": False, "readout": 0, "phases": "aligned"}  # skip the calibrations' simulations


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model


def vgg_tiny(pool=nn.MaxPool2d) -> nn.Sequential:
    torch.manual_seed(0)
    return _randomize_bn(nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), pool(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), pool(2), nn.Dropout(0.2),
        nn.Flatten(), nn.Linear(8 * 3 * 3, 16), nn.ReLU(), nn.Linear(16, 5))).eval()


class Block(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class ResCat(nn.Module):
    """Functional ops everywhere: F.relu, +=, torch.cat, x.view(x.size(0), -1), x.mean."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.layer1 = nn.Sequential(Block(6, 6, 1))
        self.layer2 = nn.Sequential(Block(6, 8, 2))
        self.left = nn.Conv2d(8, 4, 1)
        self.right = nn.Conv2d(8, 4, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        x = torch.cat([F.relu(self.left(x)), torch.relu(self.right(x))], dim=1)
        x = x.mean((2, 3), keepdim=True)
        return self.fc(x.view(x.size(0), -1))


def rescat() -> ResCat:
    torch.manual_seed(1)
    return _randomize_bn(ResCat()).eval()


def rel_error(snn, ann, x, timesteps):
    res = snnedge.simulate(snn, x, timesteps=timesteps, dtype=torch.float64)
    with torch.no_grad():
        y = ann(x).double()
    return float((res.output / timesteps - y).abs().max() / y.abs().max())


def state_hash(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


X12 = torch.rand(48, 1, 12, 12, generator=torch.Generator().manual_seed(0))


# -- exactness on single layers ---------------------------------------------------------------
def test_rate_times_threshold_is_the_relu_output():
    # normalization="none": weights unchanged, threshold 1. A constant input current a per
    # step into an IF neuron with v_init = theta/2 and reset by subtraction fires
    # floor(T * a / theta + 1/2) times in T steps (0 <= a <= theta), so rate * theta is
    # relu(W x + b) rounded to the nearest multiple of theta / T.
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3)).eval()
    with torch.no_grad():
        ann[0].weight.mul_(0.3)
    x = torch.rand(6, 6)
    snn = convert(ann, x, normalization="none", v_init=0.5)
    assert snn.layer("1").threshold.item() == 1.0
    relu = torch.relu(ann[0](x)).double()
    assert relu.max() < 1.0
    for T in (10, 200):
        counts = torch.stack([snnedge.simulate(snn, x[i:i + 1], timesteps=T, dtype=torch.float64)
                              .neuron_spike_counts["1"] for i in range(len(x))])
        assert torch.equal(counts, torch.floor(T * relu + 0.5))
        assert (counts / T - relu).abs().max() <= 0.5 / T + 1e-12


def test_v_init_zero_floors_the_rate():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)).eval()
    with torch.no_grad():
        ann[0].weight.mul_(0.3)
    x = torch.rand(1, 4)
    snn = convert(ann, x, normalization="none", v_init=0.0)
    counts = snnedge.simulate(snn, x, timesteps=50, dtype=torch.float64).neuron_spike_counts["1"]
    relu = torch.relu(ann[0](x)).double()[0]
    assert torch.equal(counts, torch.floor(50 * relu + 1e-9))


def test_batchnorm_folding_equals_the_bn_model_exactly():
    torch.manual_seed(0)
    ann = _randomize_bn(nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4))).eval()
    snn = convert(ann, X12, normalization="none")
    assert [n.name for n in snn.nodes] == ["0"] and snn.conversion_.folded == {"1": "0"}
    res = snnedge.simulate(snn, X12, timesteps=1, dtype=torch.float64)
    assert torch.allclose(res.output, ann(X12).flatten(1).double(), atol=1e-5)
    # the folded graph computes the BN model's output too
    graph, folded = simplify(capture_fx(ann, X12[:2]))
    assert folded == {"1": "0"} and len(graph.ops) == 1
    assert torch.allclose(graph.run(X12)[0], ann(X12), atol=1e-5)


def test_batchnorm_without_a_layer_before_becomes_a_scale():
    torch.manual_seed(0)
    ann = _randomize_bn(nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 3, 3), nn.ReLU(),
                                      nn.AvgPool2d(2), nn.BatchNorm2d(3), nn.Flatten(),
                                      nn.Linear(3 * 5 * 5, 4))).eval()
    snn = convert(ann, X12)
    assert isinstance(snn.layer("0"), snnedge.Scale) and isinstance(snn.layer("4"), snnedge.Scale)
    assert rel_error(snn, ann, X12[:16], 256) < 0.03


def test_qcfs_first_layer_is_exact_at_T_equal_L():
    # IF with threshold lambda, v_init lambda/2, constant input a: floor(L a / lambda + 1/2)
    # spikes in L steps, clipped to [0, L]: the QCFS output times L / lambda, exactly.
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(6, 12), QCFS(levels=4, threshold=1.5), nn.Linear(12, 3)).eval()
    x = torch.rand(10, 6) * 2
    snn = convert(ann, x, normalization="max")  # QCFS ignores the normalization option
    neuron = snn.layer("1")
    assert neuron.v_init == 0.5 and neuron.threshold.item() == 1.0
    assert snn.conversion_.scales["1"] == pytest.approx(1.5)
    q = ann[1](ann[0](x)).double()
    for i in range(len(x)):
        counts = snnedge.simulate(snn, x[i:i + 1], timesteps=4, dtype=torch.float64).neuron_spike_counts["1"]
        assert torch.allclose(counts * 1.5 / 4, q[i], atol=1e-6)
    res = snnedge.simulate(snn, x, timesteps=4, dtype=torch.float64)
    assert torch.allclose(res.output / 4, ann(x).double(), atol=1e-5)


def test_qcfs_activation_values_and_gradients():
    act = QCFS(levels=4, threshold=2.0)
    x = torch.tensor([-1.0, 0.2, 0.3, 1.1, 5.0], requires_grad=True)
    y = act(x)
    assert y.tolist() == [0.0, 0.0, 0.5, 1.0, 2.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]  # straight through inside [0, lambda]
    assert act.threshold.grad is not None


def test_replace_relu_with_qcfs_returns_a_new_model():
    ann = vgg_tiny()
    before = state_hash(ann)
    q = replace_relu_with_qcfs(ann, levels=8, threshold={"2": 3.0, "default": 5.0})
    assert sum(isinstance(m, QCFS) for m in q.modules()) == 3
    assert sum(isinstance(m, nn.ReLU) for m in ann.modules()) == 3
    assert q[2].threshold.item() == 3.0 and q[6].threshold.item() == 5.0
    assert state_hash(ann) == before


# -- graph forms ------------------------------------------------------------------------------
def test_vgg_with_maxpool_converts_and_approaches_the_ann():
    ann = vgg_tiny()
    snn = convert(ann, X12)
    names = [n.name for n in snn.nodes]
    assert names[:3] == ["0", "2", "3"] and "8" not in names and "1" not in names  # BN, Dropout gone
    assert isinstance(snn.layer("3"), SpikingMaxPool2d)
    assert snn.output_name == "12" and "12" in snn.readout_names
    errs = [rel_error(snn, ann, X12[:16], T) for T in (16, 128)]
    assert errs[1] < errs[0] and errs[1] < 0.05, errs


def test_residual_and_concat_graph_converts_with_module_paths():
    ann = rescat()
    snn = convert(ann, X12)
    names = [n.name for n in snn.nodes]
    for expected in ("stem.0", "stem.2", "layer1.0.conv1", "layer1.0.relu", "layer1.0.add",
                     "layer1.0.relu_1", "layer2.0.shortcut.0", "layer2.0.add", "cat", "fc"):
        assert expected in names, (expected, names)
    assert snn.inputs_of("layer1.0.add") == ("layer1.0.conv2", "stem.2")  # identity shortcut
    # the identity shortcut carries the stem's spikes unscaled: the sum's threshold absorbs it
    # (channel by channel under the default channel-wise scales)
    info = snn.conversion_
    assert torch.tensor(info.thresholds["layer1.0.relu_1"]).tolist() == pytest.approx(
        (torch.tensor(info.scales["layer1.0.relu_1"]) / torch.tensor(info.scales["stem.2"])).tolist())
    errs = [rel_error(snn, ann, X12[:16], T) for T in (16, 256)]
    assert errs[1] < errs[0] and errs[1] < 0.03, errs


@pytest.mark.parametrize("normalization", ["max", "percentile", "channelwise", "none"])
def test_every_normalization_converges(normalization):
    ann = rescat()
    snn = convert(ann, X12, normalization=normalization, **FAST)
    assert rel_error(snn, ann, X12[:4], 256) < 0.04


def test_channelwise_scales_are_per_channel():
    snn = convert(vgg_tiny(), X12, normalization="channelwise", **FAST)
    assert len(snn.conversion_.scales["2"]) == 6
    assert snn.conversion_.thresholds["2"] == 1.0


def test_reset_zero_is_passed_to_every_neuron():
    snn = convert(vgg_tiny(), X12, reset="zero", **FAST)
    assert {snn.layer(n).reset for n in snn.neuron_layers} == {"zero"}


def test_torch_export_program_gives_the_same_network():
    ann = rescat()
    program = torch.export.export(ann, (X12[:4],))
    a, b = convert(ann, X12, **FAST), convert(program, X12, **FAST)
    assert [n.name for n in a.nodes] == [n.name for n in b.nodes]
    ra = snnedge.simulate(a, X12[:8], timesteps=16, dtype=torch.float64)
    rb = snnedge.simulate(b, X12[:8], timesteps=16, dtype=torch.float64)
    assert torch.allclose(ra.output, rb.output, atol=1e-6)


def test_exported_qcfs_keeps_its_threshold():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 3, 3), QCFS(4, 1.3), nn.Flatten(), nn.Linear(300, 2)).eval()
    snn = convert(torch.export.export(ann, (X12[:2],)), X12, **FAST)
    assert snn.conversion_.scales["1"] == pytest.approx(1.3) and snn.layer("1").v_init == 0.5


def test_dataloader_calibration_equals_tensor_calibration():
    ann = vgg_tiny()
    loader = DataLoader(TensorDataset(X12, torch.zeros(len(X12))), batch_size=10)
    a, b = convert(ann, X12, **FAST), convert(ann, loader, **FAST)
    assert a.conversion_.scales == b.conversion_.scales
    c = convert(ann, DataLoader(X12, batch_size=7), **FAST)  # batches of x only
    assert c.conversion_.scales == a.conversion_.scales


def test_conversion_of_a_three_conv_network_takes_seconds():
    torch.manual_seed(0)
    ann = _randomize_bn(nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(128 * 3 * 3, 128), nn.ReLU(), nn.Linear(128, 10))).eval()
    x = torch.rand(256, 1, 28, 28)
    snn = convert(ann, x)
    # How long this takes is measured in examples/benchmarks/conversion.py (tests check
    # correctness, not timings): every conv, neuron and readout is there, BN folded away.
    assert [snn.kind(n) for n in snn.neuron_layers] == ["temporal"] * 4
    assert snn.conversion_.calibration_samples == 256


# -- spiking max pool -------------------------------------------------------------------------
@pytest.mark.parametrize("keep_shape", [False, True])
def test_spiking_maxpool_follows_the_max_rate_input(keep_shape):
    # One 2x2 window; inputs fire with rates 0.2, 0.5, 0.8, 0.3 (regular trains); the pooled
    # output count equals the largest input count at every step.
    T = 40
    rates = torch.tensor([0.2, 0.5, 0.8, 0.3], dtype=torch.float64)
    t = torch.arange(1, T + 1, dtype=torch.float64).view(-1, 1)
    counts = torch.floor(t * rates + 0.5)
    spikes = torch.diff(counts, dim=0, prepend=torch.zeros(1, 4, dtype=torch.float64))
    x = spikes.view(T, 1, 1, 2, 2)
    out = SpikingMaxPool2d(2, keep_shape=keep_shape)(x)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    pooled = out.flatten(1).sum(1).cumsum(0)
    assert torch.equal(pooled, counts.max(1).values)
    if keep_shape:  # at the window's first position
        assert out[:, 0, 0, 0, 0].sum() == out.sum()


@given(st.integers(0, 10_000))
def test_spiking_maxpool_count_never_exceeds_one_per_step(seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(12, 2, 3, 4, 4, generator=g) < torch.rand(1, 2, 3, 4, 4, generator=g)).double()
    out = SpikingMaxPool2d(2)(x)
    assert ((out == 0) | (out == 1)).all()
    assert torch.equal(out.sum(0), F.max_pool2d(x.sum(0), 2))


def test_gate_mode_passes_the_winners_spikes():
    x = torch.zeros(3, 1, 1, 2, 2)
    x[:, 0, 0, 0, 1] = torch.tensor([1.0, 1.0, 0.0])
    x[:, 0, 0, 1, 0] = torch.tensor([0.0, 0.0, 1.0])
    out = SpikingMaxPool2d(2, mode="gate")(x)
    assert out.flatten().tolist() == [1.0, 1.0, 0.0]  # winner (0, 1) does not fire at step 3
    full = SpikingMaxPool2d(2, mode="gate", keep_shape=True)(x)
    assert full[:, 0, 0, 0, 1].tolist() == [1.0, 1.0, 0.0] and full.sum() == 2


@pytest.mark.parametrize("mode", ["count", "gate"])
@pytest.mark.parametrize("padding", [0, 1])
def test_keep_shape_then_sum_pool_equals_the_pooled_output(mode, padding):
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(10, 2, 3, 7, 7, generator=g) < 0.4).double()
    pooled = SpikingMaxPool2d(3, padding=padding, mode=mode)(x)
    full = SpikingMaxPool2d(3, padding=padding, mode=mode, keep_shape=True)(x)
    summed = snnedge.SumPool2d(3, 3, padding)(full.flatten(0, 1)).view(pooled.shape)
    assert full.shape == x.shape and torch.equal(summed, pooled)


def test_maxpool_before_relu_converts():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 6 * 6, 3)).eval()
    snn = convert(ann, X12)
    assert rel_error(snn, ann, X12[:8], 256) < 0.03


# -- initial-membrane calibration -------------------------------------------------------------
def test_membrane_calibration_removes_early_spikes_of_a_residual_net():
    ann = rescat()
    plain = convert(ann, X12, **FAST)
    calibrated = convert(ann, X12, timesteps=8, readout=0, phases="aligned")  # the membranes alone
    # layers fed by the static input have no transient and stay plain IF neurons
    assert type(calibrated.layer("stem.2")) is snnedge.IF
    deep = calibrated.layer("layer2.0.relu_1")
    assert isinstance(deep, CalibratedIF) and isinstance(deep, snnedge.IF)
    assert deep.v_init_map.shape == (8, 6, 6)
    assert set(calibrated.conversion_.membrane_excess) == {
        n for n in calibrated.neuron_layers if n != "stem.2"}
    with torch.no_grad():
        y = ann(X12).double()
    for T in (8, 32):  # the correction is a number of spikes, so it helps at every T
        errs = [float((snnedge.simulate(net, X12, timesteps=T, dtype=torch.float64).output / T - y)
                      .abs().mean() / y.abs().mean()) for net in (plain, calibrated)]
        assert errs[1] < 0.7 * errs[0], (T, errs)


# -- errors -----------------------------------------------------------------------------------
def test_unsupported_module_names_path_type_and_fix():
    ann = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.ReLU(), nn.Sigmoid())).eval()
    with pytest.raises(UnsupportedLayerError) as e:
        convert(ann, X12)
    assert str(e.value) == ("convert cannot convert '1.1' (Sigmoid): it has no spiking equivalent. "
                            "Fix: replace Sigmoid with ReLU (or converters.QCFS) and retrain")
    assert isinstance(e.value, TypeError)
    assert (e.value.path, e.value.layer_type) == ("1.1", "Sigmoid")


def test_unsupported_function_names_the_calling_module():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 2, 3))

        def forward(self, x):
            return torch.tanh(self.body(x)).flatten(1)

    with pytest.raises(UnsupportedLayerError, match=r"'tanh' \(tanh\).*replace Tanh with ReLU"):
        convert(Net().eval(), X12)


def test_training_mode_is_refused():
    ann = vgg_tiny().train()
    with pytest.raises(ValueError, match=r"eval mode.*Call ann.eval\(\) first"):
        convert(ann, X12)
    ann.eval()
    ann[1].train()
    with pytest.raises(ValueError, match=r"submodule '1' \(BatchNorm2d\) is in training mode"):
        convert(ann, X12)


@pytest.mark.parametrize("calibration, message", [
    (torch.empty(0, 1, 12, 12), r"N >= 1. Got shape \[0, 1, 12, 12\]"),
    (torch.rand(12), r"Got shape \[12\]; for one sample use x.unsqueeze\(0\)"),
    ([], r"empty DataLoader"),
    ("x", r"must be a tensor \[N, ...\] or a DataLoader"),
    (torch.full((2, 1, 12, 12), float("nan")), r"NaN or infinite"),
    (torch.rand(4, 3, 12, 12), r"do not fit the model: a batch of shape \[4, 3, 12, 12\]"),
])
def test_bad_calibration_data_is_explained(calibration, message):
    with pytest.raises((ValueError, TypeError), match=message):
        convert(vgg_tiny(), calibration)


def test_nan_weights_are_refused():
    ann = vgg_tiny()
    with torch.no_grad():
        ann[4].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"'4.weight' holds 1 NaN or infinite values"):
        convert(ann, X12)


def test_parameter_validation_messages():
    with pytest.raises(ValueError, match=r"^The 'percentile' parameter of convert must be a float "
                                         r"in \(0, 100\]. Got 150 instead.$"):
        convert(vgg_tiny(), X12, percentile=150)
    with pytest.raises(ValueError, match=r"'normalization' parameter of convert must be one of "
                                         r"'percentile', 'max', 'channelwise', 'none'"):
        convert(vgg_tiny(), X12, normalization="l2")
    with pytest.raises(ValueError, match="'reset' parameter"):
        convert(vgg_tiny(), X12, reset="hard")


def test_untraceable_model_suggests_torch_export():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else -self.fc(x)

    with pytest.raises(TypeError, match="torch.export.export"):
        convert(Branchy().eval(), torch.rand(3, 4))


# -- purity -----------------------------------------------------------------------------------
@pytest.mark.parametrize("build", [vgg_tiny, rescat])
def test_convert_never_mutates_the_ann(build):
    ann = build()
    before = state_hash(ann)
    flags = [(m.training, *(p.requires_grad for p in m.parameters(recurse=False))) for m in ann.modules()]
    snn = convert(ann, X12)
    assert state_hash(ann) == before
    assert flags == [(m.training, *(p.requires_grad for p in m.parameters(recurse=False)))
                     for m in ann.modules()]
    # the SNN shares no tensor with the ANN
    ann_ptrs = {t.data_ptr() for t in ann.state_dict().values()}
    assert not ann_ptrs & {t.data_ptr() for t in snn.state_dict().values()}


def test_maxpool_before_relu_becomes_neurons_then_spiking_pool():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 6 * 6, 3)).eval()
    snn = convert(ann, X12)
    assert snn.inputs_of("2") == ("0",) and snn.inputs_of("1") == ("2",)  # relu(max) = max(relu)
    assert isinstance(snn.layer("2"), snnedge.IF) and isinstance(snn.layer("1"), SpikingMaxPool2d)


def test_membrane_calibration_runs_at_the_qcfs_levels_by_default():
    torch.manual_seed(0)
    relu_net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    x = torch.rand(64, 1, 8, 8)
    assert convert(relu_net, x).conversion_.calibration_timesteps == 16
    assert convert(relu_net, x, timesteps=5).conversion_.calibration_timesteps == 5
    assert convert(relu_net, x, calibrate_membrane=False).conversion_.calibration_timesteps is None
    qcfs_net = replace_relu_with_qcfs(relu_net, levels=4).eval()
    assert convert(qcfs_net, x).conversion_.calibration_timesteps == 4


@pytest.mark.cuda
@pytest.mark.parametrize("model, options", [
    (vgg_tiny, {}), (rescat, {}), (rescat, {"normalization": "channelwise"}),
    (lambda: replace_relu_with_qcfs(vgg_tiny(nn.AvgPool2d), levels=4).eval(), {}),
])
def test_conversion_on_cuda_equals_conversion_on_cpu(model, options):
    ann = model()
    cpu = convert(ann, X12, **options)
    gpu = convert(ann.cuda(), X12.cuda(), **options)
    assert next(gpu.parameters()).device.type == "cuda"
    for field in ("scales", "thresholds"):
        a, b = getattr(cpu.conversion_, field), getattr(gpu.conversion_, field)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.allclose(torch.tensor(b[k]), torch.tensor(a[k]), rtol=1e-5), (field, k)
    for (k, a), (_, b) in zip(cpu.state_dict().items(), gpu.state_dict().items()):
        assert torch.allclose(a, b.cpu(), rtol=1e-4, atol=1e-5), k


@pytest.mark.parametrize("normalization", ["percentile", "channelwise"])
def test_weights_rescaled_in_row_blocks_equal_whole_layer(monkeypatch, normalization):
    """The float64 rescaling runs a block of output rows at a time (memory of huge layers);
    blocks of one to a few rows give the same weights, bit for bit, as the whole layer at
    once, grouped convolutions included."""
    import converters.normalize as normalize
    torch.manual_seed(3)
    ann = _randomize_bn(nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1, groups=3), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(6 * 4 * 4, 7), nn.ReLU(), nn.Linear(7, 3))).eval()
    x = torch.rand(32, 1, 8, 8)
    whole = convert(ann, x, normalization=normalization, **FAST)
    for elements in (1, 13):
        monkeypatch.setattr(normalize, "RESCALE_ELEMENTS", elements)
        blocks = convert(ann, x, normalization=normalization, **FAST)
        for (k, a), (k2, b) in zip(whole.state_dict().items(), blocks.state_dict().items()):
            assert k == k2 and torch.equal(a, b), k


def test_captured_graph_shares_the_anns_weights_read_only():
    """The captured graph holds no second copy of the weights: its weighted and BatchNorm ops
    alias the ANN's storage, detached, and conversion leaves them (and the ANN) unchanged;
    the converted network's weights are its own and trainable (fine-tuning with fit)."""
    ann = vgg_tiny()
    before = {k: v.clone() for k, v in ann.state_dict().items()}
    graph = capture_fx(ann, torch.rand(2, 1, 12, 12))
    shared = 0
    for op in graph.ops:
        if op.kind in ("weighted", "bn"):
            original = ann.get_submodule(op.name)
            for (k, p), (_, q) in zip(op.module.state_dict(keep_vars=True).items(),
                                      original.state_dict(keep_vars=True).items()):
                assert p.data_ptr() == q.data_ptr() and p is not q, (op.name, k)
                assert p.requires_grad == q.requires_grad and p.grad_fn is None, (op.name, k)
                shared += 1
    assert shared >= 12
    snn = convert(ann, torch.rand(16, 1, 12, 12), **FAST)
    assert all(torch.equal(before[k], v) for k, v in ann.state_dict().items())
    assert all(p.requires_grad for p in ann.parameters())
    weights = [snn.layer(n).weight for n in snn.names if snn.kind(n) == "weighted"]
    assert len(weights) == 4 and all(w.requires_grad for w in weights)
    assert not any(w.data_ptr() == p.data_ptr() for w in weights for p in ann.parameters())
    snnedge.fit(snn, (torch.rand(8, 1, 12, 12), torch.randint(0, 5, (8,))), epochs=1,
                timesteps=4, batch_size=8, progress=False)  # trains: has trainable weights
