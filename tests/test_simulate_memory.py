"""Blocks sized from the free memory; what cannot fit is refused before it is allocated."""
import importlib

import pytest
import torch
from torch import nn

import snnedge
from snnedge import memory
from snnedge.engine import MEMORY_FACTOR, MIN_BLOCK_ROWS, block_steps_for, most_block_bytes
from snnedge.memory import available_memory, format_bytes

sim = importlib.import_module("snnedge.simulate")  # the module (snnedge.simulate is the function)

SHAPES = {"0": (8, 32, 32), "1": (8, 32, 32)}  # 16,384 values per sample and step


def test_available_memory_is_known_on_this_cpu():
    free = available_memory("cpu")
    assert free is None or free > 0
    assert format_bytes(3 * 2**30) == "3 GiB" and format_bytes(1536 * 2**10) == "1.5 MiB"


def test_block_steps_default_budget_and_fewest_rows():
    # 16,384 values x batch 100 x 4 bytes = 6.25 MiB per step: 128 MiB hold 20 steps.
    assert block_steps_for(SHAPES, 100, 64, 4) == 20
    # 2**25 values per step (128 MiB at batch 1): the budget holds 1, blocks take 4 steps x 1
    # sample, 2 steps x 2 or 3 samples; at batch 4 (512 MiB per step) 1 step x 4 samples;
    # never more steps than T.
    big = {"0": (2**25,)}
    assert block_steps_for(big, 1, 32, 4) == MIN_BLOCK_ROWS == 4
    assert block_steps_for(big, 2, 32, 4) == 2 and block_steps_for(big, 3, 32, 4) == 2
    assert block_steps_for(big, 4, 32, 4) == 1 and block_steps_for(big, 5, 32, 4) == 1
    assert block_steps_for(big, 1, 2, 4) == 2


def test_blocks_shrink_to_the_free_memory():
    big = {"0": (2**23,)}
    per_step, fixed = 2**23 * 4, 2**23 * 20
    # Room for fixed + MEMORY_FACTOR x 3 steps (but not 4): blocks of 3 steps.
    free = fixed + MEMORY_FACTOR * per_step * 3 + 1
    assert block_steps_for(big, 1, 32, 4, free_bytes=free) == 3
    assert block_steps_for(big, 1, 32, 4, free_bytes=free, requested=2) == 2
    with pytest.raises(MemoryError, match=r"use block_steps <= 3"):
        block_steps_for(big, 1, 32, 4, free_bytes=free, requested=4)


def test_a_batch_that_cannot_fit_is_refused_naming_the_batch_that_does():
    # Per sample: 16,384 values x 4 bytes x (1 + MEMORY_FACTOR) + 16 bytes of counts per value.
    free = 16_384 * 16 + 16_384 * 4 * (1 + MEMORY_FACTOR) * 10
    with pytest.raises(MemoryError) as err:
        block_steps_for(SHAPES, 256, 32, 4, free_bytes=free)
    msg = str(err.value)
    assert "batch of 256" in msg and "use batch_size <= 10" in msg and "can be allocated" in msg
    assert block_steps_for(SHAPES, 10, 32, 4, free_bytes=free) == 1


def test_simulate_refuses_before_allocating(monkeypatch):
    torch.manual_seed(0)
    net = snnedge.sequential(nn.Conv2d(1, 8, 3, padding=1), snnedge.IF(), nn.Flatten(),
                             nn.Linear(8 * 16 * 16, 4), input_shape=(1, 16, 16))
    x = torch.rand(64, 1, 16, 16)
    ran = []
    monkeypatch.setattr(sim, "available_memory", lambda device, need=None: 1_000_000)
    monkeypatch.setattr(sim, "run_batch", lambda *a, **k: ran.append(1))
    with pytest.raises(MemoryError, match=r"batch of 64 .* use batch_size <= \d"):
        snnedge.simulate(net, x, timesteps=4, batch_size=64)
    assert not ran
    monkeypatch.undo()
    res = snnedge.simulate(net, x, timesteps=4, batch_size=64)  # the real free memory holds it
    assert res.num_samples == 64


def test_a_recent_reading_serves_small_needs_only(monkeypatch):
    readings, clock = [], [100.0]
    monkeypatch.setattr(memory, "_cpu_available", lambda: readings.append(1) or 8_000 * len(readings))
    monkeypatch.setattr(memory.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(memory, "_last_cpu_reading", [None, -1.0])
    assert available_memory("cpu", need=10) == 8_000 and len(readings) == 1  # none before
    assert available_memory("cpu", need=1_000) == 8_000 and len(readings) == 1  # 1/8 of it
    assert available_memory("cpu", need=1_001) == 16_000 and len(readings) == 2  # more: read
    assert available_memory("cpu") == 24_000 and len(readings) == 3  # no need given: read
    clock[0] += memory.REUSE_SECONDS
    assert available_memory("cpu", need=1) == 32_000 and len(readings) == 4  # too old: read


def test_most_block_bytes_bounds_what_the_block_rule_checks():
    big = {"0": (2**23,)}
    for requested in (None, 2, 5):
        need = most_block_bytes(big, 1, 32, 4, requested=requested)
        # with that much free, the rule takes the block it takes with no limit at all
        steps = block_steps_for(big, 1, 32, 4, requested=requested)
        assert block_steps_for(big, 1, 32, 4, free_bytes=need, requested=requested) == steps
    # a requested block is checked exactly: a byte less and it is refused
    with pytest.raises(MemoryError):
        block_steps_for(big, 1, 32, 4, free_bytes=most_block_bytes(big, 1, 32, 4, requested=5) - 1,
                        requested=5)
    # the default rule's bound is its largest block, T steps at most 32
    assert most_block_bytes(big, 1, 64, 4) == most_block_bytes(big, 1, 32, 4, requested=32)
