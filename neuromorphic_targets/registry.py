"""`Registry`: named entries of one type, looked up by name, with errors that list the names.

The hardware profiles (:data:`~neuromorphic_targets.PROFILES`) and the conventional baselines
(:data:`~neuromorphic_targets.BASELINES`) are both registries: a plain ``{name: entry}`` dict
that :func:`~neuromorphic_targets.get_profile` / :func:`~neuromorphic_targets.get_baseline` read
and :func:`~neuromorphic_targets.register_profile` / :func:`~neuromorphic_targets.register_baseline`
extend.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from snnedge.errors import check_choice

T = TypeVar("T")


class Registry(Generic[T]):
    """``{name: entry}`` of entries of ``entry_type`` (each has a ``name``).

    Parameters
    ----------
    kind:
        What an entry is called in messages (``"profile"``, ``"baseline"``).
    entry_type:
        The class every entry is an instance of.
    getter, registrar:
        The public functions that read and extend this registry, named in messages.
    hint:
        How to make an entry, said when :meth:`register` is given something else.
    entries:
        The entries registered from the start.

    Examples
    --------
    >>> from neuromorphic_targets import Profile, get_profile
    >>> chips = Registry("profile", Profile, "get_chip", "register_chip", "load one with "
    ...                  "load_profile(path)", [get_profile("loihi")])
    >>> chips.names(), chips.get("loihi") is get_profile("loihi")
    (['loihi'], True)
    >>> chips.get("spinnaker")
    Traceback (most recent call last):
    ...
    ValueError: The 'name' parameter of get_chip must be one of 'loihi'. Got 'spinnaker' instead.
    """

    def __init__(self, kind: str, entry_type: type, getter: str, registrar: str, hint: str,
                 entries: Iterable[T] = ()):
        self.kind, self.entry_type = kind, entry_type
        self.getter, self.registrar, self.hint = getter, registrar, hint
        #: The entries by name: a plain dict, the one exported as ``PROFILES`` / ``BASELINES``.
        self.entries: dict[str, T] = {e.name: e for e in entries}

    def get(self, name: str | T) -> T:
        """The entry registered as ``name`` (an entry of ``entry_type`` is returned as is)."""
        if isinstance(name, self.entry_type):
            return name
        check_choice(name, self.entries, param="name", where=self.getter)
        return self.entries[name]

    def register(self, entry: T, overwrite: bool = False) -> T:
        """Add ``entry`` under its name; an existing name needs ``overwrite=True``."""
        if not isinstance(entry, self.entry_type):
            raise TypeError(f"{self.registrar} expects a {self.entry_type.__name__}. Got "
                            f"{type(entry).__name__}; {self.hint}.")
        if entry.name in self.entries and not overwrite:
            raise ValueError(f"A {self.kind} named {entry.name!r} is already registered; pass "
                             f"overwrite=True to replace it, or give yours another name.")
        self.entries[entry.name] = entry
        return entry

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self.entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {self.names()})"
