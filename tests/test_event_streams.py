"""Event streams: events_to_frames (golden binning, tonic's ToFrame where tonic is
installed), the seeded moving-digit generator, and the errors users see."""
import numpy as np
import pytest
import torch

import snnedge
from snnedge.event_streams import EVENT_DTYPE, events_to_frames, moving_digit_events


def events(rows):
    return np.array(rows, dtype=EVENT_DTYPE)


def test_golden_binning_by_number_of_bins():
    # span 0..90 in 3 bins of width 30: t = 0, 29 -> bin 0; 30 -> 1; 89 -> 2; the last event
    # (t = 90, the end of the span) -> bin 2
    ev = events([(0, 0, 0, 1), (1, 0, 29, 1), (1, 1, 30, 0), (2, 1, 89, 1), (2, 1, 90, 1)])
    f = events_to_frames(ev, sensor_size=(3, 2, 2), n_time_bins=3)
    assert f.shape == (3, 2, 2, 3) and f.dtype == torch.float32
    assert f[0, 1, 0, 0] == 1 and f[0, 1, 0, 1] == 1 and f[1, 0, 1, 1] == 1
    assert f[2, 1, 1, 2] == 2 and f.sum() == 5


def test_golden_binning_by_time_window():
    ev = events([(0, 0, 10, 1), (0, 0, 19, 1), (0, 0, 20, 1), (0, 0, 45, 0)])
    # windows of 10 from t = 10: [10, 20), [20, 30), [30, 40); the remainder [40, 45] is dropped
    f = events_to_frames(ev, sensor_size=(1, 1, 2), time_window=10)
    assert f[:, 1, 0, 0].tolist() == [2.0, 1.0, 0.0] and f[:, 0].sum() == 0
    g = events_to_frames(ev, sensor_size=(1, 1, 2), time_window=10, include_incomplete=True)
    assert g.shape[0] == 4 and g[3, 0, 0, 0] == 1
    h = events_to_frames(ev, sensor_size=(1, 1, 2), time_window=10, start_time=0, end_time=50)
    assert h.shape[0] == 5 and h[1, 1, 0, 0] == 2


