"""count_ops on torch.export programs (.pt2 files) gives the counts of the model they came from.

Reference comparison: every total and every row's MACs of ``count_ops(export(model))``
equal ``count_ops(model)``'s, on models with each kind of layer the seed networks use
(convolutions plain, strided, grouped and depthwise, BatchNorm, ReLU and ReLU6, max, average
and adaptive pools, residual adds, concatenation, flatten, linear); a program fixed to a
batch of 3 gives the same counts rescaled to any batch; rows carry the module paths.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnedge
from snnedge.ops_aten import aten_equivalent, aten_name


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(8), nn.ReLU6())
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.grouped = nn.Conv2d(8, 8, 1, groups=2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.avg = nn.AvgPool2d(2)
        self.head = nn.Linear(16 * 2 * 2, 5)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(self.dw(x)) + x
        x = torch.cat([self.grouped(x), x], 1)
        x = self.avg(self.pool(x))
        x = F.adaptive_avg_pool2d(x, (2, 2))
        return self.head(torch.flatten(x, 1))


def _export(model, batch, dynamic=False):
    x = torch.randn(batch, 3, 16, 16)
    shapes = ({0: torch.export.Dim("batch", min=1, max=64)},) if dynamic else None
    return torch.export.export(model.eval(), (x,), dynamic_shapes=shapes)


def _same(a, b):
    for key in ("macs", "params", "activations", "other_ops", "weight_bytes",
                "activation_bytes", "memory_bytes", "batch_size"):
        assert getattr(a, key) == getattr(b, key), key


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("exported_batch,dynamic", [(1, False), (3, False), (2, True)])
def test_exported_program_counts_as_its_model(batch, exported_batch, dynamic):
    torch.manual_seed(0)
    model = Block().eval()
    program = _export(model, exported_batch, dynamic)
    a = snnedge.count_ops(model, (3, 16, 16), batch_size=batch)
    b = snnedge.count_ops(program, (3, 16, 16), batch_size=batch)
    _same(a, b)
    assert b.method == "export"
    assert [r.macs for r in a.per_layer if r.macs] == [r.macs for r in b.per_layer if r.macs]
    assert {r.output_shape[0] for r in b.per_layer} == {batch}
    rescaled = any("rescaled" in n for n in b.notes)
    assert rescaled == (exported_batch != batch and not dynamic)


def test_exported_rows_are_named_by_module_path():
    ops = snnedge.count_ops(_export(Block(), 1), (3, 16, 16))
    names = [r.name for r in ops.per_layer if r.macs]
    assert names == ["stem.0", "dw", "grouped", "head"]
    # the BatchNorm note reads the exported batch_norm call
    assert any("BatchNorm" in n for n in ops.notes)
    assert not any("not counted" in n for n in ops.notes)


def test_program_is_not_changed():
    program = _export(Block(), 2)
    before = {k: v.clone() for k, v in program.state_dict.items()}
    snnedge.count_ops(program, (3, 16, 16))
    assert all(torch.equal(before[k], v) for k, v in program.state_dict.items())


def test_wrong_input_shape_names_the_fix():
    with pytest.raises(ValueError, match=r"input_shape \(3, 8, 8\)"):
        snnedge.count_ops(_export(Block(), 1), (3, 8, 8))


def test_unknown_aten_op_is_listed_not_guessed():
    class Odd(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, 1)

    ops = snnedge.count_ops(torch.export.export(Odd(), (torch.randn(1, 4),)), (4,))
    assert ops.macs == 0 and any("cumsum" in n for n in ops.notes)


def test_aten_names():
    assert aten_name(torch.ops.aten.relu_.default) == "relu"
    assert aten_name(torch.ops.aten._softmax.default) == "_softmax"
    assert aten_name(F.relu) is None
    assert aten_equivalent(torch.ops.aten.conv2d.default) is F.conv2d
    assert aten_equivalent(F.relu) is F.relu
