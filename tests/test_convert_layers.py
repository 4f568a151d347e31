"""The layers a ReLU CNN may use beyond conv / BN / ReLU / pooling (issue 15): clipped ReLUs,
grouped and depthwise convolutions, BatchNorm as a Scale, adaptive pooling to any size,
chunk / split / cat and channel shuffles, global pooling and flattening in their usual
spellings; the rest refused by name. Both front ends (torch.fx and torch.export) give the
same network; bad input gets one clear error each and never changes the model."""
import hashlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnedge
from converters import SpikingAdaptiveMaxPool2d, SpikingMaxPool2d, UnsupportedLayerError, convert

FAST = {"calibrate_membrane": False, "readout": 0, "phases": "aligned"}
X = torch.rand(48, 3, 12, 12, generator=torch.Generator().manual_seed(0))


def _bn(c: int, seed: int) -> nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.running_mean.copy_(torch.rand(c, generator=g) * 0.4 - 0.2)
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
        bn.weight.copy_(torch.rand(c, generator=g) + 0.5)
        bn.bias.copy_(torch.rand(c, generator=g) * 0.4 - 0.1)
    return bn


class ShuffleBlock(nn.Module):
    """ShuffleNet-v2-like: chunk, a depthwise branch with ReLU6, cat, channel shuffle."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), _bn(8, 1), nn.ReLU6())
        self.pw = nn.Conv2d(4, 4, 1)
        self.dw = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False), _bn(4, 2))
        self.pw2 = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.stem(x)
        left, right = x.chunk(2, dim=1)
        right = F.relu(self.pw2(self.dw(F.relu(self.pw(right)))))  # depthwise -> 1x1: no ReLU between
        x = torch.cat((left, right), dim=1)
        n, c, h, w = x.size()
        x = x.view(n, 2, c // 2, h, w)
        x = torch.transpose(x, 1, 2).contiguous()
        x = x.view(n, -1, h, w)
        x = x.mean([2, 3])
        return self.fc(x)


class DenseBlock(nn.Module):
    """DenseNet-like: BatchNorm after a concatenation (a Scale), pre-activation, grouped conv,
    adaptive pooling to an output larger than its input, split, clamp and hardtanh."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.norm = _bn(12, 3)
        self.conv1 = nn.Conv2d(12, 6, 3, padding=1, groups=3)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(6 * 8 * 8, 4)

    def forward(self, x):
        x = F.relu(self.conv0(x))
        x = torch.cat([x, F.max_pool2d(x, 3, 1, 1)], 1)
        x = F.relu(self.norm(x))                       # BN after cat, before a ReLU
        x = torch.clamp(self.conv1(x), min=0, max=0.7)
        a, b = torch.split(x, [2, 4], dim=1)
        x = torch.cat([F.hardtanh(a, 0.0, 0.5), b], 1)
        x = F.adaptive_avg_pool2d(x, (8, 8))           # 6 x 6 -> 8 x 8: windows repeat inputs
        return self.fc(self.drop(x.view(x.size(0), -1)))


