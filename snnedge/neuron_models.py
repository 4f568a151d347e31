r"""Neuron models beyond IF and LIF, for the graphs other tools write (NIR's CubaLIF, LI, I and
Threshold): discrete time, one step = one tick, the same conventions as :mod:`snnedge.neurons`.

Equations (input ``I``, spikes ``z``, threshold :math:`\theta`, ``H`` the step function with
``H(0) = 1``)::

    CubaLIF   :  i[t] = beta_syn * i[t-1] + I[t]              (synaptic current, no reset)
                 u    = beta * v[t-1] + i[t];  z[t] = H(u - theta)
                 v[t] = u - z[t] * theta   (reset "subtract")  |  u * (1 - z[t])  ("zero")
                 i[0] = 0,  v[0] = v_init * theta
    LI        :  v[t] = beta * v[t-1] + gain * I[t];   output v[t]       (non-spiking)
    Integrator:  v[t] = v[t-1] + gain * I[t];          output v[t]       (non-spiking)
    Threshold :  z[t] = H(I[t] - theta)                                  (stateless)

CubaLIF is snnTorch's ``Synaptic`` (``alpha`` = ``beta_syn``) with snnedge's reset, and the
current-based LIF of Norse and Lava-dl (CUBA); :mod:`snnedge.interop.nir_models` gives the
NIR reading of each model with its step ``dt``. Its membrane is an :class:`~snnedge.LIF`
(:attr:`CubaLIF.membrane`) driven by the synaptic current, which runs first over a whole block
(it does not depend on the spikes): the membrane then takes the LIF's fast paths (the
compiled block, training's fused block is not used; autograd runs the reference steps).

:func:`cuba_lif_step`, :func:`li_step` and :func:`threshold_step` are the references of these
rules (as :func:`snnedge.lif_step` is of LIF's); tests/test_neuron_models.py holds every
module to them bit for bit. :data:`NEURON_MODELS` lists every neuron type of the core, the
registry its conformance tests run over.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import check_real
from .layers import TemporalModule
from .neurons import IF, LIF, lif_step
from .surrogate import Surrogate, get_surrogate, spike


def cuba_lif_step(i: torch.Tensor, v: torch.Tensor, current: torch.Tensor,
                  beta_syn: torch.Tensor | float, beta: torch.Tensor | float,
                  threshold: torch.Tensor | float, reset: str = "subtract",
                  surrogate: Surrogate | None = None,
                  detach_reset: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One CubaLIF step, the reference of the rule. Returns ``(z, i, v)``::

        i' = beta_syn * i + I;   (z, v') = lif_step(v, i', beta, theta, reset)
    """
    i = beta_syn * i + current
    z, v = lif_step(v, i, beta, threshold, reset, surrogate, detach_reset)
    return z, i, v


def li_step(v: torch.Tensor, current: torch.Tensor, beta: torch.Tensor | float | None,
            gain: torch.Tensor | float = 1.0) -> torch.Tensor:
    """One leaky-integrator step (``beta=None``: the integrator). Returns ``v'``::

        v' = beta * v + gain * I
    """
    return (v if beta is None else beta * v) + gain * current


def threshold_step(current: torch.Tensor, threshold: torch.Tensor | float,
                   surrogate: Surrogate | None = None) -> torch.Tensor:
    """``H(I - theta)``, differentiable through ``surrogate`` when one is given."""
    if surrogate is not None:
        return spike(current - threshold, surrogate)
    return (current >= threshold).to(current.dtype)


def channel_param(value, where: str, param: str, low: float | None = None, high: float | None = None,
                  low_open: bool = False) -> torch.Tensor:
    """A scalar or 1-D (one per channel) tensor from ``value``, checked finite and in range;
    a ``ValueError`` names ``param`` of ``where`` otherwise."""
    t = torch.as_tensor(value, dtype=torch.get_default_dtype()).detach().clone()
    bad_low = low is not None and bool(((t <= low) if low_open else (t < low)).any())
    bad_high = high is not None and bool((t > high).any())
    if t.dim() > 1 or t.numel() == 0 or not torch.isfinite(t).all() or bad_low or bad_high:
        rng = "" if low is None and high is None else (
            f" in {'(' if low_open else '['}{low if low is not None else '-inf'}, "
            f"{high if high is not None else 'inf'}]")
        raise ValueError(f"The {param!r} parameter of {where} must be finite{rng}: a float or a 1-D "
                         f"sequence with one value per channel. Got {t.tolist()}.")
    return t


