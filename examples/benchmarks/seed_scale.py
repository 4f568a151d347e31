"""The seed paper's networks at ImageNet size: how long snnedge takes on them (issue 17).

For each network (VGG-16 and ResNet-50 at 224 px, built directly as spiking networks with
torchvision's layer shapes and random weights, :mod:`seed_nets`) and each measure, one row
and a few columns:

* ``map``: ``map_network`` onto every target (goal: <= 60 s each on 2 threads), with the
  cores, chips and feasibility it found;
* ``simulate``: one 224-px image at T = 32, default engine, against the dense bound (32 ANN
  forward passes at batch 1 through the same layers with ReLUs; goal <= 1.0x) and the
  process's peak memory (goal <= 2 GB; network weights and the torch runtime included).

Every measurement runs in its own process, so peak memory belongs to that measurement only.
A measure is a function ``(network name, args) -> {column: value}`` in :data:`MEASURES`;
rows are networks (:data:`seed_nets.NETWORKS`), columns the union of what the measures
return, so a new measure (conversion time, say) adds columns without touching the others.

Usage::

    python examples/benchmarks/seed_scale.py                       # both networks, all measures
    python examples/benchmarks/seed_scale.py --measures map --networks resnet50
    python examples/benchmarks/seed_scale.py --size 64 --timesteps 8 --no-write   # smoke run

Writes (or replaces) the section "The seed's networks at ImageNet size" of ``RESULTS.md``
next to this file (``--out``), with the command, CPU, torch version and thread count;
``--json PATH`` also saves the raw numbers, and ``--from-json PATH`` rewrites the section
from them without measuring.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root (snnedge, neuromorphic_targets)
sys.path.insert(0, str(HERE))

HEADING = "## The seed's networks at ImageNet size (issue 17)"
TARGETS = ("truenorth", "dynap-se", "dynap-cnn", "loihi")


def _peak_gb() -> float:
    """Peak resident memory of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if platform.system() == "Darwin" else 2**20)


def _setup(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def map_one(network: str, target: str, args: argparse.Namespace) -> dict:
    """``map_network`` of a freshly built network onto one target (building not timed)."""
    _setup(args.threads)
    import seed_nets
    from neuromorphic_targets import map_network
    net = seed_nets.NETWORKS[network](args.size)
    start = time.perf_counter()
    m = map_network(net, target)
    return {"seconds": time.perf_counter() - start, "cores": m.cores, "chips": m.chips,
            "feasible": m.feasible, "problems": len(m.problems), "peak_gb": _peak_gb()}


def simulate_one(network: str, args: argparse.Namespace) -> dict:
    """One image at T steps against ``T`` ANN forward passes at batch 1."""
    _setup(args.threads)
    import torch

    import seed_nets
    import snnedge
    torch.manual_seed(1)
    net = seed_nets.NETWORKS[network](args.size)
    x = torch.rand(1, 3, args.size, args.size)
    seed_nets.balance(net, x)
    passes = []
    for _ in range(3):
        start = time.perf_counter()
        seed_nets.ann_forward(net, x)
        passes.append(time.perf_counter() - start)
    start = time.perf_counter()
    res = snnedge.simulate(net, x, timesteps=args.timesteps, batch_size=1)
    seconds = time.perf_counter() - start
    bound = args.timesteps * sorted(passes)[1]
    rate = sum(res.spike_counts.values()) / (sum(res.neurons.values()) * args.timesteps)
    return {"seconds": seconds, "bound_s": bound, "ratio": seconds / bound, "peak_gb": _peak_gb(),
            "spike_rate": rate, "event_layers": len(res.extra.get("event_layers", [[]])[0])}


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
            "simulate peak (GB)": r["peak_gb"], "_simulate": r}


#: Measures by name, each ``(network, args) -> {column: value}``; keys starting with "_"
#: are kept in the JSON only.
MEASURES = {"map": measure_map, "simulate": measure_simulate}


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
    return (f"{model} ({', '.join(ext) if ext else 'no avx2/avx512f/amx'}), torch {torch.__version__}, "
            f"{threads} thread(s)")


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
    lines = ["| network | target | cores | chips | feasible | problems | peak (GB) |",
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


def section(results: dict) -> str:
    parts = [HEADING, "",
             f"VGG-16 and ResNet-50 at {results['size']} px built directly as spiking networks "
             f"(torchvision's layer shapes, random weights, max pools read as average pools; "
             f"`examples/benchmarks/seed_nets.py`). `map_network` onto each target times one "
             f"call on a freshly built network (goal: <= 60 s each). `simulate` runs one image at "
             f"T = {results['timesteps']} with the default engine, thresholds set from one ANN "
             f"pass (99.9th percentile per layer); the dense bound is {results['timesteps']} "
             f"forward passes of the same layers with ReLUs at batch 1 (goal: <= 1.0x); peak "
             f"memory is the measuring process's, network weights included (goal: <= 2 GB). "
             f"Each measurement runs in its own process.", "",
             table(results)]
    mt = mapping_table(results)
    if mt:
        parts += ["", "What the mappings found (problems: limits the network exceeds, each named "
                      "in `Mapping.problems`):", "", mt]
    parts += ["", f"CPU: {results['cpu']}. Produced by `{results['command']}`."]
    if results.get("note"):
        parts += ["", results["note"]]
    return "\n".join(parts) + "\n"


def write_section(path: Path, text: str) -> None:
    """Replace this benchmark's section of ``path`` (up to the next ``## `` heading), or
    append it."""
    old = path.read_text() if path.is_file() else ""
    lines = old.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == HEADING), None)
    if start is None:
        new = old.rstrip("\n") + ("\n\n" if old else "") + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + text + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
    path.write_text(new)


def main(argv=None) -> dict:
    import seed_nets
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--networks", nargs="+", default=list(seed_nets.NETWORKS), choices=list(seed_nets.NETWORKS))
    p.add_argument("--measures", nargs="+", default=list(MEASURES), choices=list(MEASURES))
    p.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    p.add_argument("--simulate-networks", nargs="+", default=["vgg16"],
                   help="networks the simulate measure runs on (default: VGG-16, as the goal says)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--timesteps", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--json", type=Path, default=None, help="also save the raw results here")
    p.add_argument("--note", default="", help="a line added under the table (e.g. 'provisional')")
    p.add_argument("--no-write", action="store_true", help="print the section, do not write it")
    p.add_argument("--from-json", type=Path, default=None,
                   help="write the section from a saved --json file (no measuring)")
    args = p.parse_args(argv)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        if args.note:
            results["note"] = args.note
        write_section(args.out, section(results))
        return results
    command = "python examples/benchmarks/seed_scale.py" + "".join(
        f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    results = {"size": args.size, "timesteps": args.timesteps, "threads": args.threads,
               "cpu": cpu_line(args.threads), "command": command, "note": args.note, "rows": {}}
    for network in args.networks:
        row = results["rows"].setdefault(network, {})
        for name in args.measures:
            if name == "simulate" and network not in args.simulate_networks:
                continue
            row.update(MEASURES[name](network, args))
    text = section(results)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if not args.no_write:
        write_section(args.out, text)
    return results


if __name__ == "__main__":
    main()
