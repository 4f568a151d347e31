"""Registration functions that other installed packages offer through entry points.

The core's registries (:mod:`snnedge.io_registry`'s layer types, :mod:`snnedge.formats`'
number formats) never import a higher package; a package that adds entries names a function
in its ``pyproject.toml`` under the registry's entry-point group, and the registry calls
those functions when a lookup misses (:func:`call_entry_points`).
"""
from __future__ import annotations

from importlib import metadata as importlib_metadata


def call_entry_points(group: str, called: set[str]) -> list[str]:
    """Call each registration function of entry-point ``group`` not yet in ``called`` (a set
    of ``"name = module:function"`` the caller keeps, updated here); return one line per
    function that failed to import or to run (it is tried again next time)."""
    failed = []
    for ep in importlib_metadata.entry_points(group=group):
        key = f"{ep.name} = {ep.value}"
        if key in called:
            continue
        try:
            ep.load()()
        except Exception as e:  # noqa: BLE001 - whatever a broken plugin raises, name it
            failed.append(f"entry point {key!r} of group {group!r} failed with "
                          f"{type(e).__name__}: {e}")
        else:
            called.add(key)
    return failed
