"""Where the neurons fed by the input start (converters.phases) and convert's choice of it."""
import pytest
import torch
from torch import nn

import snnedge
from converters import CalibratedIF, convert
from converters.membrane import calibrated_layers
from converters.phases import BAYER_4, PHASE_PASSES, ordered_offsets

X = torch.rand(96, 1, 10, 10, generator=torch.Generator().manual_seed(0))
# enough calibration samples that "auto" builds both candidates within PHASE_PASSES
X_BIG = torch.rand(1000, 1, 10, 10, generator=torch.Generator().manual_seed(1))


def conv_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2),
                         nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 4)).eval()


def test_offsets_by_hand():
    u = ordered_offsets((1, 4, 4))
    assert torch.equal(u[0], (BAYER_4 + 0.5) / 16 - 0.5)
    assert u[0, 0, 0] == -15 / 32 and u[0, 3, 0] == 15 / 32
    levels = sorted((k + 0.5) / 16 - 0.5 for k in range(16))
    big = ordered_offsets((20, 9, 11))
    # every 4 x 4 window of a channel, and 16 consecutive channels at one place, hold each once
    for c, i, j in [(0, 0, 0), (3, 2, 5), (19, 5, 7)]:
        assert sorted(big[c, i:i + 4, j:j + 4].flatten().tolist()) == levels
    for c0, i, j in [(0, 0, 0), (4, 3, 8)]:
        assert sorted(big[c0:c0 + 16, i, j].tolist()) == levels
    assert float(big[:16].mean()) == pytest.approx(0.0, abs=1e-15)
    assert ordered_offsets((8,)) is None and ordered_offsets((8, 5)) is None


def test_ordered_starts_the_first_layer_spread_and_calibration_leaves_it():
    for calibrate in (False, True):
        snn = convert(conv_net(), X, phases="ordered", readout=0, calibrate_membrane=calibrate)
        first = snn.layer("1")
        assert isinstance(first, CalibratedIF)
        assert torch.equal(first.v_init_map, (0.5 + ordered_offsets((6, 10, 10))).float())
        assert snn.conversion_.phases == "ordered" and snn.conversion_.phase_errors == {}
        assert "1" not in calibrated_layers(snn)
        assert calibrated_layers(snn) == (["3"] if calibrate else [])
    aligned = convert(conv_net(), X, phases="aligned", readout=0)
    assert type(aligned.layer("1")) is snnedge.IF
    assert not torch.equal(aligned.layer("3").v_init_map, snn.layer("3").v_init_map)


def test_ordered_first_layer_counts_are_the_rounded_rates():
    """With a static current a (in thresholds per step) a neuron starting at v0 + u fires
    floor(T a + v0 + u) times in T steps (reset by subtraction, 0 <= a <= 1)."""
    snn = convert(conv_net(), X, phases="ordered", readout=0, calibrate_membrane=False)
    x = X[:5].double()
    T = 23
    res = snnedge.simulate(snn, x, timesteps=T, dtype=torch.float64)
    net = snn.to(torch.float64)
    first = net.layer("1")
    a = (net.layer("0")(x) / first.threshold_for(x).view(1, -1, 1, 1)).clamp(0, 1)
    expected = torch.floor(T * a + first.v_init_map.double()).clamp(0, T)
    counts = res.neuron_spike_counts["1"]  # summed over the samples
    assert torch.equal(counts.double(), expected.sum(0))
    assert len(set(expected[0, 0].flatten().tolist())) > 1


def test_auto_keeps_the_candidate_of_least_readout_error_and_leaves_the_ann():
    ann = conv_net()
    before = {k: v.clone() for k, v in ann.state_dict().items()}
    snn = convert(ann, X_BIG)
    info = snn.conversion_
    assert set(info.phase_errors) == {"aligned", "ordered"}
    assert info.phases == min(info.phase_errors, key=info.phase_errors.get)
    same = convert(ann, X_BIG, phases=info.phases)
    assert same.readout_exponent == snn.readout_exponent
    for (k, v), (k2, v2) in zip(snn.state_dict().items(), same.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert all(torch.equal(v, before[k]) for k, v in ann.state_dict().items())


def test_auto_builds_one_network_past_the_budget():
    """With 96 samples at T_c = 16 two calibrations would take more than PHASE_PASSES ANN
    passes' worth of steps (2 x (30 x 16 + 9 x 32) = 1,536 > 13 x 96): one, aligned."""
    assert 2 * (30 * 16 + 9 * 32) > PHASE_PASSES * 96
    snn = convert(conv_net(), X)
    assert snn.conversion_.phases == "aligned" and snn.conversion_.phase_errors == {}
    assert type(snn.layer("1")) is snnedge.IF
    assert convert(conv_net(), X, phases="ordered").conversion_.phases == "ordered"


def test_auto_builds_one_network_where_nothing_spreads():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(100, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    snn = convert(mlp, X_BIG)
    assert snn.conversion_.phases == "aligned" and snn.conversion_.phase_errors == {}
    assert type(snn.layer("2")) is snnedge.IF


def test_ordered_network_saves_and_loads(tmp_path):
    snn = convert(conv_net(), X, phases="ordered", readout=0)
    path = tmp_path / "net.snn"
    snnedge.save_network(snn, path)
    back = snnedge.load_network(path)
    assert torch.equal(back.layer("1").v_init_map, snn.layer("1").v_init_map)
    assert back.conversion_.phases == "ordered"
    a = snnedge.simulate(snn, X[:8], timesteps=12).output
    b = snnedge.simulate(back, X[:8], timesteps=12).output
    assert torch.equal(a, b)


def test_bad_phases_are_refused_by_name():
    with pytest.raises(ValueError, match="phases"):
        convert(conv_net(), X, phases="random")
