r"""Integrate-and-fire neurons in discrete time (one step = one tick).

Equations (state ``v``, input current ``I``, threshold :math:`\theta`, spikes ``z``)::

    IF :  v[t] = v[t-1] + I[t]
    LIF:  v[t] = beta * v[t-1] + I[t]
    both: z[t] = 1 if v[t] >= theta else 0
          reset "subtract": v[t] -= z[t] * theta   (Rueckauer et al. 2017, doi:10.3389/fnins.2017.00682)
          reset "zero":     v[t]  = 0 where z[t] = 1
    v[0] = v_init * theta   (v_init = 0.5 is the theta/2 start of QCFS, Bu et al., ICLR 2022)

Underneath each module is a stateless step function (``if_step``, ``lif_step``) that takes
and returns the state explicitly, after Norse's functional core. The modules work on
time-first tensors ``(T, B, ...)``; the engines call :meth:`SpikingNeuron.forward_block`
on blocks of time steps and carry the state between blocks.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import check_choice, check_real
from .events import native_neuron_block
from .layers import TemporalModule
from .surrogate import Surrogate, get_surrogate, spike

RESETS = ("subtract", "zero")


def _reset(v: torch.Tensor, z: torch.Tensor, threshold: torch.Tensor, reset: str) -> torch.Tensor:
    return v - z * threshold if reset == "subtract" else v * (1 - z)


def if_step(v: torch.Tensor, current: torch.Tensor, threshold: torch.Tensor | float,
            reset: str = "subtract", surrogate: Surrogate | None = None,
            detach_reset: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One IF step: ``v += I``; spike where ``v >= theta``; reset. Returns ``(z, v)``.

    With a ``surrogate`` the spike is differentiable (surrogate gradient); without one it
    is a plain comparison.
    """
    v = v + current
    z = spike(v - threshold, surrogate) if surrogate is not None else (v >= threshold).to(v.dtype)
    return z, _reset(v, z.detach() if detach_reset else z, threshold, reset)


