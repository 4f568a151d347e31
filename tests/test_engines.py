"""Engines against each other, against hand counts, and properties of the counts."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import snnedge
from snnedge import Node, SpikingNetwork


def residual_net(seed=0, dtype=torch.float64):
    """conv -> IF -> [conv -> IF -> conv] + identity -> IF -> avgpool -> flatten -> linear."""
    torch.manual_seed(seed)
    layers = [
        Node("stem", nn.Conv2d(1, 6, 3, padding=1)),
        Node("stem_if", snnedge.IF(threshold=0.6)),
        Node("block.conv1", nn.Conv2d(6, 6, 3, padding=1), ("stem_if",)),
        Node("block.if1", snnedge.IF(threshold=0.5), ("block.conv1",)),
        Node("block.conv2", nn.Conv2d(6, 6, 3, padding=1, stride=1), ("block.if1",)),
        Node("block.add", snnedge.Add(), ("block.conv2", "stem_if")),
        Node("block.if2", snnedge.IF(threshold=[0.4, 0.5, 0.6, 0.7, 0.8, 0.9]), ("block.add",)),
        Node("pool", nn.AvgPool2d(2), ("block.if2",)),
        Node("down", nn.Conv2d(6, 8, 3, stride=2, padding=0), ("pool",)),
        Node("down_if", snnedge.LIF(beta=0.9, threshold=0.5), ("down",)),
        Node("flat", nn.Flatten(), ("down_if",)),
        Node("fc", nn.Linear(8 * 3 * 3, 5), ("flat",)),
    ]
    return SpikingNetwork(layers).to(dtype)


def test_dense_and_event_engines_agree_exactly():
    net = residual_net()
    x = torch.rand(12, 1, 14, 14, dtype=torch.float64)
    dense = snnedge.simulate(net, x, timesteps=20, engine="dense", dtype=torch.float64, block_steps=7)
    event = snnedge.simulate(net, x, timesteps=20, engine="event", dtype=torch.float64, block_steps=3)
    assert dense.spike_counts == event.spike_counts
    assert dense.synaptic_events == event.synaptic_events
    assert dense.input_macs == event.input_macs
    for k in dense.neuron_spike_counts:
        assert torch.equal(dense.neuron_spike_counts[k], event.neuron_spike_counts[k])
    assert torch.allclose(dense.output, event.output, atol=1e-9)
    assert torch.equal(dense.step_predictions, event.step_predictions)
    assert all(v > 0 for v in dense.spike_counts.values()), dense.spike_counts
    assert event.engine == "event" and dense.engine == "dense"


def test_block_size_does_not_change_results():
    net = residual_net(seed=1)
    x = torch.rand(5, 1, 14, 14, dtype=torch.float64)
    a = snnedge.simulate(net, x, timesteps=9, dtype=torch.float64, engine="dense", block_steps=1)
    b = snnedge.simulate(net, x, timesteps=9, dtype=torch.float64, engine="dense", block_steps=9)
    assert a.spike_counts == b.spike_counts and torch.allclose(a.output, b.output)


def test_synaptic_events_hand_count_linear():
    # Linear 3 -> 2 with one zero weight: input 0 reaches 2 neurons, input 1 reaches 1,
    # input 2 reaches 2. Inputs are Poisson spikes (events), so events = spikes x fan-out.
    fc = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]))
    net = snnedge.sequential(nn.Identity(), fc)
    x = torch.tensor([[1.0, 1.0, 0.0]])  # inputs 0 and 1 fire every step, input 2 never
    res = snnedge.simulate(net, x, timesteps=4, encoding="poisson")
    assert res.synaptic_events == {"1": 4 * (2 + 1)}
    assert res.input_macs == {}


def test_conv_fanout_is_border_exact():
    # A 3x3 conv with padding 1 on a 4x4 map: a corner input reaches 4 outputs, an edge one
    # 6, an interior one 9 (times 2 output channels).
    conv = nn.Conv2d(1, 2, 3, padding=1)
    f = snnedge.connectivity.fanout(conv, (1, 4, 4), (2, 4, 4))
    assert f[0, 0, 0] == 8 and f[0, 0, 1] == 12 and f[0, 1, 1] == 18
    ones = nn.functional.conv_transpose2d(torch.ones(1, 2, 4, 4), torch.ones(2, 1, 3, 3), padding=1)
    assert torch.equal(f, ones[0].double())


def test_direct_input_counts_as_macs_not_events():
    conv = nn.Conv2d(1, 1, 1, bias=False)
    net = snnedge.sequential(conv, snnedge.IF())
    x = torch.tensor([[[[0.5, 0.0], [1.0, 0.25]]]])
    res = snnedge.simulate(net, x, timesteps=3)
    assert res.input_macs == {"0": 3 * 3}  # 3 non-zero pixels x fan-out 1 x 3 steps
    assert res.synaptic_events == {}


@given(st.integers(1, 40), st.floats(0.2, 2.0), st.integers(0, 2**16))
def test_if_count_is_floor_of_accumulated_input(timesteps, theta, seed):
    # With reset by subtraction and currents in [0, theta], v stays in [0, theta) after each
    # step, so the spike count is floor(sum(I) / theta) (within one for rounding at ties).
    g = torch.Generator().manual_seed(seed)
    current = torch.rand((timesteps, 3, 7), generator=g, dtype=torch.float64) * theta
    spikes = snnedge.IF(threshold=theta)(current)
    expected = torch.floor(current.sum(0) / theta)
    assert torch.all((spikes.sum(0) - expected).abs() <= 1)
    assert torch.all(spikes.sum(0) <= timesteps)


@given(st.integers(1, 12), st.integers(0, 2**16))
def test_events_equal_spikes_times_fanout(timesteps, seed):
    torch.manual_seed(seed)
    conv = nn.Conv2d(3, 4, 3, padding=1, stride=2)
    net = snnedge.sequential(nn.Conv2d(1, 3, 3, padding=1), snnedge.IF(threshold=0.3), conv, snnedge.IF())
    x = torch.rand(2, 1, 8, 8)
    res = snnedge.simulate(net, x, timesteps=timesteps, dtype=torch.float64)
    f = snnedge.connectivity.fanout(conv, (3, 8, 8), (4, 4, 4))
    assert res.synaptic_events["2"] == int((res.neuron_spike_counts["1"] * f).sum())


@given(st.integers(0, 2**16), st.sampled_from(["poisson", "latency"]))
def test_stochastic_encodings_reproducible_for_a_seed(seed, encoding):
    net = residual_net(dtype=torch.float64)
    x = torch.rand(3, 1, 14, 14, dtype=torch.float64)
    a = snnedge.simulate(net, x, timesteps=6, encoding=encoding, seed=seed, block_steps=2)
    b = snnedge.simulate(net, x, timesteps=6, encoding=encoding, seed=seed, block_steps=2)
    c = snnedge.simulate(net, x, timesteps=6, encoding=encoding, seed=seed, block_steps=5)
    assert a.spike_counts == b.spike_counts and torch.equal(a.output, b.output)
    # Another block size draws the same spikes; only float summation order may differ.
    assert a.spike_counts == c.spike_counts and torch.allclose(a.output, c.output)


@pytest.mark.parametrize("threshold, engine", [(30.0, "event"), (2.2, "event"), (0.05, "dense")])
def test_auto_engine_picks_event_per_layer_at_low_density(threshold, engine, limit_policy):
    from snnedge.events import event_density_limit
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Linear(50, 200), snnedge.IF(threshold=threshold),
                             nn.Linear(200, 600), snnedge.IF(threshold=0.4 * threshold),
                             nn.Linear(600, 4))
    x = torch.rand(4, 50)
    res = snnedge.simulate(net, x, timesteps=16, engine="auto", block_steps=8)
    assert res.engine == engine
    density = res.extra["input_density"][0]
    assert set(density) == {"2", "4"}  # the spike-fed weighted layers ("0" sees the static input)
    chosen = {k for k, d in density.items() if d < event_density_limit(net.layer(k))}
    assert res.extra["event_layers"] == [sorted(chosen)]
    if threshold == 2.2:  # sparse, not silent: the 600-output layer pays for events, the readout not
        assert chosen == {"2"} and 0 < density["4"]
    ref = snnedge.simulate(net, x, timesteps=16, engine="dense", block_steps=8)
    assert res.spike_counts == ref.spike_counts and torch.allclose(res.output, ref.output, atol=1e-5)


def test_result_fields_and_accuracy():
    net = residual_net(dtype=torch.float32)
    x = torch.rand(10, 1, 14, 14)
    y = torch.arange(10) % 5
    res = snnedge.simulate(net, x, timesteps=7, labels=y)
    assert res.output.shape == (10, 5) and res.predictions.shape == (10,)
    assert res.timesteps == 7 and res.num_samples == 10
    assert res.neurons == {"stem_if": 6 * 14 * 14, "block.if1": 6 * 14 * 14,
                           "block.if2": 6 * 14 * 14, "down_if": 8 * 3 * 3}
    curve = res.accuracy_curve()
    assert curve.shape == (7,) and float(curve[-1]) == res.accuracy() == res.accuracy(y)
    d = res.to_dict()
    assert d["num_samples"] == 10 and "accuracy_curve" in d
    assert "stem_if" in res.summary()


def test_dataloader_input_keeps_labels():
    net = residual_net(dtype=torch.float32)
    x, y = torch.rand(9, 1, 14, 14), torch.arange(9) % 5
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    res = snnedge.simulate(net, loader, timesteps=3)
    ref = snnedge.simulate(net, x, timesteps=3, batch_size=4)
    assert res.num_samples == 9 and torch.equal(res.labels, y)
    assert torch.equal(res.predictions, ref.predictions)


def test_simulate_does_not_change_the_network():
    net = residual_net(dtype=torch.float32).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    snnedge.simulate(net, torch.rand(2, 1, 14, 14), timesteps=3, dtype=torch.float64)
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert next(net.parameters()).dtype == torch.float32


class _TrainHook(nn.Identity):
    """A layer with its own ``train``: simulate must call it, not only set the flag."""

    calls: list = []

    def train(self, mode: bool = True):
        _TrainHook.calls.append(mode)
        return super().train(mode)


def test_simulate_runs_in_eval_mode_and_gives_every_module_its_own_mode_back():
    net = snnedge.sequential(nn.Flatten(), nn.Linear(4, 3), _TrainHook(), snnedge.IF(),
                             input_shape=(2, 2))
    net.train()
    net.layer("1").eval()  # one module already in eval mode stays there
    seen = []
    hook = net.layer("1").register_forward_hook(lambda m, i, o: seen.append(
        [m.training for m in net.modules()]))
    _TrainHook.calls.clear()
    snnedge.simulate(net, torch.rand(2, 2, 2), timesteps=2, engine="dense")
    hook.remove()
    assert seen and not any(seen[0])  # every module in eval mode while simulating
    assert _TrainHook.calls == [False]  # a module's own train() is called
    assert [m.training for m in net.modules()] == [True, True, False, True, True]


def test_all_modules_finds_what_modules_finds_each_once():
    from snnedge.simulate import all_modules
    shared = nn.Linear(3, 3)
    inner = nn.Sequential(shared, nn.Sequential(nn.ReLU(), shared))
    outer = nn.Sequential(inner, nn.Identity(), inner)
    outer.add_module("empty", None)
    found = all_modules(outer)
    assert len(found) == len({id(m) for m in found}) == len(list(outer.modules()))
    assert {id(m) for m in found} == {id(m) for m in outer.modules()}


def test_layer_lookup_follows_a_replaced_layer():
    net = snnedge.sequential(nn.Flatten(), nn.Linear(4, 3), snnedge.IF(), input_shape=(2, 2))
    new = nn.Linear(4, 3)
    setattr(net, "1", new)
    assert net.layer("1") is new and net.get_submodule("1") is new
    with pytest.raises(AttributeError, match="has no attribute `nope`"):
        net.get_submodule("nope")


@pytest.mark.parametrize("kwargs, exc, message", [
    ({"timesteps": 0}, ValueError,
     "The 'timesteps' parameter of simulate must be a positive integer. Got 0 instead."),
    ({"encoding": "rate"}, ValueError,
     "The 'encoding' parameter of simulate must be one of 'direct', 'poisson', 'latency', 'sequence'. Got 'rate' instead."),
    ({"engine": "fast"}, ValueError, "The 'engine' parameter of simulate must be one of 'dense', 'event', 'auto'"),
    ({"batch_size": -1}, ValueError, "The 'batch_size' parameter of simulate must be a positive integer."),
])
def test_parameter_errors(kwargs, exc, message):
    net = residual_net(dtype=torch.float32)
    args = {"timesteps": 2, **kwargs}
    with pytest.raises(exc) as e:
        snnedge.simulate(net, torch.rand(2, 1, 14, 14), **args)
    assert str(e.value).startswith(message)


def test_input_errors():
    net = snnedge.sequential(nn.Conv2d(1, 2, 3), snnedge.IF(), nn.Flatten(), nn.Linear(2 * 12 * 12, 3),
                             input_shape=(1, 14, 14))
    with pytest.raises(ValueError, match=r"expects input of shape \[N, 1, 14, 14\] but got \[2, 1, 28, 28\]"):
        snnedge.simulate(net, torch.rand(2, 1, 28, 28), timesteps=2)
    free = snnedge.sequential(nn.Conv2d(1, 2, 3), snnedge.IF(), nn.Flatten(), nn.Linear(2 * 12 * 12, 3))
    with pytest.raises(ValueError, match=r"Layer '3' \(Linear\) cannot take an input of shape \(1152,\)"):
        snnedge.simulate(free, torch.rand(2, 1, 26, 26), timesteps=2)
    x = torch.rand(2, 1, 14, 14)
    x[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="the input holds 1 NaN or infinite values"):
        snnedge.simulate(net, x, timesteps=2)
    with pytest.raises(ValueError, match=r"'poisson' encoding needs inputs in \[0, 1\]"):
        snnedge.simulate(net, torch.rand(2, 1, 14, 14) * 3, timesteps=2, encoding="poisson")
    with pytest.raises(TypeError, match="simulate expects a snnedge.SpikingNetwork"):
        snnedge.simulate(nn.Linear(2, 2), torch.rand(2, 2), timesteps=2)
    with pytest.raises(TypeError, match="Got ndarray"):
        snnedge.simulate(net, torch.rand(2, 1, 14, 14).numpy(), timesteps=2)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    net = residual_net()
    x = torch.rand(6, 1, 14, 14, dtype=torch.float64)
    for engine in ("dense", "event"):
        cpu = snnedge.simulate(net, x, timesteps=10, engine=engine, dtype=torch.float64)
        gpu = snnedge.simulate(net, x, timesteps=10, engine=engine, dtype=torch.float64, device="cuda")
        assert cpu.spike_counts == gpu.spike_counts and cpu.synaptic_events == gpu.synaptic_events


def test_auto_carries_the_first_batchs_choice_to_later_batches(limit_policy):
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Linear(50, 200), snnedge.IF(threshold=2.2),
                             nn.Linear(200, 600), snnedge.IF(threshold=0.88), nn.Linear(600, 4)).double()
    x = torch.rand(3, 50, dtype=torch.float64)
    res = snnedge.simulate(net, x, timesteps=16, engine="auto", batch_size=1)
    chosen = res.extra["event_layers"]
    assert chosen == [["2"], ["2"], ["2"]] and res.engine == "event"
    assert res.extra["input_density"][0] and res.extra["input_density"][1] == {}  # measured once
    ref = snnedge.simulate(net, x, timesteps=16, engine="dense", batch_size=1)
    assert res.spike_counts == ref.spike_counts and torch.allclose(res.output, ref.output, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_counts_added_up_over_blocks_equal_per_block_counts(monkeypatch, dtype):
    """The neuron layers add up their own spikes over all blocks (one tensor per layer, no
    per-block sum); past float32's exact range the engine counts per block in float64. Both
    give the same per-neuron counts, for any block size, and the float type of the result."""
    from snnedge import engine
    net = residual_net(seed=2, dtype=dtype)
    x = torch.rand(4, 1, 14, 14, dtype=dtype)
    runs = {}
    for exact_limit in (2**24, 0):  # 0: every run counts per block
        monkeypatch.setattr(engine, "EXACT_COUNTS", exact_limit)
        for steps in (1, 4, 11):
            res = snnedge.simulate(net, x, timesteps=11, dtype=dtype, engine="dense",
                                   block_steps=steps, progress=False)
            runs[exact_limit, steps] = res
    ref = runs[2**24, 11]
    for res in runs.values():
        assert res.spike_counts == ref.spike_counts
        for k, c in ref.neuron_spike_counts.items():
            assert c.dtype == torch.float64 and torch.equal(res.neuron_spike_counts[k], c), k


def test_executor_updates_its_membranes_in_place_but_never_the_callers():
    """Neurons that run the reference update advance the executor's own membranes in place
    (advance_block); a state handed to the executor is copied before its first update."""
    from snnedge.executor import Executor, Value
    net = residual_net(seed=3)
    x = torch.rand(2, 1, 14, 14, dtype=torch.float64)
    first = Executor(net, "dense")
    first.block(Value(x, True), 3)
    given_state = {k: v.clone() if torch.is_tensor(v) else v for k, v in first.state.items()}
    snapshot = {k: v.clone() for k, v in given_state.items() if torch.is_tensor(v)}
    second = Executor(net, "dense", state=given_state)
    a = second.block(Value(x, True), 3)[net.output_name].tensor
    b = first.block(Value(x, True), 3)[net.output_name].tensor
    assert torch.equal(a, b)  # the copy continues the same run
    assert all(torch.equal(given_state[k], v) for k, v in snapshot.items())
    neuron = net.layer("stem_if")
    cur = torch.rand(5, 2, 6, 14, 14, dtype=torch.float64)
    v = neuron.initial_state(cur[0])
    spikes, v_new = neuron.forward_block(cur, v.clone(), 5)
    assert torch.equal(neuron.advance_block(cur, v, 5), spikes) and torch.equal(v, v_new)


def test_source_link_weights_are_broadcasts_only_where_every_channel_is_alike():
    """A dense convolution sends an event of any input channel to as many synapses: its link
    weight is kept as a broadcast of one channel (no per-channel copy). A channel with a
    pruned synapse differs, and keeps a weight of its own. Values as the fan-out's."""
    from snnedge.connectivity import source_links
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    net = snnedge.sequential(nn.Conv2d(1, 3, 3, padding=1), snnedge.IF(), conv, snnedge.IF())
    (link,) = [ln for ln in source_links(net, (1, 8, 8)) if ln.target == "2"]
    assert link.weight.stride(0) == 0  # one channel's storage, broadcast
    assert torch.equal(link.weight, snnedge.connectivity.fanout(conv, (3, 8, 8), (4, 8, 8)))
    pruned = snnedge.sequential(nn.Conv2d(1, 3, 3, padding=1), snnedge.IF(), conv, snnedge.IF())
    with torch.no_grad():
        pruned.layer("2").weight[0, 1, 1, 1] = 0.0
    (link,) = [ln for ln in source_links(pruned, (1, 8, 8)) if ln.target == "2"]
    assert link.weight.stride(0) != 0
    assert torch.equal(link.weight, snnedge.connectivity.fanout(pruned.layer("2"), (3, 8, 8), (4, 8, 8)))
    assert link.weight[1, 4, 4] == 4 * 9 - 1 and link.weight[0, 4, 4] == 4 * 9


