"""Tests of snnedge.ops.count_ops: hand-derived golden counts, a reference comparison with
torch's own FLOP counter, non-mutation, pinned errors, and torchvision's published counts."""
import hashlib
import json
import math
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from snnedge.ops import LayerOps, OpCount, count_ops


class SmallConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)              # bias
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, groups=4, bias=False)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(256, 10)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.conv2(self.relu(self.bn1(self.conv1(x)))))))


class ResidualNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.conv_b = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        y = F.relu(self.conv_a(x))
        y = y + x
        z = torch.add(y, self.conv_b(x))
        w = torch.cat([y, z], dim=1)
        f = w.flatten(2)
        g = torch.bmm(f, f.transpose(1, 2))
        p = F.adaptive_avg_pool2d(w, 1).flatten(1)
        return torch.matmul(p, g).flatten(1)


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 10))


def test_small_conv_net_golden():
    # input (1, 3, 16, 16)
    # conv1: out 8x8x8 = 512; MACs 512*3*9 = 13,824; params 8*3*9 + 8 = 224; bias adds 512
    # bn1: params 16; 2 ops per element = 1,024;  relu: 512 ops
    # conv2 (groups 4: 2 in-channels per group): out 16x8x8 = 1,024; MACs 1,024*2*9 = 18,432;
    #   params 16*2*9 = 288
    # pool 3x3 stride 2 pad 1: out 16x4x4 = 256; 8 comparisons each = 2,048
    # flatten: a view;  fc: MACs 256*10 = 2,560; params 2,570; bias adds 10
    ops = count_ops(SmallConvNet(), input_shape=(3, 16, 16))
    assert ops.method == "fx"
    assert ops.macs == 13_824 + 18_432 + 2_560 == 34_816
    assert ops.params == 224 + 16 + 288 + 2_570 == 3_098
    assert ops.activations == 512 * 3 + 1_024 + 256 + 10 == 2_826
    assert ops.other_ops == 512 + 1_024 + 512 + 2_048 + 10 == 4_106
    # traffic, elements: weights 3,098; reads 768 + 512 + 512 + 512 + 1,024 + 256 = 3,584;
    # writes 2,826; 4 bytes each
    assert ops.weight_bytes == 3_098 * 4
    assert ops.activation_bytes == (3_584 + 2_826) * 4 == 25_640
    assert ops.memory_bytes == 12_392 + 25_640
    rows = {r.name: r for r in ops.per_layer}
    assert rows["conv2"] == LayerOps("conv2", "Conv2d", (1, 16, 8, 8), 18_432, 288, 1_024, 0)
    assert rows["flat"].activations == 0 and rows["flat"].output_shape == (1, 256)
    assert any("BatchNorm" in n and "bn1" in n and "fold" in n for n in ops.notes)


def test_linear_net_golden_and_batch_scaling():
    # Linear(784, 100): 78,400 MACs, 78,500 params; Linear(100, 10): 1,000 MACs, 1,010 params
    ops = count_ops(mlp(), input_shape=(1, 28, 28))
    assert (ops.macs, ops.params, ops.other_ops) == (79_400, 79_510, 100 + 100 + 10)
    # a batch of 4 multiplies MACs and activation traffic by 4, not the weights read
    ops4 = count_ops(mlp(), input_shape=(1, 28, 28), batch_size=4)
    assert ops4.macs == 4 * ops.macs and ops4.activations == 4 * ops.activations
    assert ops4.weight_bytes == ops.weight_bytes == 79_510 * 4
    assert ops4.activation_bytes == 4 * ops.activation_bytes


def test_residual_net_with_functional_ops_golden():
    # input (1, 4, 8, 8), 256 elements per 4-channel map
    # conv_a: 256*4*9 = 9,216 MACs, 144 params;  F.relu: 256 ops;  y + x: 256 adds
    # conv_b (1x1): 256*4 = 1,024 MACs, 20 params, 256 bias adds;  torch.add: 256 adds
    # torch.cat -> (1, 8, 8, 8): 512 copied, no ops;  flatten / transpose: views
    # bmm (1,8,64) @ (1,64,8) -> 64 outputs x 64 = 4,096 MACs
    # adaptive_avg_pool2d to 1x1: 8 outputs over 64 elements = 512 ops
    # matmul (1,8) @ (1,8,8) -> (1,1,8): 8 outputs x 8 = 64 MACs
    ops = count_ops(ResidualNet(), input_shape=(4, 8, 8), precision_bits=8)
    assert ops.macs == 9_216 + 1_024 + 4_096 + 64 == 14_400
    assert ops.params == 164
    assert ops.other_ops == 256 * 4 + 512 == 1_536  # relu, y + x, bias adds, torch.add, pool
    assert ops.activations == 256 * 5 + 512 + 64 + 8 + 8 == 1_872
    # reads: 256 + 256 + 512 + 256 + 512 + 512 (cat) + 1,024 (bmm) + 512 (pool) + 72 = 3,912
    assert ops.activation_bytes == 3_912 + 1_872
    assert ops.weight_bytes == 164
    types = [r.op_type for r in ops.per_layer]
    assert types.count("add") == 2 and "cat" in types and "bmm" in types and "matmul" in types


