"""Engine ``"auto"``'s choice, per layer, between the dense path (torch's layer, oneDNN on
CPUs) and the event path (:func:`snnedge.events.event_apply`): by timing both on this machine.

Where the event path starts to pay depends on the layer and on the CPU, more than one fitted
rule can follow. ``event_density_limit`` was fitted on an AVX-512 Xeon (Sapphire Rapids
family), whose oneDNN convolutions run two 512-bit FMA units; on an AMD EPYC of the Zen 4
family (512-bit instructions on 256-bit units) the dense layers are about half as fast and the
event path won where the rule said it would lose (examples/benchmarks/RESULTS.md, issue 16
section 8; one thread, 800 rows: dense / event 1.31 for Conv2d 32 -> 32 3x3 at 12 % input
density, rule's limit 9.6 %; 1.02-1.68 for 1x1 convolutions at 2-12 %, which the rule kept
dense).

So under the ``"timed"`` policy (opt-in: ``set_path_policy("timed")`` or
``SNNEDGE_AUTO_PATH=timed``) a layer's first block at a given density runs
both paths on all of its rows (each first untimed on ``TIMING_MIN_ROWS`` rows for its
first-call costs: weight layouts, oneDNN's primitives), keeps the faster path's output and
takes that path: the timed work is the block's own, and its output is not computed twice.
The ratio is kept per layer, input shape, dtype, thread count and half-octave of density
(:func:`density_bucket`) for the life of the layer, so later blocks, batches and ``simulate``
calls reuse it. At two threads the timing is biased towards the dense path: right after a
oneDNN layer, torch's OpenMP threads still spin while the event kernel's threads start
(issue 16 section 8). The ``"limit"`` policy is the fitted rule alone: no timing, so a
network gives the same results in every process and on every machine. Timed choices can
differ between processes, and the two paths add in different orders, so float32 results can
move in their last bits (a network saved and simulated again in a fresh process did, in this
project's tests); as with ``torch.backends.cudnn.benchmark``, the autotuning is opt-in.

The ``"calibrated"`` policy is the rule scaled per class of layer by this machine's measured
break-evens (:mod:`snnedge.path_calibration`; ``snnedge calibrate`` measures them once, in
under a minute, and keeps them in a file): the choices of a CPU whose break-evens lie elsewhere
than the rule's, and the same in every process on that machine. It is the default: where the
file holds no calibration for this machine at the current thread count, the first choice of a
CPU layer with an event path measures a quick one and keeps it
(:func:`snnedge.path_calibration.for_auto`); with ``SNNEDGE_CALIBRATION=off`` the default is
``"limit"``. ``SNNEDGE_AUTO_PATH`` (``timed``, ``limit``, ``calibrated``) or
:func:`set_path_policy` choose one for good.
"""
from __future__ import annotations

import math
import os
import time
import weakref

import torch
from torch import nn

from . import layer_calibration, path_calibration
from .dense_paths import apply_synaptic
from .events import event_apply, event_density_limit, event_path_exists, over_copy_cap

POLICIES = ("timed", "limit", "calibrated")
#: Rows each path first runs on untimed, before the timed run on the whole block.
TIMING_MIN_ROWS = 8
#: Densities within one bucket share a timing: 2 buckets per octave.
BUCKETS_PER_OCTAVE = 2
#: A layer whose weights exceed ``snnedge.events.EVENT_WEIGHT_BYTES`` gets the event path's
#: copy of them only where it does at least this share of its network's multiply-accumulates
#: per sample: its path can save at most its share of a run, and below that the copy's memory
#: buys little. VGG-16 at 224 px: its 25088 -> 4096 layer (392 MiB) does 0.7 % (103 M of 15.5 G
#: MAC), so it stays dense and VGG-16 within issue 17's 2 GB. torchvision's VGG-11 at MNIST
#: scale (zoo member tv_vgg11_bn): the same layer did 38 % (103 of 272 M MAC); run dense,
#: "auto" took 4.8-5.7x the event engine's time at <= 2 % activity (RESULTS.md, issue 16
#: sections 15-16). That layer reads copies of a 1x1 map and now runs folded, 512 -> 4096
#: (snnedge.replication); the rule is for large layers that do not.
LARGE_COPY_SHARE = 0.1

# None: "calibrated" (measured on first use where this machine has no calibration at the
# current thread count), "limit" with SNNEDGE_CALIBRATION=off
_policy = os.environ.get("SNNEDGE_AUTO_PATH") or None
if _policy is not None and _policy not in POLICIES:
    raise ValueError(f"SNNEDGE_AUTO_PATH must be one of {', '.join(POLICIES)}; got {_policy!r}.")
_RATIOS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
#: The clock the timings read (tests replace it).
clock = time.perf_counter


