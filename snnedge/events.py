"""Event-driven synaptic operations: a weighted layer applied to sparse spikes.

Only the non-zero inputs do work. For a ``Linear`` layer each spike adds one row of the
transposed weight. For a ``Conv2d`` layer each non-zero input ``(n, c, y, x)`` adds, for
every kernel tap ``(ky, kx)``, the kernel column ``W[:, c, ky, kx]`` to the one output
position that tap reaches (or to none at a border).

Three backends compute the same sums:

* ``"native"`` (the CPU default): snnedge's compiled kernel (``snnedge/_event_kernels.c``,
  built at install; AVX-512 or AVX2 where the CPU has it, chosen at run time). Per sample it lists the non-zero inputs of
  each position, then every output position gathers the weight rows of the events in its
  receptive field into vector registers and stores its output once (a wide linear layer on
  many rows reads its weight packed in chunks, each chunk for a group of rows). Split over torch's
  intra-op threads by sample, on PyTorch's own OpenMP threads where it can
  (:mod:`snnedge.kernel_threads`).
* ``"scipy"`` (the CPU fallback where the kernel was not built): the output ``(N *
  positions, C_out)`` as a sparse matrix (one entry per input event and tap) times the
  kernel matrix ``(C_in * taps, C_out)``, in scipy's compiled COO kernel.
* ``"torch"`` (other devices): the same sparse product as ``index_add_`` of gathered rows.

All give the dense layer's result up to the order of floating-point additions (exactly, for
spikes, in float64): tests/test_events.py. Speed per layer: examples/benchmarks/RESULTS.md.

The same compiled module updates IF/LIF neurons over a block of steps
(:func:`native_neuron_block`, called by :mod:`snnedge.neurons`).

The dense layers' own fast paths for no-gradient runs (tiling pools, channels-last
convolutions) are in :mod:`snnedge.dense_paths`.
"""
from __future__ import annotations

import collections
import functools
import os
import weakref

import torch
from torch import nn

from .geometry import module_axes
from .kernel_threads import kernel_threads, run_split
from .sparse_product import PARALLEL_MIN_WORK, sparse_times_dense

