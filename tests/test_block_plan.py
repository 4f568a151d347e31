"""How simulate plans its blocks: steps sized by the activations alive at once against the
CPU's caches, and engine "auto" measuring densities less often where the choice is clear."""
import pytest
import torch
from torch import nn

import snnedge
from snnedge import path_choice
from snnedge.engine import (CACHE_BLOCK_FACTOR, MAX_BLOCK_BYTES, MIN_LAYER_CALL_BYTES, DensitySchedule,
                            block_budget, block_steps_for, live_numel)
from snnedge.events import event_path_exists
from snnedge.memory import cpu_cache_bytes
from snnedge.path_choice import density_bucket


def _cache_dir(tmp_path, caches):
    for i, (level, kind, size, cpus) in enumerate(caches):
        d = tmp_path / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
        (d / "shared_cpu_list").write_text(f"{cpus}\n")
    return tmp_path


def test_cpu_cache_bytes_counts_the_shared_level_once_and_private_levels_per_thread(tmp_path):
    d = _cache_dir(tmp_path, [(1, "Data", "32K", "0"), (1, "Instruction", "32K", "0"),
                              (2, "Unified", "1024K", "0"), (3, "Unified", "32768K", "0-1")])
    per_core = 32 * 2**10 + 2**20
    assert cpu_cache_bytes(1, d) == 32 * 2**20 + per_core
    assert cpu_cache_bytes(2, d) == 32 * 2**20 + 2 * per_core


def test_cpu_cache_bytes_without_a_shared_level_and_without_sysfs(tmp_path):
    d = _cache_dir(tmp_path, [(1, "Data", "48K", "0"), (2, "Unified", "2M", "0")])
    assert cpu_cache_bytes(4, d) == 4 * (48 * 2**10 + 2 * 2**20)
    assert cpu_cache_bytes(2, tmp_path / "absent") is None
    cache = cpu_cache_bytes(torch.get_num_threads())
    assert block_budget("cpu") == (int(CACHE_BLOCK_FACTOR * cache) if cache else 128 * 2**20)
    assert block_budget("meta") == 128 * 2**20


def _residual():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
            self.relu2 = nn.ReLU()
            self.fc = nn.Linear(4 * 8 * 8, 3)

        def forward(self, x):
            a = self.relu1(self.conv1(x))
            return self.fc(torch.flatten(self.relu2(self.conv2(a) + a), 1))
    return Res().eval()


def test_live_numel_of_a_chain_holds_two_layers_at_a_time():
    net = snnedge.sequential(nn.Conv2d(1, 4, 3, padding=1), snnedge.IF(), nn.Flatten(),
                             nn.Linear(4 * 8 * 8, 3), input_shape=(1, 8, 8))
    shapes = net.shapes((1, 8, 8))
    # conv (256) and its neurons (256) are alive together; after that at most 256 + 256
    assert live_numel(net, shapes) == 512
    # a kept neuron layer that does not count itself stays to the end of the block: beside
    # the flattened spikes and the readout's 3 values
    assert live_numel(net, shapes, keep=("1",), self_counting=False) == 256 + 256 + 3
    assert live_numel(net, shapes, keep=("1",), self_counting=True) == 512
    assert live_numel(net, shapes) < sum(torch.Size(s).numel() for s in shapes.values())


def test_live_numel_keeps_a_shortcut_alive_until_its_addition():
    from converters import convert
    torch.manual_seed(0)
    snn = convert(_residual(), calibration=torch.rand(16, 1, 8, 8))
    shapes = snn.shapes((1, 8, 8))
    assert list(snn.names) == ["conv1", "relu1", "conv2", "add", "relu2", "flatten", "fc"]
    assert snn.inputs_of("add") == ("conv2", "relu1")
    # 256 values per layer; at the addition the shortcut (relu1), conv2 and the sum are alive
    # at once: 3 x 256. A chain never holds more than 2 x 256 (conv1 + relu1, add + relu2 ...).
    assert live_numel(snn, shapes) == 3 * 256


def test_block_steps_from_the_live_values():
    shapes = {"0": (8, 32, 32), "1": (8, 32, 32), "2": (8, 32, 32), "3": (8, 32, 32)}
    # 4 x 8,192 values per sample and step in all, 8,192 x 2 alive at once; batch 100, 4 bytes
    per_live = 2 * 8192 * 100 * 4
    assert block_steps_for(shapes, 100, 64, 4, budget_bytes=10 * per_live) == 5
    assert block_steps_for(shapes, 100, 64, 4, budget_bytes=10 * per_live, live=2 * 8192) == 10
    # however few values are alive at once, all layers' activations of a block stay within
    # MAX_BLOCK_BYTES: 4 x 8,192 x 100 x 4 bytes = 12.5 MiB per step, 40 steps in 512 MiB, at
    # most 32 steps; at 10x the batch, 4 steps
    assert block_steps_for(shapes, 100, 64, 4, budget_bytes=2**40, live=1) == 32
    assert block_steps_for(shapes, 1000, 64, 4, budget_bytes=2**40, live=1) == \
        MAX_BLOCK_BYTES // (4 * 8192 * 1000 * 4) == 4


