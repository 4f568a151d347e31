"""The seed paper's networks at ImageNet size: how long snnedge takes on them (issue 17).

Rows are AlexNet, VGG-16, GoogLeNet, ResNet-50 and MobileNetV2 at 224 px with random weights:
with ``--source converted`` (default) the ANN (torchvision's model where torchvision is
installed, else snnedge's stand-in equal to it, :mod:`snnedge.cli.seed_models`) converted by
``converters.convert``; with ``--source hand-built`` VGG-16 and ResNet-50 built directly as
spiking networks with torchvision's layer shapes (:mod:`seed_nets`). Each measure adds a few
columns:

* ``convert``: ``convert(ann, calibration=64 random images)`` with its default settings
  (``--no-membrane-calibration`` leaves out the membrane calibration) against one ANN forward
  pass over the same images at convert's batch size (goal: <= 20x), and the process's peak
  memory (goal: <= 4 GB for VGG-16 with 64 samples at 224 px);
* ``map``: ``map_network`` onto every target (goal: <= 60 s each on 2 threads), with the
  cores, chips and feasibility it found;
* ``simulate``: one 224-px image at T = 32, default engine, against the dense bound (32 ANN
  forward passes at batch 1; goal <= 1.0x) and its peak memory (goal <= 2 GB; network
  weights and the torch runtime included).

Every measurement runs in its own process, so peak memory belongs to that measurement only:
the process's own high-water mark (``VmHWM``), which ``map`` and ``simulate`` reset once the
network is loaded (:func:`reset_peak`; the loading's transient copies are not theirs).
The converted networks that ``map`` and ``simulate`` use are converted once per network in
a process of their own (without membrane calibration, which changes neither the structure
nor, much, the activity) and saved to a temporary folder. A measure is a function
``(network name, args) -> {column: value}`` in :data:`MEASURES`; rows are networks, columns
the union of what the measures return, so a new measure adds columns without touching the
others.

Usage::

    # the issue's table (torchvision's architectures: run with the peers' interpreter)
    PYTHONPATH=. /work/peersvenv/bin/python examples/benchmarks/seed_scale.py --threads 2

    python examples/benchmarks/seed_scale.py --nets vgg16 resnet50 --calibration 64
    python examples/benchmarks/seed_scale.py --measures map --nets resnet50
    python examples/benchmarks/seed_scale.py --source hand-built --nets vgg16 resnet50
    python examples/benchmarks/seed_scale.py --size 64 --timesteps 8 --calibration 8 --no-write

Without torchvision the rows use snnedge's stand-ins, whose weights and BatchNorm statistics
equal torchvision's models' for the same seed (``tests/test_seed_report.py``).

Writes (or replaces) the section "The seed's networks at ImageNet size" of ``RESULTS.md``
next to this file (``--out``; hand-built rows have a section of their own), with the
command, CPU, torch version and thread count;
``--json PATH`` also saves the raw numbers, and ``--from-json PATH`` rewrites the section
from them without measuring.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing as mp
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root (snnedge, neuromorphic_targets)
sys.path.insert(0, str(HERE))

HEADING = "## The seed's networks at ImageNet size (issue 17)"  # converted rows
#: Each source has its own section, so a run of one leaves the other's figures in place.
HEADINGS = {"converted": HEADING,
            "hand-built": "## The seed's networks at ImageNet size, built as SNNs (issue 17)"}
TARGETS = ("truenorth", "dynap-se", "dynap-cnn", "loihi")
NETWORKS = ("alexnet", "vgg16", "googlenet", "resnet50", "mobilenet_v2")  # seed_models' names
SOURCES = ("converted", "hand-built")
PREPARE_SAMPLES = 8  # calibration images of the networks that map and simulate use
SIMULATE_REPEATS = 3  # simulate calls (and ANN passes) after the first, whose median is compared


def peak_gb() -> float:
    """Peak resident memory of this process in GiB: its own high-water mark (``VmHWM`` in
    /proc/self/status) on Linux, where ``ru_maxrss`` keeps the parent's peak across the
    ``exec`` of a spawned child; ``ru_maxrss`` (bytes) elsewhere."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if platform.system() == "Darwin" else 2**20)