def test_a_list_of_streams_stacks_to_a_batch():
    streams, y = moving_digit_events(3, sensor_size=(16, 16, 2), duration_us=20_000, seed=0)
    x = events_to_frames(streams, (16, 16, 2), n_time_bins=10)
    assert x.shape == (3, 10, 2, 16, 16) and y.shape == (3,)
    assert [int(f.sum()) for f in x] == [len(s) for s in streams]  # every event is in a bin
    with pytest.raises(ValueError, match="different numbers of frames"):
        events_to_frames([streams[0], streams[0][: len(streams[0]) // 3]], (16, 16, 2), time_window=2_000)


def test_generator_is_seeded_and_sane():
    a, ya = moving_digit_events(4, sensor_size=(20, 20, 2), duration_us=30_000, seed=3)
    b, yb = moving_digit_events(4, sensor_size=(20, 20, 2), duration_us=30_000, seed=3)
    c, _ = moving_digit_events(4, sensor_size=(20, 20, 2), duration_us=30_000, seed=4)
    assert torch.equal(ya, yb) and all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not all(len(p) == len(q) and np.array_equal(p, q) for p, q in zip(a, c))
    for ev in a:
        assert ev.dtype.names == ("x", "y", "t", "p") and len(ev) > 100
        assert np.all(np.diff(ev["t"]) >= 0) and ev["t"].min() >= 0 and ev["t"].max() < 30_000
        assert ev["x"].max() < 20 and ev["y"].max() < 20 and set(np.unique(ev["p"])) == {0, 1}
    two, y2 = moving_digit_events(30, sensor_size=(12, 12, 2), duration_us=10_000, classes=(3, 7), seed=0)
    assert set(y2.tolist()) == {0, 1}


def test_noise_adds_events():
    quiet, _ = moving_digit_events(2, sensor_size=(12, 12, 2), duration_us=20_000, seed=1)
    noisy, _ = moving_digit_events(2, sensor_size=(12, 12, 2), duration_us=20_000, seed=1, noise_hz=500.0)
    assert sum(map(len, noisy)) > sum(map(len, quiet))


def test_frames_drive_a_network_and_count_as_input_events():
    streams, _ = moving_digit_events(2, sensor_size=(12, 12, 2), duration_us=20_000, seed=2)
    x = events_to_frames(streams, (12, 12, 2), n_time_bins=8)
    torch.manual_seed(0)
    net = snnedge.sequential(torch.nn.Conv2d(2, 4, 3), snnedge.IF(), torch.nn.Flatten(),
                             torch.nn.Linear(4 * 100, 3), input_shape=(2, 12, 12))
    res = snnedge.simulate(net, x, encoding="sequence")
    assert int(res.input_spike_counts.sum()) == sum(map(len, streams))


@pytest.mark.parametrize("arg, kwargs, exc, message", [
    (np.zeros(3, dtype=[("x", int), ("y", int), ("ts", int), ("pol", int)]), {"n_time_bins": 2}, ValueError,
     r"the event array lacks the field\(s\) \['t', 'p'\]; it has \['x', 'y', 'ts', 'pol'\]"),
    (np.zeros((3, 4)), {"n_time_bins": 2}, TypeError, r"expects a structured numpy array with fields x, y, t, p"),
    (events([(0, 0, 0, 1)]), {}, ValueError, r"needs exactly one of n_time_bins .* or time_window"),
    (events([(0, 0, 0, 1)]), {"n_time_bins": 2, "time_window": 5}, ValueError, "exactly one of"),
    (events([(5, 0, 0, 1)]), {"n_time_bins": 2}, ValueError,
     r"field 'x' holds values in \[5, 5\] but the sensor has 4 along it"),
    (events([(0, 0, 0, 1)]), {"n_time_bins": 0}, ValueError, r"'n_time_bins' parameter of events_to_frames"),
])
def test_errors_name_the_problem(arg, kwargs, exc, message):
    with pytest.raises(exc, match=message):
        events_to_frames(arg, sensor_size=(4, 4, 2), **kwargs)
    with pytest.raises(ValueError, match="'sensor_size' parameter of events_to_frames"):
        events_to_frames(events([(0, 0, 0, 1)]), sensor_size=(4, 4), n_time_bins=1)


# -- tonic, where it is installed (the peers environment) ------------------------------------
@pytest.mark.peers
def test_time_windows_equal_tonics_to_frame():
    tonic = pytest.importorskip("tonic")
    for seed in range(3):
        ev = moving_digit_events(1, seed=seed, noise_hz=20.0)[0][0]
        for window in (7_000, 10_000, 33_333):
            ours = events_to_frames(ev, (34, 34, 2), time_window=window).numpy()
            theirs = tonic.transforms.ToFrame(sensor_size=(34, 34, 2), time_window=window)(ev.copy())
            assert ours.shape == theirs.shape and np.array_equal(ours, theirs)


@pytest.mark.peers
def test_time_bins_equal_tonics_to_frame_but_for_the_events_it_drops():
    # tonic's ToFrame(n_time_bins=T) uses the width floor((t_end - t_start) / T) and windows
    # closed on the left, so it drops the events at t >= t_start + T * width: here, with a
    # span divisible by T, exactly those at the last timestamp; all other bins are equal.
    tonic = pytest.importorskip("tonic")
    ev = moving_digit_events(1, seed=5)[0][0]
    ev = ev[ev["t"] <= 290_000]
    ev["t"] -= ev["t"][0]
    ev = ev[ev["t"] <= 240_000]
    ev = np.concatenate([ev, events([(3, 4, 240_000, 1)])])  # the span is 240 ms: 30 bins of 8 ms
    ours = events_to_frames(ev, (34, 34, 2), n_time_bins=30).numpy()
    theirs = tonic.transforms.ToFrame(sensor_size=(34, 34, 2), n_time_bins=30)(ev.copy())
    last = ev[ev["t"] == 240_000]
    dropped = np.zeros_like(ours)
    np.add.at(dropped, (29, last["p"].astype(int), last["y"].astype(int), last["x"].astype(int)), 1)
    assert np.array_equal(ours, theirs + dropped) and dropped.sum() >= 1
