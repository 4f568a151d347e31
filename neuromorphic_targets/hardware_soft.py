r"""Reset by subtraction on Loihi: NxTF's two-compartment neuron, in the chip's integers.

Loihi's compartments reset to zero (lava's bit-accurate models set ``v[spiked] = 0``), but a
neuron may be several compartments joined on a dendritic tree (Davies et al., IEEE Micro
38:82, 2018). NxTF, Intel's compiler of deep SNNs for Loihi (Rueckauer et al., "NxTF: An API
and Compiler for Deep Spiking Neural Networks on Intel Loihi", ACM JETC 18(3), 2022,
arXiv:2101.04261), builds reset by subtraction this way (``resetMode='soft'``; the public
code: github.com/intel-nrc-ecosystem/models, ``nxsdk_modules_ncl/dnn/src/dnn_layers.py`` and
``dnn_mapper.py``; the SNN toolbox's Loihi example ``examples/mnist_keras_loihi.py`` calls the
two modes "reset-by-subtraction (more accurate) or reset-to-zero (less resources)"):

* two compartments per neuron ("The neuronSize is the number of compartments per neuron.
  ``neuronSize = 2 if self.resetMode == 'soft' else 1``"): a *dendrite* that receives the
  layer's synapses and its bias and never fires or resets (``threshOp: 2``, ``stackOut: 1``),
  and a *soma* joined to it (``stackIn: 2``, ``joinOp: 6``, ``threshOp: 0``) that fires when
  the dendrite's voltage crosses the threshold (both use the layer's ``vThMant``); its spikes
  go to the next layer (output axons from "the soma compartment": ``somaCxIds *= 2;
  somaCxIds += 1``);
* a recurrent synapse from the soma back to its dendrite of weight ``-weightMantSR`` with
  exponent ``weightExpSR``, "computed to as close as possible to the vThMant"::

      e    = clip(ceil(log2(vThMant / 256)), 0, 7)       (W_EXP_MAX = 7)
      mant = clip(rint(vThMant / 2^e), 0, 255)           (8-bit magnitude, shared sign)
      theta_sr = mant * 2^e << 6                         (weights, like thresholds, << 6)

  A spike crosses a synapse in one step, so a spike at ``t`` lowers the dendrite at
  ``t + 1``. The dendrite is then the float neuron's membrane *before* its reset::

      u[t] = wrap(round(I[t]) - theta_sr * z[t-1], 24)   the 24-bit current (du = 4095: no
                                                         memory, NxTF's default)
      v[t] = clamp(decay(v[t-1]) + u[t] + bias, -(2^23 - 1), 2^23 - 1)
      z[t] = v[t] > theta                                (the soma; Loihi's strict threshold)

  With ``theta_sr == theta`` and no decay this is exactly :class:`snnedge.ChipNeuron`'s
  ``reset="subtract"`` (``v - theta z`` one step later is the same sum): no step of delay
  reaches the next layer, since the soma fires in the step its dendrite crosses. Where
  ``vThMant > 256`` is not a multiple of ``2^e``, ``theta_sr`` differs from ``theta`` by the
  rounding (at most ``2^(e-1) << 6``); above ``255 * 2^7`` it saturates. A leaky dendrite
  decays before the subtraction arrives (NxTF's order).

The cost: two compartments per neuron (the mapping counts them:
:func:`~neuromorphic_targets.map_network` reads :attr:`TwoCompartmentChipNeuron.
compartments_per_neuron`), one more synapse and one input and output axon per neuron
(NxTF: "Create synEntries and synFmts for recurrent connections"), and each soma spike
crosses that synapse too: one more synaptic event per spike, counted in the layer's own entry
of ``synaptic_events`` (:meth:`TwoCompartmentChipNeuron.own_synapses`), so the energy of a
simulated chip network includes it.
"""
from __future__ import annotations

import math

import torch

from snnedge.chip_neuron import ChipNeuron, fixed_point_decay, wrap
from snnedge.layers import TemporalModule

from .hardware_cuba import check_integer_membrane

__all__ = ["TwoCompartmentChipNeuron", "reset_weight"]

#: NxTF's bounds on the recurrent synapse (``nxsdk_modules_ncl/dnn/src/dnn_layers.py``):
#: weight mantissas of 8 bits with a shared sign, exponents up to ``W_EXP_MAX = 7``.
RESET_MANTISSA_MAX = 255
RESET_EXPONENT_MAX = 7


def reset_weight(threshold: torch.Tensor, state_shift: int = 6) -> torch.Tensor:
    """NxTF's recurrent weight ``theta_sr`` (in state units) for thresholds ``threshold``
    (state units, ``vThMant << state_shift``): ``mant * 2^e << state_shift`` with ``e =
    clip(ceil(log2(vThMant / 256)), 0, 7)`` and ``mant = clip(rint(vThMant / 2^e), 0, 255)``
    (``rint``: half to even, as numpy's)."""
    unit = float(2 ** state_shift)
    mant_in = torch.as_tensor(threshold, dtype=torch.float64) / unit
    exps = torch.tensor([max(0, min(RESET_EXPONENT_MAX, math.ceil(math.log2(float(m) / 256))))
                         for m in mant_in.reshape(-1)], dtype=torch.float64).reshape(mant_in.shape)
    scale = 2.0 ** exps
    mant = torch.round(mant_in / scale).clamp(0, RESET_MANTISSA_MAX)
    return mant * scale * unit


