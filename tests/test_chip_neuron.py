"""ChipNeuron, the engines' exact integer path: against a plain Python-integer reference,
saturation and wrapping at their bounds, and the dense, event and brian2 engines against
each other on networks in every chip's arithmetic (bit for bit)."""
import pytest
import torch
from torch import nn

import snnedge
from neuromorphic_targets import to_hardware


def reference(currents, theta, bias, v0, reset, decay=None, lo=None, hi=None, bits=None,
              strict=False):
    """The update of snnedge/chip_neuron.py in Python integers, one neuron at a time."""
    out, v = [], list(v0)
    for row in currents:
        z_row = []
        for j, cur in enumerate(row):
            i = round(cur)  # Python's round: half to even, as torch.round
            if bits is not None:
                half = 2 ** (bits - 1)
                i = (i + half) % (2 * half) - half
            if decay is not None:
                mag = (abs(v[j]) * decay) >> 12
                v[j] = mag if v[j] >= 0 else -mag
            v[j] += i + bias[j]
            if lo is not None:
                v[j] = max(lo, min(hi, v[j]))
            z = int(v[j] > theta[j] if strict else v[j] >= theta[j])
            v[j] = v[j] - z * theta[j] if reset == "subtract" else (0 if z else v[j])
            z_row.append(z)
        out.append(z_row)
    return out, v


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("case", ["plain", "decay", "saturate", "wrap-strict"])
def test_integer_update_equals_the_integer_reference(reset, case):
    g = torch.Generator().manual_seed(len(reset) * 10 + len(case))
    n, steps = 12, 20
    theta = torch.randint(3, 40, (n,), generator=g).double()
    bias = torch.randint(-3, 4, (n,), generator=g).double()
    v0 = torch.randint(-10, 10, (n,), generator=g).double()
    cur = torch.randint(-30, 60, (steps, n), generator=g).double()
    cur[::3] += 0.5  # halves: rounded to even
    kw = {}
    if case == "decay":
        kw["decay"] = 3686
    if case == "saturate":
        kw.update(lo=-16, hi=15)
        cur *= 4
    if case == "wrap-strict":
        kw.update(bits=6, strict=True, lo=-100, hi=100)
    neuron = snnedge.ChipNeuron(theta, bias, v0, reset,
                                decay=None if "decay" not in kw else torch.tensor(float(kw["decay"])),
                                v_min=kw.get("lo"), v_max=kw.get("hi"), current_bits=kw.get("bits"),
                                strict=kw.get("strict", False))
    z, v = neuron.forward_block(cur.unsqueeze(1), neuron.initial_state(cur[:1]), steps)
    ref_z, ref_v = reference(cur.tolist(), theta.long().tolist(), bias.long().tolist(),
                             v0.long().tolist(), reset, **kw)
    assert z[:, 0].long().tolist() == ref_z and v[0].long().tolist() == ref_v
    if "lo" in kw:
        assert v.min() >= kw["lo"] and v.max() <= kw["hi"]


def test_the_block_equals_the_readable_step():
    torch.manual_seed(0)
    neuron = snnedge.ChipNeuron(torch.full((3, 1), 9.0), torch.tensor([[1.0], [0.0], [-1.0]]),
                                None, "subtract", decay=torch.tensor(4000.0), v_min=-50, v_max=49)
    cur = torch.randint(-10, 30, (8, 2, 3, 4)).double()
    z, v = neuron.forward_block(cur, neuron.initial_state(cur[0]), 8)
    v_ref = neuron.initial_state(cur[0])
    for t in range(8):
        z_t, v_ref = neuron.step(v_ref, neuron.input_current(cur[t]), neuron.threshold_for(cur[0]),
                                 neuron.bias, neuron.decay)
        assert torch.equal(z_t, z[t])
    assert torch.equal(v, v_ref)


