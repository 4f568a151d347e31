"""``snnedge convert``, ``snnedge simulate`` and ``snnedge report`` on a user's own model.

::

    snnedge convert model.pt2 --calibration train.npz --timesteps 32 -o snn.pt
    snnedge simulate snn.pt --data test.npz --timesteps 32 -o results.json
    snnedge report snn.pt --data test.npz --timesteps 32 -o report/

``convert`` writes the spiking network with :func:`snnedge.save_network` (plain data and
tensors, read back with ``weights_only=True``), together with the ANN's operation counts
(:func:`snnedge.count_ops`) that the conventional baselines of ``report`` need. Every file is
written beside its target and moved into place when complete (:mod:`snnedge.cli.report`).
Problems with the user's input raise :class:`~snnedge.cli.errors.UsageError` (one line, exit
code 2). With ``--distributed`` (under torchrun) every rank reads the inputs and takes its
share of the work; only rank 0 prints and writes (:func:`snnedge.distributed.is_main_process`).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from ..distributed import is_main_process
from ..io import save_network
from .errors import UsageError
from .inputs import (first_line, fit_shape, is_exported_program, load_data, load_model, load_snn,
                     parse_shape)
from .report import (TARGETS_HEADING, accounting_section, accuracy_table, activity_section,
                     mapping_section, say, write_json, write_report)


# --------------------------------------------------------------------------------------
# convert
# --------------------------------------------------------------------------------------
def _check_writable(out: Path, example: str) -> None:
    if out.is_dir():
        raise UsageError(f"-o {str(out)!r} is a folder; give a file name, such as "
                         f"{out / example}.")


def _ann_ops(ann, input_shape) -> dict | None:
    """The ANN's operation counts as plain data (a module or an exported program); ``None``
    when they cannot be counted."""
    from ..ops import count_ops

    if not isinstance(ann, (torch.nn.Module, torch.export.ExportedProgram)) or input_shape is None:
        return None
    try:
        ops = count_ops(ann, tuple(input_shape))
    except (TypeError, ValueError):
        return None
    return ops.to_dict() if ops.macs > 0 else None


def _check_fits(ann, x: torch.Tensor, path) -> None:
    """Run the ANN on two samples first: a clear message for data of the wrong shape (and no
    traceback printed by torch.fx's shape propagation inside the conversion)."""
    if not isinstance(ann, torch.nn.Module):
        return  # converters checks an exported program's input shape itself
    try:
        with torch.no_grad():
            ann(x[:2])
    except Exception as e:  # noqa: BLE001 - the user's forward may fail in any way
        raise UsageError(f"calibration file {str(path)!r}: the model cannot take samples of shape "
                         f"{list(x.shape[1:])} ({first_line(e)}); pass samples shaped like the "
                         f"model's input, or --input-shape C,H,W to reshape flat rows.") from None


def _readout_option(value: str) -> str | float:
    """``--readout``: ``"auto"`` or a number (the readout exponent)."""
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise UsageError(f"--readout takes 'auto' or a number >= 0 (the readout exponent, e.g. "
                         f"0 for every step the same). Got {value!r}.") from None


def run_convert(args) -> None:
    from converters import convert

    _check_writable(Path(args.out), "snn.pt")
    ann = load_model(args.model, args.class_spec, args.class_kwargs)
    x, _ = load_data(args.calibration, "calibration file")
    if args.input_shape:
        x = fit_shape(x, parse_shape(args.input_shape), f"calibration file {args.calibration!r}",
                      reshape=True)
    _check_fits(ann, x, args.calibration)
    try:
        snn = convert(ann, calibration=x, normalization=args.normalization,
                      percentile=args.percentile, reset=args.reset, maxpool=args.maxpool,
                      timesteps=args.timesteps, seed=args.seed, distributed=args.distributed,
                      hardware=args.hardware, max_scale_ratio=args.max_scale_ratio,
                      readout=_readout_option(args.readout), phases=args.phases)
    except (ValueError, TypeError) as e:  # UnsupportedLayerError is a TypeError
        raise UsageError(" ".join(str(e).split())) from None
    if not is_main_process():
        return
    info = snn.conversion_
    exported = isinstance(ann, torch.export.ExportedProgram)
    ops = _ann_ops(ann, snn.input_shape)
    meta = {"model": str(args.model), "class": args.class_spec, "exported": exported,
            "calibration": {"file": str(args.calibration), "samples": int(x.shape[0])},
            "ann_ops": ops}
    out = save_network(snn, args.out, metadata=meta)

    shapes = snn.shapes(snn.input_shape)
    neurons = {n: math.prod(shapes[n]) for n in snn.neuron_layers}
    norm = info.normalization + (f" ({info.percentile:g}th percentile)"
                                 if info.normalization in ("percentile", "channelwise") else "")
    err = "not checked" if math.isnan(info.capture_error) else f"{info.capture_error:.2g}"
    lines = [f"converted {args.model} -> {out}",
             f"layers: {len(snn.nodes)} ({len(neurons)} neuron layers, {sum(neurons.values()):,} "
             f"neurons), input {list(snn.input_shape)}, readout {snn.output_name!r}",
             f"normalization: {norm}; reset: {info.reset}; max-pool: {args.maxpool}"
             + (f"; converted for {info.hardware!r}" if info.hardware else "")
             + (f"; channel scales within a ratio of {info.max_scale_ratio:g}"
                if info.max_scale_ratio is not None else "")
             + (f"; BatchNorm folded: {len(info.folded)}" if info.folded else ""),
             f"calibration: {info.calibration_samples} samples; membrane calibrated at "
             f"T={args.timesteps}; readout: step t of T weighted by (t/T)^"
             f"{info.readout_exponent:g}"
             + (" (chosen on the calibration data)" if info.readout_errors else "")
             + f"; first-layer phases: {info.phases}"
             + (" (chosen on the calibration data)" if info.phase_errors else ""),
             f"conversion: {info.seconds:.2f} s; capture error (captured graph vs ANN, relative): "
             f"{err}"]
    if ops is not None:
        lines.append(f"ANN: {ops['macs']:,} MACs, {ops['params']:,} parameters per inference "
                     f"(stored for the baselines of 'snnedge report')")
    print("\n".join(lines))


# --------------------------------------------------------------------------------------
# simulate
# --------------------------------------------------------------------------------------
def _device(name: str | None) -> torch.device | None:
    if name is None:
        return None
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a torch device; use cpu or cuda.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name!r}: this torch has no CUDA device; use --device cpu.")
    return dev


