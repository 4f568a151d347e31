"""How much memory a device can still allocate, so simulations size their blocks from it and
refuse, with a clear error and before allocating, what cannot fit (rather than being killed
by the kernel's out-of-memory killer).

CPU: the kernel's estimate of memory available without swapping (``MemAvailable`` in
``/proc/meminfo``: free memory plus reclaimable page cache), lowered to what the process's
cgroup still allows when it has a limit (``memory.max`` / ``memory.limit_in_bytes`` minus
the usage that is not reclaimable cache); elsewhere ``os.sysconf`` free pages. CUDA:
``torch.cuda.mem_get_info``. ``None`` when the platform says nothing.
"""
from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import torch

#: cgroup (v2, v1) limit, usage and statistics files of the current process's group.
CGROUP_FILES = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current",
                 "/sys/fs/cgroup/memory.stat", "inactive_file"),
                ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                 "/sys/fs/cgroup/memory/memory.usage_in_bytes",
                 "/sys/fs/cgroup/memory/memory.stat", "total_inactive_file"))


# A CPU reading is taken again for every call that asks, except where the caller's ``need``
# is a small part of a reading taken moments ago: reading /proc/meminfo and the cgroup's
# files cost 0.25 ms, 5 % of a one-sample simulation of vgg_wide (AMD EPYC Zen 5, 2 threads),
# and a block of a few MiB cannot be refused by any change in the free memory that is likely
# within a second.
REUSE_SECONDS = 1.0
REUSE_FRACTION = 8
_last_cpu_reading: list = [None, -1.0]  # [bytes or None, time.monotonic() of the reading]


def available_memory(device: torch.device | str = "cpu", need: int | None = None) -> int | None:
    """Bytes ``device`` can still allocate (see the module docstring), or ``None``.

    ``need``: the bytes the caller is about to compare with the answer. On a CPU, a reading
    of less than ``REUSE_SECONDS`` ago is returned again while ``need`` is at most
    1 / ``REUSE_FRACTION`` of it (no file is read); otherwise, and without ``need``, a new
    reading."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    last, when = _last_cpu_reading
    now = time.monotonic()
    if (need is not None and last is not None and 0 <= now - when < REUSE_SECONDS
            and need * REUSE_FRACTION <= last):
        return last
    _last_cpu_reading[:] = [_cpu_available(), now]
    return _last_cpu_reading[0]


def _cpu_available() -> int | None:
    found = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    if found:
        return min(found)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``1.5 GiB``, ``300 MiB``: binary units, three significant digits."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    for limit_file, usage_file, stat_file, inactive_key in CGROUP_FILES:
        try:
            text = Path(limit_file).read_text().strip()
            if text == "max" or int(text) >= 2**60:
                continue
            usage = int(Path(usage_file).read_text())
            inactive = 0
            for line in Path(stat_file).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == inactive_key:
                    inactive = int(value)
            return max(0, int(text) - usage + inactive)
        except (OSError, ValueError):
            continue
    return None


#: Where Linux describes CPU 0's caches (one ``index*`` folder per cache: level, type, size).
CPU_CACHE_DIR = "/sys/devices/system/cpu/cpu0/cache"


@functools.lru_cache(maxsize=None)
def cpu_cache_bytes(threads: int = 1, cache_dir: str | os.PathLike = CPU_CACHE_DIR) -> int | None:
    """The caches ``threads`` cores can keep data in: the last level (shared) once, plus each
    core's own data caches below it, read from ``cache_dir`` (Linux sysfs) once per process.
    ``None`` where the platform does not say (then callers use their default)."""
    levels: dict[int, int] = {}
    shared: dict[int, bool] = {}
    try:
        for entry in sorted(Path(cache_dir).glob("index*")):
            if (entry / "type").read_text().strip() == "Instruction":
                continue
            level = int((entry / "level").read_text())
            levels[level] = levels.get(level, 0) + _size_bytes((entry / "size").read_text())
            cpus = (entry / "shared_cpu_list").read_text().strip()
            shared[level] = "," in cpus or "-" in cpus
    except (OSError, ValueError):
        return None
    if not levels:
        return None
    top = max(levels)
    return levels[top] * (1 if shared[top] else threads) + \
        sum(size * threads for level, size in levels.items() if level != top)


def _size_bytes(text: str) -> int:
    """``32768K`` / ``1M`` / ``512`` (sysfs cache sizes) in bytes."""
    text = text.strip()
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:].upper(), 1)
    return int(text[:-1] if scale != 1 else text) * scale