def test_conv1d_dilation_and_rounded_bytes():
    # Conv1d(2, 4, 3, dilation 2) on length 20: out length 20 - 2*2 = 16, 64 outputs,
    # 64*2*3 = 384 MACs; params 4*2*3 + 4 = 28, at 3 bits = 84 bits = 10.5 -> 11 bytes
    ops = count_ops(nn.Conv1d(2, 4, 3, dilation=2), input_shape=(2, 20), precision_bits=3)
    assert (ops.macs, ops.params, ops.weight_bytes) == (384, 28, 11)
    # reads 40 + writes 64 = 104 elements x 3 bits = 312 bits = 39 bytes
    assert ops.activation_bytes == 39


@settings(max_examples=25, deadline=None)
@given(groups=st.sampled_from([1, 2]), k=st.integers(1, 4), stride=st.integers(1, 3),
       padding=st.integers(0, 2), dilation=st.integers(1, 2), size=st.integers(8, 12),
       bias=st.booleans())
def test_conv_macs_match_torch_flop_counter(groups, k, stride, padding, dilation, size, bias):
    # torch's FlopCounterMode counts 2 FLOPs per MAC for conv and mm, and no bias adds
    net = nn.Sequential(nn.Conv2d(4, 6, k, stride, padding, dilation, groups, bias),
                        nn.ReLU(), nn.Flatten(), nn.LazyLinear(5))
    x = torch.zeros(2, 4, size, size)
    net(x)  # materialise LazyLinear
    with FlopCounterMode(display=False) as counter:
        net(x)
    assert 2 * count_ops(net, (4, size, size), batch_size=2).macs == counter.get_total_flops()


def test_params_equal_sum_of_numel_and_shared_modules_once():
    shared = nn.Linear(8, 8)
    net = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(8, 2))
    ops = count_ops(net, input_shape=(8,))
    assert ops.params == sum(p.numel() for p in net.parameters()) == 72 + 18
    assert [r.params for r in ops.per_layer if r.op_type == "Linear"] == [72, 0, 18]
    assert ops.macs == 64 + 64 + 16