def _simulate(snn, x, y, args, timesteps: int):
    from ..simulate import simulate

    try:
        return simulate(snn, x, timesteps=timesteps, encoding=args.encoding, engine=args.engine,
                        batch_size=args.batch_size, seed=args.seed, device=_device(args.device),
                        labels=y, progress=False if args.no_progress else None,
                        distributed=getattr(args, "distributed", False))
    except (ValueError, TypeError) as e:
        raise UsageError(" ".join(str(e).split())) from None


def _convert_for_report(args):
    """``snnedge report MODEL.pt2 --calibration DATA``: the ANN converted with ``convert``'s
    defaults (membranes calibrated for the longest ``--timesteps``), and the metadata
    ``snnedge convert`` would store (the ANN's operation counts for the baselines)."""
    from converters import convert

    if args.calibration is None:
        raise UsageError(f"{str(args.network)!r} is a trained ANN (a torch.export program); pass "
                         f"--calibration DATA (training samples) to convert it, or convert it "
                         f"first with 'snnedge convert {args.network} --calibration DATA -o snn.pt'.")
    ann = load_model(args.network)
    x, _ = load_data(args.calibration, "calibration file")
    _check_fits(ann, x, args.calibration)
    try:
        snn = convert(ann, calibration=x, timesteps=max(args.timesteps), seed=args.seed)
    except (ValueError, TypeError) as e:  # UnsupportedLayerError is a TypeError
        raise UsageError(" ".join(str(e).split())) from None
    say(f"converted {args.network} ({len(snn.neuron_layers)} neuron layers) in "
        f"{snn.conversion_.seconds:.1f} s")
    meta = {"model": str(args.network), "class": None, "exported": True,
            "calibration": {"file": str(args.calibration), "samples": int(x.shape[0])},
            "ann_ops": _ann_ops(ann, snn.input_shape)}
    return snn, meta


def _network_and_data(args):
    if hasattr(args, "calibration") and is_exported_program(args.network):
        snn, meta = _convert_for_report(args)
    elif getattr(args, "calibration", None) is not None:
        raise UsageError(f"--calibration converts a trained ANN (a .pt2 torch.export program); "
                         f"{str(args.network)!r} is not one. Leave --calibration out for a "
                         f"network written by 'snnedge convert'.")
    else:
        snn, meta = load_snn(args.network)
    x, y = load_data(args.data)
    x = fit_shape(x, snn.input_shape, f"data file {args.data!r}")
    return snn, meta, x, y


def run_simulate(args) -> None:
    snn, _, x, y = _network_and_data(args)
    if args.out is not None:
        _check_writable(Path(args.out), "results.json")
    res = _simulate(snn, x, y, args, args.timesteps)
    if not is_main_process():
        return
    print(res.summary())
    if y is not None:
        print(f"accuracy: {res.accuracy():.2%} on {res.num_samples} samples at T={res.timesteps}")
    if args.out is not None:
        write_json(Path(args.out), {"network": str(args.network), "data": str(args.data),
                                    **res.to_dict()})
        say(f"wrote {args.out}")


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------
def _resolve(names, registry: dict, what: str, loader=None) -> list:
    out = []
    for name in names:
        if name in registry:
            out.append(name)
        elif loader is not None and Path(name).suffix.lower() in (".toml", ".json") \
                and Path(name).is_file():
            try:
                out.append(loader(name))
            except (ValueError, TypeError, KeyError) as e:
                raise UsageError(f"{what} file {name!r}: {' '.join(str(e).split())}") from None
        else:
            extra = " (or a profile file, .toml or .json)" if loader is not None else ""
            raise UsageError(f"unknown {what} {name!r}; valid {what}s: {', '.join(registry)}{extra}.")
    return out


