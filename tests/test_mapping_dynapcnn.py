"""DYNAP-CNN: sinabs's memory formulas against hand-derived golden values, bipartite assignment.

kernel = c_in * 2^(ceil(log2(kx*ky)) + ceil(log2(c_out))); neuron = c_out * 2^(ceil(log2(h_out))
+ ceil(log2(w_out))); bias = c_out (if the layer has a bias). Cores 0-2: 16Ki kernel / 64Ki
neuron entries; 3-4: 32Ki / 32Ki; 5-6: 64Ki / 16Ki; 7-8: 16Ki / 16Ki; 1Ki bias each.
"""
import torch
from torch import nn

import snnedge
from neuromorphic_targets import map_network, quantize_for
from neuromorphic_targets.map_dynapcnn import ceil_log2, kernel_memory, neuron_memory


def memories(m):
    return [(r.kernel_memory, r.neuron_memory, r.bias_memory) for r in m.per_layer]


def test_ceil_log2_exact():
    assert [ceil_log2(n) for n in (1, 2, 3, 4, 5, 8, 9, 16, 17, 1024, 1025)] == [
        0, 1, 2, 2, 3, 3, 4, 4, 5, 10, 11]
    assert kernel_memory(2, 3, 3, 8) == 256 and neuron_memory(8, 28, 28) == 8192


def test_golden_net_a_pooling_and_linear_readout():
    torch.manual_seed(0)
    net = snnedge.sequential(
        nn.Conv2d(2, 8, 3, padding=1), snnedge.IF(), snnedge.SumPool2d(2),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), snnedge.IF(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10), input_shape=(2, 32, 32))
    m = map_network(net, "dynap-cnn")
    assert m.feasible, m.problems
    assert memories(m) == [
        # conv 2->8, 3x3 on 32x32: kernel 2 * 2^(4 + 3) = 256; neuron 8 * 2^(5 + 5) = 8192; bias 8.
        (256, 8192, 8),
        # conv 8->16, 3x3, stride 2 on the pooled 16x16 -> 8x8: kernel 8 * 2^(4 + 4) = 2048;
        # neuron 16 * 2^(3 + 3) = 1024; bias 16.
        (2048, 1024, 16),
        # Linear on the pooled (16, 4, 4), read as a 4x4 conv: kernel 16 * 2^(4 + ceil(log2 10) = 4)
        # = 4096; neuron 10 * 2^(0 + 0) = 10; bias 10.
        (4096, 10, 10),
    ]
    assert m.cores == 3 and m.chips == 1 and len({r.core for r in m.per_layer}) == 3


def test_golden_net_b_non_power_of_two_shapes_and_no_bias():
    torch.manual_seed(0)
    net = snnedge.sequential(
        nn.Conv2d(1, 12, 5), snnedge.IF(), nn.AvgPool2d(4),
        nn.Conv2d(12, 20, 3, bias=False), snnedge.IF(), nn.Flatten(), nn.Linear(20 * 4 * 4, 7),
        input_shape=(1, 28, 28))
    m = map_network(net, "dynap-cnn")
    assert m.feasible, m.problems
    assert memories(m) == [
        # conv 1->12, 5x5, 28 -> 24: kernel 1 * 2^(ceil(log2 25) = 5 + ceil(log2 12) = 4) = 512;
        # neuron 12 * 2^(5 + 5) = 12288 (24 rounds up to 32); bias 12.
        (512, 12288, 12),
        # pool 4 -> (12, 6, 6); conv 12->20, 3x3 -> 4x4: kernel 12 * 2^(4 + 5) = 6144;
        # neuron 20 * 2^(2 + 2) = 320; no bias.
        (6144, 320, 0),
        # Linear on (20, 4, 4): kernel 20 * 2^(4 + 3) = 2560; neuron 7; bias 7.
        (2560, 7, 7),
    ]


def test_golden_net_c_assignment_by_bipartite_matching():
    # Two convolutions 64 -> 64 (3x3) need 64 * 2^(4 + 6) = 65536 kernel entries: only cores 5
    # and 6 have them, and their neuron memory (16Ki) holds 64 * 2^(4 + 4) = 16384 for 16x16.
    def net(n_big):
        torch.manual_seed(0)
        mods = [nn.Conv2d(2, 64, 3, padding=1), snnedge.IF()]
        for _ in range(n_big):
            mods += [nn.Conv2d(64, 64, 3, padding=1), snnedge.IF()]
        mods += [nn.AvgPool2d(4), nn.Flatten(), nn.Linear(64 * 4 * 4, 10)]
        return snnedge.sequential(*mods, input_shape=(2, 16, 16))

    m = map_network(net(2), "dynap-cnn")
    assert m.feasible, m.problems
    # conv 2->64: 2 * 2^(4 + 6) = 2048 / 64 * 2^(4 + 4) = 16384; readout 64 * 2^(4 + 4) = 16384 / 10.
    assert memories(m) == [(2048, 16384, 64), (65536, 16384, 64), (65536, 16384, 64), (16384, 10, 10)]
    assert {m.row("2").core, m.row("4").core} == {5, 6}
    assert m.row("2").memory_utilisation == 1.0

    bad = map_network(net(3), "dynap-cnn")
    assert not bad.feasible
    line = next(p for p in bad.problems if "no assignment" in p)
    assert "[5, 6]" in line and "bipartite" in line
    assert sum(r.core is None for r in bad.per_layer) == 1


def test_layer_that_fits_no_core_and_other_limits():
    torch.manual_seed(0)
    net = snnedge.sequential(
        nn.Conv2d(2, 64, 3, padding=1), snnedge.IF(),            # 64 x 64 x 64 output
        nn.Conv2d(64, 8, 17, padding=8, stride=3), snnedge.IF(),  # kernel 17, stride 3
        nn.Flatten(), nn.Linear(8 * 22 * 22, 10), input_shape=(2, 64, 64))
    m = map_network(net, "dynap-cnn")
    assert not m.feasible
    text = "\n".join(m.problems)
    # neuron memory 64 * 2^(6 + 6) = 262144 > 65536, the largest.
    assert "262,144 neuron" in text and "no DYNAP-CNN core" in text
    assert "kernel 17x17" in text and "stride (3, 3)" in text
    assert "kernel 22x22" in text  # the Linear read as a conv over 22 x 22


def test_structure_limits_and_weights():
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Conv2d(1, 4, 3), snnedge.IF(), nn.AvgPool2d(3), nn.Flatten(),
                             nn.Linear(4 * 2 * 2, 3), input_shape=(1, 8, 8))
    m = map_network(net, "dynap-cnn")
    assert any("pooling of 3" in p for p in m.problems)
    assert not m.weights_representable and "8-bit" in m.weight_problems[0]
    q = quantize_for(net, "dynap-cnn")
    assert map_network(q, "dynap-cnn").weights_representable
    big = snnedge.sequential(nn.Conv2d(1, 4, 3), snnedge.IF(), nn.Flatten(), nn.Linear(4 * 198 * 198, 2),
                             input_shape=(1, 200, 200))
    assert any("max_input_px" in p for p in map_network(big, "dynap-cnn").problems)


def test_too_many_layers():
    mods = []
    for _ in range(10):
        mods += [nn.Conv2d(1, 1, 1), snnedge.IF()]
    m = map_network(snnedge.sequential(*mods, input_shape=(1, 4, 4)), "dynap-cnn")
    assert not m.feasible and any("10 layers" in p and "9 cores" in p for p in m.problems)
    assert m.chips == 2
