"""``snnedge sweep CONFIG``: T values x encodings x networks as independent jobs, one report.

A config file (TOML or JSON; paths in it are relative to the file's folder)::

    # sweep.toml
    networks = ["snn.pt", "snn_max.pt"]   # files written by `snnedge convert` (required)
    data = "test.npz"                     # samples x and labels y (required)
    timesteps = [8, 16, 32]               # default [32]
    encodings = ["direct", "poisson"]     # default ["direct"]; also "latency"
    targets = ["truenorth", "dynap-cnn"]  # default: every registered profile; or profile files
    baselines = ["cpu", "eyeriss"]        # default: every registered baseline; [] for none
    engine = "auto"                       # simulate's engine (default "auto")
    batch_size = 256
    seed = 0
    device = "cpu"                        # or "cuda" (each torchrun rank on cuda:LOCAL_RANK)
    out = "sweep-report"                  # the report folder (-o overrides it)

Each job is one network at one ``T`` with one encoding: :func:`snnedge.simulate` once, then
:func:`neuromorphic_targets.compare` maps the network onto every target and estimates its
energy from that simulation (the targets share the job's simulation; the first job of each
network also adds its conventional baseline rows). Jobs are independent, so under
``torchrun`` they spread over the ranks (the longest first, each to the least loaded rank;
:func:`assign`) with ``torch.distributed`` only; the rows come back to rank 0, which writes one
report folder: ``report.md`` (a table of the jobs and one of every row), ``report.json``
(the config, the jobs with the rank that ran each, and every row) and ``accuracy_vs_T.png``
when the data have labels.
"""
from __future__ import annotations

import difflib
import json
import time
import tomllib
from pathlib import Path

import torch

from .. import distributed as dist_glue
from ..io import load_network
from .errors import UsageError
from .inputs import first_line, fit_shape, load_data
from .report import say, write_report

CONFIG_HELP = ("CONFIG is a TOML or JSON file with the keys: networks (list of files written "
               "by 'snnedge convert', required), data (a data file, required), timesteps (list "
               "of integers, default [32]), encodings (direct, poisson, latency; default "
               "[direct]), targets (profile names or files; default all), baselines (default "
               "all; [] for none), engine, batch_size, seed, device and out. Paths are relative "
               "to the config file.")
ENCODINGS = ("direct", "poisson", "latency")
DEFAULTS = {"timesteps": [32], "encodings": ["direct"], "targets": None, "baselines": None,
            "engine": "auto", "batch_size": 256, "seed": 0, "device": None, "out": "sweep-report"}
REQUIRED = ("networks", "data")


# --------------------------------------------------------------------------------------
# the config file
# --------------------------------------------------------------------------------------
def _names(value, key: str, where: str, choices=None) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise UsageError(f"{where}: key {key!r} must be a list of names, such as "
                         f"{key} = [\"a\", \"b\"]. Got {value!r}.")
    for v in value:
        if choices is not None and v not in choices:
            raise UsageError(f"{where}: key {key!r} holds {v!r}; valid values: "
                             f"{', '.join(choices)}.")
    return value


