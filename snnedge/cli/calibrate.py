"""``snnedge calibrate``: measure engine ``"auto"``'s break-even on this machine and keep it.

Times the dense and event paths of the probe layers of :mod:`snnedge.path_calibration` at a
grid of input densities, once per thread count asked for, prints the measured ratios and the
fitted factors, and writes them to the calibration file, where ``simulate(engine="auto")``
reads them from then on (in every process on this machine). ``--quick`` measures as engine
``"auto"`` does on first use where no calibration is kept. ``--show`` prints what the file
holds for this machine instead of measuring.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .. import path_calibration
from .errors import UsageError


def add_calibrate(sub, command) -> None:
    c = command(
        sub, "calibrate", "measure engine 'auto''s event/dense break-even on this CPU, keep it",
        "Time the dense and event paths of a few probe layers (3x3 convolutions wide, strided and "
        "narrow, 1x1 convolutions, linear layers) at input densities from 0.5% to 32% on this CPU, fit "
        "one factor per class of layer to the fitted rule of snnedge.events."
        "event_density_limit (narrow convolutions: a break-even that is a plane in log input "
        "channels and log taps per stride area), and keep the result in the calibration file ($SNNEDGE_CALIBRATION, "
        "else ~/.cache/snnedge/path_calibration.json). simulate(engine='auto') then chooses each "
        "layer's path by this machine's break-evens at that thread count "
        "(snnedge.path_calibration); a narrow convolution it meets is timed once on its own shape "
        "and kept in the same file (snnedge.layer_calibration; --show lists them). About 20-60 s "
        "per thread count. Without it, engine 'auto' "
        "measures a quicker one (--quick) the first time it chooses a CPU layer's path at a "
        "thread count this machine has none for (SNNEDGE_CALIBRATION=off: the rule alone).",
        "snnedge calibrate --threads 1 2")
    c.add_argument("--threads", type=int, nargs="+", default=None, metavar="N",
                   help=f"torch thread counts to calibrate (default: torch's, now "
                        f"{torch.get_num_threads()})")
    c.add_argument("--rows", type=int, nargs="+", default=None,
                   help="row counts of each probe's input, time steps x samples of one block "
                        "(default: 32 400, one sample at T = 32 and 4 steps of 100 samples)")
    c.add_argument("--repeats", type=int, default=None,
                   help="timings per point, median (default: 5; with --quick 3)")
    c.add_argument("--quick", action="store_true",
                   help="measure as engine 'auto' does on first use: each probe's break-even by "
                        "bisection over the densities (4 of 9), 3 timings per point (about 12 s)")
    c.add_argument("--file", type=Path, default=None,
                   help="calibration file to write or read (default: $SNNEDGE_CALIBRATION, else "
                        "~/.cache/snnedge/path_calibration.json)")
    c.add_argument("--show", action="store_true",
                   help="print this machine's kept calibration instead of measuring")
    c.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run_calibrate(args) -> None:
    threads = args.threads or [torch.get_num_threads()]
    if args.rows is None:
        args.rows = list(path_calibration.QUICK_ROWS if args.quick else path_calibration.ROWS)
    if args.repeats is None:
        args.repeats = path_calibration.QUICK_REPEATS if args.quick else 5
    if min(threads) < 1 or min(args.rows) < 1 or args.repeats < 1:
        raise UsageError(f"--threads, --rows and --repeats must be positive. Got threads "
                         f"{threads}, rows {args.rows}, repeats {args.repeats}.")
    where = args.file or path_calibration.calibration_path()
    if where is None:
        raise UsageError("SNNEDGE_CALIBRATION=off leaves no calibration file; pass --file PATH "
                         "or unset SNNEDGE_CALIBRATION.")
    for n in threads:
        if args.show:
            try:
                cal = path_calibration.load(where, threads=n)
            except ValueError as err:
                raise UsageError(str(err)) from None
            if cal is None:
                print(f"{where}: no calibration for this machine at {n} thread(s); run "
                      f"'snnedge calibrate --threads {n}'.")
                continue
        else:
            cal = path_calibration.calibrate(rows=args.rows, repeats=args.repeats, threads=n,
                                             progress=not args.no_progress,
                                             search="bisection" if args.quick else "grid")
        m = cal.machine
        print(f"{m['cpu']} ({', '.join(m['flags']) or 'no vector flags read'}), kernels "
              f"{m['isa']}, torch {m['torch']}, {m['threads']} thread(s), rows {' and '.join(map(str, cal.rows))}"
              f"{', measured ' + cal.created if cal.created else ''}"
              f"{f' in {cal.seconds:.1f} s' if cal.seconds else ''}"
              f"{' (quick: bisection)' if cal.search == 'bisection' else ''}\n")
        print("dense time / event time at each input density (> 1: the event path is faster)\n")
        print(cal.table())
        if not args.show:
            try:
                path = path_calibration.save(cal, where)
            except (OSError, ValueError) as err:
                raise UsageError(f"cannot write the calibration file {where}: {err}") from None
            print(f"\nkept in {path}: simulate(engine='auto') uses it at {n} thread(s)\n")
