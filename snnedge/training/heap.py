"""Large tensors reused from the heap while :func:`snnedge.fit` trains (glibc only).

Training folds time into the batch: one convolution over ``T x B`` rows, one neuron block
writing ``T`` steps. Its activations are tens to hundreds of MB each (``zoo_allconv_strided``
at batch 128, T = 8: 103 MB for one layer's spikes), allocated and freed again every step.
glibc's ``malloc`` serves any block above its mmap threshold (at most 32 MiB on 64-bit, even
when raised by hand) with a fresh ``mmap``, and the kernel then faults every 4 KiB page in on
first touch: that network's training step took 1.94 s, and 1.61 s with the blocks kept on
the heap; its neuron blocks' forward passes 601 and 229 ms over three steps (torch's
profiler, one thread, AMD EPYC without AVX-512; examples/benchmarks/RESULTS.md, issue 16
section 14). A loop of one step at a time (snnTorch's) allocates 8x smaller tensors, which
glibc's own threshold already keeps on the heap.

:func:`heap_for_large_blocks` switches ``mmap`` off for ``malloc`` (``M_MMAP_MAX = 0``) and
keeps freed memory in the process (``M_TRIM_THRESHOLD``) for the duration of ``fit``, then
restores glibc's defaults and returns the free memory to the system (``malloc_trim``). Not
done where the C library is not glibc, where the user configured malloc through its
environment variables (``MALLOC_MMAP_MAX_``, ``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``), or with ``SNNEDGE_HEAP=off``. Setting
either parameter ends glibc's dynamic threshold for the rest of the process (as
``mallopt`` always does); the threshold then stays where it had risen.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

# glibc's malloc.h and its defaults (malloc/malloc.c: DEFAULT_MMAP_MAX, DEFAULT_TRIM_THRESHOLD)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_MMAP_MAX, DEFAULT_TRIM_THRESHOLD = 65536, 128 * 1024
USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                 "MALLOC_TOP_PAD_")


def glibc() -> ctypes.CDLL | None:
    """The running glibc, or None (another C library, or not Linux)."""
    try:
        libc = ctypes.CDLL(None)
        version = libc.gnu_get_libc_version
        libc.mallopt, libc.malloc_trim  # noqa: B018  (both must exist)
    except (OSError, AttributeError):
        return None
    version.restype = ctypes.c_char_p
    return libc if version() else None


def wanted() -> bool:
    """Whether :func:`heap_for_large_blocks` changes anything in this process."""
    if os.environ.get("SNNEDGE_HEAP", "").lower() in ("off", "0", "false", "no"):
        return False
    return not any(k in os.environ for k in USER_SETTINGS)


@contextlib.contextmanager
def heap_for_large_blocks(libc: ctypes.CDLL | None = None) -> Iterator[bool]:
    """Inside the block, ``malloc`` serves large blocks from the heap and keeps freed memory
    (see the module docstring); yields whether it did. The setting is the process's: other
    threads that allocate meanwhile share it."""
    libc = libc if libc is not None else (glibc() if wanted() else None)
    if libc is None:
        yield False
        return
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield True
    finally:
        libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
        libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)