def state_hash(model):
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def test_model_not_mutated():
    net = SmallConvNet().train()
    before = state_hash(net)
    count_ops(net, input_shape=(3, 16, 16))
    assert state_hash(net) == before  # BN running stats untouched
    assert all(m.training for m in net.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    assert all(p.device.type == "cpu" for p in net.parameters())


class LoopNet(nn.Module):
    """Python control flow on a shape: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        return torch.relu(torch.cat([self.fc(x[i:i + 1]) for i in range(x.shape[0])]))


def test_untraceable_model_falls_back_to_hooks():
    # fc runs once per sample: 4 calls x 15 MACs; relu and cat are functional, so not seen
    net = LoopNet()
    ops = count_ops(net, input_shape=(5,), batch_size=4)
    assert ops.method == "hooks" and ops.macs == 60 and ops.params == 18
    assert any("functional ops" in n and "not seen" in n for n in ops.notes)
    assert all(not m._forward_hooks for m in net.modules())


def test_unsupported_op_is_named_in_notes():
    ops = count_ops(nn.Sequential(nn.Conv2d(1, 2, 1), nn.Upsample(scale_factor=2)), (1, 4, 4))
    assert ops.macs == 2 * 16
    assert any("not counted" in n and "1 (Upsample)" in n for n in ops.notes)


def test_table_and_to_dict():
    ops = count_ops(SmallConvNet(), input_shape=(3, 16, 16))
    text = ops.table()
    assert text.splitlines()[0].split() == ["layer", "type", "output", "shape", "MACs", "params",
                                            "activations", "other", "ops"]
    assert re.search(r"^total\s+34,816\s+3,098\s+2,826\s+4,106$", text, re.M)
    d = ops.to_dict()
    assert d["macs"] == 34_816 and d["per_layer"][0]["name"] == "conv1"
    assert OpCount(**{**d, "per_layer": tuple(LayerOps(**r) for r in d["per_layer"]),
                      "notes": tuple(d["notes"])}) == ops


def test_from_dict_reads_json_back():
    ops = count_ops(SmallConvNet(), input_shape=(3, 16, 16))
    assert OpCount.from_dict(json.loads(json.dumps(ops.to_dict()))) == ops


def test_error_not_a_module():
    with pytest.raises(TypeError, match=re.escape(
            "The 'model' parameter of count_ops must be a torch.nn.Module. Got list instead.")):
        count_ops([nn.Linear(2, 2)], input_shape=(2,))


@pytest.mark.parametrize("bad", [784, (1, 0, 28), (1.5, 2), (), "1x28x28", (True, 2)])
def test_error_bad_input_shape(bad):
    msg = ("The 'input_shape' parameter of count_ops must be a tuple of positive ints giving "
           "one sample's shape without the batch dimension, like (1, 28, 28). "
           f"Got {bad!r} instead.")
    with pytest.raises(ValueError, match=re.escape(msg)):
        count_ops(mlp(), input_shape=bad)


def test_error_bad_precision_and_batch():
    with pytest.raises(ValueError, match=re.escape(
            "The 'precision_bits' parameter of count_ops must be a positive integer. Got 0 instead.")):
        count_ops(mlp(), (1, 28, 28), precision_bits=0)
    with pytest.raises(ValueError, match="'batch_size' parameter of count_ops"):
        count_ops(mlp(), (1, 28, 28), batch_size=-1)


def test_error_model_fails_on_shape_names_layer():
    net = nn.Sequential(nn.Flatten(), nn.Linear(100, 10))
    # torch's own words differ between releases ("addmm: mat1 and mat2 ..." from 2.15)
    with pytest.raises(RuntimeError) as torch_error:
        net(torch.zeros(1, 1, 28, 28))
    assert "mat1 and mat2 shapes cannot be multiplied (1x784 and 100x10)" in str(torch_error.value)
    msg = ("count_ops could not run the model on input_shape (1, 28, 28) (input tensor "
           f"(1, 1, 28, 28)): it failed at layer '1' (Linear) with RuntimeError: "
           f"{torch_error.value}. input_shape is one sample's shape "
           "without the batch dimension, like (1, 28, 28); check that it matches what the "
           "model expects.")
    with pytest.raises(ValueError, match=re.escape(msg)):
        count_ops(net, input_shape=(1, 28, 28))


# torchvision's weight metadata (Weights.meta["num_params"], meta["_ops"] in GMACs), as listed
# in REFERENCES.md. GoogLeNet: torchvision's builder drops aux1/aux2 after loading weights when
# aux_logits=False, so its num_params (6,624,904) is the aux-free model's count and matches
# googlenet(weights=None, aux_logits=False) exactly; with the aux heads it would be ~13.0M.
TORCHVISION = [
    ("alexnet", {}, 61_100_840, 0.714),
    ("vgg16", {}, 138_357_544, 15.47),
    ("resnet18", {}, 11_689_512, 1.814),
    ("resnet50", {}, 25_557_032, 4.089),
    ("googlenet", {"aux_logits": False, "init_weights": False}, 6_624_904, 1.498),
    ("mobilenet_v2", {}, 3_504_872, 0.301),
]


@pytest.mark.parametrize("name, kwargs, params, gmacs", TORCHVISION, ids=[t[0] for t in TORCHVISION])
def test_torchvision_counts_match_metadata(name, kwargs, params, gmacs):
    models = pytest.importorskip("torchvision.models")
    ops = count_ops(getattr(models, name)(weights=None, **kwargs), input_shape=(3, 224, 224))
    assert ops.method == "fx"
    assert ops.params == params
    assert ops.macs / 1e9 == pytest.approx(gmacs, rel=0.02)


def test_vgg16_conv_layers_match_eyeriss():
    # Eyeriss (Chen et al., ISSCC 2016 / IEEE JSSC 52:127, 2017): VGG-16's conv layers hold
    # 14.7M weights and take 15.3G MACs per 224x224 image
    models = pytest.importorskip("torchvision.models")
    ops = count_ops(models.vgg16(weights=None), input_shape=(3, 224, 224))
    convs = [r for r in ops.per_layer if r.op_type == "Conv2d"]
    assert len(convs) == 13
    assert sum(r.macs for r in convs) == pytest.approx(15.3e9, rel=0.02)
    assert math.isclose(sum(r.params for r in convs), 14.7e6, abs_tol=0.05e6)
