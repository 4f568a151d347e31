"""`convert`: a trained ANN to a rate-coded :class:`snnedge.SpikingNetwork`.

Pipeline (each step a pure function of the previous one's result; the ANN is only read):

1. capture the ANN as a graph of primitive ops (:mod:`converters.graph`, torch.fx, or
   :mod:`converters.export` for ``torch.export`` programs) and check that the captured
   graph computes what the ANN computes on calibration samples;
2. remove no-ops and fold BatchNorm (:mod:`converters.fold`);
3. measure each ReLU's scale on the calibration data (:mod:`converters.calibration`);
   QCFS activations bring their trained thresholds;
4. rescale weights layer by layer and build the spiking layers (:mod:`converters.normalize`):
   ReLU and QCFS become IF neurons, MaxPool2d a :class:`~converters.SpikingMaxPool2d`, the
   last layer the non-spiking readout;
5. calibrate each neuron's initial membrane against the spikes it fires too early (and,
   with ``calibrate_bias``, each channel's bias against its rate error), in one sweep
   through the layers (:mod:`converters.membrane`, :mod:`converters.sweep`).

Defaults (channel-wise 99.9th percentiles, membrane calibration at 16 steps, no bias
calibration; QCFS networks: calibration at ``L`` steps with bias calibration) are those that
held best over the zoo of ``examples/benchmarks/zoo.py`` at every ``T``, measured on
held-out training digits by ``examples/benchmarks/conversion_ablation.py``.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace

import torch
from torch import nn

import snnedge
from snnedge import distributed as dist_glue
from snnedge.engine import exact_float32
from snnedge.errors import check_choice, check_positive_int, check_real
from snnedge.formats import NumberFormat, get_format
from snnedge.readout import MAX_EXPONENT, check_exponent

from .calibration import NORMALIZATIONS, activation_scales, calibration_tensor
from .export import capture_export
from .fold import simplify
from .graph import INPUT, Graph, capture_fx
from .maxpool import MAXPOOL_MODES
from .assemble import build_network
from .normalize import describe_scale, is_close
from .phases import PHASE_PASSES, PHASES, spread_layers
from .readout import readout_samples


RESETS = ("subtract", "zero")
# v_init for ReLU neurons when not given. theta/2 rounds the rate code instead of flooring
# it (a neuron with input a*theta per step has fired floor(t*a + 1/2) times after t steps),
# which halves the quantization error at every T; measured best on the MNIST benchmarks
# (examples/benchmarks/RESULTS.md, "Conversion options (ablation)").
DEFAULT_V_INIT = 0.5
# Initial-membrane calibration: steps simulated and samples used (from the calibration set):
# at most MEMBRANE_SAMPLES, and at most as many as make T x samples = MEMBRANE_PASSES x the
# calibration set, so that its synaptic work stays within MEMBRANE_PASSES ANN passes over the
# calibration samples whatever T (twice that where a layer's input over all samples and steps
# exceeds converters.sweep.SWEEP_BYTES and is computed again for the corrected pass).
CALIBRATION_TIMESTEPS = 16
MEMBRANE_SAMPLES = 256
MEMBRANE_PASSES = 5
# Bias calibration with the membrane calibration (convert's calibrate_bias); chosen by the
# ablation of examples/benchmarks/conversion_ablation.py: off for ReLU networks (the slope of
# the count error seen within T_c = 16 steps is mostly the transient; taking it off the bias
# over-corrects at large T), on for networks with QCFS activations (calibrated at T_c = L,
# where the target counts are whole numbers and the error left is a rate error: on 2,000
# held-out training digits it halved qcfs_resnet18's disagreement with its ANN at T = 8,
# 2.05 % -> 1.00 %, and left T = 16 and 32 as they were).
DEFAULT_CALIBRATE_BIAS = False
DEFAULT_CALIBRATE_BIAS_QCFS = True
# Gain calibration with the membrane calibration (convert's calibrate_gain, see
# converters.gain), fitted on the counts after GAIN_TIMESTEPS steps (a gain fitted at 16
# steps over-corrects at T >= 64, one fitted at 64 under-corrects at T <= 32: measured on
# held-out training digits, examples/benchmarks/RESULTS.md). Off by default: it cuts the
# deep networks' loss at T <= 64 (tv_mobilenet_v2), but a gain is a lasting change of the
# thresholds, so the SNN no longer tends to the ANN as T grows (it is fitted against a delay
# that fades with T), and with few calibration samples its noise stays at every T.
DEFAULT_CALIBRATE_GAIN = False
DEFAULT_CALIBRATE_GAIN_QCFS = False
GAIN_TIMESTEPS = 32
# convert(..., hardware=chip) for a chip with one weight scale per layer (NumberFormat scale
# rules "layer" and "power-of-two": DYNAP-CNN, Loihi): channel scales kept within this ratio
# of their layer's largest (converters.calibration.bound_ratio). Chosen on training digits
# outside the calibration sample, never on test images (examples/benchmarks/
# chip_normalization.py --ratios 2 4 8 16: the best worst case of DYNAP-CNN and Loihi over
# hardware_accuracy.py's three networks; unbounded, Loihi lost 0.9 points on truenorth_cnn).
CHIP_SCALE_RATIO = 8.0


def membrane_samples(n: int, timesteps: int) -> int:
    """Samples the membrane calibration uses out of ``n`` calibration samples at ``T``
    steps: ``min(MEMBRANE_SAMPLES, n, max(1, ceil(MEMBRANE_PASSES x n / T)))``.

    >>> membrane_samples(1000, 16), membrane_samples(64, 16), membrane_samples(64, 4)
    (256, 20, 64)
    """
    return min(MEMBRANE_SAMPLES, n, max(1, math.ceil(MEMBRANE_PASSES * n / timesteps)))


@dataclass
class ConversionInfo:
    """What :func:`convert` did, stored on the result as ``snn.conversion_``.

    ``scales``: each activation layer's lambda (the ANN value of one spike per step);
    ``thresholds``: each IF layer's threshold after normalization (1 unless an addition or
    a pooling-before-ReLU layout needed otherwise); ``folded``: BatchNorm layers and the
    layer they went into; ``removed``: no-op layers dropped; ``v_init``: initial membrane
    per IF layer (fraction of the threshold, before membrane calibration);
    ``capture_error``: largest relative difference between the captured graph and the ANN on
    calibration samples; ``membrane_excess``: mean spikes per neuron that each layer fired
    too early before the membrane calibration took them out (empty when it is off; layers
    fed only by the static input have no transient and are not calibrated);
    ``calibration_timesteps``: the steps that calibration simulated (None when it is off);
    ``bias_shifts``: per layer whose bias calibration shifted, the mean rate error taken
    off, in spikes per step (empty when ``calibrate_bias`` is off); ``gains``: per layer
    whose gain was calibrated, the factor per channel its threshold was multiplied by
    (``thresholds`` are those before it; empty when ``calibrate_gain`` is off);
    ``gain_timesteps``: the steps the gains were fitted at (None when off);
    ``max_scale_ratio``: the bound on the ratio of channel scales within a layer (None: none);
    ``hardware``: the number format the conversion was made for (None: none);
    ``readout_exponent``: the network's weighting of its readout's steps, ``(t / T) ** p``
    (:mod:`snnedge.readout`); ``readout_errors``: per candidate ``p``, the error of the
    readout against the ANN on calibration samples that chose it (empty when ``readout``
    was given as a number); ``phases``: where the neurons fed by the input start,
    ``"aligned"`` (all at ``v_init``) or ``"ordered"`` (:mod:`converters.phases`);
    ``phase_errors``: per candidate tried, the least readout error of that network (empty
    when only one was built).
    """

    normalization: str
    percentile: float
    reset: str
    scales: dict[str, float | list[float]] = field(default_factory=dict)
    thresholds: dict[str, float | list[float]] = field(default_factory=dict)
    v_init: dict[str, float] = field(default_factory=dict)
    folded: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    capture_error: float = 0.0
    membrane_excess: dict[str, float] = field(default_factory=dict)
    calibration_samples: int = 0
    seconds: float = 0.0
    calibration_timesteps: int | None = None
    bias_shifts: dict[str, float] = field(default_factory=dict)
    gains: dict[str, float | list[float]] = field(default_factory=dict)
    gain_timesteps: int | None = None
    max_scale_ratio: float | None = None
    hardware: str | None = None
    readout_exponent: float = 0.0
    readout_errors: dict[str, float] = field(default_factory=dict)
    phases: str = "aligned"
    phase_errors: dict[str, float] = field(default_factory=dict)


def default_normalization(reset: str) -> str:
    """``convert``'s normalization when none is given: ``"channelwise"`` for neurons that
    reset by subtraction, ``"percentile"`` (one scale per layer) for neurons that reset to zero.

    On five networks converted with ``reset="zero"`` (1,000 training digits outside the
    calibration sample, T = 32), channel-wise scales lost 0.9 to 22 points against one scale
    per layer (``vgg_avg``: 74.5 % vs 96.5 %); with ``reset="subtract"`` channel-wise held
    best across the zoo (RESULTS.md, "Which scales for which neurons and chips").

    >>> default_normalization("subtract"), default_normalization("zero")
    ('channelwise', 'percentile')
    """
    return "channelwise" if reset == "subtract" else "percentile"


def chip_scale_ratio(hardware) -> float | None:
    """The bound on the ratio of channel scales within a layer that ``convert(...,
    hardware=hardware)`` uses: :data:`CHIP_SCALE_RATIO` for a number format that rounds a whole
    layer's weights on one grid (rules ``"layer"``, ``"power-of-two"``: DYNAP-CNN, Loihi),
    ``None`` for one that scales every neuron on its own (``"neuron"``: TrueNorth, where a
    channel's scale moves into its neurons' own weights and threshold).

    >>> chip_scale_ratio("loihi"), chip_scale_ratio("truenorth")
    (8.0, None)
    """
    return CHIP_SCALE_RATIO if get_format(hardware, where="convert").one_grid_per_layer else None


@exact_float32()  # on CUDA, calibrate in full float32 as simulate runs
def convert(ann, calibration, normalization: str | None = None, percentile: float = 99.9,
            reset: str = "subtract", *, v_init: float | None = None, maxpool: str = "count",
            calibrate_membrane: bool = True, timesteps: int | None = None,
            calibrate_bias: bool | None = None, calibrate_gain: bool | None = None,
            batch_size: int = 256, max_calibration_samples: int | None = None,
            seed: int = 0, distributed: bool = False,
            hardware: str | NumberFormat | None = None,
            max_scale_ratio: float | None = None,
            readout: str | float = "auto", phases: str = "auto") -> snnedge.SpikingNetwork:
    """Convert a trained ReLU (or QCFS) network into a rate-coded spiking network.

    Parameters
    ----------
    ann:
        An ``nn.Module`` in eval mode (traced with torch.fx), or a
        ``torch.export.ExportedProgram``. It is never modified.
    calibration:
        Training samples: a tensor ``[N, ...]`` or a DataLoader of ``(x, y)`` or ``x``
        batches. A few hundred samples are enough.
    normalization:
        ``"channelwise"`` (the percentile per output channel, Kim et al., AAAI 2020),
        ``"percentile"`` (one per layer, robust normalization, Rueckauer et al. 2017),
        ``"max"`` or ``"none"`` (weights unchanged, thresholds 1). QCFS activations always use
        their trained thresholds. The default (``None``) is :func:`default_normalization`:
        ``"channelwise"`` with ``reset="subtract"``, ``"percentile"`` with ``reset="zero"``.
        Channel-wise scales let the channels of small activations fire at high rates too,
        which with reset by subtraction and the membrane calibration held best across the zoo
        and every ``T`` (``examples/benchmarks/conversion_ablation.py``, RESULTS.md
        "Conversion defaults across the zoo and T"). A neuron that resets to zero loses what
        its membrane held above the threshold at each spike, and loses more the closer it
        fires to every step, which channel-wise scales make every channel do at its peak: one
        scale per layer kept more accuracy with ``reset="zero"`` on every network measured
        (RESULTS.md, "Which scales for which neurons and chips"). A ReLU whose spikes are the
        network's output (:func:`readout_activations`) keeps one scale for the layer: no
        weighted layer after it would take the channels' scales back, and its classes must be
        counted in one unit.
    percentile:
        Percentile of the positive activations used as a layer's scale, in (0, 100].
    hardware:
        The chip the network is converted for: a number-format name (``"dynap-cnn"``,
        ``"loihi"``, ``"truenorth"``) or a :class:`snnedge.formats.NumberFormat`. On a chip
        that rounds a whole layer's weights on one grid it sets ``max_scale_ratio`` to
        :data:`CHIP_SCALE_RATIO` (:func:`chip_scale_ratio`): unbounded channel-wise scales
        left Loihi's 8-bit weights few levels for the channels of large scales (0.9 points lost
        against the float SNN on ``hardware_accuracy.py``'s ``truenorth_cnn``). Nothing else
        changes; ``neuromorphic_targets.to_hardware(snn, chip)`` then gives the chip's network.
    max_scale_ratio:
        With ``"channelwise"``: no channel's scale lies below its layer's largest divided by
        this (>= 1; :func:`converters.calibration.bound_ratio`). ``None`` (default): no bound,
        or :func:`chip_scale_ratio` of ``hardware`` when that is given; an explicit value wins.
    reset:
        ``"subtract"`` (reset by subtraction, keeps the residue) or ``"zero"``.
    readout:
        How the network's readout weights its steps, ``(t / T) ** p``
        (``snn.readout_exponent``, :mod:`snnedge.readout`): ``"auto"`` (default) chooses
        ``p`` on the calibration data (:func:`converters.readout.choose_exponent`: the
        candidate whose output after ``timesteps`` and ``2 x timesteps`` steps is closest to
        the ANN's, on up to 64 samples and at most 3 ANN passes' worth of steps:
        :func:`converters.readout.readout_samples`); a number sets it (0: every step the same). A
        deep network's first tens of steps are a transient, and weighting the late steps
        takes most of its loss at small ``T``; a shallow one keeps 0. A network whose output
        is the spikes of several activation layers with scales of their own (no weighted
        layer after them) has no one unit to compare them in and keeps 0.
    phases:
        Where the neurons fed by the input alone (the first convolution) start:
        ``"aligned"`` (all at ``v_init``), ``"ordered"`` (``v_init`` plus a 4 x 4 ordered
        dither over each feature map, so that neighbours with equal currents do not fire in
        step: :mod:`converters.phases`) or ``"auto"`` (default): both networks are built and
        calibrated and the one whose readout is closer to the ANN's on the calibration
        samples is kept (the readout error above; ``snn.conversion_.phases`` says which).
        Spread phases take the bursts out of shallow residual networks; networks that
        amplify each neuron's error keep them aligned. ``"auto"`` costs a second
        calibration where a layer has a feature map fed by the input.
    v_init:
        Initial membrane of the ReLU neurons as a fraction of the threshold; default 0.5
        (theta/2, see :data:`DEFAULT_V_INIT`). QCFS neurons start at their shift (theta/2).
        With ``calibrate_membrane`` this is the starting point that calibration corrects.
    maxpool:
        ``"count"`` or ``"gate"`` (see :class:`converters.SpikingMaxPool2d`).
    calibrate_membrane:
        Set each neuron's initial membrane so that the spikes it would fire too early are
        removed (potential calibration, Li et al., ICML 2021; see
        :mod:`converters.membrane`). Costs one sweep through the network (each layer run
        once on ``timesteps`` steps of :func:`membrane_samples` calibration samples: at most
        ``MEMBRANE_SAMPLES`` = 256, and at most ``MEMBRANE_PASSES`` = 5 ANN passes' worth of
        steps, whatever the depth); the neurons become :class:`~converters.membrane.CalibratedIF`.
    calibrate_bias:
        With ``calibrate_membrane``: also take each layer's rate error (spikes per step it
        fires more, or fewer, than the ANN's activation stands for) off the bias that feeds
        it, per channel (bias calibration, Li et al., ICML 2021), and leave only the
        transient's excess to the initial membrane, so that the correction holds at every
        ``T`` rather than at ``timesteps`` alone (see :func:`converters.membrane.correct_layer`).
        Read from the same sweep (counts after ``timesteps / 2`` and ``timesteps`` steps):
        no extra pass. Layers with no bias of their own to shift (fed through a pooling)
        get the membrane correction only; ``snn.conversion_.bias_shifts`` lists the others.
        Default: :data:`DEFAULT_CALIBRATE_BIAS_QCFS` (on) when the ANN has QCFS activations,
        else :data:`DEFAULT_CALIBRATE_BIAS` (off).
    calibrate_gain:
        With ``calibrate_membrane``: first fit each layer's gain per channel (the
        least-squares slope of its spike counts against the counts its ANN activations stand
        for, after :data:`GAIN_TIMESTEPS` steps on the calibration samples) and multiply the
        channel's threshold by it, so that deep layers pass on no compression of their
        activations (see :mod:`converters.gain`). Read in the same sweep (which then runs
        ``max(timesteps, GAIN_TIMESTEPS)`` steps on :func:`membrane_samples` samples for that
        many steps): no extra pass. ``snn.conversion_.gains`` lists the factors. It cuts
        deep networks' loss at ``T <= 64`` but the SNN then no longer tends to the ANN as
        ``T`` grows. Default: :data:`DEFAULT_CALIBRATE_GAIN` (off;
        :data:`DEFAULT_CALIBRATE_GAIN_QCFS`, off, with QCFS activations).
    timesteps:
        Steps simulated by the membrane calibration (the correction holds for other ``T``
        too; pass the ``T`` you will run at to tune it for that). Default: the QCFS levels
        ``L`` when the ANN has QCFS activations (such networks are meant to run at
        ``T`` near ``L``, Bu et al. 2022), else :data:`CALIBRATION_TIMESTEPS` (16).
    batch_size:
        Samples per forward pass during calibration.
    max_calibration_samples:
        Use at most this many calibration samples.
    seed:
        Seed of the subsampling of activations for percentiles.
    distributed:
        Under ``torchrun`` (or an initialized ``torch.distributed`` process group), with the
        same ANN and calibration data on every rank (both checked by hash): each rank measures
        the activation statistics of its share of the calibration batches and the statistics
        are reduced across ranks, exactly (the maximum by an all-reduce; a percentile of the
        union of the ranks' values, not an approximation of it, found by exchanging only the
        values in each rank's tail; see :mod:`converters.calibration`). The result is the
        single-process network, bit for bit, on every rank. Membrane calibration runs on every
        rank on the same samples.

    Returns
    -------
    snnedge.SpikingNetwork
        Layers named after the ANN's module paths; ``snn.conversion_`` is a
        :class:`ConversionInfo`.

    Example
    -------
    >>> import torch, torch.nn as nn
    >>> from converters import convert
    >>> ann = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
    ...                     nn.Linear(4 * 6 * 6, 3)).eval()
    >>> snn = convert(ann, torch.rand(32, 1, 8, 8))
    >>> [n.name for n in snn.nodes], snn.conversion_.folded
    (['0', '2', '3', '4'], {'1': '0'})
    """
    start = time.perf_counter()
    check_choice(reset, RESETS, param="reset", where="convert")
    if normalization is None:
        normalization = default_normalization(reset)
    check_choice(normalization, NORMALIZATIONS, param="normalization", where="convert")
    check_real(percentile, param="percentile", where="convert", low=0.0, high=100.0, low_open=True)
    check_choice(maxpool, MAXPOOL_MODES, param="maxpool", where="convert")
    check_positive_int(batch_size, param="batch_size", where="convert")
    check_choice(phases, PHASES, param="phases", where="convert")
    if timesteps is not None:
        check_positive_int(timesteps, param="timesteps", where="convert")
    if max_calibration_samples is not None:
        check_positive_int(max_calibration_samples, param="max_calibration_samples", where="convert")
    if max_scale_ratio is not None:
        max_scale_ratio = check_real(max_scale_ratio, param="max_scale_ratio", where="convert", low=1.0)
    if readout != "auto":
        if isinstance(readout, str):
            raise ValueError(f"The 'readout' parameter of convert must be 'auto' or a number in "
                             f"[0, {MAX_EXPONENT:g}] (the readout_exponent). Got {readout!r}.")
        readout = check_exponent(readout, "convert")
    fmt = None if hardware is None else get_format(hardware, where="convert")
    if max_scale_ratio is None and fmt is not None:
        max_scale_ratio = chip_scale_ratio(fmt)
    v0 = DEFAULT_V_INIT if v_init is None else check_real(v_init, param="v_init", where="convert",
                                                           low=0.0, high=1.0)
    x = calibration_tensor(calibration, max_calibration_samples)
    ranks = dist_glue.setup("convert") if distributed else None
    if ranks is not None:
        dist_glue.check_same_network(ann, ranks, "convert")
        dist_glue.check_same(dist_glue.data_fingerprint(x),
                             "the calibration data (hash of the samples)",
                             "give every rank the same calibration samples", ranks, "convert")

    exported = isinstance(ann, torch.export.ExportedProgram)
    if exported:
        _check_finite_state(ann.state_dict, "the exported program")
        x = x.to(_device_of(ann.state_dict.values()))
        graph = capture_export(ann, x[:1])
        reference = _exported_reference(ann)
    elif isinstance(ann, nn.Module):
        _check_eval(ann)
        _check_finite_state(dict(ann.state_dict()), type(ann).__name__)
        x = x.to(_device_of([*ann.parameters(), *ann.buffers()]))
        graph = capture_fx(ann, x[:min(8, x.shape[0])])
        reference = ann
    else:
        raise TypeError(f"The 'ann' parameter of convert must be a torch.nn.Module or a "
                        f"torch.export.ExportedProgram. Got {type(ann).__name__}.")

    probe = x[:min(_probe_size(ann) if exported else 16, x.shape[0])]
    err = _check_capture(graph, reference, probe, "captured graph", exported)
    simple, folded = simplify(graph)
    _check_capture(simple, reference, probe, "graph with BatchNorm folded", exported, rtol=1e-3)

    relus = [o.name for o in simple.ops if o.kind == "relu"]
    spiking_out = readout_activations(simple)  # ReLUs whose spikes are the output, if any
    lambdas = activation_scales(simple, x, relus, normalization, percentile, batch_size, seed,
                                ranks=ranks, layerwise=spiking_out,
                                max_ratio=max_scale_ratio)
    for o in simple.ops:
        if o.kind == "qcfs":
            lam = float(o.module.threshold.detach())
            if not lam > 0:
                raise ValueError(f"The QCFS layer {o.name!r} has threshold {lam:g}; thresholds must "
                                 f"be positive. Train longer or clamp the threshold (e.g. "
                                 f"threshold.data.clamp_(min=1e-3)).")
            lambdas[o.name] = torch.tensor(lam, dtype=torch.float64)
    if ranks is not None:  # a normalization whose statistics no hook reduces would differ here
        h = None
        for name in sorted(lambdas):
            h = dist_glue.tensor_digest(lambdas[name], h)
        dist_glue.check_same(h.hexdigest() if h else "", "the activation scales",
                             f"normalization {normalization!r} has no cross-rank reduction; "
                             f"convert in one process", ranks, "convert")
    if timesteps is None:
        levels = [int(o.module.levels) for o in simple.ops if o.kind == "qcfs"]
        timesteps = max(levels) if levels else CALIBRATION_TIMESTEPS
    bias = default_calibrate_bias(simple) if calibrate_bias is None else bool(calibrate_bias)
    gain = default_calibrate_gain(simple) if calibrate_gain is None else bool(calibrate_gain)
    used, work = None, readout_samples(x.shape[0], timesteps) * 2 * timesteps
    if calibrate_membrane:
        steps = max(timesteps, GAIN_TIMESTEPS) if gain else timesteps
        pick = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
        used = pick[:membrane_samples(x.shape[0], steps)].to(x.device)
        work += used.numel() * steps
    # "auto": build and calibrate both where a layer has phases to spread and both fit the
    # budget, keep the one whose readout is closer to the ANN's (converters.phases)
    both = phases == "auto" and bool(spread_layers(simple)) and len(spiking_out) <= 1 \
        and 2 * work <= PHASE_PASSES * x.shape[0]
    candidates = ("aligned", "ordered") if both else ("aligned",) if phases == "auto" else (phases,)
    # Weights are rescaled in float64 on CPU copies (the scales live there); the SNN then moves
    # to the calibration data's device.
    cpu_graph, best, phase_errors = _on_cpu(simple), None, {}
    for ph in candidates:
        b = build_network(simple, cpu_graph, lambdas, x, used, ph, reset=reset, v0=v0,
                          maxpool=maxpool, bias=bias, gain_timesteps=GAIN_TIMESTEPS if gain else None,
                          timesteps=timesteps, batch_size=batch_size, seed=seed, readout=readout,
                          spiking_out=spiking_out, compare=len(candidates) > 1)
        if len(candidates) > 1:
            phase_errors[ph] = b.least_error()
        if best is None or phase_errors[ph] < phase_errors[best.phases]:  # ties: "aligned"
            best = b
    chosen = best.phases
    snn, norm, excess, shifts, gains, errors = (best.snn, best.norm, best.excess, best.shifts,
                                                best.gains, best.errors)
    if readout != "auto":
        errors = {}
    kept = {o.name for o in simple.ops}
    snn.conversion_ = ConversionInfo(
        normalization=normalization, percentile=float(percentile), reset=reset,
        scales={k: describe_scale(v) for k, v in norm.lam.items()},
        thresholds={k: describe_scale(v) for k, v in norm.thresholds.items()},
        v_init={o.name: (o.module.shift if o.kind == "qcfs" else v0) for o in simple.ops
                if o.kind in ("relu", "qcfs")},
        folded=folded,
        removed=[o.name for o in graph.ops if o.name not in kept and o.name not in folded],
        capture_error=err, membrane_excess=excess, calibration_samples=int(x.shape[0]),
        seconds=time.perf_counter() - start,
        calibration_timesteps=int(timesteps) if calibrate_membrane else None,
        bias_shifts=shifts, gains={k: describe_scale(v) for k, v in gains.items()},
        gain_timesteps=GAIN_TIMESTEPS if calibrate_membrane and gain else None,
        max_scale_ratio=max_scale_ratio, hardware=None if fmt is None else fmt.name,
        readout_exponent=snn.readout_exponent, readout_errors={f"{p:g}": e for p, e in errors.items()},
        phases=chosen, phase_errors=phase_errors)
    return snn


def readout_activations(graph: Graph) -> set[str]:
    """The ReLU ops whose values reach the graph's output through weight-free ops only
    (pooling, reshapes, junctions): their spikes are the network's output, read in one unit
    across channels. Empty for the usual readout, a weighted layer."""
    found, seen, stack = set(), set(), [graph.output]
    while stack:
        name = stack.pop()
        if name in seen or name == INPUT:
            continue
        seen.add(name)
        op = graph.op(name)
        if op.kind == "relu":
            found.add(name)
        elif op.kind not in ("weighted", "qcfs"):
            stack.extend(op.inputs)
    return found


def default_calibrate_gain(graph: Graph) -> bool:
    """``convert``'s ``calibrate_gain`` when not given: :data:`DEFAULT_CALIBRATE_GAIN_QCFS`
    for a graph with QCFS activations, else :data:`DEFAULT_CALIBRATE_GAIN`."""
    if any(o.kind == "qcfs" for o in graph.ops):
        return DEFAULT_CALIBRATE_GAIN_QCFS
    return DEFAULT_CALIBRATE_GAIN


def default_calibrate_bias(graph: Graph) -> bool:
    """``convert``'s ``calibrate_bias`` when not given: :data:`DEFAULT_CALIBRATE_BIAS_QCFS`
    for a graph with QCFS activations (its membrane calibration runs at ``T_c = L``), else
    :data:`DEFAULT_CALIBRATE_BIAS`."""
    if any(o.kind == "qcfs" for o in graph.ops):
        return DEFAULT_CALIBRATE_BIAS_QCFS
    return DEFAULT_CALIBRATE_BIAS


def _on_cpu(graph: Graph) -> Graph:
    """``graph`` with CPU copies of its modules (the same graph if they are all on CPU)."""
    if all(t.device.type == "cpu" for o in graph.ops for t in (*o.module.parameters(), *o.module.buffers())):
        return graph
    return replace(graph, ops=[replace(o, module=copy.deepcopy(o.module).cpu()) for o in graph.ops])


def _device_of(tensors) -> torch.device:
    t = next(iter(tensors), None)
    return t.device if isinstance(t, torch.Tensor) else torch.device("cpu")


def _check_eval(ann: nn.Module) -> None:
    for path, m in ann.named_modules():
        if m.training:
            where = f"its submodule {path!r} ({type(m).__name__}) is" if path else "it is"
            raise ValueError(f"convert needs the ANN in eval mode, but {where} in training mode "
                             f"(BatchNorm would use batch statistics and Dropout would be active). "
                             f"Call ann.eval() first.")


def _check_finite_state(state: dict, what: str) -> None:
    for key, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).sum())
            raise ValueError(f"The ANN's {key!r} holds {bad} NaN or infinite values ({what}); "
                             f"convert needs finite weights. Check the training run (learning "
                             f"rate, loss scaling) or reload a good checkpoint.")


def _probe_size(program) -> int:
    """Samples to compare the captured graph with: a program exported with a fixed batch
    size only runs on that many."""
    user = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            batch = node.meta["val"].shape[0]
            return int(batch) if isinstance(batch, int) else 16
    return 16


def _exported_reference(program):
    module = program.module()

    def run(x):
        return module(x)
    return run


@torch.no_grad()
def _check_capture(graph: Graph, reference, x: torch.Tensor, what: str, exported: bool,
                   rtol: float = 1e-4) -> float:
    try:
        expected = reference(x)
    except Exception:  # noqa: BLE001 - an exported program may be specialised to a batch size
        if exported:
            return float("nan")
        raise
    if isinstance(expected, (tuple, list)) and len(expected) == 1:
        expected = expected[0]
    got, _ = graph.run(x)
    if not isinstance(expected, torch.Tensor) or got.shape != expected.shape:
        raise ValueError(f"convert: the {what} returns shape {list(got.shape)} but the ANN returns "
                         f"{list(getattr(expected, 'shape', []))}; the model's forward does "
                         f"something graph capture does not see. Please report this model.")
    close, err = is_close(got.double(), expected.double(), rtol)
    if not close:
        raise ValueError(f"convert: the {what} differs from the ANN's output by {err:.3g} "
                         f"(relative); the model's forward does something graph capture does "
                         f"not see (such as in-place changes or Python-side randomness). "
                         f"Please report this model.")
    return err