_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def event_apply(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A weighted ``module`` applied to ``x`` ``(N, ...)`` touching only its non-zero entries.

    Modules without an event path (grouped or non-zero-padded convolutions, other layers)
    run densely."""
    if torch.is_grad_enabled():  # the event paths are for simulation, not differentiable
        return module(x)
    if isinstance(module, nn.Linear) and x.dim() == 2:
        return event_linear(module, x)
    if event_conv_capable(module) and x.dim() == 4:
        return event_conv2d(module, x)
    return module(x)


# Break-even input density of the event path, per unit of work each input event carries
# (output channels x kernel taps / stride^2 for a convolution, output features for a linear
# layer), against the dense engine's channels-last oneDNN layers, with the native kernel:
# examples/benchmarks/event_layers.py measured the event path still 1.2-1.5x faster at 20%
# input density for Conv2d 32->64 (576 per event) up to 128->256 (2304), and dense / event =
# 1 near 8% for Linear 1152->128 (128) at N = 320 rows, beyond 20% at N = 32 (one thread and
# two alike). The limit stays below those break-evens: min(0.2, work / 3000).
EVENT_DENSITY_PER_WORK = 1 / 3_000
EVENT_DENSITY_CAP = 0.2
# Measured again on an AVX-512 Xeon with the AVX-512 kernel (event_layers.py --clock cpu,
# 2026-12-05): the limit held for 32 or more input channels; fewer are handled below
# (NARROW_INPUT_CHANNELS). 1x1 convolutions never broke even there (64 -> 64: 0.75-0.9x at
# 0.5%), measured while the kernels ran on Python threads beside oneDNN's spinning ones. With
# the kernels on torch's OpenMP threads (snnedge.kernel_threads), right after a oneDNN layer,
# 2 threads, AMD EPYC Zen 4 (2026-12-06), dense / event for 1x1 convolutions at 1 / 2 / 5 /
# 10 / 20% input density: 1024 -> 128 at 1x1 4.83 / 3.81 / 3.41 / 3.29 / 2.29; 512 -> 128
# at 2x2 2.19 / 1.93 / 1.60 / 1.43 / 1.22; 256 -> 64 at 4x4 1.51 / 1.27 / 1.00 / 1.06 / 0.95;
# 128 -> 32 1.19 / 1.04 / 0.79; 64 -> 64 1.25 / 1.16 / 1.05; 64 -> 16 0.96 / 0.77; 32 -> 128
# 0.89 / 0.82: the event path pays with many input channels. A 1x1 convolution's work per
# event is therefore weighted by (in / ONE_BY_ONE_INPUT_CHANNELS)^2, at most 4: 1024 -> 128
# gets 17%, 256 -> 64 8.5%, 128 -> 32 1.1%, 64 -> 64 0.5%, 32 -> 128 0.3%.
ONE_BY_ONE_INPUT_CHANNELS = 128
# The same with scipy's kernel (an install without a C compiler): dense / event = 1 near 5-8%
# for Conv2d 32->64, 9-10% for 64->128 and 128->128, ~15% for 128->256, 1-2% for Linear
# 1152->128 (event_layers.py before the native kernel existed).
SCIPY_DENSITY_PER_WORK = 1 / 12_000
SCIPY_DENSITY_CAP = 0.15
# The event path lays a layer's weights out again (rows per input, padded, or a linear layer's
# chunks), a second copy that lives as long as the layer. Above this size "auto" leaves the
# layer dense unless it carries much of its network's work (``large``, see
# snnedge.path_choice.LARGE_COPY_SHARE): VGG-16's first fully connected layer (392 MiB of
# weights, 0.7 % of its work at 224 px) saved 5 ms per block of 2 steps at batch 1 on events
# (8.8 against 13.8 ms at 13 % density, 2 threads, AVX-512 Xeon) against 0.4-0.9 s to make its
# copy and 392 MiB more memory, a fifth of the 2 GB issue 17 allows VGG-16. A cap of 64 MiB
# kept AlexNet's 9216 -> 4096 layer (144 MiB) dense too: "auto" 2.75x slower than "event" at
# batch 1, 1.8 % activity (issue 16, RESULTS.md section 12).
EVENT_WEIGHT_BYTES = 256 * 2**20
# Below this many input channels a convolution's break-even falls with (in / 32)^2 (see
# event_density_limit); the table above starts at 32 input channels.
NARROW_INPUT_CHANNELS = 32


def event_density_limit(module: nn.Module, device: str | torch.device = "cpu", large: bool = False) -> float:
    """The density of non-zero inputs below which :func:`event_apply` beats ``module(x)``
    on ``device`` (0 for modules without an event path, and on GPUs: on an H200 the event
    path ran 0.80-0.90x as fast as cuDNN at batch 1 and 2% activity, examples/benchmarks/
    RESULTS.md), and 0 for layers whose weights exceed ``EVENT_WEIGHT_BYTES`` unless
    ``large``: the event path keeps its own copy of them). ``engine="auto"`` compares each
    layer's measured input density with this."""
    if not event_path_exists(module, device, large):
        return 0.0
    per_work, cap = ((EVENT_DENSITY_PER_WORK, EVENT_DENSITY_CAP) if native_kernel() is not None
                     else (SCIPY_DENSITY_PER_WORK, SCIPY_DENSITY_CAP))
    if isinstance(module, nn.Linear):
        work = module.out_features
    else:  # a convolution event_conv2d handles
        taps = module.kernel_size[0] * module.kernel_size[1]
        work = module.out_channels * taps / (module.stride[0] * module.stride[1])
        if taps == 1 and native_kernel() is not None:  # a GEMM for oneDNN: see above
            return min(cap, work * per_work * min(4.0, (module.in_channels / ONE_BY_ONE_INPUT_CHANNELS) ** 2))
        # Few input channels: each output position gathers few events, its fixed cost is not
        # amortized, and oneDNN's dense convolution is cheap (issue 18's event-frame nets, at
        # N = 320 rows, one thread, on a loaded machine: dense / event = 1 near 2% for 16->32
        # and 3% for 16->64 at 17x17, near 1% for 8->32; 2->16 at 34x34 never broke even;
        # issue 16's AVX-512 table: near 2-4% for 16->16 3x3 and 8-10% for 16->32 5x5).
        work *= min(1.0, module.in_channels / NARROW_INPUT_CHANNELS) ** 2
    return min(cap, work * per_work)