def _int(value, key: str, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{where}: key {key!r} must be an integer >= {minimum}. Got {value!r}.")
    return value


def read_config(path: str | Path) -> dict:
    """The checked config of a sweep: every key of :data:`DEFAULTS` and :data:`REQUIRED`, with
    paths resolved against the file's folder. Each problem is a :class:`UsageError` naming the
    file and the key."""
    from ..simulate import ENGINES

    path = Path(path)
    where = f"sweep config {str(path)!r}"
    if not path.is_file():
        raise UsageError(f"{where} does not exist; write one (see 'snnedge sweep --help').")
    try:
        if path.suffix.lower() == ".toml":
            raw = tomllib.loads(path.read_text())
        elif path.suffix.lower() == ".json":
            raw = json.loads(path.read_text())
        else:
            raise UsageError(f"{where} must be a .toml or .json file.")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{where} is not valid {path.suffix[1:].upper()}: {first_line(e)}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{where} must hold a table of keys. Got a {type(raw).__name__}.")
    valid = (*REQUIRED, *DEFAULTS)
    for key in raw:
        if key not in valid:
            near = difflib.get_close_matches(key, valid, n=1)
            raise UsageError(f"{where}: unknown key {key!r}" + (f" (did you mean {near[0]!r}?)" if near
                             else "") + f"; valid keys: {', '.join(valid)}.")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise UsageError(f"{where}: missing key {missing[0]!r}; " + (
            "list the network files written by 'snnedge convert': networks = [\"snn.pt\"]."
            if missing[0] == "networks" else "name the data file: data = \"test.npz\"."))
    cfg = {**DEFAULTS, **raw}
    folder = path.parent
    cfg["networks"] = [str(folder / p) for p in _names(cfg["networks"], "networks", where)]
    if not isinstance(cfg["data"], str) or not cfg["data"]:
        raise UsageError(f"{where}: key 'data' must be a file name. Got {cfg['data']!r}.")
    cfg["data"] = str(folder / cfg["data"])
    steps = cfg["timesteps"] if isinstance(cfg["timesteps"], list) else [cfg["timesteps"]]
    cfg["timesteps"] = sorted({_int(t, "timesteps", where, 1) for t in steps})
    if not cfg["timesteps"]:
        raise UsageError(f"{where}: key 'timesteps' is empty; give at least one, e.g. [32].")
    cfg["encodings"] = list(dict.fromkeys(_names(cfg["encodings"], "encodings", where, ENCODINGS)))
    for key in ("targets", "baselines"):
        if cfg[key] is not None:
            cfg[key] = [] if cfg[key] == [] else _names(cfg[key], key, where)
    if cfg["targets"]:
        cfg["targets"] = [str(folder / t) if t.lower().endswith((".toml", ".json")) else t
                          for t in cfg["targets"]]
    if cfg["engine"] not in ENGINES:
        raise UsageError(f"{where}: key 'engine' must be one of {', '.join(ENGINES)}. "
                         f"Got {cfg['engine']!r}.")
    cfg["batch_size"] = _int(cfg["batch_size"], "batch_size", where, 1)
    cfg["seed"] = _int(cfg["seed"], "seed", where, 0)
    if cfg["device"] is not None and not isinstance(cfg["device"], str):
        raise UsageError(f"{where}: key 'device' must be a name such as \"cpu\" or \"cuda\". "
                         f"Got {cfg['device']!r}.")
    if not isinstance(cfg["out"], str) or not cfg["out"]:
        raise UsageError(f"{where}: key 'out' must be a folder name. Got {cfg['out']!r}.")
    cfg["out"] = str(folder / cfg["out"])
    return cfg


# --------------------------------------------------------------------------------------
# jobs
# --------------------------------------------------------------------------------------
def jobs_of(cfg: dict) -> list[dict]:
    """Every (network, T, encoding), networks outermost, in a fixed order."""
    return [{"job": i, "network": n, "timesteps": t, "encoding": e}
            for i, (n, t, e) in enumerate((n, t, e) for n in cfg["networks"]
                                          for t in cfg["timesteps"] for e in cfg["encodings"])]


def assign(jobs: list[dict], world_size: int) -> list[int]:
    """The rank of each job: the longest (largest ``T``) first, each to the rank with the least
    ``T`` so far (ties to the lower rank). Deterministic, so every rank computes the same."""
    load = [0] * world_size
    ranks = [0] * len(jobs)
    for j in sorted(range(len(jobs)), key=lambda j: (-jobs[j]["timesteps"], j)):
        r = min(range(world_size), key=lambda k: (load[k], k))
        ranks[j] = r
        load[r] += jobs[j]["timesteps"]
    return ranks


def _targets_and_baselines(cfg: dict) -> tuple[list, list]:
    from neuromorphic_targets.baselines import BASELINES
    from neuromorphic_targets.profile_io import load_profile
    from neuromorphic_targets.profiles import PROFILES

    where = "sweep config"
    targets = []
    for t in cfg["targets"] if cfg["targets"] is not None else list(PROFILES):
        if t in PROFILES:
            targets.append(t)
        elif t.lower().endswith((".toml", ".json")) and Path(t).is_file():
            try:
                targets.append(load_profile(t))
            except (ValueError, TypeError, KeyError) as e:
                raise UsageError(f"{where}: target file {t!r}: {first_line(e)}") from None
        else:
            raise UsageError(f"{where}: key 'targets' holds unknown target {t!r}; valid targets: "
                             f"{', '.join(PROFILES)} (or a profile file, .toml or .json).")
    baselines = cfg["baselines"] if cfg["baselines"] is not None else list(BASELINES)
    for b in baselines:
        if b not in BASELINES:
            raise UsageError(f"{where}: key 'baselines' holds unknown baseline {b!r}; valid "
                             f"baselines: {', '.join(BASELINES)}.")
    return targets, baselines


def _load(path: str):
    try:
        return load_network(path, with_metadata=True)
    except FileNotFoundError:
        raise UsageError(f"sweep config: key 'networks': {path!r} does not exist; write it with "
                         f"'snnedge convert MODEL --calibration DATA -o {path}'.") from None
    except (ValueError, TypeError) as e:
        raise UsageError(f"sweep config: key 'networks': {path!r}: {first_line(e)}") from None


def run_job(job: dict, cfg: dict, net, meta: dict, x, y, targets, baselines,
            device: torch.device | None) -> tuple[dict, list[dict]]:
    """Simulate one job and compare it on every target: ``(job summary, rows)``."""
    from neuromorphic_targets.compare import compare

    from ..ops import OpCount
    from ..simulate import simulate

    start = time.perf_counter()
    try:
        res = simulate(net, x, timesteps=job["timesteps"], encoding=job["encoding"],
                       engine=cfg["engine"], batch_size=cfg["batch_size"], seed=cfg["seed"],
                       device=device, labels=y, progress=False)
    except (ValueError, TypeError) as e:
        raise UsageError(f"sweep job {job['job']} ({Path(job['network']).name}, "
                         f"T={job['timesteps']}, {job['encoding']}): {first_line(e)}") from None
    ops = OpCount.from_dict(meta["ann_ops"]) if meta.get("ann_ops") else None
    comparison = compare(res, snn=net, targets=targets, baselines=baselines,
                         input_shape=net.input_shape or tuple(x.shape[1:]), ops=ops)
    per = res.per_inference()
    summary = {**job, "accuracy": res.accuracy() if y is not None else None,
               "spikes": per["spikes"], "synaptic_events": per["synaptic_events"],
               "seconds": round(time.perf_counter() - start, 3)}
    rows = [{"network": job["network"], "encoding": job["encoding"], **row}
            for row in comparison.table()]
    return summary, rows


def run_sweep(args) -> None:
    cfg = read_config(args.config)
    out = Path(args.out) if args.out is not None else Path(cfg["out"])
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {str(out)!r} is a file; give a folder for the report.")
    ctx = None
    if args.distributed or dist_glue.launched():
        try:
            ctx = dist_glue.setup("sweep")
        except ValueError as e:
            raise UsageError(first_line(e).replace("sweep(distributed=True)", "sweep --distributed")) from None
    world, rank = (ctx.world_size, ctx.rank) if ctx else (1, 0)
    targets, baselines = _targets_and_baselines(cfg)
    for path in cfg["networks"]:  # on every rank, before any job: the same error everywhere
        if not Path(path).is_file():
            raise UsageError(f"sweep config: key 'networks': {path!r} does not exist; write it "
                             f"with 'snnedge convert MODEL --calibration DATA -o {path}'.")
    x_all, y = load_data(cfg["data"])
    device = None
    if cfg["device"] is not None:
        try:
            device = torch.device(cfg["device"])
        except RuntimeError:
            raise UsageError(f"sweep config: key 'device' {cfg['device']!r} is not a torch device; "
                             f"use cpu or cuda.") from None
        if ctx is not None:
            device = dist_glue.rank_device(ctx, device, torch.device("cpu"))
    jobs = jobs_of(cfg)
    owner = assign(jobs, world)
    first_of = {n: min(j["job"] for j in jobs if j["network"] == n) for n in cfg["networks"]}
    start = time.perf_counter()
    done, rows, cache = [], [], {}
    for job, r in zip(jobs, owner):
        if r != rank:
            continue
        if job["network"] not in cache:
            net, meta = _load(job["network"])
            cache[job["network"]] = (net, meta, fit_shape(x_all, net.input_shape,
                                                          f"data file {cfg['data']!r}"))
        net, meta, x = cache[job["network"]]
        summary, job_rows = run_job(job, cfg, net, meta, x, y, targets,
                                    baselines if first_of[job["network"]] == job["job"] else [],
                                    device)
        done.append({**summary, "rank": rank})
        rows += job_rows
        say(f"sweep{f' rank {rank}' if ctx else ''}: job {job['job'] + 1}/{len(jobs)} "
            f"{Path(job['network']).name} T={job['timesteps']} {job['encoding']}"
            + (f": accuracy {summary['accuracy']:.2%}" if summary["accuracy"] is not None else "")
            + f" ({summary['seconds']:.1f} s)")
    if ctx is not None:
        parts = dist_glue.all_gather_objects((done, rows), ctx)
        done = [d for p, _ in parts for d in p]
        rows = [row for _, p in parts for row in p]
        if not ctx.main:
            return
    done.sort(key=lambda d: d["job"])
    order = {j["job"]: j for j in jobs}
    rows.sort(key=lambda row: (cfg["networks"].index(row["network"]), row["kind"] != "neuromorphic",
                               row["timesteps"] or 0, cfg["encodings"].index(row["encoding"]),
                               row["name"]))
    report = {"config": {**cfg, "config_file": str(args.config)}, "ranks": world,
              "seconds": round(time.perf_counter() - start, 2), "jobs": done, "rows": rows,
              "job_count": len(order)}
    figures = {"accuracy_vs_T.png": _accuracy_plot(done)} if y is not None else {}
    write_report(out, report, _markdown(report), figures)
    say(f"wrote {out}/report.md ({len(done)} jobs, {len(rows)} rows, {world} rank(s))")


def _short(path: str) -> str:
    return Path(path).name


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _markdown(report: dict) -> list[str]:
    cfg = report["config"]
    lines = [f"# snnedge sweep: {cfg['config_file']}", "",
             f"{report['job_count']} jobs ({len(cfg['networks'])} network(s) x "
             f"T {', '.join(map(str, cfg['timesteps']))} x {', '.join(cfg['encodings'])}) on "
             f"{report['ranks']} rank(s), {report['seconds']} s; data `{cfg['data']}`.", "",
             "## Jobs", "", "| job | network | T | encoding | accuracy | spikes / inference | "
             "synaptic events / inference | rank | seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for d in report["jobs"]:
        acc = "-" if d["accuracy"] is None else f"{d['accuracy']:.2%}"
        lines.append(f"| {d['job']} | {_short(d['network'])} | {d['timesteps']} | {d['encoding']} | "
                     f"{acc} | {d['spikes']:,.1f} | {d['synaptic_events']:,.1f} | {d['rank']} | "
                     f"{d['seconds']:.1f} |")
    lines += ["", "## Every row (targets per job; baselines once per network)", "",
              "| network | encoding | row | model | T | accuracy | energy / inference (J) | "
              "latency (s) | cores | chips | feasible | unknown terms |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        energy = "-" if r["energy_j"] is None else \
            ("" if r["energy_complete"] else ">= ") + f"{r['energy_j']:.3g}"
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.2%}"
        feasible = "-" if r["feasible"] is None else ("yes" if r["feasible"] else "no")
        lines.append(f"| {_short(r['network'])} | {r['encoding'] if r['kind'] == 'neuromorphic' else '-'} | "
                     f"{r['name']} | {r['model']} | {_fmt(r['timesteps'], 'd')} | {acc} | {energy} | "
                     f"{_fmt(r['latency_s'], '.3g')} | {_fmt(r['cores'], ',')} | {_fmt(r['chips'], ',')} | "
                     f"{feasible} | {', '.join(r['missing']) or '-'} |")
    lines += ["", "`>=`: a lower bound (an energy term has no published figure). Sources and "
              "mapping problems of every row are in report.json.", ""]
    return lines


def _accuracy_plot(done: list[dict]):
    from ..plots import figure_and_axes

    fig, ax = figure_and_axes()
    series: dict[tuple, list] = {}
    for d in done:
        series.setdefault((_short(d["network"]), d["encoding"]), []).append((d["timesteps"], d["accuracy"]))
    for (net, enc), points in series.items():
        points.sort()
        ax.plot([t for t, _ in points], [100 * a for _, a in points], marker="o", label=f"{net}, {enc}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time steps T")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy vs time steps")
    ax.legend(fontsize="small")
    return fig
