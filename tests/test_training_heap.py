"""snnedge.training.heap: fit's large blocks served from the heap, and glibc's defaults after."""
import os
import subprocess
import sys

import pytest

from snnedge.training import heap


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


def test_settings_inside_and_the_defaults_after():
    libc = FakeLibc()
    with heap.heap_for_large_blocks(libc) as on:
        assert on and libc.calls == [("mallopt", heap.M_MMAP_MAX, 0),
                                     ("mallopt", heap.M_TRIM_THRESHOLD, 2**31 - 1)]
    assert libc.calls[2:] == [("mallopt", heap.M_MMAP_MAX, 65536),
                              ("mallopt", heap.M_TRIM_THRESHOLD, 128 * 1024), ("malloc_trim", 0)]
    with pytest.raises(RuntimeError), heap.heap_for_large_blocks(libc):
        raise RuntimeError("a failed epoch")  # the defaults come back all the same
    assert libc.calls[-3:] == libc.calls[2:5]


@pytest.mark.parametrize("name, value", [("SNNEDGE_HEAP", "off"), ("MALLOC_MMAP_MAX_", "100"),
                                         ("MALLOC_TRIM_THRESHOLD_", "0")])
def test_off_by_request_or_where_the_user_set_malloc(monkeypatch, name, value):
    for k in ("SNNEDGE_HEAP", *heap.USER_SETTINGS):
        monkeypatch.delenv(k, raising=False)
    assert heap.wanted()
    monkeypatch.setenv(name, value)
    assert not heap.wanted()
    with heap.heap_for_large_blocks() as on:
        assert not on


FAULTS = r"""
import resource, torch
from snnedge.training import heap

def second_touch_faults():  # page faults of a fresh 64 MiB tensor after one was freed
    a = torch.ones(16 << 20)
    del a
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    b = torch.ones(16 << 20)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del b
    return faults

outside = second_touch_faults()  # mmap'ed afresh: every page faults in again
with heap.heap_for_large_blocks(heap.glibc()):
    second_touch_faults()  # the heap grows once
    inside = second_touch_faults()
print(outside, inside, second_touch_faults())
"""


def test_a_freed_large_block_is_reused_without_page_faults():
    # in a fresh process: glibc serves a thread from another arena (mmap'ed heaps of at most
    # 64 MiB) once its own was busy, which a long test session's threads may have caused
    if heap.glibc() is None:
        pytest.skip("the C library is not glibc")
    run = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True,
                         check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    outside, inside, after = map(int, run.stdout.split())
    if outside < 64:
        pytest.skip(f"{outside} page faults for 64 MiB: huge pages, nothing to save here")
    assert inside * 4 <= outside and after * 4 > outside * 3, (outside, inside, after)