def _fit(p: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """``p`` (a scalar, per-channel ``(C, 1, ...)`` or a full map) on ``template``'s dtype
    and device, to broadcast against a state ``(B, ...)``."""
    if p.dim() > template.dim() - 1:
        raise ValueError(f"TwoCompartmentChipNeuron parameter of shape {tuple(p.shape)} does not "
                         f"fit a sample of shape {tuple(template.shape[1:])}.")
    return p.to(template)


class TwoCompartmentChipNeuron(TemporalModule):
    """A Loihi neuron of two compartments that resets by subtraction (NxTF's ``'soft'``
    reset; see the module docstring for the update and its sources).

    Parameters
    ----------
    membrane:
        The dendrite: a :class:`snnedge.ChipNeuron` in integer mode whose threshold, bias,
        initial membrane, decay, bounds, current register and strictness are the
        compartments' (its own ``reset`` is not used: the dendrite never resets).
    reset_weight:
        ``theta_sr``, what a soma spike subtracts from the dendrite one step later (state
        units; broadcasts like the threshold; :func:`reset_weight` computes NxTF's).

    The state is ``(v, z)``: the dendrite's voltage and the soma's last spikes (in flight on
    the recurrent synapse). The output is the soma's spikes.
    """

    emits_spikes = True
    #: Compartments one neuron occupies (the mapping counts cores with it).
    compartments_per_neuron = 2
    reset = "subtract"

    def __init__(self, membrane: ChipNeuron, reset_weight):
        super().__init__()
        where = "TwoCompartmentChipNeuron"
        check_integer_membrane(membrane, where)
        w = torch.as_tensor(reset_weight, dtype=torch.float64).detach().clone()
        if not torch.isfinite(w).all() or (w < 0).any() or not torch.equal(w, w.round()):
            raise ValueError(f"The 'reset_weight' parameter of {where} must hold non-negative "
                             f"integers (what a spike subtracts, in chip units). Got {w.tolist()}.")
        self.membrane = membrane
        self.register_buffer("reset_weight", w)

    def initial_state(self, template: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(v, z)`` at t=0: the dendrite's initial value, no spike in flight."""
        v = self.membrane.initial_state(template)
        return v, torch.zeros_like(v)

    def forward_block(self, current: torch.Tensor, state, steps: int, static: bool = False):
        """``steps`` ticks of the update in the module docstring; ``current`` is ``(steps, B,
        ...)`` or, when ``static``, ``(B, ...)``."""
        if current.dtype != torch.float64:
            raise ValueError(f"A TwoCompartmentChipNeuron computes exactly in float64 (integers up "
                             f"to 2^53). Got {current.dtype}; simulate a hardware network without "
                             f"dtype=..., or with dtype=torch.float64.")
        mem = self.membrane
        v, z = state
        template = current if static else current[0]
        theta = mem.threshold_for(template)
        theta_sr = _fit(self.reset_weight, template)
        bias = None if mem.bias is None else _fit(mem.bias, template)
        leak = None if mem.decay is None else _fit(mem.decay, template)
        inputs = torch.round(current)  # chip units: a no-op for spikes times integer weights
        half = None if mem.current_bits is None else 2.0 ** (mem.current_bits - 1)
        bounded = mem.v_min is not None or mem.v_max is not None
        out = torch.empty((steps, *v.shape), dtype=v.dtype, device=v.device)
        with torch.no_grad():
            for t in range(steps):
                u = (inputs if static else inputs[t]) - z * theta_sr
                if half is not None and not bool(((u >= -half) & (u < half)).all()):
                    u = wrap(u, mem.current_bits)
                if leak is not None:
                    v = fixed_point_decay(v, leak, mem.decay_shift)
                v = v + u
                if bias is not None:
                    v = v + bias
                if bounded:
                    v = v.clamp(mem.v_min, mem.v_max)
                z = (v > theta if mem.strict else v >= theta).to(v.dtype)
                out[t].copy_(z)
        return out, (v, z)

    def own_synapses(self, shape: tuple[int, ...]) -> torch.Tensor:
        """The recurrent synapse each soma spike crosses: 1 per neuron (0 where
        ``theta_sr`` rounds to 0: no synapse), for counting synaptic events
        (:meth:`snnedge.TemporalModule.own_synapses`)."""
        return (self.reset_weight != 0).to(torch.float64)

    def extra_repr(self) -> str:  # the dendrite's parameters are in its own line
        w = self.reset_weight
        return (f"compartments=2, reset_weight={float(w):g}" if w.numel() == 1 else
                f"compartments=2, reset_weight=({w.numel()} values)")
