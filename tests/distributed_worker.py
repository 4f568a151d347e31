"""The worker that tests/test_distributed.py launches with torchrun (2 CPU processes, gloo).

Each rank runs every check of one launch and writes what it got to ``OUT/rank<R>.pt``:
``simulate`` on a tensor, a Dataset, a DataLoader and a list (1,001 samples: uneven shards),
``convert`` with and without subsampled percentiles, a short ``fit`` (full and truncated
BPTT, a tensor pair and a DataLoader), and the errors of bad input (a network that differs
between ranks, a DataLoader with its own sampler). The test builds the same things in one
process with the functions below and compares.

Usage: torchrun --standalone --nproc_per_node=2 tests/distributed_worker.py OUT [checks...]
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import snnedge

N_SIMULATE = 1001  # 11 batches of 100 on 2 ranks: 600 and 401 samples
SIMULATE_BATCH = 100
CALIBRATION = 301  # 5 batches of 64


def network() -> snnedge.SpikingNetwork:
    torch.manual_seed(0)
    return snnedge.sequential(
        nn.Conv2d(1, 4, 3, padding=1), snnedge.IF(threshold=0.5), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(4 * 4 * 4, 16), snnedge.LIF(beta=0.9, threshold=0.4), nn.Linear(16, 5)).double()


def simulate_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(N_SIMULATE, 1, 8, 8, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 5, (N_SIMULATE,), generator=g)


def simulate_inputs(distributed: bool) -> dict:
    """``{name: (data, labels)}``: what each simulate check runs on (a single process gets a
    DataLoader where the distributed run gets the Dataset, with the same batches)."""
    x, y = simulate_data()
    ds = TensorDataset(x, y)
    dark = x.clone()
    dark[SIMULATE_BATCH:] = 0  # batches after the first fire nothing
    return {"tensor": (x, y), "skewed": (dark, y),
            "dataset": (ds if distributed else DataLoader(ds, batch_size=SIMULATE_BATCH), None),
            "loader": (DataLoader(ds, batch_size=64), None),
            "list": ([(x[i:i + 70], y[i:i + 70]) for i in range(0, N_SIMULATE, 70)], None)}


def skewed_network() -> snnedge.SpikingNetwork:
    """:func:`network` without the first bias: zero inputs give no spikes, so engine "auto"
    picks event layers on dark batches and dense ones on the first (bright) batch."""
    net = network()
    with torch.no_grad():
        net.layer("0").bias.zero_()
    return net


SIMULATE_RUNS = {"tensor-direct": ("tensor", "direct", "auto"),
                 "skewed-auto": ("skewed", "direct", "auto"),
                 "tensor-poisson": ("tensor", "poisson", "event"),
                 "dataset-direct": ("dataset", "direct", "dense"),
                 "loader-latency": ("loader", "latency", "auto"),
                 "list-poisson": ("list", "poisson", "dense")}


def result_record(res) -> dict:
    """What must agree between a distributed and a single-process simulation."""
    return {"output": res.output.cpu(), "step_predictions": res.step_predictions.cpu(),
            "neuron_spike_counts": {k: v.cpu() for k, v in res.neuron_spike_counts.items()},
            "spike_counts": dict(res.spike_counts), "synaptic_events": dict(res.synaptic_events),
            "input_macs": dict(res.input_macs), "num_samples": res.num_samples,
            "labels": None if res.labels is None else res.labels.cpu(),
            "accuracy_curve": res.accuracy_curve().cpu(), "engine": res.engine,
            "event_layers": res.extra.get("event_layers")}


def run_simulate(distributed: bool) -> dict:
    inputs = simulate_inputs(distributed)
    out = {}
    for name, (kind, encoding, engine) in SIMULATE_RUNS.items():
        data, labels = inputs[kind]
        net = skewed_network() if kind == "skewed" else network()
        res = snnedge.simulate(net, data, timesteps=8, encoding=encoding, engine=engine,
                               batch_size=SIMULATE_BATCH, labels=labels, progress=False,
                               distributed=distributed)
        out[name] = result_record(res)
        if distributed:
            out[name]["distributed"] = res.extra["distributed"]
    return out


def ann() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 3)).eval()


CONVERT_RUNS = {"percentile": ({"normalization": "percentile"}, False),
                "percentile-subsampled": ({"normalization": "percentile"}, True),
                "percentile-50-subsampled": ({"normalization": "percentile", "percentile": 50.0}, True),
                "max": ({"normalization": "max", "calibrate_membrane": False}, False),
                "channelwise-subsampled": ({"normalization": "channelwise", "percentile": 99.0,
                                            "calibrate_membrane": False}, True),
                # a tail share of 50 %: channels positive in fewer than half their values take
                # the layer's scale, by positive counts summed over the ranks
                "channelwise-50": ({"normalization": "channelwise", "percentile": 50.0,
                                    "calibrate_membrane": False}, False)}


def run_convert(distributed: bool) -> dict:
    import converters.calibration as calibration
    from converters import convert

    x = torch.rand(CALIBRATION, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    out = {}
    saved = calibration.MAX_VALUES
    try:
        for name, (opts, subsample) in CONVERT_RUNS.items():
            # 5,000 values per layer: every layer is subsampled (512 values per sample, 301 samples)
            calibration.MAX_VALUES = 5000 if subsample else saved
            snn = convert(ann(), x, batch_size=64, timesteps=8, distributed=distributed, **opts)
            out[name] = {"state": {k: v.cpu() for k, v in snn.state_dict().items()},
                         "scales": snn.conversion_.scales}
    finally:
        calibration.MAX_VALUES = saved
    return out


def fit_network() -> snnedge.SpikingNetwork:
    torch.manual_seed(0)
    return snnedge.sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.AvgPool2d(2), snnedge.LIF(beta=0.9), nn.Flatten(),
        nn.Linear(4 * 4 * 4, 16), snnedge.LIF(beta=0.9), nn.Linear(16, 3)).double()


def fit_data() -> tuple[torch.Tensor, torch.Tensor]:
    """101 samples whose class is the brightest third of the image (learnable)."""
    g = torch.Generator().manual_seed(3)
    x = 6 * torch.rand(101, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (101,), generator=g)
    for c in range(3):
        x[y == c, :, :, 3 * c:3 * c + 2] += 3.0
    return x, y


FIT_RUNS = {"full": {"bptt": "full"}, "truncated": {"bptt": "truncated", "block_steps": 2}}


def run_fit(distributed: bool, out: Path | None = None) -> dict:
    """The short fits; with ``out``, every rank also asks for a checkpoint ``ckpt<rank>.pt``
    there (only rank 0 writes one)."""
    from snnedge.training import fit, random_shift, save_checkpoint

    x, y = fit_data()
    found = {}
    for name, opts in FIT_RUNS.items():
        net = fit_network()
        hist = fit(net, (x, y), epochs=2, timesteps=4, lr=3e-2, batch_size=16, seed=0,
                   lr_schedule="cosine", transform=random_shift(1), val=(x[:50], y[:50]),
                   progress=False, distributed=distributed, **opts)
        found[name] = {"state": {k: v.cpu() for k, v in net.state_dict().items()},
                       "history": {k: v for k, v in hist.to_dict().items() if k != "epoch_time_s"}}
    if out is not None:
        save_checkpoint(net, out / f"ckpt{os.environ['RANK']}.pt", history=hist)
    return found


def run_fit_loader() -> dict:
    """fit on a shuffling DataLoader (DistributedSampler path): the ranks agree."""
    from snnedge.training import fit

    x, y = fit_data()
    net = fit_network()
    hist = fit(net, DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True), epochs=1,
               timesteps=4, lr=1e-2, seed=0, progress=False, distributed=True)
    return {"state": {k: v.cpu() for k, v in net.state_dict().items()},
            "history": {k: v for k, v in hist.to_dict().items() if k != "epoch_time_s"}}


def error_of(fn) -> str | None:
    try:
        fn()
    except (ValueError, TypeError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def run_errors(rank: int) -> dict:
    from snnedge.training import fit

    x, y = simulate_data()
    odd = network()
    if rank == 1:
        with torch.no_grad():
            odd.layer(odd.names[0]).weight[0, 0, 0, 0] += 1e-3
    ds = TensorDataset(x, y)
    sampler = torch.utils.data.WeightedRandomSampler(torch.ones(len(ds)), len(ds))
    return {
        "different_network": error_of(lambda: snnedge.simulate(odd, x[:10], timesteps=2,
                                                               distributed=True, progress=False)),
        "different_network_fit": error_of(lambda: fit(odd, (x[:10], y[:10]), timesteps=2,
                                                      distributed=True, progress=False)),
        "shuffled_loader": error_of(lambda: snnedge.simulate(
            network(), DataLoader(ds, batch_size=50, shuffle=True), timesteps=2, distributed=True)),
        "loader_with_sampler_fit": error_of(lambda: fit(
            network(), DataLoader(ds, batch_size=50, sampler=sampler), timesteps=2,
            distributed=True, progress=False)),
        "different_data": error_of(lambda: snnedge.simulate(
            network(), x[:10] + rank, timesteps=2, distributed=True, progress=False)),
    }


def run_tiny(distributed: bool) -> dict:
    """Fewer batches than ranks: 1 sample, 3 batches, a calibration set of 2 batches."""
    from converters import convert

    x, y = simulate_data()
    out = {}
    for n in (1, 250):
        res = snnedge.simulate(network(), x[:n], timesteps=4, batch_size=100, labels=y[:n],
                               progress=False, distributed=distributed)
        out[f"simulate-{n}"] = result_record(res)
    for norm in ("max", "percentile"):
        snn = convert(ann(), x[:100].float(), normalization=norm, batch_size=64,
                      calibrate_membrane=False, distributed=distributed)
        out[f"convert-{norm}"] = {k: v.cpu() for k, v in snn.state_dict().items()}
    return out


CHECKS = {"simulate": lambda rank: run_simulate(True), "convert": lambda rank: run_convert(True),
          "fit": lambda rank: run_fit(True, OUT[0]), "fit_loader": lambda rank: run_fit_loader(),
          "tiny": lambda rank: run_tiny(True), "errors": run_errors}


OUT: list[Path] = []


def main(out: Path, checks: list[str]) -> None:
    rank = int(os.environ["RANK"])
    OUT.append(out)
    found = {}
    for name in checks or CHECKS:
        found[name] = CHECKS[name](rank)
    found["threads"] = torch.get_num_threads()
    torch.distributed.barrier()
    found["files"] = sorted(p.name for p in out.iterdir())
    torch.save(found, out / f"rank{rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
