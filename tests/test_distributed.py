"""torch.distributed: real torchrun launches of 2 CPU processes (gloo) give one process's
results for simulate (uneven shards, every input kind), convert and a short fit; bad input
gets clear errors; shards cover every sample once; the sweep command and its config.

One launch of tests/distributed_worker.py runs in the default suite (a few seconds); the
command line under torchrun and the DataLoader and 3-rank cases are marked slow.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import snnedge
from snnedge import distributed as dist_glue
from snnedge.cli import main

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))
import distributed_worker as worker  # noqa: E402


def torchrun(args: list[str], nproc: int = 2, cwd: Path = ROOT, timeout: int = 600,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=nproc ARGS`` with one thread per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f"torchrun {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def launch_worker(out: Path, checks: list[str], nproc: int = 2) -> list[dict]:
    # engine "auto" by the fitted rule (SNNEDGE_AUTO_PATH=limit): its choices, unlike timed
    # ones, are the same in the ranks and in this process, so results compare bit for bit
    torchrun([str(TESTS / "distributed_worker.py"), str(out), *checks], nproc=nproc,
             env={"SNNEDGE_AUTO_PATH": "limit"})
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(nproc)]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each of 2 ranks found in one launch: simulate, convert, fit and the errors."""
    return launch_worker(tmp_path_factory.mktemp("dist"), ["simulate", "convert", "fit", "errors"])


def assert_same(got, want, path="") -> None:
    """Equal, tensors bit for bit (dtype and shape included)."""
    if isinstance(want, torch.Tensor):
        assert isinstance(got, torch.Tensor) and got.dtype == want.dtype, path
        assert torch.equal(got, want), f"{path}: max difference {(got - want).abs().max()}"
    elif isinstance(want, dict):
        assert set(got) == set(want), path
        for k in want:
            assert_same(got[k], want[k], f"{path}.{k}")
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


# -- simulate ---------------------------------------------------------------------------
def test_simulate_on_two_ranks_equals_one_process(ranks, limit_policy):
    single = worker.run_simulate(distributed=False)
    for r, found in enumerate(ranks):
        for name in worker.SIMULATE_RUNS:
            got = dict(found["simulate"][name])
            got.pop("distributed")
            assert_same(got, single[name], f"rank {r} {name}")


def test_auto_engine_layers_are_chosen_on_batch_0_for_every_rank(ranks):
    # rank 1 alone would pick event layers on its dark batches; it runs batch 0's choice
    got = ranks[1]["simulate"]["skewed-auto"]
    assert got["event_layers"] == [[]] * 11 and got["engine"] == "dense"


def test_uneven_shards_split_whole_batches(ranks):
    # 1,001 samples in 11 batches of 100: 6 batches to rank 0, 5 to rank 1; the loader's own
    # batches of 64: 16 batches, 8 each
    info = ranks[0]["simulate"]
    assert info["tensor-direct"]["distributed"]["rank_samples"] == [600, 401]
    assert info["loader-latency"]["distributed"]["rank_samples"] == [512, 489]
    # a list of 14 batches of 70 and one of 21: 8 batches to rank 0, 7 to rank 1
    assert info["list-poisson"]["distributed"]["rank_samples"] == [560, 441]
    assert info["tensor-direct"]["num_samples"] == 1001
    # what travels: outputs, predictions and labels of every sample in float64, padded rows
    d = info["tensor-direct"]["distributed"]
    assert d["gather_bytes"] == 2 * 600 * (5 + 8 + 1) * 8
    assert d["reduce_bytes"] == (64 + 4 * 8 * 8 + 16) * 8  # input + both neuron layers


def test_each_rank_runs_one_thread(ranks):
    assert [found["threads"] for found in ranks] == [1, 1]


# -- convert ----------------------------------------------------------------------------
def test_convert_on_two_ranks_equals_one_process(ranks):
    # percentiles of the union, exactly, also when the values are subsampled (each rank
    # replays the random draws of the batches before its own)
    single = worker.run_convert(distributed=False)
    for r, found in enumerate(ranks):
        for name in worker.CONVERT_RUNS:
            assert_same(found["convert"][name]["state"], single[name]["state"], f"rank {r} {name}")
            assert found["convert"][name]["scales"] == single[name]["scales"]