class Pools(nn.Module):
    """Adaptive max pooling, a ceil_mode pool, flatten spellings, x[:, a:b]."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.pool = nn.AdaptiveMaxPool2d((3, 2))
        self.fc = nn.Linear(4 * 3 * 2, 3)

    def forward(self, x):
        x = nn.functional.relu(self.conv(x))
        x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        x = self.pool(x[:, 1:5])
        return self.fc(torch.flatten(x, 1))


def _build(cls, seed=0):
    torch.manual_seed(seed)
    return cls().eval()


def _rel_error(snn, ann, x, timesteps):
    res = snnedge.simulate(snn, x, timesteps=timesteps, dtype=torch.float64)
    with torch.no_grad():
        y = ann(x).double()
    return float((res.output / timesteps - y).abs().max() / y.abs().max())


@pytest.mark.parametrize("normalization", ["max", "channelwise"])
@pytest.mark.parametrize("cls", [ShuffleBlock, DenseBlock, Pools])
def test_new_layers_convert_and_approach_the_ann(cls, normalization):
    # the largest activation (of the layer, or of each channel) as the scale: no activation
    # saturates, so the rate code converges to the ANN (percentile clipping is an accuracy
    # trade-off, not what these layers are checked for); per-channel units pass through
    # grouped convolutions, slices, concatenations and the channel shuffle
    ann = _build(cls)
    snn = convert(ann, X, normalization=normalization, percentile=100.0, **FAST)
    assert _rel_error(snn, ann, X[:8], 512) < 0.02


def test_the_layers_they_become():
    snn = convert(_build(ShuffleBlock), X, **FAST)
    kinds = {n: type(snn.layer(n)).__name__ for n in snn.names}
    assert kinds["getitem"] == "Narrow" and kinds["getitem_1"] == "Narrow"
    assert kinds["transpose"] == "ChannelShuffle" and snn.layer("transpose").groups == 2
    assert "view" not in kinds and "view_1" not in kinds  # the reshapes went into the shuffle
    assert kinds["stem.2"] == "IF" and kinds["dw.0"] == "Conv2d"  # dw.1 folded into dw.0
    assert snn.conversion_.folded == {"stem.1": "stem.0", "dw.1": "dw.0"}
    dense = convert(_build(DenseBlock), X, **FAST)
    assert isinstance(dense.layer("norm"), snnedge.Scale)
    assert isinstance(dense.layer("max_pool2d"), SpikingMaxPool2d)
    parts = [dense.layer(n) for n in ("getitem", "getitem_1")]  # torch.split(x, [2, 4], 1)
    assert [(p.dim, p.start, p.length) for p in parts] == [(1, 0, 2), (1, 2, 4)]
    assert dense.shapes((3, 12, 12))["adaptive_avg_pool2d"] == (6, 8, 8)
    pools = convert(_build(Pools), X, **FAST)
    assert isinstance(pools.layer("pool"), SpikingAdaptiveMaxPool2d)
    assert pools.shapes((3, 12, 12))["pool"] == (4, 3, 2)


def test_a_clip_caps_the_scale_of_its_layer():
    # clamp(0, 0.7) and hardtanh(0, 0.5): whatever the normalization measures, a neuron that
    # fires at every step stands for at most the clip; "none" would otherwise give 1.
    ann = _build(DenseBlock)
    for normalization in ("none", "max", "percentile", "channelwise"):
        scales = convert(ann, X, normalization=normalization, **FAST).conversion_.scales
        assert max(torch.tensor(scales["clamp"]).reshape(-1)) <= 0.7 + 1e-7, normalization
        assert max(torch.tensor(scales["hardtanh"]).reshape(-1)) <= 0.5 + 1e-7, normalization
    none = convert(ann, X, normalization="none", **FAST).conversion_.scales
    assert none["clamp"] == pytest.approx(0.7) and none["relu"] == 1.0
    relu6 = convert(_build(ShuffleBlock), X, normalization="none", **FAST).conversion_.scales
    assert relu6["stem.2"] == 1.0  # clip 6 above lambda = 1: nothing to cap


@pytest.mark.parametrize("cls", [ShuffleBlock, DenseBlock, Pools])
def test_torch_export_gives_the_same_network(cls):
    ann = _build(cls)
    fx_net = convert(ann, X, **FAST)
    exported = convert(torch.export.export(ann, (X[:1],)), X, **FAST)
    assert [type(n.module) for n in fx_net.nodes] == [type(n.module) for n in exported.nodes]
    a = snnedge.simulate(fx_net, X[:4], timesteps=16, dtype=torch.float64)
    b = snnedge.simulate(exported, X[:4], timesteps=16, dtype=torch.float64)
    assert torch.allclose(a.output, b.output, atol=1e-9)


# -- refused, by name -------------------------------------------------------------------------
class Wrap(nn.Module):
    def __init__(self, body, fn=None):
        super().__init__()
        self.body, self.fn = body, fn

    def forward(self, x):
        x = self.body(x)
        return self.fn(x) if self.fn is not None else x


class LayerNorm2d(nn.LayerNorm):
    """torchvision's ConvNeXt norm: channels-last LayerNorm (permute, layer_norm, permute)."""

    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


