"""``python -m snnedge ...`` (and ``torchrun -m snnedge ...``): the same as the ``snnedge``
command. An entry point, not part of the core: nothing imports this file, and it only hands
over to the app layer, :mod:`snnedge.cli`."""
import sys

from snnedge.cli.app import main

sys.exit(main())