# -- fit ---------------------------------------------------------------------------------
def test_fit_on_two_ranks_follows_one_process(ranks):
    single = worker.run_fit(distributed=False)
    for name in worker.FIT_RUNS:
        s0, s1 = ranks[0]["fit"][name]["state"], ranks[1]["fit"][name]["state"]
        assert_same(s1, s0, f"{name}: rank 1 against rank 0")  # DDP: identical weights
        for k, want in single[name]["state"].items():
            # the same batches and gradients, summed in another order: float64 rounding only
            torch.testing.assert_close(s0[k], want, rtol=1e-10, atol=1e-12, msg=f"{name} {k}")
        got, want = ranks[0]["fit"][name]["history"], single[name]["history"]
        assert got["accuracy"] == want["accuracy"] and got["val_accuracy"] == want["val_accuracy"]
        np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-10)
        np.testing.assert_allclose(got["val_loss"], want["val_loss"], rtol=1e-10)
        assert ranks[1]["fit"][name]["history"] == got
    assert single["full"]["history"]["accuracy"][-1] > 0.6  # it learns (3 classes)


def test_checkpoints_are_written_by_rank_0_only(ranks):
    assert [f for f in ranks[1]["files"] if f.startswith("ckpt")] == ["ckpt0.pt"]


# -- bad input ---------------------------------------------------------------------------
def test_a_network_that_differs_between_ranks_is_refused(ranks):
    for found in ranks:
        for key, where in (("different_network", "simulate"), ("different_network_fit", "fit")):
            msg = found["errors"][key]
            assert msg.startswith(f"ValueError: {where}(distributed=True): the network (hash of "
                                  f"its state dict) differs between ranks (rank 1 against rank 0)")
            assert "torch.manual_seed" in msg


def test_data_that_differs_between_ranks_is_refused(ranks):
    assert "the input data (hash of x and labels) differs between ranks" in \
        ranks[0]["errors"]["different_data"]


def test_a_dataloader_with_its_own_sampler_is_refused(ranks):
    msg = ranks[0]["errors"]["shuffled_loader"]
    assert msg.startswith("ValueError: simulate(distributed=True) got a DataLoader with its own "
                          "sampler (RandomSampler: shuffle=True)")
    assert "shuffle=False" in msg
    msg = ranks[1]["errors"]["loader_with_sampler_fit"]
    assert msg.startswith("ValueError: fit(distributed=True) got a DataLoader with its own "
                          "sampler (WeightedRandomSampler)")


@pytest.fixture
def no_torchrun(monkeypatch):
    for v in dist_glue.TORCHRUN_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    assert not torch.distributed.is_initialized()


def test_distributed_without_torchrun_says_how_to_launch(no_torchrun):
    from converters import convert
    net = worker.network()
    x, y = worker.simulate_data()
    calls = {"simulate": lambda: snnedge.simulate(net, x[:4], timesteps=2, distributed=True),
             "fit": lambda: snnedge.fit(net, (x[:4], y[:4]), timesteps=2, distributed=True,
                                        progress=False),
             "convert": lambda: convert(worker.ann(), x[:8].float(), distributed=True)}
    for where, call in calls.items():
        with pytest.raises(ValueError, match=rf"^{where}\(distributed=True\) needs a torch."
                                             r"distributed process group.*torchrun "
                                             r"--nproc_per_node=2"):
            call()


def test_command_line_without_torchrun_says_how_to_launch(no_torchrun, tmp_path, capsys):
    snnedge.save_network(worker.network(), tmp_path / "snn.pt")
    x, y = worker.simulate_data()
    np.savez(tmp_path / "data.npz", x=x[:10].numpy(), y=y[:10].numpy())
    assert main(["simulate", str(tmp_path / "snn.pt"), "--data", str(tmp_path / "data.npz"),
                 "--distributed"]) == 2
    assert "torchrun --nproc_per_node=2" in capsys.readouterr().err


def test_simulate_distributed_refuses_brian2():
    with pytest.raises(ValueError, match="engine 'brian2' runs in one process"):
        snnedge.simulate(worker.network(), torch.rand(2, 1, 8, 8), timesteps=2, engine="brian2",
                         distributed=True)


# -- shards ------------------------------------------------------------------------------
@pytest.mark.parametrize("world", range(1, 10))
def test_batch_ranges_cover_every_batch_once(world):
    for n in range(0, 40):
        parts = [dist_glue.batch_range(n, dist_glue.Context(r, world, r, "gloo"))
                 for r in range(world)]
        assert [b for p in parts for b in p] == list(range(n))  # in order, none twice or lost
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_sample_ranges_are_whole_batches():
    ctx = [dist_glue.Context(r, 2, r, "gloo") for r in range(2)]
    assert [dist_glue.sample_range(1001, 100, c) for c in ctx] == [(range(0, 600), 0),
                                                                   (range(600, 1001), 6)]
    assert [dist_glue.sample_range(1, 100, c) for c in ctx] == [(range(0, 1), 0), (range(1, 1), 1)]


