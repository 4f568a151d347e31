r"""Loihi's CUBA neuron in integers: a decaying synaptic current ``u`` feeding a ChipNeuron.

A Loihi compartment holds two registers (Davies et al., IEEE Micro 38:82, 2018; lava's
bit-accurate model ``PyLifModelBitAcc``, ``src/lava/proc/lif/models.py``, lava-nc/lava at
commit b6822fb; lava-dl's ``slayer/neuron/cuba.py``): the synaptic current ``u`` and the
membrane ``v``. Per step::

    u = sign(u) * floor(|u| * d / 2^12) + a_in     d = 4096 - (du + 1): Loihi 1 adds a 1-bit
                                                   offset to the 12-bit du (ds_offset)
    u = wrap(u, 24)                                a two's-complement 24-bit register
    v = sign(v) * floor(|v| * (4096 - dv) / 2^12) + u + bias
    v = clamp(v, -(2^23 - 1), 2^23 - 1);  z = v > vth;  v = v * (1 - z)   (reset to zero)

:class:`snnedge.ChipNeuron` computes the ``v`` line; :class:`CubaChipNeuron` puts the ``u``
line in front of it. With ``du = 4095`` (``d = 0``) ``u`` is just each step's input, the
plain ChipNeuron.

Why :func:`~neuromorphic_targets.to_hardware` uses it (``soft_reset="current"``; the
default is NxTF's two-compartment neuron, :mod:`~neuromorphic_targets.hardware_soft`): a
compartment resets the membrane to zero
(lava's models set ``v[spiked] = 0``; lava-dl's CUBA neuron ``v[t] = v[t] (1 - s[t])``), so
whatever a step's input carries above the threshold is lost, where a float network that
resets by subtraction keeps it. Spike-driven inputs arrive in bursts (several threshold's
worth in one step), and most of what a reset to zero loses is there. A current that decays
by ``1 - d / 2^12`` per step delivers each step's input over the following steps; with the
threshold, bias and initial membrane multiplied by the current's gain ``2^12 / (2^12 - d)``
every input still delivers the same charge to ``v``, in smaller portions, so less of it
overshoots the threshold at a reset. (The current's ``u`` does not reset: only ``v`` does.)
"""
from __future__ import annotations

import torch

from snnedge.chip_neuron import ChipNeuron, fixed_point_decay, wrap
from snnedge.layers import TemporalModule

__all__ = ["CubaChipNeuron", "check_integer_membrane"]


def check_integer_membrane(membrane, where: str) -> None:
    """Raise TypeError unless ``membrane`` is a :class:`ChipNeuron` in integer mode (the
    membrane a chip neuron of ``where``'s kind wraps)."""
    if not isinstance(membrane, ChipNeuron) or not membrane.integer:
        raise TypeError(f"The 'membrane' parameter of {where} must be a ChipNeuron in integer "
                        f"mode. Got {type(membrane).__name__}"
                        + ("" if not isinstance(membrane, ChipNeuron) else " (analog mode)")
                        + "; build it with ChipNeuron(..., integer=True).")


class CubaChipNeuron(TemporalModule):
    """A :class:`snnedge.ChipNeuron` (integer mode) behind a chip's decaying synaptic current.

    Parameters
    ----------
    membrane:
        The neuron's membrane (``v``): a ChipNeuron in integer mode.
    current_decay:
        ``d``, the current's fixed-point factor: ``u <- sign(u) * floor(|u| * d / 2^shift)``
        before each step's input is added; an integer in ``[0, 2^shift]`` (Loihi:
        ``4096 - (du + 1)``).
    current_shift:
        Bits of the fixed-point factor (12 on Loihi).
    current_bits:
        Bits of the current register, which wraps around (24 on Loihi), or ``None``.

    The state is ``(u, v)``; the output is the membrane's spikes. See the module docstring
    for the update; ``tests/test_hardware_cuba.py`` checks it against a plain int64 loop.
    """

    emits_spikes = True

    def __init__(self, membrane: ChipNeuron, current_decay: int, current_shift: int = 12,
                 current_bits: int | None = None):
        super().__init__()
        where = "CubaChipNeuron"
        check_integer_membrane(membrane, where)
        for param, value, low in (("current_shift", current_shift, 0),
                                  ("current_bits", current_bits, 2)):
            if value is None and param == "current_bits":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"The {param!r} parameter of {where} must be an integer >= {low}. "
                                 f"Got {value!r} instead.")
        top = 2 ** current_shift
        if isinstance(current_decay, bool) or not isinstance(current_decay, int) \
                or not 0 <= current_decay <= top:
            raise ValueError(f"The 'current_decay' parameter of {where} must be an integer in "
                             f"[0, {top}] (the factor d of u <- u * d / 2^{current_shift}). Got "
                             f"{current_decay!r} instead.")
        self.membrane = membrane
        self.current_decay, self.current_shift = current_decay, current_shift
        self.current_bits = current_bits

    @property
    def reset(self) -> str:
        return self.membrane.reset

    @property
    def gain(self) -> float:
        """The charge one unit of input delivers to ``v`` in all, ``2^shift / (2^shift - d)``
        (ignoring the floor's rounding), or ``inf`` when the current never decays."""
        top = 2 ** self.current_shift
        return float("inf") if self.current_decay == top else top / (top - self.current_decay)

    def initial_state(self, template: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(u, v)`` at t=0: no current, the membrane's initial value."""
        v = self.membrane.initial_state(template)
        return torch.zeros_like(v), v

    def synaptic_current(self, current: torch.Tensor, u: torch.Tensor, steps: int,
                         static: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``u[t]`` for each step of the block ``(steps, B, ...)``, and the last one."""
        inputs = torch.round(current)  # chip units: a no-op for spikes times integer weights
        out = torch.empty((steps, *u.shape), dtype=u.dtype, device=u.device)
        if not u.is_contiguous():  # keep the state's layout (channels-last): the membrane's fast path
            out = out.as_strided(out.shape, (u.numel(), *u.stride()))
        half = None if self.current_bits is None else 2.0 ** (self.current_bits - 1)
        for t in range(steps):
            u = fixed_point_decay(u, float(self.current_decay), self.current_shift) + (
                inputs if static else inputs[t])
            if half is not None and not bool(((u >= -half) & (u < half)).all()):
                u = wrap(u, self.current_bits)
            out[t].copy_(u)
        return out, u

    def forward_block(self, current: torch.Tensor, state, steps: int, static: bool = False):
        if current.dtype != torch.float64:
            raise ValueError(f"A CubaChipNeuron computes exactly in float64 (integers up to 2^53). "
                             f"Got {current.dtype}; simulate a hardware network without dtype=..., "
                             f"or with dtype=torch.float64.")
        u, v = state
        with torch.no_grad():
            syn, u = self.synaptic_current(current, u, steps, static)
            z, v = self.membrane.forward_block(syn, v, steps)
        return z, (u, v)

    def extra_repr(self) -> str:  # the membrane's parameters are in its own line
        bits = "" if self.current_bits is None else f", current_bits={self.current_bits}"
        return (f"current_decay={self.current_decay}/2^{self.current_shift} "
                f"(gain {self.gain:g}){bits}")
