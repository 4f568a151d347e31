r"""`ChipNeuron`: a neuron layer in a chip's own arithmetic, the engines' exact integer path.

``neuromorphic_targets.to_hardware`` builds networks of these (with integer-valued synaptic
weights) so that a simulation computes what the chip computes. Two modes:

Integer (``integer=True``; DYNAP-CNN, TrueNorth, Loihi). Every quantity is an integer held in
a float64 tensor, and every operation below maps integers to integers exactly (sums stay far
below 2^53, the products with spikes in {0, 1} and the decay's product below 2^40), so the
dense, event and brian2 engines agree bit for bit::

    i = round(I)                      the input current in chip units: round half to even,
                                      a no-op for spikes times integer weights; an analog
                                      (direct-encoded) input is rounded as a host writing
                                      input currents would
    i = wrap(i)                       current_bits: a two's-complement register that wraps
                                      around (Loihi's 24-bit u)
    v = decay(v) + i + bias           decay(v) = sign(v) * floor(|v| * d / 2^decay_shift)
                                      (Loihi's fixed-point decay, toward zero), else v
    v = clamp(v, v_min, v_max)        the saturating membrane
    z = v >= theta   (v > theta when strict)
    v = v - z * theta  ("subtract")   |   v * (1 - z)  ("zero")

Analog (``integer=False``; DYNAP-SE): the same update in float64 with per-neuron ``beta``,
``theta`` and ``bias`` maps (mismatched copies of the nominal values), no rounding, no bounds::

    v = beta * v + I + bias;  z = v >= theta;  reset as above

Parameters are tensors that broadcast against one sample ``(C, ...)``: a scalar, one value
per channel ``(C, 1, ...)``, or a full map. The module works on time-first blocks ``(T, B, ...)``
like every :class:`~snnedge.TemporalModule`; tests/test_chip_neuron.py checks it against a
plain int64 reference and the engines against each other.
"""
from __future__ import annotations

import torch

from .errors import check_choice
from .events import native_neuron_block
from .layers import TemporalModule

RESETS = ("subtract", "zero")


def _buffer(value, name: str) -> torch.Tensor | None:
    if value is None:
        return None
    t = torch.as_tensor(value, dtype=torch.float64).detach().clone()
    if not torch.isfinite(t).all():
        raise ValueError(f"The {name!r} parameter of ChipNeuron must be finite. Got {t.tolist()}.")
    return t


def wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``x`` in a ``bits``-bit two's-complement register: ``((x + 2^(b-1)) mod 2^b) - 2^(b-1)``
    (exact on integer-valued float64)."""
    half = float(2 ** (bits - 1))
    return torch.remainder(x + half, 2 * half) - half


def fixed_point_decay(v: torch.Tensor, factor: torch.Tensor, shift: int) -> torch.Tensor:
    """``sign(v) * floor(|v| * factor / 2^shift)``: Loihi's decay, rounding toward zero
    (lava's ``right_shift_to_zero(v * (4096 - dv), 12)``)."""
    return torch.sign(v) * torch.floor(v.abs() * factor / float(2 ** shift))


class ChipNeuron(TemporalModule):
    """A neuron layer in a chip's arithmetic (see the module docstring for the update).

    Parameters
    ----------
    threshold:
        Theta in chip units (integers in integer mode); broadcasts against one sample.
    bias:
        Added every step (TrueNorth's leak, DYNAP-CNN's and Loihi's bias), or ``None``.
    v_init:
        The membrane at ``t = 0`` (absolute, in chip units), or ``None`` for zero.
    reset:
        ``"subtract"`` or ``"zero"``.
    beta:
        Analog mode: the decay per step (a map), or ``None`` for no leak.
    decay:
        Integer mode: the fixed-point decay factor ``d`` (``2^decay_shift - dv``), or ``None``.
    decay_shift:
        Bits of the fixed-point decay (12 on Loihi).
    v_min, v_max:
        Integer mode: the saturating membrane's bounds (``None``: unbounded).
    current_bits:
        Integer mode: bits of a wrapping current register, or ``None``.
    strict:
        Spike when ``v > theta`` (Loihi) instead of ``v >= theta``.
    integer:
        Integer (True) or analog (False) mode.
    """

    emits_spikes = True

    def __init__(self, threshold, bias=None, v_init=None, reset: str = "subtract", *, beta=None,
                 decay=None, decay_shift: int = 12, v_min: float | None = None,
                 v_max: float | None = None, current_bits: int | None = None,
                 strict: bool = False, integer: bool = True):
        super().__init__()
        self.reset = check_choice(reset, RESETS, param="reset", where="ChipNeuron")
        self.integer, self.strict = bool(integer), bool(strict)
        self.decay_shift = int(decay_shift)
        self.v_min = None if v_min is None else float(v_min)
        self.v_max = None if v_max is None else float(v_max)
        self.current_bits = None if current_bits is None else int(current_bits)
        if not self.integer and (decay is not None or self.v_min is not None or self.v_max is not None
                                 or self.current_bits is not None):
            raise ValueError("ChipNeuron(integer=False) is the analog model: give 'beta' for a leak; "
                             "'decay', 'v_min', 'v_max' and 'current_bits' belong to integer mode.")
        if self.integer and beta is not None:
            raise ValueError("ChipNeuron(integer=True) leaks by a fixed-point 'decay' factor, not "
                             "'beta'; pass integer=False for an analog neuron with a beta map.")
        theta = _buffer(threshold, "threshold")
        if (theta <= 0).any():
            raise ValueError(f"The 'threshold' of ChipNeuron must be positive. Got minimum "
                             f"{float(theta.min())}.")
        self.register_buffer("threshold", theta)
        self.register_buffer("bias", _buffer(bias, "bias"))
        self.register_buffer("v_init", _buffer(v_init, "v_init"))
        self.register_buffer("beta", _buffer(beta, "beta"))
        self.register_buffer("decay", _buffer(decay, "decay"))

    # -- the parameters broadcast to a state like ``template`` (B, ...) ---------------------
    def _param(self, p: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
        p = p.to(template)
        if p.dim() > template.dim() - 1:
            raise ValueError(f"ChipNeuron parameter of shape {tuple(p.shape)} does not fit a sample "
                             f"of shape {tuple(template.shape[1:])}.")
        return p

    def threshold_for(self, template: torch.Tensor) -> torch.Tensor:
        """Theta broadcastable against a state like ``template`` ``(B, ...)``."""
        return self._param(self.threshold, template)

    def initial_state(self, template: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(template)
        if self.v_init is not None:
            out.copy_(self._param(self.v_init, template).expand_as(template))
        return out

    def _check_dtype(self, current: torch.Tensor) -> None:
        if self.integer and current.dtype != torch.float64:
            raise ValueError(f"A ChipNeuron in integer mode computes exactly in float64 (integers "
                             f"up to 2^53). Got {current.dtype}; simulate a hardware network without "
                             f"dtype=..., or with dtype=torch.float64.")

    def input_current(self, current: torch.Tensor) -> torch.Tensor:
        """The current in chip units: rounded half to even and wrapped (integer mode)."""
        if not self.integer:
            return current
        current = torch.round(current)
        if self.current_bits is None:
            return current
        half = 2.0 ** (self.current_bits - 1)
        lo, hi = (float(t) for t in torch.aminmax(current))
        return current if -half <= lo and hi < half else wrap(current, self.current_bits)

    def step(self, v: torch.Tensor, i: torch.Tensor, theta, bias, leak) -> tuple[torch.Tensor, torch.Tensor]:
        """One tick from membrane ``v`` and current ``i`` (already :meth:`input_current`).
        Returns ``(z, v)``."""
        if leak is not None:
            v = fixed_point_decay(v, leak, self.decay_shift) if self.integer else leak * v
        v = v + i
        if bias is not None:
            v = v + bias
        if self.v_min is not None or self.v_max is not None:
            v = v.clamp(self.v_min, self.v_max)
        z = (v > theta if self.strict else v >= theta).to(v.dtype)
        v = v - z * theta if self.reset == "subtract" else v * (1 - z)
        return z, v

    def forward_block(self, current: torch.Tensor, state: torch.Tensor, steps: int,
                      static: bool = False):
        """``steps`` ticks; ``current`` is ``(steps, B, ...)`` or, when ``static``, ``(B, ...)``.

        The same operations as :meth:`step`, in place into one preallocated output."""
        self._check_dtype(current)
        template = current if static else current[0]
        theta = self.threshold_for(template)
        theta = float(theta) if theta.numel() == 1 else theta
        bias = None if self.bias is None else self._param(self.bias, template)
        leak = self.decay if self.integer else self.beta
        leak = None if leak is None else self._param(leak, template)
        inputs = self.input_current(current)
        with torch.no_grad():
            fast = self._native_block(inputs, state, steps, static, theta, bias, leak)
        if fast is not None:
            return fast
        out = torch.empty((steps, *state.shape), dtype=state.dtype, device=state.device)
        v = state.clone()
        bounded = self.v_min is not None or self.v_max is not None
        with torch.no_grad():
            for t in range(steps):
                if leak is not None:
                    v = fixed_point_decay(v, leak, self.decay_shift) if self.integer else v.mul_(leak)
                v.add_(inputs if static else inputs[t])
                if bias is not None:
                    v.add_(bias)
                if bounded:
                    v.clamp_(self.v_min, self.v_max)
                z = out[t]
                (torch.gt if self.strict else torch.ge)(v, theta, out=z)
                if self.reset == "zero":
                    v.masked_fill_(z.bool(), 0.0)
                elif isinstance(theta, float):
                    v.sub_(z, alpha=theta)
                else:
                    v.addcmul_(z, theta, value=-1.0)
        return out, v

    def _native_block(self, inputs, state, steps, static, theta, bias, leak):
        """The block in snnedge's compiled IF kernel (:func:`snnedge.events.native_neuron_block`)
        when that is the same arithmetic: integer mode, no decay, a threshold as the kernel
        compares it (``v >= theta``; a strict one is ``v >= theta + 1`` on integers, with a
        reset to zero), and no saturation possible in this block. Then ``v += I + bias;
        z = v >= theta; reset`` is the whole update, exact on integers in float64. Returns
        ``(spikes, v)``, or None (the caller runs :meth:`step`'s operations)."""
        if not self.integer or leak is not None or (self.strict and self.reset != "zero"):
            return None
        if inputs.device.type != "cpu":
            return None
        drive = inputs if bias is None else inputs + bias
        theta = theta + 1.0 if self.strict else theta
        if (self.v_min is not None or self.v_max is not None) and not self._unsaturated(
                drive, state, steps, theta):
            return None
        v = state.clone()
        if not (v.is_contiguous() or v.is_contiguous(memory_format=torch.channels_last)):
            return None
        out = torch.empty((steps, *v.shape), dtype=v.dtype, device=v.device)
        if not v.is_contiguous():  # spikes in the membrane's layout (e.g. channels-last)
            out = out.as_strided(out.shape, (v.numel(), *v.stride()))
        first = drive if static else drive[0]
        if first.stride() != v.stride():
            drive = drive.contiguous(memory_format=torch.channels_last) if not v.is_contiguous() \
                else drive.contiguous()
        if native_neuron_block(drive, v, out, steps, static, theta, None, self.reset == "zero"):
            return out, v
        return None

    def _unsaturated(self, drive, state, steps, theta) -> bool:
        """Whether no membrane of this block can reach the bounds, from its drive's extremes
        ``d`` (input plus bias): a reset only lowers a membrane at or above theta and leaves
        it >= 0, so the membrane before the threshold test stays below ``max(v0, theta) +
        steps * max(d - theta, 0) + max(d, 0)`` ("subtract"; a reset to zero keeps it below
        ``max(v0, theta) + max(d, 0)``) and above ``min(v0, 0) + steps * min(d, 0)``."""
        d_lo, d_hi = (float(t) for t in torch.aminmax(drive))
        v_lo, v_hi = (float(t) for t in torch.aminmax(state))
        t_lo, t_hi = (float(theta), float(theta)) if isinstance(theta, float) else (
            float(theta.min()), float(theta.max()))
        excess = steps * max(d_hi - t_lo, 0.0) if self.reset == "subtract" else 0.0
        top = max(v_hi, t_hi) + excess + max(d_hi, 0.0)
        bottom = min(v_lo, 0.0) + steps * min(d_lo, 0.0)
        return ((self.v_max is None or top <= self.v_max)
                and (self.v_min is None or bottom >= self.v_min))

    def extra_repr(self) -> str:
        mode = "integer" if self.integer else "analog"
        bounds = "" if self.v_min is None else f", v=[{self.v_min:g}, {self.v_max:g}]"
        t = self.threshold
        theta = f"{float(t):g}" if t.numel() == 1 else f"map{tuple(t.shape)}"
        return (f"{mode}, threshold={theta}, reset={self.reset!r}{bounds}"
                + (", strict" if self.strict else "")
                + (f", current_bits={self.current_bits}" if self.current_bits else "")
                + (", leak" if (self.decay if self.integer else self.beta) is not None else ""))
