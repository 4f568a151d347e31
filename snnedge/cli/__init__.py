"""The app layer: the ``snnedge`` command and the report folders it writes.

The top of the three packages: it may import :mod:`snnedge`'s core, :mod:`converters` and
:mod:`neuromorphic_targets`; nothing below imports it. One job per file:

* :mod:`snnedge.cli.app`: the argument parser and :func:`main`, the console command
  (``snnedge = "snnedge.cli:main"``; also ``python -m snnedge.cli`` and ``python -m snnedge``);
* :mod:`snnedge.cli.errors`: :class:`UsageError`, a user's mistake shown as one line;
* :mod:`snnedge.cli.inputs`: reading models and data files without unpickling them;
* :mod:`snnedge.cli.commands`: ``snnedge convert``, ``simulate`` and ``report``;
* :mod:`snnedge.cli.demo`: ``snnedge demo``, the whole pipeline on built-in MNIST digits
  (:func:`~snnedge.cli.demo.run_demo`, :func:`~snnedge.cli.demo.demo_cnn`);
* :mod:`snnedge.cli.report`: writing a report folder (``report.md``, ``report.json``, plots)
  in one step.
* :mod:`snnedge.cli.seed`: ``snnedge seed``, the seed paper's networks (AlexNet, VGG-16,
  GoogLeNet, ResNet-50, MobileNetV2) as SNNs on every target (:func:`~snnedge.cli.seed.seed_report`),
  built by :mod:`snnedge.cli.seed_models` (torchvision's, or stand-ins equal to them).
"""
from .errors import UsageError
from .app import main

__all__ = ["UsageError", "main"]