def event_path_exists(module: nn.Module, device: str | torch.device = "cpu", large: bool = False) -> bool:
    """Whether ``module`` has an event path worth considering on ``device``: a linear layer
    or a convolution :func:`event_conv2d` handles, on a CPU, whose weights are within
    ``EVENT_WEIGHT_BYTES`` (any size where ``large``: the caller accepts the copy)."""
    if torch.device(device).type != "cpu" or not (isinstance(module, nn.Linear)
                                                   or event_conv_capable(module)):
        return False
    return large or not over_copy_cap(module)


def over_copy_cap(module: nn.Module) -> bool:
    """Whether ``module``'s weights exceed ``EVENT_WEIGHT_BYTES``."""
    return module.weight.numel() * module.weight.element_size() > EVENT_WEIGHT_BYTES


def event_conv_capable(module: nn.Module) -> bool:
    """Whether :func:`event_conv2d` handles ``module``: an ungrouped, zero-padded Conv2d
    (any padding amount, ``"same"`` and ``"valid"`` included)."""
    return isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros"


def _cached(module: nn.Module, key: tuple, build):
    """A value derived from ``module.weight`` and ``module.bias``, rebuilt when either changes
    (its version counter, storage, dtype or device moves, or the bias comes or goes). Kept
    outside the module, dropped with it."""
    hit = _kept(module, key)
    if hit is None:
        hit = _CACHE.setdefault(module, {})[key] = (_stamp(module), build())
    return hit[1]


def _kept(module: nn.Module, key: tuple):
    """The ``(stamp, value)`` :func:`_cached` keeps for ``module`` under ``key`` while the
    weight is unchanged, else None."""
    hit = _CACHE.get(module, {}).get(key)
    return hit if hit is not None and hit[0] == _stamp(module) else None


def _stamp(module: nn.Module) -> tuple:
    # (a bias changed alone, as when only biases are trained, must not keep an old copy)
    w, b = module.weight, getattr(module, "bias", None)
    return (w._version, w.data_ptr(), w.dtype, w.device,
            None if b is None else (b._version, b.data_ptr(), b.dtype, b.device))