def reset_peak() -> bool:
    """Set this process's high-water mark to its current resident memory (Linux: ``5`` written
    to /proc/self/clear_refs), so that :func:`peak_gb` then reads the peak of what follows,
    the memory already resident included; ``False`` where that is not possible. Heap memory
    already freed (the transient copies of loading a network) is first given back to the
    system (glibc's ``malloc_trim``), so it does not count as resident."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _setup(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def _ann(network: str, args: argparse.Namespace):
    """The ANN of a converted row (seeded: the same weights in every process)."""
    from snnedge.cli.seed_models import build_seed_model
    return build_seed_model(network, args.size, seed=0)


def _snn_file(network: str, args: argparse.Namespace) -> Path:
    return Path(args.cache) / f"{network}_{args.size}.pt"


def prepare_one(network: str, args: argparse.Namespace) -> dict:
    """Convert the ANN once (not timed here) and save it for ``map`` and ``simulate``."""
    _setup(args.threads)
    import torch

    import snnedge
    from converters import convert
    built = _ann(network, args)
    x = torch.randn(PREPARE_SAMPLES, *built.input_shape, generator=torch.Generator().manual_seed(1))
    snn = convert(built.model, calibration=x, calibrate_membrane=False)
    snnedge.save_network(snn, _snn_file(network, args))
    return {"source": built.source}


def _network(network: str, args: argparse.Namespace):
    if args.source == "hand-built":
        import seed_nets
        return seed_nets.NETWORKS[network](args.size)
    import snnedge
    return snnedge.load_network(_snn_file(network, args))


def convert_one(network: str, args: argparse.Namespace) -> dict:
    """``convert`` on ``--calibration-samples`` random images against one ANN forward pass
    over them at convert's batch size (the better of two)."""
    _setup(args.threads)
    import torch

    from converters import convert
    built = _ann(network, args)
    x = torch.randn(args.calibration_samples, *built.input_shape,
                    generator=torch.Generator().manual_seed(2))
    start = time.perf_counter()
    convert(built.model, calibration=x, calibrate_membrane=not args.no_membrane_calibration)
    seconds = time.perf_counter() - start
    peak = peak_gb()
    passes = []
    with torch.no_grad():
        for _ in range(2):
            start = time.perf_counter()
            for part in x.split(256):  # convert's default batch_size
                built.model(part)
            passes.append(time.perf_counter() - start)
    return {"seconds": seconds, "ann_pass_s": min(passes), "ratio": seconds / min(passes),
            "peak_gb": peak, "samples": args.calibration_samples, "source": built.source,
            "membrane_calibration": not args.no_membrane_calibration}


def map_one(network: str, target: str, args: argparse.Namespace) -> dict:
    """``map_network`` of the network onto one target (building or loading not timed)."""
    _setup(args.threads)
    from neuromorphic_targets import map_network
    net = _network(network, args)
    reset_peak()  # the peak of the mapping, the network included, not of loading it
    start = time.perf_counter()
    m = map_network(net, target)
    return {"seconds": time.perf_counter() - start, "cores": m.cores, "chips": m.chips,
            "feasible": m.feasible, "problems": len(m.problems), "peak_gb": peak_gb()}