def test_the_membrane_saturates_instead_of_overflowing():
    neuron = snnedge.ChipNeuron(torch.tensor(1000.0), None, None, "zero", v_min=-128, v_max=127)
    cur = torch.tensor([[500.0], [-900.0], [-900.0]], dtype=torch.float64).unsqueeze(1)
    z, v = neuron.forward_block(cur, torch.zeros(1, 1, dtype=torch.float64), 3)
    # 500 saturates at 127 (below the threshold 1000: no spike), then -773 saturates at -128
    assert z.sum() == 0 and v.item() == -128


def test_integer_mode_refuses_float32_and_analog_mode_has_no_bounds():
    neuron = snnedge.ChipNeuron(torch.tensor(4.0))
    with pytest.raises(ValueError, match="float64"):
        neuron(torch.ones(3, 1, 2))
    with pytest.raises(ValueError, match="analog model"):
        snnedge.ChipNeuron(torch.tensor(1.0), integer=False, v_min=-1, v_max=1)
    with pytest.raises(ValueError, match="positive"):
        snnedge.ChipNeuron(torch.tensor([1.0, 0.0]))


def test_analog_mode_is_the_lif_update_with_per_neuron_maps():
    torch.manual_seed(0)
    theta, beta = torch.rand(2, 3) + 0.5, torch.rand(2, 3) * 0.5 + 0.5
    neuron = snnedge.ChipNeuron(theta, None, None, "zero", beta=beta, integer=False)
    x = torch.rand(10, 4, 2, 3, dtype=torch.float64)
    z, _ = neuron.forward_block(x, neuron.initial_state(x[0]), 10)
    v = torch.zeros(4, 2, 3, dtype=torch.float64)
    for t in range(10):
        z_t, v = snnedge.lif_step(v, x[t], beta.double(), theta.double(), "zero")
        assert torch.equal(z_t, z[t])


def _net(reset="subtract", lif=False):
    torch.manual_seed(1)
    neuron = snnedge.LIF(beta=0.9, reset=reset) if lif else snnedge.IF(reset=reset, v_init=0.5)
    net = snnedge.sequential(nn.Conv2d(1, 4, 3, padding=1), neuron, nn.AvgPool2d(2), nn.Flatten(),
                             nn.Linear(4 * 16, 16), snnedge.IF(reset=reset), nn.Linear(16, 4),
                             input_shape=(1, 8, 8))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(3)
    return net


@pytest.mark.parametrize("target", ["dynap-cnn", "truenorth", "loihi"])
@pytest.mark.parametrize("encoding", ["direct", "poisson"])
def test_dense_and_event_engines_agree_bit_for_bit(target, encoding):
    hw = to_hardware(_net("zero" if target == "loihi" else "subtract", lif=target == "loihi"), target)
    x = torch.rand(16, 1, 8, 8)
    a = snnedge.simulate(hw, x, timesteps=12, engine="dense", encoding=encoding, seed=3)
    b = snnedge.simulate(hw, x, timesteps=12, engine="event", encoding=encoding, seed=3)
    assert a.spike_counts == b.spike_counts and a.synaptic_events == b.synaptic_events
    assert torch.equal(a.output, b.output) and torch.equal(a.step_predictions, b.step_predictions)
    assert torch.equal(a.output, a.output.round())  # the readout accumulates integers
    for name in a.neuron_spike_counts:
        assert torch.equal(a.neuron_spike_counts[name], b.neuron_spike_counts[name])


@pytest.mark.parametrize("target", ["dynap-cnn", "truenorth", "loihi"])
def test_brian2_runs_the_chip_neurons_bit_for_bit(target):
    pytest.importorskip("brian2")
    hw = to_hardware(_net("zero" if target == "loihi" else "subtract", lif=target == "loihi"), target)
    x = torch.rand(5, 1, 8, 8)
    for encoding in ("direct", "poisson"):
        a = snnedge.simulate(hw, x, timesteps=10, engine="dense", encoding=encoding, seed=2)
        b = snnedge.simulate(hw, x, timesteps=10, engine="brian2", encoding=encoding, seed=2)
        assert a.spike_counts == b.spike_counts and torch.equal(a.output, b.output)
        for name in a.neuron_spike_counts:
            assert torch.equal(a.neuron_spike_counts[name], b.neuron_spike_counts[name])