def set_path_policy(policy: str | None) -> str | None:
    """Choose how engine ``"auto"`` picks a layer's path from now on (``"timed"``,
    ``"limit"`` or ``"calibrated"``, see the module docstring; None: the default, this
    machine's calibration where one is kept, else the rule); returns the previous setting."""
    global _policy
    if policy is not None and policy not in POLICIES:
        raise ValueError(f"The 'policy' parameter of set_path_policy must be one of "
                         f"{', '.join(map(repr, POLICIES))} or None. Got {policy!r} instead.")
    previous, _policy = _policy, policy
    return previous


def path_policy() -> str:
    """The policy in force: the one set, or by default ``"calibrated"`` where
    :func:`snnedge.path_calibration.load` finds this machine's calibration, else ``"limit"``
    (until engine ``"auto"``'s first choice of a CPU layer measures one, unless
    ``SNNEDGE_CALIBRATION=off``)."""
    if _policy is not None:
        return _policy
    return "calibrated" if path_calibration.load() is not None else "limit"


def _in_force(module: nn.Module | None = None, device: str | torch.device = "cpu",
              large: bool = False) -> tuple[str, path_calibration.Calibration | None]:
    """The policy in force and, under ``"calibrated"``, this machine's calibration (one read
    of the file's state per call of the engine's choice). Where ``module`` has an event path
    on a CPU and this machine has no calibration at the current thread count, it is measured
    now, once (:func:`snnedge.path_calibration.for_auto`)."""
    if _policy in ("timed", "limit"):
        return _policy, None
    first_use = (module is not None and torch.device(device).type == "cpu"
                 and event_path_exists(module, device, large))
    cal = path_calibration.for_auto() if first_use else path_calibration.load()
    if cal is not None:
        return "calibrated", cal
    if _policy is None or not first_use:
        return "limit", None
    where = path_calibration.calibration_path()
    raise ValueError(f"Engine 'auto' with policy 'calibrated' found no calibration for this "
                     f"machine at {torch.get_num_threads()} thread(s) in "
                     f"{where or 'SNNEDGE_CALIBRATION=off'}, and cannot measure one there. Run "
                     f"'snnedge calibrate --threads {torch.get_num_threads()} --file FILE' (under "
                     f"a minute) and set SNNEDGE_CALIBRATION=FILE, or choose policy 'limit'.")


def _limit(module: nn.Module, device, cal: path_calibration.Calibration | None, large: bool = False) -> float:
    return event_density_limit(module, device, large) if cal is None else cal.limit(module, device, large)


def large_layers(net, sample_shape) -> frozenset[nn.Module]:
    """The weighted layers of ``net`` (a :class:`snnedge.executor.Graph`) whose weights
    exceed ``EVENT_WEIGHT_BYTES`` and which do at least ``LARGE_COPY_SHARE`` of its
    multiply-accumulates (outputs times fan-in) per sample of ``sample_shape``: engine
    ``"auto"`` may copy their weights for the event path."""
    weighted = {n: net.get_submodule(n) for n in net.names if net.kind(n) == "weighted"}
    if not any(map(over_copy_cap, weighted.values())):
        return frozenset()
    shapes = net.shapes(sample_shape)
    work = {n: math.prod(shapes[n]) * m.weight[0].numel() for n, m in weighted.items()}
    total = sum(work.values())
    return frozenset(m for n, m in weighted.items()
                     if over_copy_cap(m) and work[n] >= LARGE_COPY_SHARE * total)


def density_limit(module: nn.Module, device: str | torch.device = "cpu",
                  sample_shape: tuple[int, ...] | None = None, dtype: torch.dtype = torch.float32) -> float:
    """The density below which engine ``"auto"`` takes ``module``'s event path under the
    ``"limit"`` or ``"calibrated"`` policy (the one in force; 0 under ``"timed"``, which
    times instead). With ``sample_shape`` (one sample of the layer's input), the layer's own
    break-even where the calibration measures it (:mod:`snnedge.layer_calibration`; measured
    now if it is not kept yet)."""
    policy, cal = _in_force(module, device)
    if policy == "timed":
        return 0.0
    if sample_shape is not None and layer_calibration.measures(cal, module, device):
        return layer_calibration.layer_limit(cal, module, tuple(sample_shape), dtype)
    return _limit(module, device, cal)


def worth_measuring(module: nn.Module, device: str | torch.device = "cpu") -> bool:
    """Whether engine ``"auto"`` measures ``module``'s input density to choose its path."""
    return BatchChoices().worth_measuring(module, device)