def test_large_data_is_fingerprinted_not_hashed_whole(monkeypatch):
    monkeypatch.setattr(dist_glue, "FINGERPRINT_ELEMENTS", 100)
    x = torch.rand(50, 10)
    y = x.clone()
    y[3, 7] += 1e-3  # off the stride of 5 elements: the float64 sum tells them apart
    assert dist_glue.data_fingerprint(x) == dist_glue.data_fingerprint(x.clone())
    assert dist_glue.data_fingerprint(x) != dist_glue.data_fingerprint(y)


def test_simulate_takes_a_dataset_in_one_process_too():
    from torch.utils.data import TensorDataset
    x, y = worker.simulate_data()
    a = snnedge.simulate(worker.network(), TensorDataset(x[:50], y[:50]), timesteps=4,
                         batch_size=20, progress=False)
    b = snnedge.simulate(worker.network(), x[:50], timesteps=4, batch_size=20, labels=y[:50],
                         progress=False)
    assert torch.equal(a.output, b.output) and torch.equal(a.labels, b.labels)


# -- sweep -------------------------------------------------------------------------------
def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ('networks = ["a.pt"]\ndata = "d.npz"\ntimestep = [8]\n',
     "unknown key 'timestep' (did you mean 'timesteps'?)"),
    ('networks = ["a.pt"]\ndata = "d.npz"\ntimesteps = ["8"]\n',
     "key 'timesteps' must be an integer >= 1. Got '8'"),
    ('networks = ["a.pt"]\ndata = "d.npz"\nencodings = ["rate"]\n',
     "key 'encodings' holds 'rate'; valid values: direct, poisson, latency"),
    ('networks = "a.pt"\n', "missing key 'data'"),
    ('data = "d.npz"\n', "missing key 'networks'"),
    ('networks = ["a.pt"]\ndata = "d.npz"\nbatch_size = 0\n', "key 'batch_size' must be an integer >= 1"),
    ('networks = ["a.pt"]\ndata = "d.npz"\nengine = "fast"\n', "key 'engine' must be one of"),
    ('networks = [1]\ndata = "d.npz"\n', "key 'networks' must be a list of names"),
    ('networks = ["a.pt"\n', "is not valid TOML"),
])
def test_sweep_config_errors_name_the_key(tmp_path, text, message):
    from snnedge.cli.errors import UsageError
    from snnedge.cli.sweep import read_config
    with pytest.raises(UsageError, match="sweep config '.*sweep.toml'") as e:
        read_config(write_config(tmp_path / "sweep.toml", text))
    assert message in str(e.value)


def test_sweep_config_json_and_defaults(tmp_path):
    from snnedge.cli.sweep import read_config
    cfg = read_config(write_config(tmp_path / "s.json", json.dumps(
        {"networks": ["n.pt"], "data": "d.npz", "timesteps": [32, 8, 8]})))
    assert cfg["timesteps"] == [8, 32] and cfg["encodings"] == ["direct"]
    assert cfg["networks"] == [str(tmp_path / "n.pt")] and cfg["out"] == str(tmp_path / "sweep-report")
    assert cfg["targets"] is None and cfg["baselines"] is None


def test_sweep_jobs_spread_longest_first():
    from snnedge.cli.sweep import assign, jobs_of
    jobs = jobs_of({"networks": ["a", "b"], "timesteps": [8, 32], "encodings": ["direct"]})
    assert [(j["network"], j["timesteps"]) for j in jobs] == [("a", 8), ("a", 32), ("b", 8), ("b", 32)]
    assert assign(jobs, 2) == [0, 0, 1, 1]  # 32 -> rank 0, 32 -> rank 1, then 8 to each
    assert assign(jobs, 1) == [0, 0, 0, 0]
    assert sorted(assign(jobs, 8)) == [0, 1, 2, 3]


@pytest.fixture(scope="module")
def sweep_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep")
    snnedge.save_network(worker.network().float(), d / "snn.pt")
    x, y = worker.simulate_data()
    np.savez(d / "data.npz", x=x[:120].float().numpy(), y=y[:120].numpy())
    cfg = write_config(d / "sweep.toml", 'networks = ["snn.pt"]\ndata = "data.npz"\n'
                       'timesteps = [4, 8]\nencodings = ["direct", "poisson"]\n'
                       'targets = ["truenorth", "dynap-se"]\nbaselines = ["cpu"]\n'
                       'batch_size = 50\nout = "report"\n')
    return d, cfg