@pytest.mark.parametrize("target", ["dynap-cnn", "truenorth", "loihi"])
def test_event_frames_run_the_chip_neurons_alike_in_every_engine(target):
    # a sequence of event frames (whole counts) reaches the chip's integer weights as integer
    # currents, so dense, event and brian2 agree bit for bit on sequences too
    hw = to_hardware(_net("zero" if target == "loihi" else "subtract", lif=target == "loihi"), target)
    frames = 2.0 * (torch.rand(4, 6, 1, 8, 8, generator=torch.Generator().manual_seed(4)) > 0.7)
    a = snnedge.simulate(hw, frames, encoding="sequence", engine="dense")
    b = snnedge.simulate(hw, frames, encoding="sequence", engine="event")
    assert a.spike_counts == b.spike_counts and torch.equal(a.output, b.output)
    assert sum(a.spike_counts.values()) > 0
    if target == "dynap-cnn":
        pytest.importorskip("brian2")
        c = snnedge.simulate(hw, frames, encoding="sequence", engine="brian2")
        assert a.spike_counts == c.spike_counts and torch.equal(a.output, c.output)


def test_brian2_refuses_analog_sequences_into_integer_chip_neurons():
    pytest.importorskip("brian2")
    from snnedge.interop.sparse_maps import UnsupportedLayer
    hw = to_hardware(_net(), "dynap-cnn")
    analog = torch.rand(2, 4, 1, 8, 8, dtype=torch.float64) * 0.7
    with pytest.raises(UnsupportedLayer, match="Layer '1' is an integer ChipNeuron.*analog values"
                                               ".*engine='dense' or 'event'"):
        snnedge.simulate(hw, analog, encoding="sequence", engine="brian2")


@pytest.mark.parametrize("target", ["truenorth", "loihi"])
def test_recurrent_networks_run_on_the_integer_path_in_every_engine(target):
    # a recurrent edge (snnedge.previous) is one more weighted input of the neurons it feeds:
    # scaled with the feed-forward layer (TrueNorth: 4 levels per neuron across both)
    torch.manual_seed(0)
    net = snnedge.SpikingNetwork([
        snnedge.Node("fc", nn.Linear(16, 8), ("input",)),
        snnedge.Node("rec", nn.Linear(8, 8, bias=False), (snnedge.previous("lif"),)),
        snnedge.Node("sum", snnedge.Add(), ("fc", "rec")),
        snnedge.Node("lif", snnedge.IF(reset="zero" if target == "loihi" else "subtract"), ("sum",)),
        snnedge.Node("out", nn.Linear(8, 2), ("lif",))], input_shape=(16,))
    with torch.no_grad():
        net.layer("fc").weight.mul_(3)
        net.layer("rec").weight.mul_(3)
    hw = to_hardware(net, target)
    if target == "truenorth":
        rows = torch.cat([hw.layer("fc").weight, hw.layer("rec").weight], 1)
        assert all(r[r != 0].unique().numel() <= 4 for r in rows)
    x = torch.rand(6, 16)
    engines = ["dense", "event"] + (["brian2"] if _has_brian2() else [])
    runs = [snnedge.simulate(hw, x, 12, engine=e, encoding="poisson", seed=1) for e in engines]
    assert runs[0].spike_counts["lif"] > 0
    for r in runs[1:]:
        assert r.spike_counts == runs[0].spike_counts and torch.equal(r.output, runs[0].output)


def _has_brian2() -> bool:
    try:
        import brian2  # noqa: F401
    except ImportError:
        return False
    return True