def test_thin_layers_get_blocks_whose_calls_pay_for_themselves():
    # 200 layers of 1,024 values per sample (1 x 1 maps, as the end of a DenseNet at 32 px):
    # 0.39 MiB per layer and step at batch 100. Neither the cache budget (1 byte) nor
    # MAX_BLOCK_BYTES (78 MiB per step: 6 steps) holds the block below the steps that give
    # each layer's call MIN_LAYER_CALL_BYTES on average: ceil(4 MiB / 0.39 MiB) = 11.
    shapes = {str(i): (1024, 1, 1) for i in range(200)}
    per_layer = 1024 * 100 * 4
    floor = -(-MIN_LAYER_CALL_BYTES // per_layer)
    assert floor == 11
    assert block_steps_for(shapes, 100, 64, 4, budget_bytes=1, live=2048) == floor
    assert block_steps_for(shapes, 100, 8, 4, budget_bytes=1, live=2048) == 8  # never beyond T
    # without the live values (the old rule) nothing changes: the budget alone
    assert block_steps_for(shapes, 100, 64, 4, budget_bytes=1) == 1
    # fat layers: one step already gives each call its bytes, the bounds above decide
    fat = {str(i): (64, 64, 64) for i in range(4)}  # 100 MiB per layer and step
    assert block_steps_for(fat, 100, 64, 4, budget_bytes=1, live=1) == 1


def _schedule_trace(density, blocks):
    schedule, unmeasured, measured = DensitySchedule(), set(), []
    for b in range(blocks):
        ds = {} if "a" in unmeasured else {"a": density(b)}
        if ds:
            measured.append(b)
        unmeasured = schedule.after_block(ds)
    return measured


def test_a_steady_density_is_measured_at_doubling_gaps_and_a_moving_one_every_block():
    assert _schedule_trace(lambda b: 0.1, 32) == [0, 1, 3, 6, 11, 20]
    assert _schedule_trace(lambda b: 0.1 * 1.5 ** b, 8) == list(range(8))  # a new bucket each block
    # a density that moves to another half-octave resets the gap
    trace = _schedule_trace(lambda b: 0.1 if b < 6 else 0.3, 14)
    assert trace == [0, 1, 3, 6, 7, 9, 12]
    assert density_bucket(0.09) == density_bucket(0.1) != density_bucket(0.15)


def _auto_net():
    torch.manual_seed(0)
    return snnedge.sequential(nn.Linear(50, 200), snnedge.IF(threshold=2.2),
                              nn.Linear(200, 600), snnedge.IF(threshold=0.9),
                              nn.Linear(600, 4))


def test_auto_with_skipped_measurements_gives_the_dense_engines_spikes():
    net, x = _auto_net(), torch.rand(4, 50, generator=torch.Generator().manual_seed(1))
    res = snnedge.simulate(net, x, timesteps=32, engine="auto", block_steps=1)
    ref = snnedge.simulate(net, x, timesteps=32, engine="dense", block_steps=1)
    assert res.spike_counts == ref.spike_counts and torch.allclose(res.output, ref.output, atol=1e-5)
    assert set(res.extra["input_density"][0]) == {"2", "4"}


class FakeClock:
    """A clock under which the dense path takes ``dense`` and the event path ``event`` seconds
    (the timing runs dense first, then events)."""

    def __init__(self, dense, event):
        self.t, self.steps, self.k = 0.0, [dense, event], 0

    def __call__(self):
        self.k += 1
        if self.k % 3 == 2:
            self.t += self.steps[0]
        elif self.k % 3 == 0:
            self.t += self.steps[1]
        return self.t


@pytest.mark.parametrize("dense, event, chosen", [(2.0, 1.0, ["2", "4"]), (1.0, 2.0, [])])
def test_timed_policy_takes_the_path_the_clock_says_is_faster(monkeypatch, dense, event, chosen):
    monkeypatch.setattr(path_choice, "clock", FakeClock(dense, event))
    previous = path_choice.set_path_policy("timed")
    try:
        net, x = _auto_net(), torch.rand(4, 50, generator=torch.Generator().manual_seed(1))
        res = snnedge.simulate(net, x, timesteps=16, engine="auto", block_steps=8)
        assert res.extra["event_layers"] == [chosen]
        ratios = path_choice.timed_ratios(net.layer("2"))
        assert ratios and all(r == pytest.approx(dense / event) for r in ratios.values())
        ref = snnedge.simulate(net, x, timesteps=16, engine="dense", block_steps=8)
        assert res.spike_counts == ref.spike_counts
    finally:
        path_choice.set_path_policy(previous)


def test_timed_ratios_are_kept_per_density_bucket_and_reused(monkeypatch):
    clock = FakeClock(2.0, 1.0)
    monkeypatch.setattr(path_choice, "clock", clock)
    monkeypatch.setattr(path_choice, "_policy", "timed")
    layer = nn.Linear(64, 32)
    x = (torch.rand(40, 64, generator=torch.Generator().manual_seed(2)) < 0.1).float()
    events, y = path_choice.choose_path(layer, x, 0.1)
    # it timed both paths on all 40 rows and hands back the faster's output (the event path's)
    assert events and y is not None and torch.allclose(y, layer(x), atol=1e-6)
    reads = clock.k
    assert path_choice.choose_path(layer, x, 0.09) == (True, None)  # same bucket: kept
    assert clock.k == reads
    assert path_choice.choose_path(layer, x, 0.5)[1] is not None  # another bucket: timed again
    assert clock.k == reads + 3
    ratios = path_choice.timed_ratios(layer)
    assert len(ratios) == 2 and all(r == pytest.approx(2.0) for r in ratios.values())


def test_path_policy_names_are_checked():
    assert path_choice.path_policy() == "limit"  # the default: choices the same in every process
    with pytest.raises(ValueError, match="'timed', 'limit', 'calibrated'"):
        path_choice.set_path_policy("fast")
    assert not event_path_exists(nn.Conv2d(4, 4, 3, groups=2))
    assert not event_path_exists(nn.Linear(4, 4), "meta")
    assert event_path_exists(nn.Conv2d(4, 4, 1))  # timed, even where the rule says dense
