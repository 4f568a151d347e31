r"""Event streams: binning events into frames, and a small seeded generator of DVS-like streams.

An event stream is a structured numpy array with fields ``x``, ``y``, ``t``, ``p``, one row
per event (tonic's layout: column, row, timestamp in microseconds, polarity 0/1), sorted by
``t``. :func:`events_to_frames` turns one (or a list of them) into the frames
``[T, P, H, W]`` that :func:`snnedge.simulate` takes with ``encoding="sequence"`` (a list
gives ``[N, T, P, H, W]``). Each frame counts the events of its time bin at each polarity
and pixel, so a frame of counts is a frame of input events (snnedge counts them as such).

For tonic's datasets (N-MNIST, DVS Gesture, SHD ...), use tonic's own transforms, which bin
the same way (tests/test_event_streams.py checks :func:`events_to_frames` against
``tonic.transforms.ToFrame``), and stack its frames::

    import tonic, torch
    ds = tonic.datasets.NMNIST(save_to="data", train=False,
                               transform=tonic.transforms.ToFrame(sensor_size=(34, 34, 2),
                                                                  n_time_bins=300))
    frames, label = ds[0]                 # numpy [300, 2, 34, 34]
    x = torch.as_tensor(frames).unsqueeze(0).float()   # [1, T, 2, 34, 34]

(tonic is in snnedge's optional ``events`` extra.) Binning, one of:

``n_time_bins=T``   ``T`` bins of equal width ``(t_end - t_start) / T`` over the recording
                    (``t_start``/``t_end``: the first and last event, or ``start_time`` /
                    ``end_time``); every event between them lands in one bin, the last
                    event in the last bin. tonic's ``ToFrame(n_time_bins=T)`` uses the floor
                    of that width and windows closed on the left, so it drops the events at
                    ``t >= t_start + T * floor(width)`` (at least the last one); otherwise the
                    same frames.
``time_window=w``   bins ``[t_start + k w, t_start + (k + 1) w)``, as many as fit whole into
                    ``[t_start, t_end]`` (tonic's ``ToFrame(time_window=w)``, identical), or
                    with ``include_incomplete=True`` one more for the remainder.

:func:`moving_digit_events` makes event streams without downloading anything: MNIST digits
(the test set that ships with snnedge) moving along seeded saccades, seen through a
DVS-like change detector (Lichtsteiner, Posch & Delbruck, IEEE JSSC 43:566, 2008,
doi:10.1109/JSSC.2007.914337): a pixel emits an ON (OFF) event each time its log intensity
rises (falls) by the contrast threshold ``C`` from the level of its last event, as N-MNIST
was recorded (Orchard et al., Front. Neurosci. 9:437, 2015, doi:10.3389/fnins.2015.00437).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import check_positive_int, check_real

#: The fields an event array needs, and the dtype :func:`moving_digit_events` writes.
EVENT_FIELDS = ("x", "y", "t", "p")
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])


def _check_events(events, where: str) -> np.ndarray:
    if not isinstance(events, np.ndarray) or events.dtype.names is None:
        raise TypeError(f"{where} expects a structured numpy array with fields x, y, t, p (tonic's "
                        f"layout), e.g. np.zeros(n, dtype=snnedge.event_streams.EVENT_DTYPE). Got "
                        f"{type(events).__name__}"
                        + (f" of dtype {events.dtype}" if isinstance(events, np.ndarray) else "") + ".")
    missing = [f for f in EVENT_FIELDS if f not in events.dtype.names]
    if missing:
        raise ValueError(f"{where}: the event array lacks the field(s) {missing}; it has "
                         f"{list(events.dtype.names)}. Events need x (column), y (row), t (timestamp) "
                         f"and p (polarity), as tonic stores them; rename the fields, e.g. with "
                         f"numpy.lib.recfunctions.rename_fields.")
    if events.ndim != 1:
        raise ValueError(f"{where} expects a 1-D array of events. Got shape {events.shape}.")
    return events


def events_to_frames(events, sensor_size: Sequence[int], n_time_bins: int | None = None,
                     time_window: float | None = None, *, start_time: float | None = None,
                     end_time: float | None = None, include_incomplete: bool = False) -> torch.Tensor:
    """Event counts per time bin, polarity and pixel: a float32 tensor ``[T, P, H, W]``
    (``[N, T, P, H, W]`` for a list of ``N`` streams, which must give one ``T``).

    Parameters
    ----------
    events:
        A structured array with fields ``x, y, t, p`` (sorted by ``t``), or a list of them.
    sensor_size:
        ``(W, H, P)`` as tonic writes it: width (x), height (y), polarities.
    n_time_bins, time_window:
        Exactly one: the number of bins, or the width of a bin in the unit of ``t``
        (see the module docstring).
    start_time, end_time:
        The span to bin (default: the first and last event), e.g. ``start_time=0`` and the
        recording's length so that every stream of a data set gets the same bins.
    include_incomplete:
        With ``time_window``: keep the last, partial window.

    Example
    -------
    >>> import numpy as np
    >>> ev = np.array([(0, 0, 0, 1), (1, 0, 5, 0), (1, 1, 10, 1)], dtype=EVENT_DTYPE)
    >>> events_to_frames(ev, sensor_size=(2, 2, 2), n_time_bins=2).shape
    torch.Size([2, 2, 2, 2])
    >>> int(events_to_frames(ev, sensor_size=(2, 2, 2), n_time_bins=2).sum())
    3
    """
    where = "events_to_frames"
    if (n_time_bins is None) == (time_window is None):
        raise ValueError(f"{where} needs exactly one of n_time_bins (a number of frames) or "
                         f"time_window (a bin width in the unit of t). Got n_time_bins={n_time_bins!r}, "
                         f"time_window={time_window!r}.")
    size = tuple(int(s) for s in sensor_size) if isinstance(sensor_size, Sequence) else ()
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"The 'sensor_size' parameter of {where} must be (width, height, polarities) "
                         f"of positive integers, as tonic writes it (e.g. (34, 34, 2)). Got {sensor_size!r}.")
    if n_time_bins is not None:
        check_positive_int(n_time_bins, param="n_time_bins", where=where)
    else:
        check_real(time_window, param="time_window", where=where, low=0.0, low_open=True)
    if isinstance(events, (list, tuple)):
        frames = [events_to_frames(e, size, n_time_bins, time_window, start_time=start_time,
                                   end_time=end_time, include_incomplete=include_incomplete)
                  for e in events]
        lengths = sorted({f.shape[0] for f in frames})
        if len(lengths) > 1:
            raise ValueError(f"{where}: the streams give different numbers of frames {lengths}; use "
                             f"n_time_bins, or time_window with start_time and end_time, for one T.")
        return torch.stack(frames) if frames else torch.zeros((0, 0, size[2], size[1], size[0]))
    ev = _check_events(events, where)
    w, h, p = size
    for field, limit in (("x", w), ("y", h), ("p", p)):
        v = ev[field]
        if v.size and (v.min() < 0 or v.max() >= limit):
            raise ValueError(f"{where}: field {field!r} holds values in [{v.min()}, {v.max()}] but the "
                             f"sensor has {limit} along it (sensor_size={size}); pass the sensor's size.")
    t = ev["t"]
    t0 = (t[0] if t.size else 0) if start_time is None else start_time
    t1 = (t[-1] if t.size else t0) if end_time is None else end_time
    if t1 < t0:
        raise ValueError(f"{where}: end_time {t1} is before start_time {t0}.")
    if n_time_bins is not None:
        n = n_time_bins
        width = (t1 - t0) / n
        if width > 0:
            b = np.floor((t - t0) / width).astype(np.int64)
            b = np.where(t == t1, n - 1, b)  # the end of the span belongs to the last bin
        else:
            b = np.zeros(t.shape, np.int64)
        keep = (t >= t0) & (t <= t1)
    else:
        span = t1 - t0
        n = int(np.ceil((span - time_window) / time_window) + 1) if include_incomplete else \
            int(np.floor((span - time_window) / time_window) + 1)
        n = max(n, 1)
        b = np.floor((t - t0) / time_window).astype(np.int64)
        keep = (t >= t0) & (b < n)
    frames = np.zeros((n, p, h, w), dtype=np.float32)
    sel = keep & (b >= 0) & (b < n)
    np.add.at(frames, (b[sel], ev["p"][sel].astype(np.int64), ev["y"][sel].astype(np.int64),
                       ev["x"][sel].astype(np.int64)), 1.0)
    return torch.from_numpy(frames)


def moving_digit_events(n: int = 100, *, sensor_size: Sequence[int] = (34, 34, 2),
                        duration_us: int = 300_000, tick_us: int = 1_000, contrast: float = 0.25,
                        noise_hz: float = 0.0, classes: Sequence[int] | None = None,
                        seed: int = 0) -> tuple[list[np.ndarray], torch.Tensor]:
    """``n`` event streams of MNIST test digits moving on a DVS-like sensor, and their labels.

    Each digit (scaled to the sensor minus a 3-pixel margin per side) makes three saccades
    along a triangle, as N-MNIST's recordings do (Orchard et al. 2015): the image moves
    linearly between three corners, one third of ``duration_us`` each, with subpixel
    (bilinear) positions. Every ``tick_us`` the change detector compares each pixel's log
    intensity ``log(I + 0.1)`` with the level of its last event and emits one event per
    ``contrast`` crossed (polarity 1 ON, 0 OFF); events get a seeded uniform jitter within
    their tick. ``noise_hz`` adds background events per pixel and second. Seeded: the same
    arguments give the same streams.

    Returns ``(streams, labels)``: a list of structured arrays (fields x, y, t, p; ``t`` in
    microseconds from 0) and an int64 tensor ``[n]``. ``classes`` restricts the digits
    (e.g. ``(0, 1)``; labels then index into it).

    Example
    -------
    >>> ev, y = moving_digit_events(2, sensor_size=(16, 16, 2), duration_us=30_000, seed=1)
    >>> len(ev), ev[0].dtype.names, bool(len(ev[0]) > 0)
    (2, ('x', 'y', 't', 'p'), True)
    """
    from .datasets import load_mnist_test  # the packaged test set, read when streams are made

    where = "moving_digit_events"
    check_positive_int(n, param="n", where=where)
    check_positive_int(duration_us, param="duration_us", where=where)
    check_positive_int(tick_us, param="tick_us", where=where)
    check_real(contrast, param="contrast", where=where, low=0.0, low_open=True)
    check_real(noise_hz, param="noise_hz", where=where, low=0.0)
    w, h, p = (int(s) for s in sensor_size)
    if p != 2 or min(w, h) < 8:
        raise ValueError(f"The 'sensor_size' parameter of {where} must be (width, height, 2) with "
                         f"sides of at least 8 pixels. Got {tuple(sensor_size)!r}.")
    images, labels = load_mnist_test()
    if classes is not None:
        classes = [int(c) for c in classes]
        pick = torch.isin(labels, torch.tensor(classes))
        images, labels = images[pick], labels[pick]
        labels = torch.tensor([classes.index(int(c)) for c in labels])
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(labels), size=n, replace=len(labels) < n)
    margin = 3
    side = (min(w, h) - 2 * margin)
    digits = F.interpolate(images[torch.as_tensor(idx)], size=(side, side), mode="area")[:, 0]
    digits = digits.to(torch.float64).numpy()
    ticks = duration_us // tick_us
    streams = _saccade_events(digits, w, h, margin, ticks, tick_us, contrast, noise_hz, rng)
    return streams, labels[torch.as_tensor(idx)].clone()


def _saccade_events(digits: np.ndarray, w: int, h: int, margin: int, ticks: int, tick_us: int,
                    contrast: float, noise_hz: float, rng: np.random.Generator) -> list[np.ndarray]:
    """The change detector run on every digit at once, tick by tick."""
    n = digits.shape[0]
    corners = np.array([(0.0, 0.0), (2.0 * margin, margin), (0.0, 2.0 * margin), (0.0, 0.0)])
    canvas = np.zeros((n, h + 2, w + 2), np.float64)
    level = None
    out = []
    for k in range(ticks + 1):
        s = 3.0 * k / max(ticks, 1)
        seg = min(int(s), 2)
        dx, dy = corners[seg] + (s - seg) * (corners[seg + 1] - corners[seg])
        log_i = np.log(_place(digits, canvas, dx, dy, w, h) + 0.1)
        if level is None:
            level = log_i.copy()
            continue
        crossed = np.trunc((log_i - level) / contrast).astype(np.int64)  # events per pixel this tick
        level += crossed * contrast
        bs, ys, xs = np.nonzero(crossed)
        counts = np.abs(crossed[bs, ys, xs])
        if counts.size:
            pol = (crossed[bs, ys, xs] > 0).astype(np.int8)
            rep = np.repeat(np.arange(counts.size), counts)
            t = (k - 1) * tick_us + rng.integers(0, tick_us, size=rep.size)
            out.append((bs[rep], xs[rep], ys[rep], t, pol[rep]))
        if noise_hz > 0:
            m = rng.poisson(noise_hz * tick_us * 1e-6 * w * h * n)
            if m:
                out.append((rng.integers(0, n, m), rng.integers(0, w, m), rng.integers(0, h, m),
                            (k - 1) * tick_us + rng.integers(0, tick_us, m), rng.integers(0, 2, m)))
    cols = [np.concatenate([o[i] for o in out]) if out else np.zeros(0, np.int64) for i in range(5)]
    streams = []
    for b in range(n):
        sel = cols[0] == b
        ev = np.zeros(int(sel.sum()), dtype=EVENT_DTYPE)
        ev["x"], ev["y"], ev["t"], ev["p"] = cols[1][sel], cols[2][sel], cols[3][sel], cols[4][sel]
        streams.append(ev[np.argsort(ev["t"], kind="stable")])
    return streams


def _place(digits: np.ndarray, canvas: np.ndarray, dx: float, dy: float, w: int, h: int) -> np.ndarray:
    """The digits ``(n, s, s)`` drawn at subpixel offset ``(dx, dy)`` on ``h x w`` sensors
    (bilinear)."""
    canvas[:] = 0.0
    ix, iy = int(np.floor(dx)), int(np.floor(dy))
    fx, fy = dx - ix, dy - iy
    s = digits.shape[1]
    for oy, wy in ((0, 1 - fy), (1, fy)):
        for ox, wx in ((0, 1 - fx), (1, fx)):
            if wx * wy:
                canvas[:, iy + oy:iy + oy + s, ix + ox:ix + ox + s] += wx * wy * digits
    return canvas[:, :h, :w]
