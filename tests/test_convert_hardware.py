"""``convert(..., hardware=chip)`` and ``max_scale_ratio`` (issue 19): a chip that rounds a
whole layer's weights on one grid (DYNAP-CNN, Loihi) gets channel scales within
``CHIP_SCALE_RATIO`` of their layer's largest, so that no channel's weights are rounded away;
TrueNorth (one scale per neuron) keeps unbounded scales; bad values are refused by name."""
import pytest
import torch
from torch import nn

from converters import convert
from converters.calibration import bound_ratio
from converters.pipeline import CHIP_SCALE_RATIO, chip_scale_ratio
from neuromorphic_targets import to_hardware
from test_convert import state_hash


def spread_net() -> nn.Sequential:
    """A CNN whose first layer's channels span three decades of activation."""
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 4)).eval()
    with torch.no_grad():
        ann[0].weight.abs_().mul_(torch.logspace(-3, 0, 8).view(8, 1, 1, 1))
        ann[0].bias.zero_()
    return ann


X = torch.rand(64, 1, 4, 4, generator=torch.Generator().manual_seed(0))


def ratio(scales) -> float:
    s = torch.tensor(scales)
    return float(s.max() / s.min())


def test_bound_ratio_raises_only_the_small_scales():
    # lam = max(lam, max(lam) / r): 8 and 2 stay, 0.5 < 8 / 4 becomes 2
    lam = torch.tensor([8.0, 2.0, 0.5, 1.9], dtype=torch.float64)
    assert bound_ratio(lam, 4.0).tolist() == [8.0, 2.0, 2.0, 2.0]
    assert bound_ratio(lam, 1.0).tolist() == [8.0] * 4


def test_max_scale_ratio_bounds_each_layers_channel_scales():
    free = convert(spread_net(), X, timesteps=4)
    bounded = convert(spread_net(), X, timesteps=4, max_scale_ratio=4)
    assert ratio(free.conversion_.scales["1"]) > 100  # the spread built into the network
    for name, scales in bounded.conversion_.scales.items():
        if isinstance(scales, list):
            assert ratio(scales) <= 4 * (1 + 1e-12), name
            big = torch.tensor(free.conversion_.scales[name])
            kept = big >= big.max() / 4  # channels inside the bound keep their own scale
            assert torch.equal(torch.tensor(scales)[kept], big[kept])
    assert bounded.conversion_.max_scale_ratio == 4.0 and bounded.conversion_.hardware is None
    assert free.conversion_.max_scale_ratio is None


@pytest.mark.parametrize("chip, expected", [("dynap-cnn", CHIP_SCALE_RATIO),
                                            ("loihi", CHIP_SCALE_RATIO), ("truenorth", None)])
def test_hardware_bounds_the_scales_on_chips_with_one_weight_scale_per_layer(chip, expected):
    assert chip_scale_ratio(chip) == expected
    snn = convert(spread_net(), X, timesteps=4, hardware=chip)
    info = snn.conversion_
    assert info.hardware == chip and info.max_scale_ratio == expected
    if expected is None:  # TrueNorth scales each neuron on its own: the default conversion
        default = convert(spread_net(), X, timesteps=4)
        for a, b in zip(snn.state_dict().values(), default.state_dict().values()):
            assert torch.equal(a, b)
    else:
        assert ratio(info.scales["1"]) <= expected * (1 + 1e-12)
    explicit = convert(spread_net(), X, timesteps=4, hardware=chip, max_scale_ratio=2)
    assert explicit.conversion_.max_scale_ratio == 2.0  # an explicit bound wins


def test_loihi_keeps_the_weights_of_every_channel_when_converted_for_it():
    """Unbounded, the channels of small scales take the second layer's largest weights, and
    Loihi's one exponent per layer rounds the other channels' weights to zero."""
    free = to_hardware(convert(spread_net(), X, timesteps=4), "loihi")
    chip = to_hardware(convert(spread_net(), X, timesteps=4, hardware="loihi"), "loihi")
    lost_free = int((free.layer("2").weight == 0).sum())
    lost_chip = int((chip.layer("2").weight == 0).sum())
    assert lost_chip < lost_free


def test_to_hardware_says_which_layer_lost_most_weights_to_rounding():
    snn = convert(spread_net(), X, timesteps=4)
    hw = to_hardware(snn, "loihi")
    shares = hw.hardware_.rounded_to_zero
    assert set(shares) == {"0", "2", "5"}
    w, chip = snn.layer("2").weight, hw.layer("2").weight
    assert shares["2"] == int(((w != 0) & (chip == 0)).sum()) / int((w != 0).sum())
    worst = max(shares, key=shares.get)
    assert any(n.startswith(f"layer {worst!r}: {shares[worst]:.0%} of its non-zero weights")
               and "convert(..., hardware='loihi')" in n for n in hw.hardware_.notes)
    bounded = to_hardware(convert(spread_net(), X, timesteps=4, hardware="loihi"), "loihi")
    assert bounded.hardware_.rounded_to_zero["2"] < shares["2"]
    # TrueNorth scales each neuron on its own: a note only where a weight was lost, no hint
    truenorth = to_hardware(snn, "truenorth").hardware_
    notes = [n for n in truenorth.notes if "round to zero" in n]
    assert len(notes) == (1 if max(truenorth.rounded_to_zero.values()) > 0 else 0)
    assert not any("hardware=" in n for n in notes)


def test_the_model_is_not_modified():
    ann = spread_net()
    before = state_hash(ann)
    convert(ann, X, timesteps=4, hardware="loihi")
    assert state_hash(ann) == before


def test_bad_hardware_and_ratio_are_refused_by_name():
    with pytest.raises(ValueError, match="max_scale_ratio"):
        convert(spread_net(), X, max_scale_ratio=0.5)
    with pytest.raises(ValueError, match="no number format 'dynap-se'.*known: 'dynap-cnn'"):
        convert(spread_net(), X, hardware="dynap-se")
    with pytest.raises(TypeError, match="'hardware' parameter of convert"):
        convert(spread_net(), X, hardware=3)
