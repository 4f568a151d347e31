"""The chips' number formats (snnedge.formats, snnedge.quantization): the registry reached
through its entry point, and every rule against values derived by hand from the formulas of
sinabs (DYNAP-CNN), lava-dl / lava (Loihi) and the TrueNorth papers. Neither sinabs nor
lava-dl runs offline here, so their formulas are written out in the comments."""
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

import snnedge
from snnedge.chip_neuron import fixed_point_decay, wrap
from snnedge.formats import FORMATS, NumberFormat, get_format, register_format
from snnedge.quantization import (FormatError, GroupValues, decay_factor, format_groups,
                                  quantize_group, row_levels, sinabs_scale)


def test_formats_come_from_the_entry_point_without_importing_the_targets():
    # a fresh interpreter: the core finds the chips' formats through the entry point group
    # snnedge.number_formats, with no import of neuromorphic_targets by the user or the core
    code = ("import sys, snnedge.formats as f; fmt = f.get_format('truenorth'); "
            "print(fmt.weight_bits, fmt.weight_levels, fmt.state_bits, "
            "'neuromorphic_targets' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["9", "4", "20", "True"]  # loaded by the entry point itself


def test_registered_formats_and_their_ranges():
    dc, tn, lo = get_format("dynap-cnn"), get_format("truenorth"), get_format("loihi")
    # DYNAP-CNN: 8-bit signed weights and biases, 16-bit signed state, thresholds in the state
    assert (dc.weight_min, dc.weight_max, dc.state_range, dc.threshold_max) == (-128, 127, (-32768, 32767), 32767)
    # TrueNorth: signed 9-bit weights, 4 per neuron, 20-bit membrane, 18-bit threshold, 9-bit leak
    assert (tn.weight_min, tn.weight_max, tn.weight_levels) == (-256, 255, 4)
    assert tn.state_range == (-2 ** 19, 2 ** 19 - 1) and tn.threshold_max == 2 ** 18 - 1
    assert tn.bias_max == 255
    # Loihi: lava-dl's quantize_8bit clamps to [-256, 254] on even steps; v in +-(2^23 - 1)
    assert (lo.weight_min, lo.weight_max, lo.weight_even) == (-256, 254, True)
    assert lo.state_range == (-(2 ** 23 - 1), 2 ** 23 - 1) and lo.threshold_max == 2 ** 17 - 1
    assert lo.bias_max == 4095 * 2 ** 7 and lo.strict_threshold and lo.resets == ("zero",)
    assert lo.current_bits == 24 and lo.decay_bits == 12 and lo.state_shift == 6


def test_unknown_format_and_bad_formats_are_refused():
    with pytest.raises(ValueError, match="no number format 'spinnaker' is registered.*'loihi'"):
        get_format("spinnaker")
    with pytest.raises(ValueError, match="'scale_rule'"):
        NumberFormat("x", "per-tensor", weight_bits=8, threshold_bits=8, state_bits=8)
    with pytest.raises(ValueError, match="'weight_bits'.*>= 2"):
        NumberFormat("x", "layer", weight_bits=1, threshold_bits=8, state_bits=8)
    with pytest.raises(ValueError, match="'resets'"):
        NumberFormat("x", "layer", weight_bits=8, threshold_bits=8, state_bits=8, resets=("soft",))
    with pytest.raises(TypeError, match="NumberFormat"):
        register_format("loihi")


def test_a_format_of_your_own_registers():
    fmt = NumberFormat("my-chip", "layer", weight_bits=4, bias_bits=4, threshold_bits=8, state_bits=8)
    try:
        assert register_format(fmt) is get_format("my-chip") is fmt
    finally:
        FORMATS.pop("my-chip", None)


# --------------------------------------------------------------------------------------
# sinabs (DYNAP-CNN): backend/dynapcnn/discretize.py
#   determine_discretization_scale(obj, bits):
#       lo, hi = -2^(bits-1), 2^(bits-1) - 1
#       if |min obj| <= |max obj| * |lo / hi|:  scale = |hi / max obj|
#       else:                                   scale = |lo / min obj|
#   scale = min(scale_w(8), scale_b(8), scale_thresholds(16), scale_state(16))
#   discretize_tensor(obj, scale) = torch.round(obj * scale)          (half to even)
# --------------------------------------------------------------------------------------
def test_sinabs_scale_both_branches():
    assert sinabs_scale(torch.tensor([-0.5, 1.0]), 8) == 127.0  # 0.5 <= 1.0 * 128/127
    assert sinabs_scale(torch.tensor([-2.0, 1.0]), 8) == 64.0  # 2.0 > 1.0079: 128 / 2
    assert sinabs_scale(torch.tensor([-1.0, 1.0]), 8) == 127.0  # a tie takes the positive side
    assert sinabs_scale(torch.zeros(3), 8) == math.inf and sinabs_scale(None, 8) == math.inf
    assert sinabs_scale(torch.tensor([4.0]), 16) == 32767 / 4


def test_dynapcnn_golden_values():
    fmt = get_format("dynap-cnn")
    vals = GroupValues({"conv": torch.tensor([[0.5, -0.25], [0.1, 0.0]])},
                       bias=torch.tensor([0.2, -0.4]), threshold=torch.tensor(1.0),
                       state=torch.tensor([0.5, 0.25]))
    q = quantize_group(fmt, vals)
    # scale_w = 127 / 0.5 = 254 (|-0.25| <= 0.5 * 128/127); scale_b: |-0.4| > 0.2 * 128/127,
    # so 128 / 0.4 = 320; scale_t = 32767 / 1; scale_state = 32767 / 0.5. s = 254.
    assert float(q.scale) == 254.0
    # round([127, -63.5, 25.4, 0]): -63.5 rounds half to even, to -64
    assert q.weights["conv"].tolist() == [[127.0, -64.0], [25.0, 0.0]]
    assert q.bias.tolist() == [51.0, -102.0]          # round([50.8, -101.6])
    assert float(q.threshold) == 254.0 and q.state.tolist() == [127.0, 64.0]  # 63.5 -> 64
    assert float(q.factor) == pytest.approx(1 / 254)  # theta / theta_int


def test_dynapcnn_bias_can_set_the_scale():
    fmt = get_format("dynap-cnn")
    q = quantize_group(fmt, GroupValues({"w": torch.tensor([[0.05, -0.02]])}, bias=torch.tensor([2.0]),
                                        threshold=torch.tensor(1.0)))
    # scale_w = 127 / 0.05 = 2540, scale_b = 127 / 2 = 63.5: the bias's 8 bits win
    assert float(q.scale) == 63.5 and q.bias.tolist() == [127.0]
    assert q.weights["w"].tolist() == [[3.0, -1.0]]  # round(3.175), round(-1.27)


# --------------------------------------------------------------------------------------
# lava-dl (Loihi): slayer/utils/quantize.py quantize(x, step) = round(x / step) * step, and
#   quantize_8bit(x, scale=2^6) = quantize(x, step=2 / scale).clamp(-256 / scale, 254 / scale)
# lava proc/lif/models.py, PyLifModelBitAcc: vth << 6, bias = bias_mant << bias_exp (13-bit
#   mantissa, exponent 0..7), v in +-(2^23 - 1), spike when v > vth << 6, v <- 0 after a spike,
#   decay: sign(v) * (|v| * (2^12 - dv) >> 12).
# snnedge picks the power of two 2^k per layer (the largest with max|w| * 2^k <= 254, the
# threshold mantissa <= 2^17 - 1, the bias and the membrane in range), then W_mant =
# clamp(2 * round(w * 2^k / 2), -256, 254) and voltages W_mant << 6.
# --------------------------------------------------------------------------------------
def test_loihi_golden_values():
    fmt = get_format("loihi")
    vals = GroupValues({"fc": torch.tensor([[0.3, -0.7]])}, bias=torch.tensor([0.05]),
                       threshold=torch.tensor(1.0))
    q = quantize_group(fmt, vals)
    # k_w = floor(log2(254 / 0.7)) = floor(log2(362.86)) = 8; k_t = floor(log2(131071)) = 16;
    # k_bias = floor(log2(4095 * 128 / 64 / 0.05)) = 17: k = 8
    assert q.exponent == 8 and float(q.scale) == 2.0 ** 14
    # w * 2^8 = [76.8, -179.2]; /2 = [38.4, -89.6]; round -> [38, -90]; *2 -> [76, -180]; << 6
    assert q.weights["fc"].tolist() == [[76 * 64.0, -180 * 64.0]]
    assert float(q.threshold) == 256 * 64.0  # round(1.0 * 2^8) << 6
    assert q.bias.tolist() == [819.0]  # 0.05 * 2^14 = 819.2: mantissa 819, exponent 0
    assert float(q.factor) == pytest.approx(1 / (256 * 64 + 1))  # strict: v > theta


def test_loihi_bias_takes_an_exponent_and_mantissas_stay_even():
    fmt = get_format("loihi")
    vals = GroupValues({"fc": torch.tensor([[1.0, 0.01]])}, bias=torch.tensor([0.6, -0.01]),
                       threshold=torch.tensor(1.0))
    q = quantize_group(fmt, vals)
    assert q.exponent == 7  # floor(log2(254)) = 7
    mant = q.weights["fc"] / 64
    assert mant.tolist() == [[128.0, 2.0]] and bool((mant % 2 == 0).all())  # 1.28 rounds to 2
    # 0.6 * 2^13 = 4915.2 > 4095: exponent 1, mantissa round(2457.6) = 2458 -> 4916
    assert q.bias.tolist() == [4916.0, -82.0]  # -0.01 * 8192 = -81.92 -> -82 (exponent 0)


def test_loihi_decay_is_12_bit_and_rounds_toward_zero():
    fmt = get_format("loihi")
    # beta = 0.9: dv = round(0.1 * 4096) = round(409.6) = 410, factor 4096 - 410 = 3686
    assert decay_factor(fmt, torch.tensor(0.9)).item() == 3686
    assert decay_factor(fmt, torch.tensor(1.0)).item() == 4096  # no leak
    v = torch.tensor([1000.0, -1000.0, 5.0, -5.0], dtype=torch.float64)
    # 1000 * 3686 / 4096 = 899.9 -> 899 toward zero; 5 * 3686 / 4096 = 4.5 -> 4
    assert fixed_point_decay(v, torch.tensor(3686.0, dtype=torch.float64), 12).tolist() == [
        899.0, -899.0, 4.0, -4.0]
    with pytest.raises(FormatError, match="integrate-and-fire"):
        decay_factor(get_format("truenorth"), torch.tensor(0.9))


def test_current_wraps_as_a_24_bit_register():
    x = torch.tensor([2.0 ** 23 - 1, 2.0 ** 23, 2.0 ** 23 + 5, -(2.0 ** 23), -(2.0 ** 23) - 1],
                     dtype=torch.float64)
    assert wrap(x, 24).tolist() == [2 ** 23 - 1, -(2 ** 23), -(2 ** 23) + 5, -(2 ** 23), 2 ** 23 - 1]


# --------------------------------------------------------------------------------------
# TrueNorth (Merolla et al. 2014): neuron j's weight from axon i is c_ij * S_j[type(i)], 4 axon
# types, S_j signed 9-bit; threshold alpha unsigned 18-bit, leak lambda signed 9-bit, membrane
# signed 20-bit. Per neuron: <= 4 k-means levels, then s_j = min(255 / max|L_j|,
# (2^18 - 1) / theta_j, 255 / |leak_j|, (2^19 - 1) / max|v0_j|); W = round(L * s_j).
# --------------------------------------------------------------------------------------
def test_truenorth_golden_values_per_neuron():
    fmt = get_format("truenorth")
    w = torch.tensor([[0.5, 0.25, -0.5, 0.0], [1.0, 0.0, 0.0, 0.0]])
    q = quantize_group(fmt, GroupValues({"fc": w}, bias=torch.tensor([0.1, -0.5]),
                                        threshold=torch.tensor(1.0)), per_row=True)
    # s_0 = min(255 / 0.5, 2^18 - 1, 255 / 0.1) = 510; s_1 = min(255, 2^18 - 1, 510) = 255
    assert q.scale.tolist() == [510.0, 255.0]
    assert q.weights["fc"].tolist() == [[255.0, 128.0, -255.0, 0.0], [255.0, 0.0, 0.0, 0.0]]
    assert q.threshold.tolist() == [510.0, 255.0] and q.bias.tolist() == [51.0, -128.0]  # -127.5
    # the readout (no threshold) shares one scale: its outputs are compared with each other
    r = quantize_group(fmt, GroupValues({"fc": w}), per_row=True)
    assert r.scale.dim() == 0 and float(r.scale) == 255.0


def test_truenorth_keeps_four_levels_per_neuron():
    fmt = get_format("truenorth")
    torch.manual_seed(0)
    w = torch.randn(6, 40) * (torch.rand(6, 40) > 0.3)
    q = quantize_group(fmt, GroupValues({"fc": w}, threshold=torch.tensor(1.0)), per_row=True)
    for row, orig in zip(q.weights["fc"], w):
        assert row[row != 0].unique().numel() <= 4
        assert torch.equal(row == 0, orig == 0)  # zeros stay absent synapses
        assert row.abs().max() <= 255


def test_row_levels_is_deterministic_kmeans():
    rows = torch.tensor([[1.0, 1.1, 2.0, 2.1, 5.0, 5.2, 0.0, 9.0], [1.0, 2.0, 0.0, 0.0, 0, 0, 0, 0]])
    out = row_levels(rows, 3)
    assert out[0][out[0] != 0].unique().numel() == 3 and out[0, 6] == 0
    assert torch.equal(out[1], rows[1].double())  # 2 distinct values: left as they are
    assert torch.equal(row_levels(rows, 3), out)


def test_a_negative_membrane_extreme_sets_the_scale_in_the_signed_range():
    fmt = get_format("dynap-cnn")
    q = quantize_group(fmt, GroupValues({"w": torch.tensor([[1.0]])}, threshold=torch.tensor(1.0),
                                        state=torch.tensor([-1000.0, 10.0])))
    # |-1000| > 10 * 32768/32767: the negative branch, 2^15 / 1000 = 32.768 (below 127 / 1)
    assert float(q.scale) == 32.768
    assert q.state.tolist() == [-32768.0, 328.0] and q.weights["w"].tolist() == [[33.0]]


# --------------------------------------------------------------------------------------
# groups: which weighted layers a chip scales together, and the pools folded into them
# --------------------------------------------------------------------------------------
def test_groups_fold_average_pools_into_the_next_weights():
    net = snnedge.sequential(nn.Conv2d(1, 4, 3, padding=1), snnedge.IF(), nn.AvgPool2d(2),
                             nn.Flatten(), nn.Linear(4 * 4 * 4, 8), snnedge.IF(), nn.Linear(8, 3),
                             input_shape=(1, 8, 8))
    groups = format_groups(net, (1, 8, 8))
    assert [(g.neuron, g.layers) for g in groups] == [("1", ("0",)), ("5", ("4",)), (None, ("6",))]
    assert groups[1].gains == {"4": 0.25} and groups[1].pools == ("2",)
    assert groups[0].analog_input and not groups[1].analog_input and groups[1].sources == ("1",)
    assert groups[0].per_row and groups[1].per_row  # each layer's rows are its neurons' channels
    flat = snnedge.sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), snnedge.IF(), nn.Linear(8, 2))
    assert not format_groups(flat)[0].per_row  # a Flatten between rows and neurons


def test_groups_refuse_what_no_chip_scales():
    chained = snnedge.sequential(nn.Linear(4, 4), nn.Linear(4, 4), snnedge.IF(), nn.Linear(4, 2))
    with pytest.raises(FormatError, match="'0' and '1' follow each other"):
        format_groups(chained)
    scaled = snnedge.sequential(nn.Linear(4, 4), snnedge.Scale(2.0), snnedge.IF(), nn.Linear(4, 2))
    with pytest.raises(FormatError, match="Layer '1' is a Scale"):
        format_groups(scaled)
    shortcut = snnedge.SpikingNetwork([
        ("fc1", nn.Linear(4, 4), ("input",)), ("n1", snnedge.IF(), ("fc1",)),
        ("fc2", nn.Linear(4, 4), ("n1",)), ("add", snnedge.Add(), ("fc2", "n1")),
        ("n2", snnedge.IF(), ("add",)), ("out", nn.Linear(4, 2), ("n2",))])
    with pytest.raises(FormatError, match="Spikes of 'n1' reach neurons 'n2'.*identity shortcut"):
        format_groups(shortcut)
