"""Profiles to and from TOML or JSON files.

The file format (TOML shown; JSON has the same structure)::

    family = "truenorth"          # which mapping rules and energy model apply
    name = "truenorth-0.8v"
    description = "TrueNorth at 0.8 V, my measurements"
    base = "truenorth"            # optional: start from a registered profile

    [figures.p_static_w]
    value = 0.05                  # "unknown" (or JSON null) when no source gives it
    unit = "W"
    source = "lab notebook 3, p. 12"
    verified = true
    note = "0.8 V, 25 C"          # optional; derived = true marks a value computed from others

Every figure needs ``value``, ``unit`` and ``source`` (``verified`` defaults to false); without
``base`` every figure of the family must be present. Unknown keys, missing or wrong units and
negative values raise a ``ValueError`` that names the key.
"""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

from snnedge.errors import check_choice

from .figures import Figure
from .profiles import FAMILIES, PROFILES, Profile, register_profile

TOP_KEYS = ("family", "name", "description", "base", "figures")
FIGURE_KEYS = ("value", "unit", "source", "verified", "note", "derived")
UNKNOWN = "unknown"


def profile_to_dict(prof: Profile) -> dict:
    """A JSON/TOML-ready dictionary of ``prof`` (unknown values as the string ``"unknown"``)."""
    figs = {}
    for key, f in prof.figures().items():
        value = UNKNOWN if f.value is None else (list(f.value) if isinstance(f.value, tuple) else f.value)
        figs[key] = {"value": value, "unit": f.unit, "source": f.source, "verified": f.verified,
                     "note": f.note, "derived": f.derived}
    return {"family": prof.family, "name": prof.name, "description": prof.description,
            "figures": figs}


def profile_from_dict(data: dict, where: str = "profile data") -> Profile:
    """Build and validate a profile from :func:`profile_to_dict`'s structure."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a table/object with keys {list(TOP_KEYS)}. "
                         f"Got {type(data).__name__}.")
    for key in data:
        if key not in TOP_KEYS:
            raise ValueError(f"Unknown key {key!r} in {where}; valid keys are {list(TOP_KEYS)}.")
    for key in ("family", "name"):
        if key not in data:
            raise ValueError(f"{where} has no {key!r}; add {key} = \"...\".")
    family = check_choice(data["family"], FAMILIES, param="family", where=where)
    cls = FAMILIES[family]
    units = cls.figure_units()
    figs_in = data.get("figures", {})
    if not isinstance(figs_in, dict):
        raise ValueError(f"'figures' in {where} must be a table of figures. Got {type(figs_in).__name__}.")
    base = data.get("base")
    if base is not None:
        check_choice(base, PROFILES, param="base", where=where)
        if PROFILES[base].family != family:
            raise ValueError(f"{where}: base profile {base!r} is of family "
                             f"{PROFILES[base].family!r}, not {family!r}.")
        figures = PROFILES[base].figures()
    else:
        figures = {}
    for key, spec in figs_in.items():
        if key not in units:
            raise ValueError(f"Unknown figure {key!r} in {where} for family {family!r}; valid "
                             f"figures are {list(units)}.")
        figures[key] = _figure(key, spec, units[key], where)
    missing = [k for k in units if k not in figures and k not in cls.optional_figures()]
    if missing:
        raise ValueError(f"{where} lacks figures {missing} of family {family!r}; give each one "
                         f"(value \"unknown\" if no source has it), or set base = \"<profile>\".")
    name = data["name"]
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ValueError(f"'description' in {where} must be a string. Got {description!r}.")
    return cls(name=name, description=description, **figures)


def _figure(key: str, spec, unit: str, where: str) -> Figure:
    if not isinstance(spec, dict):
        raise ValueError(f"Figure {key!r} in {where} must be a table with keys {list(FIGURE_KEYS)}. "
                         f"Got {spec!r}.")
    for k in spec:
        if k not in FIGURE_KEYS:
            raise ValueError(f"Unknown key {k!r} in figure {key!r} of {where}; valid keys are "
                             f"{list(FIGURE_KEYS)}.")
    if "unit" not in spec:
        raise ValueError(f"Figure {key!r} in {where} has no unit; add unit = {unit!r}.")
    for k in ("value", "source"):
        if k not in spec:
            raise ValueError(f"Figure {key!r} in {where} has no {k!r}"
                             + (" (use \"unknown\" when no source gives it)." if k == "value" else "."))
    value = spec["value"]
    if value is None or value == UNKNOWN:
        value = None
    elif isinstance(value, list):
        value = tuple(value)
    return Figure(value, spec["unit"], spec["source"], spec.get("verified", False),
                  spec.get("note", ""), spec.get("derived", False))


def load_profile(path: str | Path, register: bool = False) -> Profile:
    """Read a profile from a ``.toml`` or ``.json`` file (see the module docstring).

    With ``register=True`` it is also made available to :func:`get_profile` by name.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ValueError(f"load_profile reads .toml or .json files. Got {str(path)!r}.")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"load_profile could not parse {str(path)!r}: {e}") from None
    prof = profile_from_dict(data, where=f"profile file {str(path)!r}")
    if register:
        register_profile(prof, overwrite=True)
    return prof


def save_profile(prof: Profile, path: str | Path) -> Path:
    """Write ``prof`` to a ``.toml`` or ``.json`` file that :func:`load_profile` reads back."""
    path = Path(path)
    data = profile_to_dict(prof)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    elif path.suffix.lower() == ".toml":
        path.write_text(_to_toml(data), encoding="utf-8")
    else:
        raise ValueError(f"save_profile writes .toml or .json files. Got {str(path)!r}.")
    return path


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic strings
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"Cannot write {v!r} to TOML.")


def _to_toml(data: dict) -> str:
    lines = [f"{k} = {_toml_value(data[k])}" for k in ("family", "name", "description")]
    for key, spec in data["figures"].items():
        lines += ["", f"[figures.{key}]"] + [f"{k} = {_toml_value(v)}" for k, v in spec.items()]
    return "\n".join(lines) + "\n"
