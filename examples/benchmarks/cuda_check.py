"""The CUDA path of the engines against the CPU: same spikes, same counts, same outputs.

For each network and engine (``dense``, ``event``, ``auto``) this simulates the same inputs
on the CPU and on the GPU and compares what ``SimulationResult`` reports:

* float64: per-layer spike counts, per-neuron spike counts and synaptic events must be
  identical, outputs equal to 1e-9 (the two devices add in different orders; in float64 no
  threshold crossing flips on these inputs);
* float32: the fraction of samples whose prediction agrees, and the largest relative
  difference of a layer's spike count (float32 sums in another order can flip a neuron that
  sits on its threshold, so these are reported, not required to be zero).

Networks: a random residual conv net (the engines' test network), the converted VGG of
``models.vgg_mnist("avg")`` and the converted ``models.vgg_wide()`` with thresholds raised to
<= 2% activity (the event engine's regime), on MNIST test digits.

Usage: python examples/benchmarks/cuda_check.py [--json out.json]
Exits 1 when a float64 comparison differs. Needs a CUDA device.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

import models  # noqa: E402
from simulate_speed import with_raised_thresholds  # noqa: E402

import snnedge  # noqa: E402
from converters import convert  # noqa: E402
from snnedge import Node, SpikingNetwork  # noqa: E402
from snnedge.datasets import load_mnist_digits, load_mnist_test  # noqa: E402


def residual_net() -> SpikingNetwork:
    """conv -> IF -> [conv -> IF -> conv] + identity -> IF -> avgpool -> conv/2 -> LIF -> linear."""
    torch.manual_seed(0)
    return SpikingNetwork([
        Node("stem", nn.Conv2d(1, 16, 3, padding=1)),
        Node("stem_if", snnedge.IF(threshold=0.6)),
        Node("block.conv1", nn.Conv2d(16, 16, 3, padding=1), ("stem_if",)),
        Node("block.if1", snnedge.IF(threshold=0.5), ("block.conv1",)),
        Node("block.conv2", nn.Conv2d(16, 16, 3, padding=1), ("block.if1",)),
        Node("block.add", snnedge.Add(), ("block.conv2", "stem_if")),
        Node("block.if2", snnedge.IF(threshold=0.7), ("block.add",)),
        Node("pool", nn.AvgPool2d(2), ("block.if2",)),
        Node("down", nn.Conv2d(16, 32, 3, stride=2), ("pool",)),
        Node("down_if", snnedge.LIF(beta=0.9, threshold=0.5), ("down",)),
        Node("flat", nn.Flatten(), ("down_if",)),
        Node("fc", nn.Linear(32 * 6 * 6, 10), ("flat",)),
    ])


def compare(net: SpikingNetwork, x: torch.Tensor, engine: str, dtype: torch.dtype,
            timesteps: int, batch_size: int, device: str = "cuda") -> dict:
    kw = dict(timesteps=timesteps, engine=engine, dtype=dtype, batch_size=batch_size, progress=False)
    cpu = snnedge.simulate(net, x, **kw)
    gpu = snnedge.simulate(net, x, device=device, **kw)
    rel = max(abs(cpu.spike_counts[k] - gpu.spike_counts[k]) / max(1, cpu.spike_counts[k])
              for k in cpu.spike_counts)
    row = {
        "engine": engine, "dtype": str(dtype).removeprefix("torch."), "gpu_engine": gpu.engine,
        "spike_counts_equal": cpu.spike_counts == gpu.spike_counts,
        "synaptic_events_equal": cpu.synaptic_events == gpu.synaptic_events,
        "neuron_counts_equal": all(torch.equal(cpu.neuron_spike_counts[k], gpu.neuron_spike_counts[k].cpu())
                                   for k in cpu.neuron_spike_counts),
        "max_output_diff": (cpu.output - gpu.output.cpu()).abs().max().item(),
        "prediction_agreement": (cpu.predictions == gpu.predictions.cpu()).float().mean().item(),
        "max_rel_spike_count_diff": rel,
    }
    row["ok"] = dtype != torch.float64 or (row["spike_counts_equal"] and row["synaptic_events_equal"]
                                           and row["neuron_counts_equal"] and row["max_output_diff"] < 1e-9)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--timesteps", type=int, default=32)
    ap.add_argument("--device", default="cuda", help="the device checked against the CPU "
                    "(--device cpu checks this script itself)")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("cuda_check.py needs a CUDA device; none is visible to torch.")
    x_train, _ = load_mnist_digits()
    x_test, _ = load_mnist_test()
    digits = x_test[:64]
    vgg = convert(models.trained("vgg_avg", epochs=3), calibration=x_train[:500])
    wide = convert(models.trained("vgg_wide"), calibration=x_train[:500])
    wide_sparse, factor, activity = with_raised_thresholds(wide, digits[:16], args.timesteps, 0.02)
    cases = {
        "residual (random)": (residual_net(), torch.rand(32, 1, 28, 28), 16),
        "vgg_avg (converted)": (vgg, digits, 32),
        f"vgg_wide, thresholds x{factor:.2f}, activity {activity:.2%}": (wide_sparse, digits[:16], 1),
    }
    rows = []
    for name, (net, x, batch) in cases.items():
        for dtype in (torch.float64, torch.float32):
            for engine in ("dense", "event", "auto"):
                row = {"network": name, "batch_size": batch, **compare(net, x, engine, dtype,
                                                                       args.timesteps, batch, args.device)}
                rows.append(row)
                print(f"{name:<48} {row['dtype']:<8} {engine:<6} (ran {row['gpu_engine']:<6}) "
                      f"counts equal {row['spike_counts_equal']!s:<5} events equal "
                      f"{row['synaptic_events_equal']!s:<5} max |out diff| {row['max_output_diff']:.2e} "
                      f"predictions agree {row['prediction_agreement']:.3f} "
                      f"max rel count diff {row['max_rel_spike_count_diff']:.1e}", flush=True)
    report = {"device": torch.cuda.get_device_name() if args.device == "cuda" else args.device, "torch": torch.__version__,
              "timesteps": args.timesteps, "rows": rows,
              "tf32": "off inside simulate (snnedge.engine.exact_float32)"}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    failed = [r for r in rows if not r["ok"]]
    print(f"{len(rows) - len(failed)} of {len(rows)} comparisons pass on {report['device']}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
