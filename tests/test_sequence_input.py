"""encoding="sequence": time-varying input [N, T, *sample_shape] in simulate (every engine)
and fit; T from the data; blocks streamed from the tensor; the errors users see."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import snnedge
from snnedge.encoders import ENCODERS, SequenceEncoder, get_encoder, sequence_holds_events

SHAPE = (2, 6, 6)


def conv_net(seed=0):
    torch.manual_seed(seed)
    return snnedge.sequential(nn.Conv2d(2, 4, 3, padding=1), snnedge.IF(threshold=0.8),
                              nn.AvgPool2d(2), nn.Conv2d(4, 4, 3, padding=1),
                              snnedge.LIF(beta=0.9, threshold=0.6), nn.Flatten(),
                              nn.Linear(4 * 9, 3), input_shape=SHAPE)


def event_frames(n=6, t=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, t, *SHAPE, generator=g) < 0.2).float() * torch.randint(1, 3, (n, t, *SHAPE),
                                                                                 generator=g)


def by_steps(net, x):
    """The network run one step at a time from its initial state (float64), by its own call."""
    out = net.double()(x.double().transpose(0, 1).contiguous())
    return out.sum(0)


@pytest.mark.parametrize("engine", ["dense", "event", "auto"])
def test_engines_agree_and_count_input_events(engine):
    net, x = conv_net(), event_frames()
    res = snnedge.simulate(net, x, encoding="sequence", engine=engine, dtype=torch.float64, block_steps=3)
    assert res.timesteps == 20 and res.num_samples == 6 and res.encoding == "sequence"
    torch.testing.assert_close(res.output, by_steps(conv_net(), x), rtol=0, atol=1e-10)
    # event frames count events: the input's synaptic events are the events x their fan-out
    assert torch.equal(res.input_spike_counts, x.double().sum((0, 1)))
    first = net.layer("0")
    mask = (first.weight != 0).double()
    fan_out = torch.nn.functional.conv_transpose2d(torch.ones(1, 4, 6, 6, dtype=torch.float64), mask,
                                                   padding=1)[0]
    assert res.synaptic_events["0"] == int((x.double().sum((0, 1)) * fan_out).sum())
    assert "0" not in res.input_macs


def test_an_analog_sequence_is_counted_as_macs():
    x = torch.rand(3, 7, *SHAPE)
    res = snnedge.simulate(conv_net(), x, encoding="sequence")
    assert res.input_spike_counts is None and res.input_macs["0"] > 0 and "0" not in res.synaptic_events
    assert not sequence_holds_events(x) and sequence_holds_events((x > 0.5).to(torch.uint8))


def test_a_constant_sequence_is_direct_encoding():
    net, x = conv_net(), torch.rand(4, *SHAPE)
    a = snnedge.simulate(net, x, timesteps=9, dtype=torch.float64)
    b = snnedge.simulate(net, x.unsqueeze(1).expand(4, 9, *SHAPE), encoding="sequence", dtype=torch.float64)
    assert torch.equal(a.output, b.output) and a.spike_counts == b.spike_counts


def test_the_poisson_spikes_as_a_sequence_are_poisson_encoding():
    net, x = conv_net(), torch.rand(5, *SHAPE)
    enc = get_encoder("poisson")
    enc.start(x, 12, 7)
    spikes = enc.block(0, 12).transpose(0, 1)
    a = snnedge.simulate(net, x, timesteps=12, encoding="poisson", seed=7, batch_size=5)
    b = snnedge.simulate(net, spikes, encoding="sequence")
    assert torch.equal(a.output, b.output) and a.synaptic_events == b.synaptic_events
    assert torch.equal(a.input_spike_counts, b.input_spike_counts)


def test_a_dataloader_of_sequences_keeps_labels_and_batches():
    net, x = conv_net(), event_frames(10)
    y = torch.arange(10) % 3
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    res = snnedge.simulate(net, loader, encoding="sequence", dtype=torch.float64)
    whole = snnedge.simulate(net, x, encoding="sequence", dtype=torch.float64, batch_size=4)
    assert torch.equal(res.labels, y) and torch.equal(res.output, whole.output)
    assert 0 <= res.accuracy() <= 1 and res.accuracy_curve().shape == (20,)


def test_blocks_stream_from_the_batch_first_tensor(monkeypatch):
    # No block holds more than block_steps steps, and the whole sequence is never turned
    # time-first at once: memory stays flat in T.
    sizes = []
    original = SequenceEncoder.block

    def spy(self, t0, t1):
        out = original(self, t0, t1)
        sizes.append(out.shape[0])
        return out
    monkeypatch.setattr(SequenceEncoder, "block", spy)
    x = event_frames(2, t=50)
    snnedge.simulate(conv_net(), x, encoding="sequence", block_steps=4)
    assert max(sizes) == 4 and sum(sizes) == 50 and len(sizes) == 13  # one batch of 2, 50 steps


def test_progress_bar(capsys):
    x = event_frames(4, t=5)
    snnedge.simulate(conv_net(), x, encoding="sequence", batch_size=2, progress=True)
    assert "simulate T=5" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, x, message", [
    ({"timesteps": 7}, torch.zeros(2, 5, *SHAPE),
     r"timesteps=7 disagrees with the data's T = 5 \(dimension 1 of \(2, 5, 2, 6, 6\)\)"),
    ({}, torch.zeros(2, 6),
     r"expects x of shape \[N, T, \*sample_shape\] \(at least 3 dimensions\)"),
    ({}, torch.zeros(2, 5, 1, 6, 6),
     r"expects sequences of shape \[N, T, 2, 6, 6\] but each step of the data has shape \[1, 6, 6\]"),
    ({}, torch.zeros(2, 5, 2, 6, 7), r"each step of the data has shape \[2, 6, 7\]"),
])
def test_shape_and_length_errors(kwargs, x, message):
    with pytest.raises(ValueError, match=message):
        snnedge.simulate(conv_net(), x, encoding="sequence", **kwargs)


def test_one_sequence_without_its_batch_dimension_gets_a_hint():
    with pytest.raises(ValueError, match=r"one sequence \[T, \*sample_shape\] without its batch "
                                         r"dimension: pass x.unsqueeze\(0\)"):
        snnedge.simulate(conv_net(), torch.zeros(9, *SHAPE), encoding="sequence")


def test_nan_and_unequal_lengths_are_refused():
    x = event_frames(3, t=10)
    x[1, 7, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"steps 7..7 of the input hold 1 NaN or infinite values"):
        snnedge.simulate(conv_net(), x, encoding="sequence", block_steps=1)
    loader = [(event_frames(2, t=10), torch.zeros(2)), (event_frames(2, t=12), torch.zeros(2))]
    with pytest.raises(ValueError, match=r"does not have the first batch's T = 10 steps"):
        snnedge.simulate(conv_net(), loader, encoding="sequence")


def test_sequence_encoder_is_registered_and_checks_its_batch():
    assert ENCODERS["sequence"] is SequenceEncoder
    enc = get_encoder("sequence")
    with pytest.raises(ValueError, match=r"batch has T = 4 steps .* but timesteps=5"):
        enc.start(torch.zeros(2, 4, 3), 5, 0)
    enc.start(torch.ones(2, 4, 3, dtype=torch.int64), 4, 0)
    assert enc.block(1, 3).dtype == torch.get_default_dtype() and enc.block(1, 3).shape == (2, 2, 3)


def test_brian2_runs_event_and_analog_sequences():
    torch.manual_seed(2)
    net = snnedge.sequential(nn.Conv2d(2, 3, 3, padding=1), snnedge.IF(threshold=0.7), nn.Flatten(),
                             nn.Linear(3 * 36, 4), snnedge.LIF(beta=0.8, threshold=0.5), nn.Linear(4, 2),
                             input_shape=SHAPE)
    for x in (event_frames(3, t=8), torch.rand(3, 8, *SHAPE)):
        a = snnedge.simulate(net, x, encoding="sequence", dtype=torch.float64)
        b = snnedge.simulate(net, x, encoding="sequence", engine="brian2")
        assert a.spike_counts == b.spike_counts and a.synaptic_events == b.synaptic_events
        assert a.input_macs == b.input_macs
        torch.testing.assert_close(a.output, b.output)


# -- training ------------------------------------------------------------------------------
def test_fit_and_evaluate_on_sequences():
    net = conv_net()
    x = event_frames(24, t=10)
    y = (x[:, :5].sum((1, 2, 3, 4)) > x[:, 5:].sum((1, 2, 3, 4))).long()
    hist = snnedge.fit(net, (x, y), epochs=2, encoding="sequence", batch_size=8, progress=False,
                       val=(x[:8], y[:8]))
    assert hist.timesteps == 10 and len(hist.val_accuracy) == 2
    m = snnedge.training.evaluate(net, (x, y), encoding="sequence")
    res = snnedge.simulate(net, x, encoding="sequence")
    assert m["accuracy"] == res.accuracy(y)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    assert snnedge.fit(net, loader, encoding="sequence", progress=False).timesteps == 10


def test_fit_errors_on_sequences():
    net, x, y = conv_net(), event_frames(4, t=6), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"T = 6 steps \(dimension 1 of \(4, 6, 2, 6, 6\)\) but timesteps=5"):
        snnedge.fit(net, (x, y), timesteps=5, encoding="sequence", progress=False)
    with pytest.raises(ValueError, match=r"with encoding='sequence' must be \[N, T, \*sample_shape\]"):
        snnedge.fit(snnedge.sequential(nn.Linear(3, 2), input_shape=(3,)), (torch.rand(4, 3), y),
                    encoding="sequence", progress=False)