@pytest.mark.parametrize("ann, path, layer_type, fix", [
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.SiLU()), "1", "SiLU", "replace SiLU with ReLU"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Hardswish()), "1", "Hardswish", "replace Hardswish"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU()), "1", "GELU", "replace GELU"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.Identity(), LayerNorm2d(4))), "1.1",
     "LayerNorm2d", "use BatchNorm"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Hardtanh()), "1", "Hardtanh", "clip activations at 0"),
    (Wrap(nn.Conv2d(3, 4, 3), lambda x: torch.clamp(x, -1.0, 1.0)), "clamp", "clamp",
     "clip activations at 0"),
    (Wrap(nn.Conv2d(3, 4, 3), lambda x: x.permute(0, 2, 3, 1)), "permute", "Tensor.permute",
     "channel shuffle"),
    (Wrap(nn.Conv2d(3, 4, 3), lambda x: x.transpose(2, 3)), "transpose", "Tensor.transpose",
     "channel shuffle"),
    (Wrap(nn.Conv2d(3, 4, 3), lambda x: x * torch.sigmoid(x)), "sigmoid", "sigmoid",
     "replace Sigmoid"),
    (Wrap(nn.Conv2d(3, 4, 3), lambda x: x.chunk(2, dim=0)[0]), "getitem", "Tensor.chunk",
     "split along a feature dimension"),
])
def test_unsupported_layers_are_named_with_their_fix(ann, path, layer_type, fix):
    ann = ann.eval()
    before = _state_hash(ann)
    with pytest.raises(UnsupportedLayerError) as e:
        convert(ann, X, **FAST)
    assert (e.value.path, e.value.layer_type) == (path, layer_type)
    assert fix in e.value.fix and f"'{path}' ({layer_type})" in str(e.value)
    assert _state_hash(ann) == before


# -- bad input: one clear error each; the model never changes ----------------------------------
def _state_hash(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.head = Gate()

    def forward(self, x):
        return self.head(F.relu(self.stem(x)))


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4 * 10 * 10, 2)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc(x) if x.sum() > 0 else -self.fc(x)


def test_untraceable_forward_names_the_module_and_the_fix():
    ann = Branchy().eval()
    before = _state_hash(ann)
    with pytest.raises(TypeError, match=r"tracing fails in the forward of module 'head' \(Gate\) with "
                                        r"TraceError.*Fix: compute "
                                        r"the branch with tensor operations \(torch.where\)"):
        convert(ann, X)
    assert _state_hash(ann) == before


def test_calibration_of_the_wrong_shape_names_the_layer():
    ann = _build(ShuffleBlock)
    before = _state_hash(ann)
    with pytest.raises(ValueError, match=r"a batch of shape \[4, 1, 12, 12\] fails in layer "
                                         r"'stem.0' with RuntimeError.*Its first layer 'stem.0' "
                                         r"\(Conv2d\) takes 3 channels. Fix: pass samples"):
        convert(ann, torch.rand(4, 1, 12, 12))
    assert _state_hash(ann) == before
    vgg = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 10, 2)).eval()
    with pytest.raises(ValueError, match=r"a batch of shape \[4, 3, 9, 9\] fails in layer '3' with "
                                         r"RuntimeError: mat1 and mat2 shapes cannot be multiplied"):
        convert(vgg, torch.rand(4, 3, 9, 9))


def test_training_mode_names_the_module_and_leaves_it_in_training():
    ann = _build(ShuffleBlock)
    ann.dw[1].train()
    before = _state_hash(ann)
    with pytest.raises(ValueError, match=r"submodule 'dw.1' \(BatchNorm2d\) is in training mode.*"
                                         r"Call ann.eval\(\) first"):
        convert(ann, X)
    assert ann.dw[1].training and _state_hash(ann) == before


@pytest.mark.parametrize("cls", [ShuffleBlock, DenseBlock, Pools])
def test_conversion_never_changes_the_model(cls):
    ann = _build(cls)
    before = _state_hash(ann)
    snn = convert(ann, X, **FAST)
    assert _state_hash(ann) == before and not ann.training
    assert not {t.data_ptr() for t in ann.state_dict().values()} & \
        {t.data_ptr() for t in snn.state_dict().values()}