def simulate_one(network: str, args: argparse.Namespace) -> dict:
    """One image at T steps against ``T`` ANN forward passes at batch 1, both timed alike:
    the first call on its own (``first_s``, ``ann_first_s``: one-time set-up included, e.g.
    oneDNN's primitives, the event path's weight layouts), then the median of
    ``SIMULATE_REPEATS`` further calls (``seconds``, ``bound_s``: the steady state, which
    the goal compares). The simulations run first and their peak memory is read before the
    ANN is built, from a high-water mark reset after the network was loaded: the peak is the
    simulation's, the network's weights and the torch runtime included."""
    _setup(args.threads)
    import torch

    import seed_nets
    import snnedge
    torch.manual_seed(1)
    net = _network(network, args)
    if args.source == "hand-built":
        x = torch.rand(1, 3, args.size, args.size)
        seed_nets.balance(net, x)
    else:
        x = torch.randn(1, 3, args.size, args.size)
    reset_peak()  # the peak of the simulation, the network included, not of loading it
    calls = []
    for _ in range(1 + SIMULATE_REPEATS):
        start = time.perf_counter()
        res = snnedge.simulate(net, x, timesteps=args.timesteps, batch_size=1)
        calls.append(time.perf_counter() - start)
    peak = peak_gb()
    rate = sum(res.spike_counts.values()) / (sum(res.neurons.values()) * args.timesteps)
    if args.source == "hand-built":
        def forward():
            seed_nets.ann_forward(net, x)
    else:
        del res, net
        ann = _ann(network, args).model

        def forward():
            with torch.no_grad():
                ann(x)
    passes = []
    for _ in range(1 + SIMULATE_REPEATS):
        start = time.perf_counter()
        forward()
        passes.append(time.perf_counter() - start)
    seconds = sorted(calls[1:])[SIMULATE_REPEATS // 2]
    bound = args.timesteps * sorted(passes[1:])[SIMULATE_REPEATS // 2]
    # from the start, T passes are the first one and T - 1 in the steady state
    first_bound = passes[0] + (args.timesteps - 1) * bound / args.timesteps
    return {"seconds": seconds, "bound_s": bound, "ratio": seconds / bound, "peak_gb": peak,
            "spike_rate": rate, "first_s": calls[0], "ann_first_s": first_bound,
            "first_ratio": calls[0] / first_bound, "calls_s": calls, "ann_passes_s": passes}


def measure_convert(network: str, args: argparse.Namespace) -> dict:
    r = _in_child(convert_one, network, args)
    print(f"{network} convert: {r}", file=sys.stderr)
    return {"convert (s)": r["seconds"], "/ ANN pass": r["ratio"],
            "convert peak (GiB)": r["peak_gb"],
            "_convert": r}


def measure_map(network: str, args: argparse.Namespace) -> dict:
    out = {}
    for target in args.targets:
        r = _in_child(map_one, network, target, args)
        out[f"map {target} (s)"] = r["seconds"]
        out[f"_map {target}"] = r
        print(f"{network} map {target}: {r}", file=sys.stderr)
    return out


def measure_simulate(network: str, args: argparse.Namespace) -> dict:
    r = _in_child(simulate_one, network, args)
    print(f"{network} simulate: {r}", file=sys.stderr)
    return {f"simulate T={args.timesteps} (s)": r["seconds"], "/ dense bound": r["ratio"],
            "first call (s)": r.get("first_s"), "first / bound at start": r.get("first_ratio"),
            "simulate peak (GiB)": r["peak_gb"], "_simulate": r}


#: Measures by name, each ``(network, args) -> {column: value}``; keys starting with "_"
#: are kept in the JSON only.
MEASURES = {"convert": measure_convert, "map": measure_map, "simulate": measure_simulate}


def _child(queue, fn, fn_args):
    try:
        queue.put(("ok", fn(*fn_args)))
    except BaseException as err:  # reported to the parent, which raises it
        queue.put(("error", f"{type(err).__name__}: {err}"))


def _in_child(fn, *fn_args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, fn_args))
    proc.start()
    status, value = queue.get()
    proc.join()
    if status != "ok":
        raise RuntimeError(f"{fn.__name__}{fn_args[:-1]} failed in its process: {value}")
    return value


def cpu_line(threads: int) -> str:
    """CPU model and the vector extensions that matter here (from lscpu), torch, threads."""
    import torch
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                model = value.strip()
            elif key.strip() == "Flags":
                flags = set(value.split())
    except (OSError, subprocess.CalledProcessError):
        pass
    ext = [f for f in ("avx2", "avx512f", "amx_tile") if f in flags]
    try:
        import torchvision
        vision = f", torchvision {torchvision.__version__}"
    except ImportError:
        vision = ""
    return (f"{model} ({', '.join(ext) if ext else 'no avx2/avx512f/amx'}), torch {torch.__version__}"
            f"{vision}, {threads} thread(s)")


def table(results: dict) -> str:
    columns = []
    for row in results["rows"].values():
        columns += [c for c in row if not c.startswith("_") and c not in columns]
    lines = ["| network | " + " | ".join(columns) + " |", "|" + " --- |" * (len(columns) + 1)]
    for network, row in results["rows"].items():
        cells = [_cell(row.get(c)) for c in columns]
        lines.append(f"| {network} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mapping_table(results: dict) -> str:
    lines = ["| network | target | cores | chips | feasible | problems | peak (GiB) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for network, row in results["rows"].items():
        for key, r in row.items():
            if key.startswith("_map "):
                lines.append(f"| {network} | {key[5:]} | {r['cores']:,} | {r['chips']:,} | "
                             f"{'yes' if r['feasible'] else 'no'} | {r['problems']} | {r['peak_gb']:.2f} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def describe(results: dict) -> str:
    """What the rows are and how each measure was taken, for the section's first paragraph."""
    size, steps = results["size"], results["timesteps"]
    if results.get("source", "hand-built") == "hand-built":
        text = (f"VGG-16 and ResNet-50 at {size} px built directly as spiking networks "
                f"(torchvision's layer shapes, random weights, max pools read as average pools; "
                f"`examples/benchmarks/seed_nets.py`). `simulate`'s thresholds are set from one "
                f"ANN pass (99.9th percentile per layer); its dense bound is {steps} forward "
                f"passes of the same layers with ReLUs at batch 1.")
    else:
        built = sorted(set(results.get("built_by", {}).values())) or ["unknown"]
        text = (f"The seed's networks at {size} px, random weights, BatchNorm statistics "
                f"from train-mode passes over random images (built by: {', '.join(built)}; "
                f"`snnedge.cli.seed_models`), converted by `converters.convert`. `map` and "
                f"`simulate` use each network converted once on {PREPARE_SAMPLES} random images "
                f"without membrane calibration; `simulate`'s dense bound is {steps} forward "
                f"passes of the ANN at batch 1.")
    conv = next((r["_convert"] for r in results["rows"].values() if "_convert" in r), None)
    if conv is not None:
        text += (f" `convert` converts the ANN on {conv['samples']} random images with "
                 f"{'its default settings' if conv['membrane_calibration'] else 'calibrate_membrane=False'}"
                 f" against one ANN forward pass over the same images (goal: <= 20x; peak "
                 f"memory goal <= 4 GB for VGG-16 with 64 samples at 224 px).")
    return (text + f" `map_network` onto each target times one call (goal: <= 60 s each). "
            f"`simulate` runs one image at T = {steps} with the default engine (goal: <= 1.0x "
            f"the dense bound, peak memory <= 2 GB), timed as the ANN is: the median of "
            f"{SIMULATE_REPEATS} calls after a first one (the steady state: the columns "
            f"`simulate T={steps} (s)` and `/ dense bound`); the first call, one-time set-up included (oneDNN's primitives, "
            f"the event path's weight layouts), is shown against {steps} ANN passes starting with "
            f"the ANN's first one. Peak memory is the measuring process's "
            f"high-water mark (VmHWM), network weights and torch included; each measurement "
            f"runs in its own process, and `map` and `simulate` reset the mark once the "
            f"network is loaded.")


def section(results: dict) -> str:
    parts = [_heading(results), "", describe(results), "", table(results)]
    mt = mapping_table(results)
    if mt:
        parts += ["", "What the mappings found (problems: limits the network exceeds, each named "
                      "in `Mapping.problems`):", "", mt]
    parts += ["", f"CPU: {results['cpu']}. Produced by `{results['command']}`."]
    if results.get("note"):
        parts += ["", results["note"]]
    return "\n".join(parts) + "\n"


def _heading(results: dict) -> str:
    return HEADINGS[results.get("source", "hand-built")]


def write_section(path: Path, text: str) -> None:
    """Replace the section of ``path`` headed by ``text``'s first line (up to the next
    ``## `` heading), or append it."""
    old = path.read_text() if path.is_file() else ""
    lines = old.splitlines(keepends=True)
    heading = text.splitlines()[0]
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == heading), None)
    if start is None:
        new = old.rstrip("\n") + ("\n\n" if old else "") + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + text + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
    path.write_text(new)


def main(argv=None) -> dict:
    import seed_nets
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nets", "--networks", dest="networks", nargs="+", default=None,
                   choices=list(NETWORKS), metavar="NET",
                   help=f"of {', '.join(NETWORKS)}; default: the five seed networks "
                        f"(converted), VGG-16 and ResNet-50 (hand-built)")
    p.add_argument("--source", choices=SOURCES, default="converted",
                   help="converted ANNs (torchvision's where installed, else snnedge's stand-ins) "
                        "or the hand-built SNNs of seed_nets.py (VGG-16, ResNet-50)")
    p.add_argument("--measures", nargs="+", default=list(MEASURES), choices=list(MEASURES),
                   help="default: all")
    p.add_argument("--calibration", "--calibration-samples", dest="calibration_samples",
                   type=int, default=64, metavar="N",
                   help="random images the convert measure calibrates on (default: 64)")
    p.add_argument("--no-membrane-calibration", action="store_true",
                   help="convert measure: calibrate_membrane=False (default: convert's defaults)")
    p.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS),
                   metavar="TARGET", help=f"of {', '.join(TARGETS)} (default: all)")
    p.add_argument("--simulate-networks", nargs="+", default=None, choices=list(NETWORKS),
                   metavar="NET",
                   help="networks the simulate measure runs on (default: every one of --nets)")
    p.add_argument("--size", type=int, default=224, help="image side in px (default: 224)")
    p.add_argument("--timesteps", type=int, default=32, help="simulate's T (default: 32)")
    p.add_argument("--threads", type=int, default=2,
                   help="torch threads in every measuring process (default: 2, as the goals say)")
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md",
                   help="the Markdown file whose section is written (default: RESULTS.md here)")
    p.add_argument("--json", type=Path, default=None, help="also save the raw results here")
    p.add_argument("--note", default="", help="a line added under the table (e.g. 'provisional')")
    p.add_argument("--no-write", action="store_true", help="print the section, do not write it")
    p.add_argument("--from-json", type=Path, default=None,
                   help="write the section from a saved --json file (no measuring)")
    args = p.parse_args(argv)
    if args.networks is None:
        args.networks = list(NETWORKS if args.source == "converted" else seed_nets.NETWORKS)
    if args.simulate_networks is None:
        args.simulate_networks = list(args.networks)
    if args.source == "hand-built":
        if "convert" in args.measures:
            args.measures = [m for m in args.measures if m != "convert"]
            print("hand-built networks are not converted: the convert measure is skipped",
                  file=sys.stderr)
        unknown = [n for n in args.networks if n not in seed_nets.NETWORKS]
        if unknown:
            p.error(f"--source hand-built has {list(seed_nets.NETWORKS)}, not {unknown}")
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        if args.note:
            results["note"] = args.note
        write_section(args.out, section(results))
        return results
    command = "python examples/benchmarks/seed_scale.py" + "".join(
        f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    results = {"size": args.size, "timesteps": args.timesteps, "threads": args.threads,
               "cpu": cpu_line(args.threads), "command": command, "note": args.note,
               "source": args.source, "built_by": {}, "rows": {}}
    with tempfile.TemporaryDirectory(prefix="seed_scale_") as cache:
        args.cache = cache
        for network in args.networks:
            row = results["rows"].setdefault(network, {})
            needs_snn = {"map", "simulate"} & set(args.measures) and (
                "map" in args.measures or network in args.simulate_networks)
            if args.source == "converted" and needs_snn:
                results["built_by"][network] = _in_child(prepare_one, network, args)["source"]
            for name in args.measures:
                if name == "simulate" and network not in args.simulate_networks:
                    continue
                row.update(MEASURES[name](network, args))
                if "_convert" in row:
                    results["built_by"][network] = row["_convert"]["source"]
            if args.json:  # after every network, so a long run that stops keeps what it measured
                args.json.write_text(json.dumps(results, indent=1) + "\n")
    text = section(results)
    print(text)
    if not args.no_write:
        write_section(args.out, text)
    return results


if __name__ == "__main__":
    main()