def run_report(args) -> None:
    from neuromorphic_targets.baselines import BASELINE_ALIASES, BASELINES
    from neuromorphic_targets.compare import compare
    from neuromorphic_targets.plots import (plot_accuracy_vs_energy, plot_core_occupancy,
                                            plot_energy_comparison)
    from neuromorphic_targets.profile_io import load_profile
    from neuromorphic_targets.profiles import PROFILES

    from ..ops import OpCount
    from ..plots import plot_accuracy_vs_timesteps, plot_firing_rates

    start = time.perf_counter()
    targets = _resolve(args.targets if args.targets is not None else list(PROFILES), PROFILES,
                       "target", load_profile)
    baselines = _resolve(args.baselines if args.baselines is not None else list(BASELINES),
                         {**BASELINES, **BASELINE_ALIASES}, "baseline")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {str(out)!r} is a file; give a folder for the report.")
    snn, meta, x, y = _network_and_data(args)
    sweep = sorted(set(args.timesteps))
    results = [_simulate(snn, x, y, args, t) for t in sweep]
    if not is_main_process():
        return
    ops = OpCount.from_dict(meta["ann_ops"]) if meta.get("ann_ops") else None
    hardware = getattr(args, "hardware", False)
    if hardware:
        say("running each target in its own arithmetic (--hardware)")
    try:
        comparison = compare(results, snn=snn, targets=targets, baselines=baselines,
                             input_shape=snn.input_shape, ops=ops, accounting=args.accounting,
                             input_rate_hz=args.input_rate,
                             hardware_data=(x, y) if hardware else None)
    except ValueError as e:
        if "input_rate_hz" not in str(e):
            raise
        raise UsageError(f"--input-rate: {' '.join(str(e).split())}") from None
    table = comparison.to_markdown()
    notes = list(comparison.notes)
    if baselines and ops is None:
        notes.append("the ANN's operations were not stored with the network (it was written "
                      "without them, e.g. by an older snnedge convert): the baselines count the "
                      "converted network's rate-equivalent ANN, BatchNorm folded")
    main = results[-1]
    report = {
        "network": str(args.network),
        "model": {k: meta.get(k) for k in ("model", "class", "exported")},
        "data": {"file": str(args.data), "samples": int(x.shape[0]), "labels": y is not None},
        "snn": {"timesteps": sweep,
                "accuracy_by_T": ({r.timesteps: r.accuracy() for r in results}
                                  if y is not None else None),
                "per_inference_by_T": {r.timesteps: r.per_inference() for r in results},
                "firing_rates": main.firing_rates(),
                "simulation": main.to_dict()},
        "ann_ops": None if ops is None else {"macs": ops.macs, "params": ops.params,
                                             "memory_bytes": ops.memory_bytes},
        "accounting": comparison.accounting,
        "comparison": comparison.table(),
        "hardware": ({r.name + f" T={r.timesteps}": r.hardware_accuracy for r in comparison.rows
                      if r.kind == "neuromorphic"} if hardware else None),
        "mapping_problems": {k: list(m.problems) for k, m in comparison.mappings.items()},
        "notes": notes,
        "seconds": None,
    }
    figures = {"energy.png": plot_energy_comparison(
                   comparison, title=f"Energy per inference ({comparison.accounting} accounting)"),
               "firing_rates.png": plot_firing_rates(main),
               "core_occupancy.png": plot_core_occupancy(comparison.mappings)}
    if y is not None:
        figures["accuracy_vs_T.png"] = plot_accuracy_vs_timesteps(
            results if len(results) > 1 else main, title="SNN accuracy vs time steps")
        figures["accuracy_vs_energy.png"] = plot_accuracy_vs_energy(comparison)
    report["seconds"] = round(time.perf_counter() - start, 2)
    write_report(out, report, _markdown(report, table, main), figures)
    print(table)  # after the folder is in place: a closed pipe cannot lose the report
    say(f"wrote {out}/report.md")


def _markdown(report: dict, table: str, main) -> list[str]:
    """``report.md`` of ``snnedge report``, before the links to the figures."""
    snn = report["snn"]
    lines = [f"# snnedge report: {report['network']}", "",
             f"Data: {report['data']['samples']} samples from `{report['data']['file']}`"
             + ("" if report["data"]["labels"] else " (no labels: accuracy not measured)"),
             ""]
    if snn["accuracy_by_T"]:
        lines += accuracy_table(snn["accuracy_by_T"])
    lines += [TARGETS_HEADING, "", table, ""]
    lines += [f"- {n}" for n in report["notes"] if n not in table]
    lines += [""] + accounting_section(report["accounting"])
    lines += [""] + mapping_section(report["mapping_problems"])
    return lines + activity_section(f"Activity at T={main.timesteps}", main)