class BatchChoices:
    """Engine ``"auto"``'s choices within one batch: :func:`worth_measuring` and
    :func:`choose_path` with the policy, the calibration and each layer's limit looked up once
    per batch rather than once per layer and block (the lookup reads the calibration file's
    state; on a small all-dense network at batch 100 these lookups cost a few percent of a
    run). A policy set, or a calibration kept, during a batch takes effect from the next.

    ``large``: layers whose weights exceed ``EVENT_WEIGHT_BYTES`` that may take the event path
    all the same (:func:`large_layers`); :meth:`see_network` sets them."""

    def __init__(self, large: frozenset[nn.Module] | None = None) -> None:
        self._in_force: dict[str, tuple[str, path_calibration.Calibration | None]] = {}
        self._limits: dict[nn.Module, float] = {}
        self._measured: dict[nn.Module, bool] = {}  # whether a layer's own break-even is used
        self._own: dict[tuple, float] = {}  # (layer, sample shape, dtype) -> its own limit
        self.large = large

    def see_network(self, net, sample_shape) -> None:
        """Find ``net``'s :func:`large_layers` for samples of ``sample_shape``, once."""
        if self.large is None:
            self.large = large_layers(net, sample_shape)

    def _is_large(self, module: nn.Module) -> bool:
        return self.large is not None and module in self.large

    def _resolve(self, module: nn.Module, device: torch.device) -> tuple[str, path_calibration.Calibration | None]:
        found = self._in_force.get(device.type)
        if found is None:  # first asked by a layer with an event path (else no first use)
            found = self._in_force[device.type] = _in_force(module, device, self._is_large(module))
        return found

    def worth_measuring(self, module: nn.Module, device: str | torch.device = "cpu") -> bool:
        """Whether ``module``'s input density is measured (:func:`worth_measuring`)."""
        if not event_path_exists(module, device, self._is_large(module)):
            return False
        policy, cal = self._resolve(module, torch.device(device))
        return policy == "timed" or self._layer_limit(module, device, cal) > 0

    def _layer_limit(self, module: nn.Module, device, cal, x: torch.Tensor | None = None) -> float:
        if module not in self._limits:
            self._limits[module] = _limit(module, device, cal, self._is_large(module))
            self._measured[module] = layer_calibration.measures(cal, module, device)
        if x is None or not self._measured[module]:
            return self._limits[module]
        key = (module, tuple(x.shape[1:]), x.dtype)
        if key not in self._own:
            self._own[key] = layer_calibration.layer_limit(cal, module, key[1], x.dtype)
        return self._own[key]

    def choose_path(self, module: nn.Module, x: torch.Tensor,
                    density: float) -> tuple[bool, torch.Tensor | None]:
        """Whether ``module`` takes the event path at ``density`` (:func:`choose_path`)."""
        policy, cal = self._resolve(module, x.device)
        if policy != "timed":
            return density < self._layer_limit(module, x.device, cal, x), None
        return _timed_choice(module, x, density)


def density_bucket(density: float) -> int:
    """The half-octave of ``density`` (densities below 1e-4 share one bucket)."""
    return round(math.log2(max(density, 1e-4)) * BUCKETS_PER_OCTAVE)


def choose_path(module: nn.Module, x: torch.Tensor,
                density: float) -> tuple[bool, torch.Tensor | None]:
    """Whether the event path is the one to take for ``module`` on the rows ``x`` (one block,
    time folded into the batch) whose fraction of non-zero values is ``density``, and, when
    this call timed both paths to decide, ``module``'s output on ``x`` (else ``None``)."""
    return BatchChoices().choose_path(module, x, density)


def _timed_choice(module: nn.Module, x: torch.Tensor, density: float) -> tuple[bool, torch.Tensor | None]:
    key = (tuple(x.shape[1:]), x.dtype, torch.get_num_threads(), density_bucket(density))
    slot = _RATIOS.setdefault(module, {})
    if key in slot:
        return slot[key] > 1.0, None
    slot[key], y = _time_paths(module, x)
    return slot[key] > 1.0, y


def _time_paths(module: nn.Module, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Dense time / event time of ``module`` on all rows of ``x`` (the block's own work),
    each path first run untimed on a few rows for its first-call costs; and the output of the
    faster path."""
    with torch.no_grad():
        warm = x[:min(x.shape[0], TIMING_MIN_ROWS)]
        apply_synaptic(module, warm), event_apply(module, warm)
        t0 = clock()
        dense = apply_synaptic(module, x)
        t1 = clock()
        events = event_apply(module, x)
        t2 = clock()
    ratio = (t1 - t0) / max(t2 - t1, 1e-12)
    return ratio, (events if ratio > 1.0 else dense)


def timed_ratios(module: nn.Module) -> dict:
    """The timings kept for ``module``: (sample shape, dtype, threads, density bucket) ->
    dense time / event time."""
    return dict(_RATIOS.get(module, {}))


__all__ = ["POLICIES", "set_path_policy", "path_policy", "density_limit", "worth_measuring",
           "BatchChoices", "LARGE_COPY_SHARE", "large_layers", "density_bucket", "choose_path", "timed_ratios"]