def lif_step(v: torch.Tensor, current: torch.Tensor, beta: torch.Tensor | float,
             threshold: torch.Tensor | float, reset: str = "subtract",
             surrogate: Surrogate | None = None,
             detach_reset: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One LIF step: ``v = beta * v + I``; spike where ``v >= theta``; reset. Returns ``(z, v)``."""
    return if_step(beta * v, current, threshold, reset, surrogate, detach_reset)


def sum_steps_and_batch(t: torch.Tensor) -> torch.Tensor:
    """``t.sum((0, 1))``, reduced in ``t``'s memory order (a channels-last block sums about
    5x faster read in place than through the logical NCHW order)."""
    order = sorted(range(2, t.dim()), key=lambda d: -t.stride(d))
    if order == list(range(2, t.dim())):
        return t.sum((0, 1))
    total = t.permute(0, 1, *order).sum((0, 1))
    return total.permute(*sorted(range(len(order)), key=lambda i: order[i]))


class SpikingNeuron(TemporalModule):
    """Base class of snnedge's neuron layers (IF, LIF).

    Parameters
    ----------
    threshold:
        Firing threshold theta: a float, or one value per channel (sequence or 1-D tensor;
        channel is dimension 1 of a ``(B, C, ...)`` input).
    reset:
        ``"subtract"`` (default, keeps the residue) or ``"zero"``.
    v_init:
        Initial membrane as a fraction of the threshold (0 or 0.5 for theta/2).
    surrogate, alpha:
        Surrogate gradient name (see :data:`snnedge.surrogate.SURROGATES`) and sharpness.
    learn_threshold:
        Make the threshold a trainable parameter.
    detach_reset:
        Do not back-propagate through the reset (Zenke & Vogels 2021).
    """

    emits_spikes = True

    def __init__(self, threshold=1.0, reset: str = "subtract", v_init: float = 0.0,
                 surrogate: str = "atan", alpha: float | None = None,
                 learn_threshold: bool = False, detach_reset: bool = False):
        super().__init__()
        where = type(self).__name__
        self.reset = check_choice(reset, RESETS, param="reset", where=where)
        self.v_init = check_real(v_init, param="v_init", where=where, low=0.0, high=1.0)
        self.surrogate = get_surrogate(surrogate, alpha)
        self.detach_reset = bool(detach_reset)
        theta = torch.as_tensor(threshold, dtype=torch.get_default_dtype()).detach().clone()
        if theta.dim() > 1 or theta.numel() == 0:
            raise ValueError(f"The 'threshold' parameter of {where} must be a float or a 1-D "
                             f"sequence with one value per channel. Got shape {tuple(theta.shape)}.")
        if not torch.isfinite(theta).all() or (theta <= 0).any():
            raise ValueError(f"The 'threshold' parameter of {where} must be positive and finite. "
                             f"Got {theta.tolist()}.")
        if learn_threshold:
            self.threshold = nn.Parameter(theta)
        else:
            self.register_buffer("threshold", theta)

    # -- parameters broadcast to a (B, C, ...) state ------------------------------------
    def _per_channel(self, p: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
        if p.dim() == 0:
            return p
        if template.dim() < 2 or template.shape[1] != p.numel():
            got = tuple(template.shape[1:2])
            raise ValueError(f"{type(self).__name__} has {p.numel()} per-channel values but its "
                             f"input has channel size {got} (dimension 1 of {tuple(template.shape)}). "
                             f"Give one threshold per channel of the layer it follows.")
        return p.view(-1, *([1] * (template.dim() - 2)))

    def _beta(self, template: torch.Tensor) -> torch.Tensor | None:
        return None

    def initial_state(self, template: torch.Tensor) -> torch.Tensor:
        """Membrane at t=0 for one step's input shape ``(B, ...)``."""
        theta = self._per_channel(self.threshold.to(template), template)
        return self._state_like(template, self.v_init * theta)

    @staticmethod
    def _state_like(template: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """``value`` broadcast to ``template``'s shape, in a new tensor with the same memory
        layout (channels-last convolution outputs keep their layout through the neurons)."""
        return torch.empty_like(template).copy_(value.expand_as(template))

    def forward_block(self, current: torch.Tensor, v: torch.Tensor, steps: int,
                      static: bool = False, out: torch.Tensor | None = None,
                      counts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``steps`` ticks. ``current`` is ``(steps, B, ...)``, or ``(B, ...)`` when
        ``static`` (the same input every step). Returns ``(spikes (steps, B, ...), v)``.

        ``out``, when given and no gradient is needed, is a buffer of the spikes' shape to
        write into (the engines reuse one per layer so that memory stays flat over blocks).
        ``counts`` (no-gradient runs), a tensor of one sample's shape, gets this block's
        spikes added, summed over ticks and samples (the engines' per-neuron counts).
        """
        template = current if static else current[0]
        theta = self._per_channel(self.threshold.to(template), template)
        beta = self._beta(template)
        needs_grad = torch.is_grad_enabled() and (
            current.requires_grad or v.requires_grad or any(p.requires_grad for p in self.parameters()))
        if needs_grad:
            if counts is not None:
                raise ValueError("forward_block counts spikes in no-gradient runs only.")
            return self._block_autograd(current, v, steps, static, theta, beta)
        return self._block_inplace(current, v, steps, static, theta, beta, out, counts)

    def _block_autograd(self, current, v, steps, static, theta, beta):
        out = []
        for t in range(steps):
            i_t = current if static else current[t]
            if beta is not None:
                v = beta * v
            z, v = if_step(v, i_t, theta, self.reset, self.surrogate, self.detach_reset)
            out.append(z)
        return torch.stack(out), v

    @torch.no_grad()
    def _block_inplace(self, current, v, steps, static, theta, beta, out=None, counts=None):
        # Same arithmetic as if_step, in place, written straight into one preallocated
        # output: one pass per block in the compiled kernel (snnedge/_event_kernels.c) where
        # it applies, else three memory passes per step (add, compare, reset).
        v = v.clone()
        shape = (steps, *v.shape)
        if (out is None or out.shape != shape or out.dtype != v.dtype or out.device != v.device
                or out[0].stride() != v.stride()):
            out = torch.empty(shape, dtype=v.dtype, device=v.device)
            if not v.is_contiguous():  # spikes in the membrane's layout (e.g. channels-last)
                out = out.as_strided(shape, (v.numel(), *v.stride()))
        scalar = theta.dim() == 0
        theta_f = float(theta) if scalar else theta
        if native_neuron_block(current, v, out, steps, static, theta_f, beta, self.reset == "zero",
                               counts):
            return out, v
        inputs = (current,) * steps if static else current.unbind(0)
        for i_t, z in zip(inputs, out.unbind(0)):
            if beta is not None:
                v.mul_(beta)
            v.add_(i_t)
            torch.ge(v, theta_f, out=z)
            if self.reset == "zero":
                v.addcmul_(v, z, value=-1.0)  # v * (1 - z), in place
            elif scalar:
                v.sub_(z, alpha=theta_f)
            else:
                v.addcmul_(z, theta, value=-1.0)
        if counts is not None:
            counts.add_(sum_steps_and_batch(out))
        return out, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Multi-step call on a time-first input ``(T, B, ...)`` from the initial state."""
        if x.dim() < 2:
            raise ValueError(f"{type(self).__name__} expects a time-first input (T, B, ...). "
                             f"Got shape {tuple(x.shape)}.")
        spikes, _ = self.forward_block(x, self.initial_state(x[0]), x.shape[0])
        return spikes

    def extra_repr(self) -> str:
        theta = self.threshold
        t = f"{float(theta):g}" if theta.dim() == 0 else f"per-channel[{theta.numel()}]"
        return (f"threshold={t}, reset={self.reset!r}, v_init={self.v_init:g}, "
                f"surrogate={self.surrogate.name!r}")


class IF(SpikingNeuron):
    """Integrate-and-fire neuron (no leak): ``v += I``; see the module docstring."""


class LIF(SpikingNeuron):
    """Leaky integrate-and-fire neuron: ``v = beta * v + I``; see the module docstring.

    Parameters
    ----------
    beta:
        Decay per step in (0, 1]; a float, or one per channel.
    learn_beta:
        Train the decay (PLIF, Fang et al., ICCV 2021, doi:10.1109/ICCV48922.2021.00266):
        ``beta = sigmoid(w)`` with ``w`` a parameter, so beta stays in (0, 1).
    Other parameters as in :class:`SpikingNeuron`.
    """

    def __init__(self, beta=0.9, threshold=1.0, reset: str = "subtract", v_init: float = 0.0,
                 surrogate: str = "atan", alpha: float | None = None,
                 learn_threshold: bool = False, learn_beta: bool = False,
                 detach_reset: bool = False):
        super().__init__(threshold, reset, v_init, surrogate, alpha, learn_threshold, detach_reset)
        b = torch.as_tensor(beta, dtype=torch.get_default_dtype()).detach().clone()
        if b.dim() > 1 or not torch.isfinite(b).all() or (b <= 0).any() or (b > 1).any():
            raise ValueError(f"The 'beta' parameter of LIF must be in (0, 1] (a float or one per "
                             f"channel). Got {b.tolist()}.")
        self.learn_beta = bool(learn_beta)
        if learn_beta:
            # logit(1) is +inf: keep a learnable decay strictly below 1.
            self.beta_logit = nn.Parameter(torch.logit(b.clamp(max=1 - 1e-6)))
        else:
            self.register_buffer("beta", b)

    def _beta(self, template: torch.Tensor) -> torch.Tensor | float:
        b = torch.sigmoid(self.beta_logit) if self.learn_beta else self.beta
        b = self._per_channel(b.to(template), template)
        return float(b) if b.dim() == 0 and not b.requires_grad else b

    def extra_repr(self) -> str:
        b = torch.sigmoid(self.beta_logit) if self.learn_beta else self.beta
        bs = f"{float(b):g}" if b.dim() == 0 else f"per-channel[{b.numel()}]"
        return f"beta={bs}, " + super().extra_repr()


NEURONS: dict[str, type[SpikingNeuron]] = {"IF": IF, "LIF": LIF}