def test_counted_neuron_layers_are_freed_once_read():
    """In a no-gradient CPU run, a neuron layer that counts its own spikes is not held to the
    end of the block: the block returns only the output layer's value, and the counts are
    the same as when every value is kept (gradients on: no counting, every value kept)."""
    from snnedge.executor import Executor, Value
    net = residual_net(seed=4)
    x = torch.rand(2, 1, 14, 14, dtype=torch.float64)
    neurons = ("stem_if", "block.if1", "block.if2", "down_if")
    ex = Executor(net, "dense")
    with torch.no_grad():
        kept = ex.block(Value(x, True), 5, keep=neurons)
    assert set(kept) == {net.output_name}
    ref = Executor(net, "dense")
    with torch.enable_grad():
        values = ref.block(Value(x, True), 5, keep=neurons)
    assert set(values) == {*neurons, net.output_name}
    for n in neurons:
        assert torch.equal(ex.take_counts(n), values[n].tensor.detach().sum((0, 1))), n


def test_additions_and_scales_written_over_their_donor_give_the_same_bits(monkeypatch):
    """An addition (a residual junction) or a Scale (a BatchNorm after a concatenation) whose
    input nothing else reads writes its output over that input (no new block-sized tensor):
    the same outputs and counts, bit for bit, as with new tensors."""
    import snnedge.executor as ex
    from converters import convert

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 8, 3, padding=1)
            self.a, self.b = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(16)
            self.c = nn.Conv2d(16, 8, 3, padding=1)
            self.fc = nn.Linear(8 * 8 * 8, 4)

        def forward(self, x):
            x = torch.relu(self.stem(x))
            r = torch.relu(self.a(x))
            x = torch.relu(self.b(r) + x)  # the conv output is the addition's donor
            y = torch.cat([x, self.a(x)], 1)
            y = self.c(torch.relu(self.bn(y)))  # the concatenation is the Scale's donor
            return self.fc(torch.flatten(torch.relu(y), 1))
    torch.manual_seed(0)
    ann = Net()
    with torch.no_grad():
        ann.bn.weight.uniform_(0.5, 1.5)
        ann.bn.bias.uniform_(-0.2, 0.2)
    snn = convert(ann.eval(), calibration=torch.rand(32, 1, 8, 8))
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    done = []
    original = ex._in_place
    monkeypatch.setattr(ex, "_in_place", lambda *a: done.append(type(a[0]).__name__) or original(*a))
    runs = [snnedge.simulate(snn, x, timesteps=12, block_steps=4, engine=e, progress=False)
            for e in ("dense", "event")]
    assert {"Add", "Scale"} <= set(done), f"the in-place path was not taken: {done}"
    monkeypatch.setattr(ex.Executor, "_donor", lambda *a: None)
    runs += [snnedge.simulate(snn, x, timesteps=12, block_steps=4, engine=e, progress=False)
             for e in ("dense", "event")]
    for in_place, new in zip(runs[:2], runs[2:]):  # each engine against itself
        assert torch.equal(in_place.output, new.output)
        assert in_place.spike_counts == new.spike_counts
    assert sum(runs[0].spike_counts.values()) > 0
