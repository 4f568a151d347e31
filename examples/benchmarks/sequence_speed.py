"""Sequence input speed: a batch of event sequences through a 4-layer convolutional SNN,
snnedge against snnTorch 1.0.0 and SpikingJelly 2.0.0 (multi-step mode), same network.

Data: ``--batch`` (32) event streams of moving MNIST digits on a 34 x 34 DVS-like sensor
(:func:`snnedge.moving_digit_events`, seeded), binned into ``--timesteps`` (300) frames of
event counts, ``[B, T, 2, 34, 34]``: N-MNIST's shape and length.

Network (the same weights on every side, inference in float32, no gradients)::

    conv 2->16 (3x3, pad 1) -> LIF -> avg-pool 2     34x34 -> 17x17
    conv 16->32 (3x3, pad 1) -> LIF -> avg-pool 2    17x17 -> 8x8
    conv 32->32 (3x3, pad 1) -> LIF -> avg-pool 2     8x8 -> 4x4
    conv 32->64 (3x3, pad 1) -> LIF -> flatten -> linear 1024->10 (readout, summed over T)

LIF: beta = 1 - 1/10, threshold 1, reset by subtraction.

* snnedge: ``simulate(net, x, encoding="sequence", engine=...)`` for ``auto`` (its default)
  and ``dense``: blocks of steps streamed from the batch-first tensor, each convolution once
  per block with time folded into the batch, the compiled neuron block.
* SpikingJelly, multi-step (``step_mode="m"``): ``layer.Conv2d`` / ``layer.AvgPool2d`` /
  ``layer.Flatten`` / ``layer.Linear`` and ``neuron.LIFNode(tau=10, decay_input=False,
  v_reset=None)`` (``v = (1 - 1/tau) v + x``, soft reset: snnedge's LIF), the whole
  ``[T, B, ...]`` sequence in one call, torch backend (its cupy backend is for GPUs).
  The script checks that it gives snnedge's spikes (float64, a short run).
* snnTorch: ``snn.Leaky(beta, init_hidden=True)`` after each conv, one step per call over
  the ``T`` frames, as its tutorials run event data (it has no multi-step mode).

Each measurement is the best of ``--repeat`` runs after one warm-up; the sides take turns in
each round, so that all of them meet the same load. Peers that are not installed are left
out (run it in the peers environment). One command produces the table and writes this
benchmark's section of RESULTS.md::

    PYTHONPATH=. /work/peersvenv/bin/python examples/benchmarks/sequence_speed.py [--threads 2]
    python examples/benchmarks/sequence_speed.py --quick     # small sizes: checks the script runs
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

import snnedge

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SECTION_HEADING = "## Sequence input: event frames through a conv SNN, snnedge vs snnTorch and SpikingJelly (issue 18)"
TAU = 10.0
BETA = 1.0 - 1.0 / TAU  # SpikingJelly's decay, computed the way it computes it
CHANNELS = (16, 32, 32, 64)


def snnedge_net(side: int = 34) -> snnedge.SpikingNetwork:
    torch.manual_seed(0)  # the same weights in every run
    layers, c_in, s = [], 2, side
    for i, c in enumerate(CHANNELS):
        layers += [nn.Conv2d(c_in, c, 3, padding=1), snnedge.LIF(beta=BETA, threshold=1.0)]
        if i < len(CHANNELS) - 1:
            layers.append(nn.AvgPool2d(2))
            s //= 2
        c_in = c
    layers += [nn.Flatten(), nn.Linear(c_in * s * s, 10)]
    net = snnedge.sequential(*layers, input_shape=(2, side, side))
    with torch.no_grad():  # weights that keep every layer near 2% activity per step on these frames
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(3.5)
    return net


def spikingjelly_net(net: snnedge.SpikingNetwork):
    from spikingjelly.activation_based import functional, layer, neuron
    mods = []
    for node in net.nodes:
        m = node.module
        if isinstance(m, nn.Conv2d):
            c = layer.Conv2d(m.in_channels, m.out_channels, 3, padding=1)
            c.load_state_dict(m.state_dict())
            mods.append(c)
        elif isinstance(m, snnedge.LIF):
            mods.append(neuron.LIFNode(tau=TAU, decay_input=False, v_reset=None, v_threshold=1.0))
        elif isinstance(m, nn.AvgPool2d):
            mods.append(layer.AvgPool2d(2))
        elif isinstance(m, nn.Flatten):
            mods.append(layer.Flatten())
        else:
            lin = layer.Linear(m.in_features, m.out_features)
            lin.load_state_dict(m.state_dict())
            mods.append(lin)
    sj = nn.Sequential(*mods)
    functional.set_step_mode(sj, "m")
    return sj.eval(), functional


def snntorch_net(net: snnedge.SpikingNetwork):
    import snntorch
    import snntorch.utils  # noqa: F401  (reset)
    mods = []
    for node in net.nodes:
        m = node.module
        mods.append(snntorch.Leaky(beta=BETA, threshold=1.0, init_hidden=True)
                    if isinstance(m, snnedge.LIF) else m)
    return nn.Sequential(*mods).eval(), snntorch


@torch.no_grad()
def run_spikingjelly(sj, functional, x):
    functional.reset_net(sj)
    out = sj(x.transpose(0, 1)).sum(0)  # [T, B, ...] in one call
    functional.reset_net(sj)
    return out


@torch.no_grad()
def run_snntorch(st, snntorch, x):
    snntorch.utils.reset(st)
    out = 0
    for t in range(x.shape[1]):
        out = out + st(x[:, t])
    return out


def event_data(batch: int, timesteps: int, side: int = 34) -> torch.Tensor:
    streams, _ = snnedge.moving_digit_events(batch, sensor_size=(side, side, 2), seed=0)
    return snnedge.events_to_frames(streams, (side, side, 2), n_time_bins=timesteps)


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def check_same_spikes(net, side: int) -> str:
    """snnedge and SpikingJelly on the same short sequence in float64: the same readout."""
    try:
        sj, functional = spikingjelly_net(net)
    except ImportError:
        return "SpikingJelly not installed"
    x = event_data(2, 40, side).double()
    a = snnedge.simulate(net, x, encoding="sequence", dtype=torch.float64).output
    b = run_spikingjelly(sj.double(), functional, x)
    same = torch.allclose(a, b, rtol=0, atol=1e-9)
    return f"readouts equal in float64 on 2 sequences x 40 steps: {same}"


def cpu_line() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")),
                 "unknown CPU")
    flags = next((ln.split(":", 1)[1].split() for ln in out.splitlines() if ln.startswith("Flags")), [])
    have = [f for f in ("avx2", "avx512f", "amx_tile") if f in flags]
    return f"{model} (flags: {', '.join(have) or 'none of avx2/avx512f/amx'})"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--timesteps", type=int, default=300)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help="batch 4, T = 20, one repeat (smoke test)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.timesteps, args.repeat = 4, 20, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    net = snnedge_net()
    x = event_data(args.batch, args.timesteps)
    sides = {
        "snnedge (auto)": lambda: snnedge.simulate(net, x, encoding="sequence", engine="auto",
                                                   batch_size=args.batch),
        "snnedge (dense)": lambda: snnedge.simulate(net, x, encoding="sequence", engine="dense",
                                                    batch_size=args.batch),
    }
    try:
        sj, functional = spikingjelly_net(net)
        sides["SpikingJelly 2.0.0 (multi-step)"] = lambda: run_spikingjelly(sj, functional, x)
    except ImportError as e:
        print(f"SpikingJelly left out: {e}", file=sys.stderr)
    try:
        st, snntorch = snntorch_net(net)
        sides["snnTorch 1.0.0 (step loop)"] = lambda: run_snntorch(st, snntorch, x)
    except ImportError as e:
        print(f"snnTorch left out: {e}", file=sys.stderr)
    for fn in sides.values():  # warm-up
        fn()
    times = {k: float("inf") for k in sides}
    for _ in range(args.repeat):
        for k, fn in sides.items():
            times[k] = min(times[k], best(fn, 1))
    res = snnedge.simulate(net, x, encoding="sequence")
    rates = ", ".join(f"{k} {v:.3f}" for k, v in res.firing_rates().items())
    chosen = res.extra.get("event_layers", [[]])[0]
    check = check_same_spikes(net, 34)
    peers = [k for k in sides if not k.startswith("snnedge")]
    fastest_peer = min(peers, key=times.get) if peers else None
    ours = min(times["snnedge (auto)"], times["snnedge (dense)"])
    rows = ["| side | seconds per batch | sequences / s | faster peer / side |", "|---|---:|---:|---:|"]
    for k, t in times.items():
        ratio = f"{times[fastest_peer] / t:.2f}x" if fastest_peer else "-"
        rows.append(f"| {k} | {t:.3f} | {args.batch / t:.1f} | {ratio} |")
    cmd = "python examples/benchmarks/sequence_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [SECTION_HEADING, "",
             "PROVISIONAL: measured on a shared machine under load; the lead reruns it quiet.", "",
             f"{args.batch} sequences of T = {args.timesteps} event frames [2, 34, 34] (moving MNIST "
             f"digits, snnedge.moving_digit_events), 4 conv layers + LIF + readout (see the script's "
             f"docstring), inference in float32. Goal: snnedge >= 2x the faster peer on CPU.", "",
             *rows, "",
             f"snnedge / faster peer ({fastest_peer}): {times[fastest_peer] / ours:.2f}x" if fastest_peer
             else "No peer installed.",
             f"Firing rates per step: {rates}. `auto` propagated events in layers {chosen} (the "
             f"others dense). snnedge vs SpikingJelly, same network: {check}.", "",
             f"Produced by `{cmd.strip()}` on {cpu_line()}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} thread(s), Python {platform.python_version()}.", ""]
    section = "\n".join(lines)
    print(section)
    _write_section(args.out, section)


def _write_section(out: Path, section: str) -> None:
    """Replace this benchmark's section of ``out`` (or append it), leaving the rest alone."""
    from results_md import replace_section  # this folder's helper (the script's own folder)

    replace_section(out, SECTION_HEADING, section)


if __name__ == "__main__":
    main()