def event_linear(module: nn.Linear, x: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """``module(x)`` for ``x`` ``(N, in)``: each non-zero input adds one row of the
    transposed weight, scaled by its value. ``backend``: ``"native"``, ``"scipy"`` or
    ``"torch"`` (see the module docstring; default: the fastest available)."""
    if _use_native(backend, x):  # a linear layer is a 1x1 convolution of a 1x1 map
        n, f_in = x.shape
        bias = _cached(module, ("bias_rows", x.dtype), lambda: _bias_of(module, x.dtype))
        out = torch.empty(n, module.out_features, dtype=x.dtype)
        geometry = (1, 1, f_in, 1, 1, module.out_features, 1, 1, 1, 1, 0, 0, 1, 1)
        chunk = LINEAR_CHUNK_BYTES // x.element_size()
        packed_key, rows_key = ("w_chunks", x.dtype, chunk), ("w_rows", x.dtype)
        # one copy of the weight at a time: a few rows take the packed form where it is kept
        if module.out_features > chunk and (n >= LINEAR_PACKED_ROWS or _kept(module, packed_key)):
            _CACHE.get(module, {}).pop(rows_key, None)
            w_chunks = _cached(module, packed_key,
                               lambda: _chunk_packed(module.weight.detach().t().to(x.dtype), chunk))
            _native_run(x.contiguous(), w_chunks, bias, out, geometry, packed=chunk)
            return out
        _CACHE.get(module, {}).pop(packed_key, None)  # (one of an earlier weight)
        w_rows = _cached(module, rows_key, lambda: _line_padded(module.weight.detach().t().to(x.dtype)))
        _native_run(x.contiguous(), w_rows, bias, out, geometry)
        return out
    w_t = _cached(module, ("w_t", x.dtype), lambda: module.weight.detach().t().to(x.dtype).contiguous())
    rows, cols = x.nonzero().unbind(1)
    out = sparse_times_dense(rows, cols, x[rows, cols], tuple(x.shape), w_t, backend, groups=rows)
    if module.bias is not None:
        out.add_(module.bias.detach().to(x.dtype))
    return out


# Below this much work per thread, splitting the compiled kernel (_native_run) costs more
# than it saves: on the Python pool PARALLEL_MIN_WORK (the sparse product's, imported above);
# on PyTorch's OpenMP threads, which spin between parallel regions, OPENMP_MIN_WORK
# (one-digit calls' event layers ran 1.24x faster split at 64-128 k of work, 1.38x at
# 128 k-1 M, 0.98x below 32 k, 2 threads, AMD EPYC, AVX2: examples/benchmarks/
# split_threshold.py, RESULTS.md issue 16 section 18).
OPENMP_MIN_WORK = 32_768


@functools.cache
def native_kernel():
    """snnedge's compiled event kernel module, or None where it was not built (no C compiler
    at install) or ``SNNEDGE_NATIVE=0`` is set; then CPU event layers use scipy's kernel.

    The kernels run with the best instruction set the CPU has (AVX-512, else AVX2 + FMA,
    else the generic build); ``SNNEDGE_ISA=avx512|avx2|generic`` picks one (an error where
    the CPU lacks it), as does :func:`set_native_isa`. All give the same results bit for bit
    on spike inputs (tests/test_kernel_isa.py), as do the convolution's gather and scatter
    forms (``SNNEDGE_CONV_SCATTER=0`` keeps to the gather form; see _event_kernels.c)."""
    if os.environ.get("SNNEDGE_NATIVE", "1") == "0":
        return None
    try:
        from . import _event_kernels
    except ImportError:
        return None
    wanted = os.environ.get("SNNEDGE_ISA", "").strip().lower()
    if wanted:
        try:
            _event_kernels.set_isa(wanted)
        except ValueError as err:
            raise ValueError(f"SNNEDGE_ISA={wanted!r}: {err} Unset SNNEDGE_ISA to use the best "
                             f"one ({_event_kernels.isas()[-1]!r} here).") from None
    scatter = os.environ.get("SNNEDGE_CONV_SCATTER", "").strip()
    if scatter:
        if not scatter.isdigit():
            raise ValueError(f"SNNEDGE_CONV_SCATTER={scatter!r}: expected a number of bytes (0: the "
                             f"gather form only); unset it for the default.")
        _event_kernels.set_conv_scatter(int(scatter))
    return _event_kernels


NATIVE_ISAS = ("generic", "avx2", "avx512")
# The compiled kernels' revision, part of the key of a path calibration (a machine's measured
# break-evens, snnedge.path_calibration): raised with every change that moves the event
# path's speed, so that a calibration of the earlier kernels is measured again on first use.
# 2: linear layers read their weight packed in chunks (LINEAR_CHUNK_BYTES).
# 3: calls split over OpenMP threads from OPENMP_MIN_WORK of work (was PARALLEL_MIN_WORK).
NATIVE_REVISION = 3


def native_isas() -> tuple[str, ...]:
    """The instruction sets the compiled kernels can run with on this CPU, best last (a
    subset of :data:`NATIVE_ISAS`; empty where the kernels are not built)."""
    kernel = native_kernel()
    return () if kernel is None else tuple(kernel.isas())


def set_native_isa(name: str) -> str:
    """Run the compiled kernels with instruction set ``name`` (one of :func:`native_isas`)
    from now on; returns the previous one. For tests and benchmarks that compare the paths."""
    kernel = native_kernel()
    if kernel is None:
        raise ValueError(_native_unavailable(torch.empty(0)))
    if name not in NATIVE_ISAS:
        raise ValueError(f"The 'name' parameter of set_native_isa must be one of "
                         f"{', '.join(map(repr, NATIVE_ISAS))}. Got {name!r} instead.")
    if name not in kernel.isas():
        raise ValueError(f"This CPU cannot run the {name} kernels; it runs "
                         f"{', '.join(kernel.isas())}.")
    return kernel.set_isa(name)


def _use_native(backend: str | None, x: torch.Tensor) -> bool:
    if backend not in (None, "native"):
        return False
    ok = native_kernel() is not None and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
    if backend == "native" and not ok:
        raise ValueError(_native_unavailable(x))
    return ok


def _native_unavailable(x: torch.Tensor) -> str:
    if native_kernel() is None:
        return ("The 'native' event backend is not built in this install (it needs a C compiler "
                "when snnedge is installed; reinstall with `pip install -e .` where gcc or clang is "
                "available) or SNNEDGE_NATIVE=0 is set. Use backend='scipy'.")
    return (f"The 'native' event backend runs float32 and float64 CPU tensors. Got {x.dtype} on "
            f"{x.device}; use backend='torch' there.")


def _bias_of(module: nn.Module, dtype: torch.dtype) -> torch.Tensor | None:
    return None if module.bias is None else _line_padded(module.bias.detach().to(dtype))


def _line_padded(w: torch.Tensor) -> torch.Tensor:
    """``w`` ``(..., C_out)`` contiguous, its last dimension padded with zeros to whole 64-byte
    lines: the compiled kernel loads weight rows and the bias in whole vectors."""
    pad = _line_length(w.shape[-1], w.element_size()) - w.shape[-1]
    return (torch.nn.functional.pad(w, (0, pad)) if pad else w).contiguous()


def _line_length(values: int, element_size: int) -> int:
    """``values`` rounded up to whole 64-byte lines of ``element_size``-byte values."""
    line = 64 // element_size
    return -(-values // line) * line


# A linear layer of more than one chunk of this many bytes of outputs, on at least
# LINEAR_PACKED_ROWS rows, reads its weight packed chunk by chunk (_chunk_packed), each chunk
# for a group of rows whose events (at most LINEAR_GROUP_EVENTS) are listed once: AlexNet's
# 9216 -> 4096 and 4096 -> 4096 at 2-7% density 1.75-2.99x faster than on whole rows from
# 400 rows on, 0.94-1.73x on 32 rows, 0.52-0.64x on one row (a chunk's pieces lie on pages
# of their own, a row's on a few); layers whose weight fits the caches 0.76-1.44x (EPYC
# guest, AVX2, 1 and 2 threads; RESULTS.md, issue 16 section 15). A layer that keeps the
# packed form uses it on fewer rows too: one copy of the weight at a time. The sums and
# their order are the same.
LINEAR_CHUNK_BYTES = 256
LINEAR_PACKED_ROWS = 32
LINEAR_GROUP_EVENTS = 1 << 18


def _chunk_packed(w_t: torch.Tensor, chunk: int) -> torch.Tensor:
    """``w_t`` ``(C_in, C_out)`` as ``(chunks, C_in, chunk)``: chunk k holds outputs ``[k *
    chunk, (k + 1) * chunk)`` of every input, zeros past ``C_out``."""
    w = torch.nn.functional.pad(w_t, (0, -w_t.shape[1] % chunk))
    return w.view(w_t.shape[0], -1, chunk).permute(1, 0, 2).contiguous()


def _native_run(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor,
                geometry: tuple[int, ...], packed: int = 0) -> None:
    """Run the compiled kernel on contiguous ``x`` ``(N, H, W, C_in)``, ``weight`` ``(KH, KW,
    C_in, C_out + padding)`` and ``bias`` (rows padded by :func:`_line_padded`) and ``out``
    ``(N, OH, OW, C_out)``; ``geometry`` = (H, W, C_in, OH, OW, C_out, KH, KW, SH, SW, PH, PW,
    DH, DW). ``packed``: a linear layer's ``weight`` from :func:`_chunk_packed` with chunks of
    this many values (0: rows). Samples are split over torch's intra-op threads
    when each part has at least ``OPENMP_MIN_WORK`` (on PyTorch's OpenMP threads, else
    ``PARALLEL_MIN_WORK``) of work: input values scanned plus output values times taps."""
    kernel = native_kernel()
    n = x.shape[0]
    work = x.numel() + out.numel() * geometry[6] * geometry[7]
    least = OPENMP_MIN_WORK if kernel_threads() == "openmp" else PARALLEL_MIN_WORK
    threads = int(min(torch.get_num_threads(), n, work // least))
    if packed:  # the bias's row length, the chunk, the events listed at once
        f_in = geometry[2]
        budget = max(f_in, min(LINEAR_GROUP_EVENTS, -(-n // max(threads, 1)) * f_in))
        geometry = (*geometry, _line_length(geometry[5], x.element_size()), packed, budget)
    else:
        geometry = (*geometry, weight.shape[-1])  # the padded row length
    args = (x.data_ptr(), weight.data_ptr(), 0 if bias is None else bias.data_ptr(), out.data_ptr(),
            x.dtype == torch.float64)
    if threads < 2:
        kernel.conv(*args, 0, n, 1, *geometry)
        return
    # interleaved samples: the rows of a block are its time steps, whose activity varies
    run_split(kernel.conv, [(*args, i, n, threads, *geometry) for i in range(threads)])


# Below this many neuron updates (ticks x neurons) per thread, one thread does them all.
NEURON_MIN_WORK = 400_000


def native_neuron_block(current: torch.Tensor, v: torch.Tensor, out: torch.Tensor, steps: int,
                        static: bool, theta: torch.Tensor | float, beta: torch.Tensor | float | None,
                        reset_zero: bool,
                        counts: torch.Tensor | None = None, u_out: torch.Tensor | None = None) -> bool:
    """IF/LIF neurons over ``steps`` ticks in the compiled kernel, the same arithmetic as
    :meth:`snnedge.neurons.SpikingNeuron._block_inplace` in one pass per block instead of
    three tensor passes per tick: ``v`` updated in place, spikes written to ``out`` and, when
    ``counts`` (one sample's shape, in ``v``'s layout and dtype) is given, added to it summed
    over ticks and samples; ``u_out`` (laid out as ``out``), when given, gets the membrane
    before reset of every tick (what training saves for its backward pass). Returns False
    (nothing done) where the kernel does not apply: not built, not a float32/64 CPU tensor,
    or layouts that differ between the current, the membrane, the spikes and the counts."""
    kernel = native_kernel()
    if kernel is None or v.device.type != "cpu" or v.dtype not in (torch.float32, torch.float64):
        return False
    if current.dtype != v.dtype or out.dtype != v.dtype or v.dim() == 0 or v.shape[0] == 0:
        return False
    if not (v.is_contiguous() or v.is_contiguous(memory_format=torch.channels_last)):
        return False
    first = current if static else current[0]
    if first.shape != v.shape or first.stride() != v.stride() or out[0].stride() != v.stride():
        return False
    if counts is not None and (counts.dtype != v.dtype or counts.shape != v.shape[1:]
                               or counts.stride() != v[0].stride()):
        return False
    if u_out is not None and (u_out.dtype != v.dtype or u_out.shape != out.shape
                              or u_out.stride() != out.stride()):
        return False
    batch = v.shape[0]
    size = v.numel() // batch
    theta_map, beta_map = parameter_maps(v, theta, beta)
    args = (current.data_ptr(), v.data_ptr(), out.data_ptr(), theta_map.data_ptr(),
            0 if beta_map is None else beta_map.data_ptr(), 0 if counts is None else counts.data_ptr(),
            v.dtype == torch.float64, reset_zero, steps)
    # (a block of one tick reads no stride; a size-1 dimension's own may be anything)
    tail = (size, 0 if static else (current.stride(0) if steps > 1 else v.numel()),
            out.stride(0) if steps > 1 else v.numel(), 0 if u_out is None else u_out.data_ptr())
    threads = int(min(torch.get_num_threads(), steps * v.numel() // NEURON_MIN_WORK))
    if threads < 2:
        kernel.neuron(*args, 0, batch, 0, size, *tail)
        return True
    # split samples, else (or when counting) each sample's neurons, in whole vectors
    if batch >= threads and counts is None:
        parts = [(batch * i // threads, batch * (i + 1) // threads, 0, size) for i in range(threads)]
    else:
        cut = [min(size, (size * i // threads + 63) // 64 * 64) for i in range(threads)] + [size]
        parts = [(0, batch, a, b) for a, b in zip(cut[:-1], cut[1:])]
    run_split(kernel.neuron, [(*args, *part, *tail) for part in parts])
    return True


# The maps of scalar parameters, kept by value (threshold, decay, a sample's shape and memory
# order, dtype, device): an engine updates the same membrane every block, and filling a map
# the size of a sample each time cost as much as a tenth of the neurons' own pass; a call on
# one sample makes new membranes each time and found none of its maps when they were kept
# per membrane. The kernels only read them. At most SCALAR_MAP_BYTES, least recently used
# dropped first.
SCALAR_MAP_BYTES = 64 << 20
_SCALAR_MAPS: "collections.OrderedDict[tuple, list]" = collections.OrderedDict()


def parameter_maps(v: torch.Tensor, theta, beta) -> list[torch.Tensor | None]:
    """Threshold and decay (None for IF) as one value per element of a sample, in ``v``'s
    memory order (the kernels read them in that order). Maps of scalars (floats) are kept
    for later calls with the same values, sample shape and layout (read-only)."""
    if isinstance(theta, float) and (beta is None or isinstance(beta, float)):
        key = (theta, beta, tuple(v.shape[1:]), v.stride()[1:], v.dtype, v.device)
        maps = _SCALAR_MAPS.get(key)
        if maps is None:
            maps = _SCALAR_MAPS[key] = _fill_maps(v, theta, beta)
            size = sum(m.numel() * m.element_size() for m in maps if m is not None)
            while len(_SCALAR_MAPS) > 1 and sum(
                    m.numel() * m.element_size() for ms in _SCALAR_MAPS.values()
                    for m in ms if m is not None) > max(SCALAR_MAP_BYTES, size):
                _SCALAR_MAPS.popitem(last=False)
        else:
            _SCALAR_MAPS.move_to_end(key)
        return maps
    return _fill_maps(v, theta, beta)


def _fill_maps(v: torch.Tensor, theta, beta) -> list[torch.Tensor | None]:
    maps = []
    for p in (theta, beta):
        if p is None:
            maps.append(None)
            continue
        m = torch.empty_like(v[:1])
        maps.append(m.fill_(p) if isinstance(p, float) else m.copy_(torch.as_tensor(p).to(v).expand_as(m)))
    return maps


def _conv_geometry(module: nn.Conv2d, h: int, w: int) -> tuple[int, ...]:
    """``(OH, OW, KH, KW, SH, SW, PH, PW, DH, DW)`` of ``module`` on an ``h`` x ``w`` input,
    with ``PH``, ``PW`` the zeros before the input (``"same"`` may pad one more after it:
    the output size already counts that, and the kernel skips taps outside the input).
    Cached per input size, as the tap table is."""
    slot = _CACHE.setdefault(module, {})
    key = ("geometry", h, w)
    if key not in slot:
        ay, ax = module_axes(module, (h, w))
        slot[key] = (ay.size_out, ax.size_out, ay.kernel, ax.kernel, ay.stride, ax.stride,
                     ay.pad_lo, ax.pad_lo, ay.dilation, ax.dilation)
    return slot[key]


def _conv_taps(module: nn.Conv2d, h: int, w: int, device) -> tuple[torch.Tensor, int, int]:
    """For each input position ``y * w + x`` and tap ``ky * kw + kx``: the output position
    ``oy * ow + ox`` it reaches, or ``oh * ow`` (a spare row) when it reaches none."""
    key = ("taps", h, w, str(device))
    slot = _CACHE.setdefault(module, {})
    if key not in slot:
        ay, ax = module_axes(module, (h, w))
        oy = torch.from_numpy(ay.reach()).view(h, 1, ay.kernel, 1)
        ox = torch.from_numpy(ax.reach()).view(1, w, 1, ax.kernel)
        oh, ow = ay.size_out, ax.size_out
        pos = torch.where((oy >= 0) & (ox >= 0), oy * ow + ox, oh * ow)
        slot[key] = (pos.reshape(h * w, ay.kernel * ax.kernel).to(device), oh, ow)
    return slot[key]


def event_conv2d(module: nn.Conv2d, x: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """``module(x)`` computed from the non-zero entries of ``x`` ``(N, C_in, H, W)``; the
    output is channels-last.

    ``backend``: ``"native"``, ``"scipy"`` or ``"torch"`` (see the module docstring;
    default: the fastest available)."""
    n, c_in, h, w = x.shape
    if _use_native(backend, x):
        oh, ow, *window = _conv_geometry(module, h, w)
        # the kernel's weight and bias under one key: one look-up per call (each checks the stamp)
        kernel, bias = _cached(module, ("kernel_hwio", x.dtype), lambda: (_line_padded(
            module.weight.detach().permute(2, 3, 1, 0).to(x.dtype)), _bias_of(module, x.dtype)))
        out = torch.empty(n, oh, ow, module.out_channels, dtype=x.dtype)
        x_cl = x.permute(0, 2, 3, 1).contiguous()  # no copy for a channels-last input
        _native_run(x_cl, kernel, bias, out, (h, w, c_in, oh, ow, module.out_channels, *window))
        return out.permute(0, 3, 1, 2)
    taps, oh, ow = _conv_taps(module, h, w, x.device)
    k = taps.shape[1]
    positions = oh * ow  # taps that fall off the map reach position ``positions``
    c_out = module.out_channels
    if not is_channels_last(x):
        flat = x.reshape(-1)  # (b, c, y, x) order
        idx = flat.nonzero().squeeze(1)
        bc = torch.div(idx, h * w, rounding_mode="floor")
        pos = idx - bc * (h * w)
        b = torch.div(bc, c_in, rounding_mode="floor")
        c = bc - b * c_in
    else:  # channels-last input, read in place: (b, y, x, c) order
        flat = x.permute(0, 2, 3, 1).reshape(-1)
        idx = flat.nonzero().squeeze(1)
        bp = torch.div(idx, c_in, rounding_mode="floor")
        c = idx - bp * c_in
        b = torch.div(bp, h * w, rounding_mode="floor")
        pos = bp - b * (h * w)
    reach = taps[pos]
    # output rows (b, oy, ox); a tap that falls off the map goes to its sample's spare row
    # after all the real ones, so the real rows form one channels-last block
    rows = torch.where(reach < positions, (b * positions).unsqueeze(1) + reach,
                       (n * positions + b).unsqueeze(1)).reshape(-1)
    cols = ((c * k).unsqueeze(1) + torch.arange(k, device=x.device)).reshape(-1)
    vals = flat[idx].unsqueeze(1).expand(-1, k).reshape(-1)
    # kernel matrix: row (c, ky, kx) holds W[:, c, ky, kx]
    kernel = _cached(module, ("kernel", x.dtype), lambda: module.weight.detach().permute(1, 2, 3, 0)
                     .reshape(c_in * k, c_out).to(x.dtype).contiguous())
    groups = b.unsqueeze(1).expand(-1, k).reshape(-1)  # entries come sample by sample
    out = sparse_times_dense(rows, cols, vals, (n * positions + n, c_in * k), kernel, backend, groups)
    # (b, oy, ox, c_out) rows: the output as a channels-last (N, C_out, OH, OW) tensor, no copy
    out = out[:n * positions].view(n, oh, ow, c_out).permute(0, 3, 1, 2)
    if module.bias is not None:
        out.add_(module.bias.detach().to(x.dtype).view(1, -1, 1, 1))
    return out


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` is a 4-D tensor stored channels-last (and not also plain contiguous)."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


__all__ = ["event_apply", "event_linear", "event_conv2d", "event_density_limit", "event_path_exists", "over_copy_cap", "is_channels_last",
           "native_kernel", "native_isas", "native_neuron_block", "parameter_maps", "set_native_isa", "NATIVE_ISAS", "NATIVE_REVISION"]
