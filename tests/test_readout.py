"""The readout weighted over time (snnedge.readout) and its choice by convert (converters.readout)."""
import math

import pytest
import torch
from torch import nn

import snnedge
from converters import convert
from converters.readout import EXPONENTS, exponent_errors, pick_exponent
from snnedge.readout import output_scale, step_weights, weigh_steps


def small_net(exponent=0.0, seed=0):
    torch.manual_seed(seed)
    net = snnedge.sequential(nn.Conv2d(1, 4, 3, padding=1), snnedge.IF(threshold=0.7, v_init=0.5),
                             nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 6),
                             snnedge.IF(threshold=0.5), nn.Linear(6, 3), input_shape=(1, 8, 8))
    net.readout_exponent = exponent
    return net.to(torch.float64)


def weighted(readout, p):
    """The reference: output and per-step predictions from each step's readout (T, N, C)."""
    T = readout.shape[0]
    w = torch.tensor([(t / T) ** p for t in range(1, T + 1)], dtype=torch.float64).view(-1, 1, 1)
    running = torch.cumsum(w * readout, 0)
    return running[-1] * T / w.sum(), running.argmax(-1)


def test_weights_and_scale_by_hand():
    w = step_weights(2.0, 1, 4, 4, torch.zeros((), dtype=torch.float64)).flatten()
    assert w.tolist() == [(2 / 4) ** 2, (3 / 4) ** 2, 1.0]
    # T / sum((t/T)^2) for T = 4: 4 / ((1 + 4 + 9 + 16) / 16) = 64 / 30
    assert output_scale(2.0, 4) == pytest.approx(64 / 30, rel=1e-15)
    assert output_scale(0.0, 7) == 1.0


def test_exponent_zero_is_the_plain_sum_to_the_bit():
    x = torch.rand(5, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    res = snnedge.simulate(small_net(), x, timesteps=12, keep_readout=True, dtype=torch.float64)
    assert res.readout.shape == (12, 5, 3)
    assert torch.equal(res.output, torch.cumsum(res.readout, 0)[-1])
    assert torch.equal(res.step_predictions, torch.cumsum(res.readout, 0).argmax(-1))


@pytest.mark.parametrize("engine", ["dense", "event", "auto"])
def test_weighted_readout_against_the_reference(engine):
    x = torch.rand(7, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    net = small_net(exponent=3.0)
    res = snnedge.simulate(net, x, timesteps=16, engine=engine, block_steps=5, batch_size=4,
                           keep_readout=True, dtype=torch.float64)
    plain = snnedge.simulate(small_net(), x, timesteps=16, engine=engine, keep_readout=True,
                             dtype=torch.float64)
    assert torch.equal(res.readout, plain.readout)  # the weighting changes no spike
    assert res.spike_counts == plain.spike_counts
    out, preds = weighted(res.readout, 3.0)
    torch.testing.assert_close(res.output, out, rtol=1e-12, atol=1e-12)
    assert torch.equal(res.step_predictions, preds)
    assert not torch.allclose(res.output, plain.output)  # the weighting did something


def test_weighting_adds_no_difference_between_engines_in_float32():
    # float32 dense and event outputs may differ in their last bits (other orders of
    # addition); the weighting must not add to that: equal where the plain outputs are equal
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    for p in (0.0, 2.0):
        net = small_net(exponent=p).float()
        dense, auto = (snnedge.simulate(net, x, timesteps=10, engine=e, block_steps=4)
                       for e in ("dense", "auto"))
        assert torch.equal(dense.output, auto.output)
        assert torch.equal(dense.step_predictions, auto.step_predictions)


def test_weigh_steps_matches_the_engine():
    readout = torch.rand(9, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    running, out = weigh_steps(readout, 1.5)
    ref_out, ref_preds = weighted(readout, 1.5)
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    assert torch.equal(running.argmax(-1), ref_preds)


def test_brian2_weighs_as_the_torch_engines():
    pytest.importorskip("brian2")
    import snnedge.interop  # noqa: F401  (registers engine="brian2")
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    net = small_net(exponent=2.0)
    a = snnedge.simulate(net, x, timesteps=10, engine="brian2", keep_readout=True)
    b = snnedge.simulate(net, x, timesteps=10, engine="dense", keep_readout=True, dtype=torch.float64)
    torch.testing.assert_close(a.readout, b.readout, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a.output, b.output, rtol=1e-12, atol=1e-12)
    assert torch.equal(a.step_predictions, b.step_predictions)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), 17.0, "late", True])
def test_a_bad_exponent_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="readout_exponent"):
        small_net(exponent=bad)
    with pytest.raises(ValueError, match="readout"):
        convert(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval(), torch.rand(8, 4),
                readout=bad)


def test_keep_readout_is_refused_for_distributed_runs():
    with pytest.raises(ValueError, match="keep_readout"):
        snnedge.simulate(small_net(), torch.rand(2, 1, 8, 8), timesteps=4, distributed=True,
                         keep_readout=True)