def test_sweep_writes_one_report_with_every_row(sweep_files):
    d, cfg = sweep_files
    assert main(["sweep", str(cfg)]) == 0
    report = json.loads((d / "report" / "report.json").read_text())
    assert [(j["timesteps"], j["encoding"]) for j in report["jobs"]] == [
        (4, "direct"), (4, "poisson"), (8, "direct"), (8, "poisson")]
    targets = [(r["name"], r["timesteps"], r["encoding"]) for r in report["rows"]
               if r["kind"] == "neuromorphic"]
    assert sorted(targets) == sorted((t, s, e) for t in ("truenorth", "dynap-se") for s in (4, 8)
                                     for e in ("direct", "poisson"))
    assert [r["name"] for r in report["rows"] if r["kind"] == "baseline"] == ["cpu"]
    direct = snnedge.simulate(snnedge.load_network(d / "snn.pt"),
                              torch.as_tensor(np.load(d / "data.npz")["x"]), timesteps=8,
                              batch_size=50, labels=torch.as_tensor(np.load(d / "data.npz")["y"]),
                              progress=False)
    assert report["jobs"][2]["accuracy"] == direct.accuracy()
    md = (d / "report" / "report.md").read_text()
    assert "| 2 | snn.pt | 8 | direct |" in md and (d / "report" / "accuracy_vs_T.png").is_file()


# -- slow: the command line under torchrun, a DataLoader, more ranks than batches ----------
@pytest.mark.slow
def test_command_line_under_torchrun_equals_one_process(sweep_files, tmp_path):
    d, cfg = sweep_files
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(TESTS))
        from cli_models import TinyCNN
    torch.manual_seed(0)
    torch.save(TinyCNN().eval().state_dict(), tmp_path / "weights.pt")
    x = torch.rand(203, 1, 8, 8)
    np.savez(tmp_path / "calib.npz", x=x.numpy(), y=(x.mean((1, 2, 3)) * 30 % 3).long().numpy())
    convert = ["convert", "weights.pt", "--class", "cli_models:TinyCNN", "--calibration",
               "calib.npz", "--timesteps", "8"]
    simulate = ["simulate", "snn1.pt", "--data", "calib.npz", "--timesteps", "16",
                "--batch-size", "50", "--no-progress"]
    report = ["report", "snn1.pt", "--data", "calib.npz", "--timesteps", "8", "16", "--targets",
              "truenorth", "--baselines", "cpu", "--no-progress"]
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    for args in (convert + ["-o", "snn1.pt"], simulate + ["-o", "r1.json"], report + ["-o", "rep1"]):
        subprocess.run([sys.executable, "-m", "snnedge", *args], check=True, capture_output=True,
                       cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    outs = [torchrun(["-m", "snnedge", *args, "--distributed"], cwd=tmp_path, env=env) for args in
            (convert + ["-o", "snn2.pt"], simulate + ["-o", "r2.json"], report + ["-o", "rep2"])]
    torchrun(["-m", "snnedge", "sweep", str(cfg), "-o", str(tmp_path / "sweep2")], cwd=tmp_path,
             env=env)
    assert dist_glue.module_digest(snnedge.load_network(tmp_path / "snn1.pt")) == \
        dist_glue.module_digest(snnedge.load_network(tmp_path / "snn2.pt"))
    assert outs[0].stdout.count("converted weights.pt -> snn2.pt") == 1  # printed by rank 0 only
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("r1.json", "r2.json"))
    a.pop("wall_time_s"), b.pop("wall_time_s")
    assert a == b
    a, b = (json.loads((tmp_path / f / "report.json").read_text()) for f in ("rep1", "rep2"))
    assert a["comparison"] == b["comparison"] and a["snn"]["accuracy_by_T"] == b["snn"]["accuracy_by_T"]
    assert main(["sweep", str(cfg), "-o", str(tmp_path / "sweep1")]) == 0
    one, two = (json.loads((tmp_path / f / "report.json").read_text()) for f in ("sweep1", "sweep2"))
    assert sorted(j["rank"] for j in two["jobs"]) == [0, 0, 1, 1]
    assert two["rows"] == one["rows"]


@pytest.mark.slow
def test_readme_script_under_torchrun(tmp_path):
    import re
    text = (ROOT / "README.md").read_text()
    script = re.search(r"```python\n(# save as scale.py.*?)```", text, flags=re.S).group(1)
    (tmp_path / "scale.py").write_text(script)
    out = torchrun(["scale.py"], cwd=tmp_path).stdout
    assert out.count("accuracy ") == 1 and "on 1000 digits" in out  # rank 0 prints, once


@pytest.mark.slow
def test_fit_on_a_shuffling_dataloader_and_three_ranks(tmp_path):
    found = launch_worker(tmp_path, ["fit_loader", "tiny"], nproc=3)
    assert_same(found[1]["fit_loader"]["state"], found[0]["fit_loader"]["state"])
    assert_same(found[2]["fit_loader"]["state"], found[0]["fit_loader"]["state"])
    assert found[0]["fit_loader"]["history"]["accuracy"][0] > 0.3
    single = worker.run_tiny(distributed=False)
    for r in range(3):
        assert_same(found[r]["tiny"], single, f"rank {r}")
