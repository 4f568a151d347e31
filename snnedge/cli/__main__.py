"""``python -m snnedge.cli ...``: the same as the ``snnedge`` command."""
import sys

from .app import main

sys.exit(main())
