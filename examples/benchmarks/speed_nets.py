"""The networks the speed benchmarks run over, and how to measure time on a shared machine.

Every speed goal of issue 16 is a worst case over a list of networks, never one tuned
network. :func:`networks` returns that list: the reference ANNs of ``models.py``, two held-out
networks that no speed work was tuned on (``vgg_heldout``: 3 conv 32-32-64 + BN, average
pools, dropout, 3136-256-10; ``lif_heldout``: the conv LIF net of the training benchmark,
16 and 32 channels 5x5, average pools), and, when ``zoo.py`` is importable, the conversion
zoo's members (:func:`zoo_networks`).

Clocks (:class:`Clock`): ``"cpu"`` is the process's CPU time (``time.process_time``: all
its threads, not the time other processes take on the same cores), what figures taken on a
loaded machine should use, with one thread; ``"wall"`` is ``time.perf_counter``, for a quiet
machine and more than one thread. Every table says which clock made it.
"""
from __future__ import annotations

import os
import sys
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
for _p in (str(HERE.parents[1]), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import models  # noqa: E402
from snnedge.ann import train_classifier  # noqa: E402
from snnedge.datasets import load_mnist_digits  # noqa: E402

CACHE_DIR = HERE / "_cache"


def vgg_heldout() -> nn.Sequential:
    """A held-out VGG (issue 16): conv 32-32-64 (3x3, BN, ReLU), average pools, dropout,
    3136-256-10. 11.9 M multiply-accumulates per 28x28 digit."""
    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*block(1, 32), *block(32, 32), nn.AvgPool2d(2), *block(32, 64),
                         nn.AvgPool2d(2), nn.Flatten(), nn.Dropout(0.25), nn.Linear(3136, 256),
                         nn.ReLU(), nn.Dropout(0.25), nn.Linear(256, 10))


def lif_heldout_ann() -> nn.Sequential:
    """The ANN twin of the held-out conv LIF net (16 and 32 channels 5x5, average pools)."""
    return nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


@dataclass
class Net:
    """One benchmark network: ``build()`` returns the trained ANN in eval mode; ``inputs(x)``
    maps 28x28 digits ``[N, 1, 28, 28]`` to its input (the zoo's torchvision members take 32
    or 64 px, three channels)."""

    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[torch.Tensor], torch.Tensor] = lambda x: x
    source: str = "models.py"


def _trained_local(name: str, builder: Callable[[], nn.Module], epochs: int) -> nn.Module:
    path = CACHE_DIR / f"speed_{name}_e{epochs}_s0.pt"
    torch.manual_seed(0)
    model = builder()
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    x, y = load_mnist_digits()
    train_classifier(model, x, y, epochs=epochs, seed=0, progress=False)
    CACHE_DIR.mkdir(exist_ok=True)
    torch.save(model.state_dict(), path)
    return model.eval()


LOCAL = {
    "vgg_avg": lambda: models.trained("vgg_avg", epochs=3),
    "vgg_max": lambda: models.trained("vgg_max", epochs=3),
    "resnet": lambda: models.trained("resnet", epochs=3),
    "vgg_wide": lambda: models.trained("vgg_wide"),
    "interop_cnn": lambda: models.trained("interop_cnn"),
    "vgg_heldout": lambda: _trained_local("vgg_heldout", vgg_heldout, 3),
    "lif_heldout": lambda: _trained_local("lif_heldout", lif_heldout_ann, 3),
}


def zoo_networks() -> list[Net]:
    """The conversion zoo's members (``examples/benchmarks/zoo.py``), where it is present."""
    try:
        import zoo
    except ImportError:
        return []
    nets = []
    for name in zoo.available():
        member = zoo.MEMBERS[name]
        nets.append(Net(f"zoo:{name}", (lambda n=name: zoo.trained(n).eval()),
                        (lambda x, m=member: zoo.inputs_for(m, x)), source="zoo.py"))
    return nets