def shaped(p: torch.Tensor, template: torch.Tensor, where: str) -> torch.Tensor:
    """``p`` (scalar or one per channel) in ``template``'s dtype and device, shaped to broadcast
    against a state like ``template`` ``(B, C, ...)``."""
    p = p.to(template)
    if p.dim() == 0:
        return p
    if template.dim() < 2 or template.shape[1] != p.numel():
        raise ValueError(f"{where} has {p.numel()} per-channel values but its input has channel "
                         f"size {tuple(template.shape[1:2])} (dimension 1 of {tuple(template.shape)}).")
    return p.view(-1, *([1] * (template.dim() - 2)))


class CubaLIF(TemporalModule):
    """Current-based leaky integrate-and-fire neuron; see :func:`cuba_lif_step`.

    Parameters
    ----------
    beta:
        Membrane decay per step in (0, 1] (float or one per channel).
    beta_syn:
        Synaptic-current decay per step in [0, 1] (snnTorch's ``alpha``; 0 makes it a LIF).
    threshold, reset, v_init, surrogate, alpha, detach_reset:
        As for :class:`~snnedge.LIF` (``alpha`` is the surrogate's sharpness).
    """

    emits_spikes = True

    def __init__(self, beta=0.9, beta_syn=0.8, threshold=1.0, reset: str = "subtract",
                 v_init: float = 0.0, surrogate: str = "atan", alpha: float | None = None,
                 detach_reset: bool = False):
        super().__init__()
        self.membrane = LIF(beta=beta, threshold=threshold, reset=reset, v_init=v_init,
                            surrogate=surrogate, alpha=alpha, detach_reset=detach_reset)
        self.register_buffer("beta_syn", channel_param(beta_syn, "CubaLIF", "beta_syn", 0.0, 1.0))

    @property
    def threshold(self) -> torch.Tensor:
        return self.membrane.threshold

    @property
    def beta(self) -> torch.Tensor:
        return self.membrane.beta

    @property
    def reset(self) -> str:
        return self.membrane.reset

    @property
    def v_init(self) -> float:
        return self.membrane.v_init

    @property
    def surrogate(self) -> Surrogate:
        return self.membrane.surrogate

    def initial_state(self, template: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(i, v)`` at t=0: no synaptic current, membrane ``v_init * theta``."""
        v = self.membrane.initial_state(template)
        return torch.zeros_like(v), v

    def synaptic_current(self, current: torch.Tensor, i: torch.Tensor, steps: int,
                         static: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``i[t]`` for each step of the block ``(steps, B, ...)``, and the last one."""
        b = shaped(self.beta_syn, i, "CubaLIF beta_syn")
        b = float(b) if b.dim() == 0 else b
        if torch.is_grad_enabled() and (current.requires_grad or i.requires_grad):
            out = []
            for t in range(steps):
                i = b * i + (current if static else current[t])
                out.append(i)
            return torch.stack(out), i
        out = torch.empty((steps, *i.shape), dtype=i.dtype, device=i.device)
        if not i.is_contiguous():  # keep the state's layout (channels-last): the membrane's fast path
            out = out.as_strided(out.shape, (i.numel(), *i.stride()))
        i = i.clone()
        for t in range(steps):
            i.mul_(b).add_(current if static else current[t])  # the reference's order of operations
            out[t].copy_(i)
        return out, i

    def forward_block(self, current: torch.Tensor, state, steps: int, static: bool = False):
        i, v = state
        syn, i = self.synaptic_current(current, i, steps, static)
        z, v = self.membrane.forward_block(syn, v, steps)
        return z, (i, v)

    def extra_repr(self) -> str:  # the membrane's parameters are in its own line
        b = self.beta_syn
        return f"beta_syn={float(b):g}" if b.dim() == 0 else f"beta_syn=per-channel[{b.numel()}]"


class LI(TemporalModule):
    """Leaky integrator (non-spiking): ``v = beta * v + gain * I``, output ``v``; see
    :func:`li_step`. A readout with memory (snnTorch and Norse end networks with it).

    Parameters
    ----------
    beta:
        Decay per step in (0, 1] (float or one per channel).
    gain:
        Input gain (float or one per channel); NIR's ``r dt / tau``.
    v_init:
        Initial value of ``v`` (absolute; there is no threshold).
    """

    emits_spikes = False
    emits_events = False

    def __init__(self, beta=0.9, gain=1.0, v_init: float = 0.0):
        super().__init__()
        where = type(self).__name__
        if beta is not None:
            self.register_buffer("beta", channel_param(beta, where, "beta", 0.0, 1.0, low_open=True))
        self.register_buffer("gain", channel_param(gain, where, "gain"))
        self.v_init = check_real(v_init, param="v_init", where=where)

    def beta_for(self, template: torch.Tensor) -> torch.Tensor | None:
        return shaped(self.beta, template, f"{type(self).__name__} beta")

    def initial_state(self, template: torch.Tensor) -> torch.Tensor:
        return torch.full_like(template, self.v_init)

    def forward_block(self, current: torch.Tensor, v: torch.Tensor, steps: int, static: bool = False):
        beta = self.beta_for(v)
        gain = shaped(self.gain, v, f"{type(self).__name__} gain")
        out = []
        for t in range(steps):
            v = li_step(v, current if static else current[t], beta, gain)
            out.append(v)
        return torch.stack(out), v

    def extra_repr(self) -> str:
        def fmt(p):
            return f"{float(p):g}" if p.dim() == 0 else f"per-channel[{p.numel()}]"
        beta = "" if type(self) is Integrator else f"beta={fmt(self.beta)}, "
        return f"{beta}gain={fmt(self.gain)}, v_init={self.v_init:g}"


class Integrator(LI):
    """Integrator (non-spiking, NIR's ``I``): ``v = v + gain * I``, output ``v``."""

    def __init__(self, gain=1.0, v_init: float = 0.0):
        super().__init__(beta=None, gain=gain, v_init=v_init)

    def beta_for(self, template: torch.Tensor) -> None:
        return None


class Threshold(TemporalModule):
    """Stateless threshold: ``z = H(I - theta)`` every step; see :func:`threshold_step`.

    ``threshold`` is any finite float or one per channel; ``surrogate`` and ``alpha`` give
    the gradient in training, as for :class:`~snnedge.IF`.
    """

    emits_spikes = True

    def __init__(self, threshold=0.0, surrogate: str = "atan", alpha: float | None = None):
        super().__init__()
        self.register_buffer("threshold", channel_param(threshold, "Threshold", "threshold"))
        self.surrogate = get_surrogate(surrogate, alpha)

    def initial_state(self, template: torch.Tensor) -> None:
        return None

    def forward_block(self, current: torch.Tensor, state, steps: int, static: bool = False):
        template = current if static else current[0]
        theta = shaped(self.threshold, template, "Threshold threshold")
        needs_grad = torch.is_grad_enabled() and current.requires_grad
        z = threshold_step(current, theta, self.surrogate if needs_grad else None)
        if static:
            z = z.unsqueeze(0).expand(steps, *z.shape)
        return z, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_block(x, None, x.shape[0])[0]

    def extra_repr(self) -> str:
        t = self.threshold
        return (f"threshold={float(t):g}" if t.dim() == 0 else f"threshold=per-channel[{t.numel()}]") \
            + f", surrogate={self.surrogate.name!r}"


#: Every neuron type of the core by name: the registry of tests/test_neuron_models.py's
#: conformance suite.
NEURON_MODELS: dict[str, type[nn.Module]] = {
    "IF": IF, "LIF": LIF, "CubaLIF": CubaLIF, "LI": LI, "Integrator": Integrator,
    "Threshold": Threshold}

__all__ = ["CubaLIF", "LI", "Integrator", "Threshold", "cuba_lif_step", "li_step",
           "threshold_step", "NEURON_MODELS"]
