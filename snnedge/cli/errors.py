"""The one error type of the app layer: a problem with the user's input.

Raised by :mod:`snnedge.cli.inputs`, :mod:`snnedge.cli.commands` and :mod:`snnedge.cli.app`;
:func:`snnedge.cli.app.main` prints it as one line on stderr (``snnedge COMMAND: error:
...``) and exits with code 2, never a traceback. It lives in its own file so that the
argument parser and the commands that raise it import it from here, not from each other.
"""
from __future__ import annotations


class UsageError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""