def test_the_exponent_travels_with_the_network(tmp_path):
    net = small_net(exponent=4.0)
    snnedge.save_network(net, tmp_path / "n.pt")
    assert snnedge.load_network(tmp_path / "n.pt").readout_exponent == 4.0
    # a file written before the weighting existed reads as the plain sum
    payload = torch.load(tmp_path / "n.pt", weights_only=True)
    del payload["readout_exponent"]
    torch.save(payload, tmp_path / "old.pt")
    assert snnedge.load_network(tmp_path / "old.pt").readout_exponent == 0.0
    assert "readout_exponent=4" in repr(net)
    import copy
    assert copy.deepcopy(net).readout_exponent == 4.0


def test_hardware_and_nir_keep_the_exponent():
    from neuromorphic_targets import to_hardware
    net = small_net(exponent=2.0).float()
    assert to_hardware(net, "loihi", input_shape=(1, 8, 8)).readout_exponent == 2.0
    pytest.importorskip("nir")
    from snnedge.interop import from_nir, to_nir
    g = to_nir(net, input_shape=(1, 8, 8))
    assert g.metadata["readout_exponent"] == 2.0
    back = from_nir(g, reset="subtract", readout_exponent=g.metadata["readout_exponent"])
    assert back.readout_exponent == 2.0


# -- the choice ---------------------------------------------------------------------------
def test_a_settled_readout_keeps_the_plain_sum():
    # the readout is the target plus noise that does not depend on the step: every step is
    # as good as any other, and the plain sum averages the noise best
    g = torch.Generator().manual_seed(5)
    z = torch.randn(50, 4, generator=g, dtype=torch.float64)
    readout = z + 0.5 * torch.randn(32, 50, 4, generator=g, dtype=torch.float64)
    errors = exponent_errors(readout, z, (16, 32))
    assert set(errors) == set(EXPONENTS)
    assert pick_exponent(errors) == 0.0


def test_a_transient_makes_the_late_steps_count():
    # wrong for the first 12 steps (another sample's output), right after them
    g = torch.Generator().manual_seed(6)
    z = torch.randn(50, 4, generator=g, dtype=torch.float64)
    t = torch.arange(1, 33, dtype=torch.float64).view(-1, 1, 1)
    readout = torch.where(t <= 12, z.roll(1, 0), z) + 0.1 * torch.randn(32, 50, 4, generator=g,
                                                                        dtype=torch.float64)
    errors = exponent_errors(readout, z, (16, 32))
    p = pick_exponent(errors)
    assert p >= 3.0
    assert errors[p] < 0.5 * errors[0.0]


def test_pick_prefers_the_smaller_exponent_on_a_tie():
    assert pick_exponent({0.0: 1.0, 1.0: 1.0, 2.0: 2.0}) == 0.0
    assert pick_exponent({0.0: 1.0, 1.0: 0.5, 2.0: 0.5}) == 1.0


def test_convert_chooses_and_records_the_exponent():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.Conv2d(6, 8, 3), nn.ReLU(),
                        nn.Flatten(), nn.Linear(8 * 4 * 4, 5)).eval()
    x = torch.rand(64, 1, 8, 8)
    before = {k: v.clone() for k, v in ann.state_dict().items()}
    snn = convert(ann, x)
    info = snn.conversion_
    errors = {float(k): v for k, v in info.readout_errors.items()}
    assert set(errors) == set(EXPONENTS) and all(math.isfinite(e) for e in errors.values())
    assert snn.readout_exponent == info.readout_exponent == pick_exponent(errors)
    fixed = convert(ann, x, readout=2.5)
    assert fixed.readout_exponent == 2.5 and fixed.conversion_.readout_errors == {}
    assert all(torch.equal(before[k], v) for k, v in ann.state_dict().items())


def test_training_refuses_a_weighted_readout():
    net = small_net(exponent=2.0).float()
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 3, (8,))
    for call in (lambda: snnedge.fit(net, train=(x, y), epochs=1, timesteps=4, progress=False),
                 lambda: snnedge.training.evaluate(net, (x, y), timesteps=4)):
        with pytest.raises(ValueError, match="readout_exponent = 0"):
            call()
    net.readout_exponent = 0.0
    snnedge.fit(net, train=(x, y), epochs=1, timesteps=4, progress=False)


def test_a_silent_target_is_measured_against_the_others_scale():
    """A sample whose ANN output is 0 (a silent ReLU readout) counts its spurious output
    against the mean norm of the other targets, not against 0 (which made the error 1e6)."""
    z = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64)   # norms 5 and 0
    o = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=torch.float64).expand(4, 2, 2)
    errors = exponent_errors(o, z, (4,), exponents=(0.0,))
    assert errors[0.0] == pytest.approx((0.0 + 1.0 / 5.0) / 2, rel=1e-12)
    assert exponent_errors(o[:, :1], z[:1], (4,), exponents=(0.0,))[0.0] == 0.0