def networks(names: list[str] | None = None) -> list[Net]:
    """The benchmark networks (all, or those ``names``; ``"zoo"`` stands for every zoo member)."""
    every = [Net(n, b) for n, b in LOCAL.items()] + zoo_networks()
    if not names:
        return every
    by_name = {n.name: n for n in every}
    picked = []
    for name in names:
        if name == "zoo":
            picked += [n for n in every if n.source == "zoo.py"]
        elif name in by_name:
            picked.append(by_name[name])
        else:
            raise SystemExit(f"unknown network {name!r}; known: {', '.join(by_name)}, zoo")
    return picked


class Clock:
    """``"cpu"``: this process's CPU time (all threads); ``"wall"``: elapsed time."""

    def __init__(self, kind: str):
        if kind not in ("cpu", "wall"):
            raise ValueError(f"clock must be 'cpu' or 'wall', got {kind!r}")
        self.kind = kind
        self.now = time.process_time if kind == "cpu" else time.perf_counter

    def time(self, fn) -> float:
        start = self.now()
        fn()
        return self.now() - start

    def label(self, threads: int) -> str:
        return ("CPU time of the process (time.process_time)" if self.kind == "cpu"
                else "wall time (time.perf_counter)") + f", {threads} thread(s)"


def converted(net: Net, test_x: torch.Tensor, train_x: torch.Tensor, batch: int,
              calibration: int = 500) -> tuple[nn.Module, torch.Tensor, object]:
    """``(ann, x, snn)``: ``net``'s trained ANN, the first ``batch`` test digits as it reads
    them, and its conversion by ``converters.convert`` on ``calibration`` training digits."""
    from converters import convert
    ann = net.build()
    return ann, net.inputs(test_x[:batch]), convert(ann, calibration=net.inputs(train_x[:calibration]))


def dense_bound(ann: nn.Module, x: torch.Tensor, timesteps: int) -> Callable[[], None]:
    """The dense bound the speed goals compare with: ``timesteps`` plain forward passes of the
    ANN on ``x``, without gradients."""
    def bound():
        with torch.no_grad():
            for _ in range(timesteps):
                ann(x)
    return bound


def interleaved_ratios(fns: dict[str, Callable[[], object]], repeats: int,
                       base: str = "bound") -> tuple[float, dict[str, float]]:
    """Runs every function once (warm-up), then ``repeats`` rounds of all of them in turn
    (wall clock); returns the median time of ``fns[base]`` and, for every other key, the
    median over rounds of its time / ``base``'s time in the same round."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    ratios = {k: statistics.median(a / b for a, b in zip(times[k], times[base]))
              for k in fns if k != base}
    return statistics.median(times[base]), ratios


def machine() -> str:
    """The CPU (model name, family and model numbers: guests often show only a vendor's
    name), the CPUs this process may use, the last-level cache, and the flags that decide the
    kernels and oneDNN's paths."""
    model, family, number, flags = "unknown CPU", None, None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name" and model == "unknown CPU":
                model = value
            elif key == "cpu family" and family is None:
                family = value
            elif key == "model" and number is None:
                number = value
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    caches = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            caches[int((index / "level").read_text())] = (index / "size").read_text().strip()
        except (OSError, ValueError):
            pass
    where = ", ".join(part for part in (
        f"family {family} model {number}" if family is not None else "",
        f"{len(os.sched_getaffinity(0))} CPUs" if hasattr(os, "sched_getaffinity") else "",
        f"L{max(caches)} {caches[max(caches)]}" if caches else "") if part)
    shown = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    from snnedge.events import native_kernel
    kernel = native_kernel()
    return (f"{model}{f' ({where})' if where else ''} (flags: "
            f"{' '.join(shown) or 'none of avx2/avx512f/amx'}), torch "
            f"{torch.__version__}, snnedge kernels: {kernel.isa() if kernel else 'not compiled'}")


def macs_per_sample(ann: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass per sample (convolutions and linear layers)."""
    total = 0

    def hook(module, inp, out):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += out[0].numel() * k
        elif isinstance(module, nn.Linear):
            total += out[0].numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in ann.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        ann(x[:1])
    for h in handles:
        h.remove()
    return total
