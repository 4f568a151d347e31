"""Writing what the command line produces: JSON files and report folders, each in one step.

A report folder holds ``report.md`` (the tables, mapping problems, activity and links to the
plots), ``report.json`` (the same numbers as strict JSON: ``NaN`` and infinities become
``null``) and one PNG per figure. It is assembled beside its target and moved into place
only when complete (:func:`snnedge.atomic.atomic_folder`), so an interrupted run leaves the
previous report as it was. ``snnedge report`` (:mod:`snnedge.cli.commands`) and ``snnedge
demo`` (:mod:`snnedge.cli.demo`) build their ``report.md`` from the sections here.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from ..atomic import atomic_folder, atomic_path

TARGETS_HEADING = "## Neuromorphic targets and conventional baselines"


def say(msg: str) -> None:
    """A progress line on stderr (stdout carries the tables, which may be piped)."""
    print(msg, file=sys.stderr, flush=True)


def jsonable(value):
    """``value`` as strict JSON data: keys as strings, tuples as lists, non-finite floats as
    ``None``, anything else that JSON cannot hold as its ``str``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # strict JSON has no NaN
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def write_json(path: Path, data) -> None:
    """``data`` (made :func:`jsonable`) as indented JSON, replacing ``path`` in one step."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(jsonable(data), indent=2) + "\n")


def accuracy_table(accuracy_by_t: dict) -> list[str]:
    """A one-row markdown table of the SNN's accuracy at each number of time steps."""
    return ["| T | " + " | ".join(map(str, accuracy_by_t)) + " |",
            "|---|" + "---|" * len(accuracy_by_t),
            "| SNN accuracy | " + " | ".join(f"{a:.2%}" for a in accuracy_by_t.values()) + " |",
            ""]


#: When each accounting answers the user's question (demo, report, notebook 04).
WHICH_ACCOUNTING = (
    "`single` answers a battery-powered device serving one input stream: the chips sit idle "
    "between inputs, so one inference pays every chip's whole static power for its latency, "
    "however few cores the network uses. `throughput` answers a server filled with work: the "
    "chips are kept busy with other inputs or networks, so an inference pays only the share "
    "of static power of the cores it occupies for the time it holds them, which is how "
    "published chip results count (Esser et al. 2015's TrueNorth figures are reproduced "
    "within 2x this way).")


def accounting_section(accounting: str) -> list[str]:
    """``## Energy accounting``: which accounting the target rows use and when each one
    answers the question."""
    return ["## Energy accounting", "",
            f"Neuromorphic rows use the `{accounting}` accounting. {WHICH_ACCOUNTING} "
            "Baseline rows say in their accounting column what their number is; `>=` marks a "
            "lower bound (the 45 nm energy table leaves out a processor's instruction overhead)."]


def mapping_section(problems: dict) -> list[str]:
    """One bullet per target: "fits", or its mapping problems."""
    return ["## Mapping problems", ""] + [
        f"- **{target}**: " + ("fits" if not found else "; ".join(found))
        for target, found in problems.items()]


def activity_section(heading: str, result) -> list[str]:
    """A simulation result's summary table under ``## heading``."""
    return ["", f"## {heading}", "", "```", result.summary(), "```", ""]


def write_report(out: Path, report: dict, markdown: list[str], figures: dict) -> None:
    """Write ``figures`` (``{file name: matplotlib Figure}``) as PNGs, ``report`` as
    ``report.json`` and ``markdown`` (then a link to each figure) as ``report.md`` into a
    fresh folder beside ``out``, then swap it into place."""
    with atomic_folder(out) as tmp:
        for name, fig in figures.items():
            fig.savefig(tmp / name, dpi=110, bbox_inches="tight")
        (tmp / "report.json").write_text(json.dumps(jsonable(report), indent=2) + "\n")
        lines = markdown + [f"![{n}]({n})" for n in figures]
        (tmp / "report.md").write_text("\n".join(lines) + "\n")
