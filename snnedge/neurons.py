r"""Integrate-and-fire neurons in discrete time (one step = one tick).

Equations (state ``v``, input current ``I``, threshold :math:`\theta`, spikes ``z``)::

    IF :  v[t] = v[t-1] + I[t]
    LIF:  v[t] = beta * v[t-1] + I[t]
    both: z[t] = 1 if v[t] >= theta else 0
          reset "subtract": v[t] -= z[t] * theta   (Rueckauer et al. 2017, doi:10.3389/fnins.2017.00682)
          reset "zero":     v[t]  = 0 where z[t] = 1
    v[0] = v_init * theta   (v_init = 0.5 is the theta/2 start of QCFS, Bu et al., ICLR 2022)

The reference for this update is one place: the stateless step functions :func:`if_step` and
:func:`lif_step`, which take and return the state explicitly (after Norse's functional core).
Everything else that runs the rule is held to them, bit for bit, by tests/test_neurons.py:

* :meth:`SpikingNeuron.forward_block` with gradients runs them step by step (autograd);
* without gradients it runs :func:`step_into`, the same float operations in place into
  preallocated tensors, or the compiled kernel (:func:`snnedge.events.native_neuron_block`,
  ``snnedge/_event_kernels_body.h``) that does them in one pass per block, also fused with a
  tiling average or sum pool after the layer (:meth:`SpikingNeuron.forward_block_pooled`);
* training's fused block (:mod:`snnedge.training.neuron_grad`) runs :func:`step_into` and
  saves the membrane for its hand-written backward;
* the brian2 engine writes the same equations in brian2's language
  (:mod:`snnedge.interop.brian2_engine`; tests/test_brian2_engine.py compares the spikes).

The modules work on time-first tensors ``(T, B, ...)``; the engines call
:meth:`SpikingNeuron.forward_block` on blocks of time steps and carry the state between blocks.
"""
from __future__ import annotations

import functools
import weakref
from collections.abc import Callable

import torch
from torch import nn

from .errors import check_choice, check_real
from .events import (NEURON_MIN_WORK, is_channels_last, native_kernel, native_neuron_block,
                     parameter_maps)
from .kernel_threads import run_split
from .layers import TemporalModule
from .surrogate import Surrogate, get_surrogate, spike

RESETS = ("subtract", "zero")

# SpikingNeuron.kept_state: module -> (key, the source tensors, the initial membrane of one
# sample); dropped with the module.
_KEPT_STATES: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def without_grad(fn: Callable) -> Callable:
    """``fn`` run under ``torch.no_grad()``, entered only where gradients are on: an engine
    calls the neurons' block methods inside its own ``no_grad``, and ``torch.no_grad()`` as
    a decorator builds a context on every call (5.4 us against 0.6, two calls per neuron
    layer per call of ``simulate``)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        if not torch.is_grad_enabled():
            return fn(*args, **kwargs)
        with torch.no_grad():
            return fn(*args, **kwargs)
    return run


def _reset(v: torch.Tensor, z: torch.Tensor, threshold: torch.Tensor, reset: str) -> torch.Tensor:
    return v - z * threshold if reset == "subtract" else v * (1 - z)


def if_step(v: torch.Tensor, current: torch.Tensor, threshold: torch.Tensor | float,
            reset: str = "subtract", surrogate: Surrogate | None = None,
            detach_reset: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One IF step, the reference of the update rule. Returns ``(z, v)``::

        u = v + I
        z = H(u - theta)               (1 where u >= theta, else 0)
        v' = u - z * theta             reset "subtract"
        v' = u * (1 - z)               reset "zero"

    With a ``surrogate`` the spike is differentiable (:math:`\partial z / \partial u =
    \sigma'(u - \theta)`, :func:`snnedge.surrogate.spike`); without one it is a plain
    comparison. ``detach_reset`` keeps the reset out of the backward pass (Zenke & Vogels
    2021). ``threshold`` is a float or a tensor that broadcasts against ``v`` (per channel:
    ``(C, 1, ...)``).
    """
    v = v + current
    z = spike(v - threshold, surrogate) if surrogate is not None else (v >= threshold).to(v.dtype)
    return z, _reset(v, z.detach() if detach_reset else z, threshold, reset)


def lif_step(v: torch.Tensor, current: torch.Tensor, beta: torch.Tensor | float,
             threshold: torch.Tensor | float, reset: str = "subtract",
             surrogate: Surrogate | None = None,
             detach_reset: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One LIF step, the reference of the leaky rule: :func:`if_step` on the decayed membrane.
    Returns ``(z, v)``::

        u = beta * v + I;  z = H(u - theta);  v' = reset(u, z)  (as in if_step)
    """
    return if_step(beta * v, current, threshold, reset, surrogate, detach_reset)


def step_into(v: torch.Tensor, current: torch.Tensor, z: torch.Tensor,
              threshold: torch.Tensor | float, beta: torch.Tensor | float | None = None,
              reset: str = "subtract", u: torch.Tensor | None = None,
              fire: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
    """:func:`lif_step` (:func:`if_step` when ``beta`` is None) with no surrogate, computed in
    place: the membrane before reset, ``u = beta * v + I``, goes into ``u`` (default: ``v``
    itself), the spikes into ``z``, the membrane after reset back into ``v``.

    The block loops call it once per tick and allocate nothing. It does the reference's float
    operations in the same order (a product with a spike in {0, 1} is exact), so spikes and
    membranes equal :func:`lif_step`'s bit for bit. ``threshold`` is a Python float (a scalar
    threshold, the cheapest operand) or a tensor broadcasting against ``v``. ``fire``
    replaces the Heaviside spike ``H(u - theta)`` by another function of ``u - theta`` (the
    smooth model that training checks its gradients on).
    """
    if u is None:
        u = v
        if beta is not None:
            v.mul_(beta)
        v.add_(current)
    elif beta is None:
        torch.add(v, current, out=u)
    else:
        torch.mul(v, beta, out=u)
        u.add_(current)
    if fire is None:
        torch.ge(u, threshold, out=z)
    else:
        z.copy_(fire(u - threshold))
    if reset == "zero":
        torch.addcmul(u, u, z, value=-1.0, out=v)  # u * (1 - z)
    elif isinstance(threshold, float):
        torch.sub(u, z, alpha=threshold, out=v)
    else:
        torch.addcmul(u, z, threshold, value=-1.0, out=v)


def sum_steps_and_batch(t: torch.Tensor) -> torch.Tensor:
    """``t.sum((0, 1))``, reduced in ``t``'s memory order (a channels-last block sums about
    5x faster read in place than through the logical NCHW order)."""
    order = sorted(range(2, t.dim()), key=lambda d: -t.stride(d))
    if order == list(range(2, t.dim())):
        return t.sum((0, 1))
    total = t.permute(0, 1, *order).sum((0, 1))
    return total.permute(*sorted(range(len(order)), key=lambda i: order[i]))


def native_neuron_pool_block(current: torch.Tensor, v: torch.Tensor, out: torch.Tensor, steps: int,
                             static: bool, theta: torch.Tensor | float,
                             beta: torch.Tensor | float | None, reset_zero: bool,
                             window: tuple[int, int], divisor: float,
                             counts: torch.Tensor | None = None) -> bool:
    """:func:`native_neuron_block` followed by a pool whose ``window`` tiles the map (stride =
    window, no padding; ``divisor``: the window's size for an average pool, 1 for a sum pool),
    in one pass: only the pooled spikes go to ``out`` ``(steps, B, C, H / kh, W / kw)``
    (channels-last), never the spikes at full resolution. Window sums of spikes are whole
    numbers, so the result equals the neurons then ``avg_pool2d`` bit for bit. Returns False
    (nothing done) unless ``v`` ``(B, C, H, W)`` is channels-last and the current, ``out``
    and ``counts`` share its layout."""
    kernel = native_kernel()
    if kernel is None or v.device.type != "cpu" or v.dtype not in (torch.float32, torch.float64):
        return False
    if v.dim() != 4 or v.shape[0] == 0 or not is_channels_last(v) or current.dtype != v.dtype:
        return False
    batch, c, h, w = v.shape
    kh, kw = window
    if h % kh or w % kw or out.dtype != v.dtype or out.shape != (steps, batch, c, h // kh, w // kw):
        return False
    first = current if static else current[0]
    if first.shape != v.shape or first.stride() != v.stride() or not is_channels_last(out[0]):
        return False
    if not static and current.stride(0) < v.numel():
        return False
    if out.stride(0) < out[0].numel() or out.stride(1) != c * (h // kh) * (w // kw):
        return False
    if counts is not None and (counts.dtype != v.dtype or counts.shape != v.shape[1:]
                               or counts.stride() != v[0].stride()):
        return False
    theta_map, beta_map = parameter_maps(v, theta, beta)
    args = (current.data_ptr(), v.data_ptr(), out.data_ptr(), theta_map.data_ptr(),
            0 if beta_map is None else beta_map.data_ptr(), 0 if counts is None else counts.data_ptr(),
            v.dtype == torch.float64, reset_zero, steps)
    tail = (h, w, c, kh, kw, float(divisor), 0 if static else current.stride(0), out.stride(0))
    rows = h // kh
    threads = int(min(torch.get_num_threads(), rows, steps * v.numel() // NEURON_MIN_WORK))
    if threads < 2:
        kernel.neuron_pool(*args, 0, batch, 0, rows, *tail)
        return True
    # pooled rows split over threads: disjoint neurons, so the counts never collide
    cut = [rows * i // threads for i in range(threads + 1)]
    run_split(kernel.neuron_pool, [(*args, 0, batch, r0, r1, *tail) for r0, r1 in zip(cut[:-1], cut[1:])])
    return True


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
    def per_channel(self, p: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
        """``p`` (a scalar, or one value per channel) shaped to broadcast against a state
        like ``template`` ``(B, C, ...)``: as is when scalar, else ``(C, 1, ...)``. A
        ``ValueError`` names the mismatch when ``template`` has another channel count."""
        if p.dim() == 0:
            return p
        if template.dim() < 2 or template.shape[1] != p.numel():
            got = tuple(template.shape[1:2])
            raise ValueError(f"{type(self).__name__} has {p.numel()} per-channel values but its "
                             f"input has channel size {got} (dimension 1 of {tuple(template.shape)}). "
                             f"Give one threshold per channel of the layer it follows.")
        return p.view(-1, *([1] * (template.dim() - 2)))

    def threshold_for(self, template: torch.Tensor) -> torch.Tensor:
        """The threshold theta in ``template``'s dtype and device, shaped by
        :meth:`per_channel` to broadcast against a state like ``template``."""
        return self.per_channel(self.threshold.to(template), template)

    def beta_for(self, template: torch.Tensor) -> torch.Tensor | float | None:
        """The decay beta per step, shaped like :meth:`threshold_for`: ``None`` for a neuron
        without leak (IF); a Python float when it is one constant value."""
        return None

    @classmethod
    def runs_reference_update(cls) -> bool:
        """Whether this class runs the update rule of this module as written (it overrides
        none of the methods that implement it), so that another implementation of the same
        rule, training's fused autograd block, may stand in for its blocks."""
        return all(getattr(cls, m) is getattr(SpikingNeuron, m)
                   for m in ("forward_block", "_block_autograd", "_block_inplace"))

    def initial_state(self, template: torch.Tensor) -> torch.Tensor:
        """Membrane at t=0 for one step's input shape ``(B, ...)``."""
        return self.kept_state(template, (self.threshold,),
                               lambda: self.v_init * self.threshold_for(template))

    def kept_state(self, template: torch.Tensor, sources: tuple[torch.Tensor, ...],
                   value: Callable[[], torch.Tensor]) -> torch.Tensor:
        """:meth:`state_like` of ``value()``, the initial membrane computed from the tensors
        ``sources`` (and plain attributes such as ``v_init``). Where no gradient is needed and
        the class keeps :meth:`threshold_for` (a subclass's own may read other values), it is
        made once per sample shape, memory order, dtype and device and copied on later calls,
        while every source is the same tensor object at the same version and memory (an
        in-place change, ``threshold.mul_(2)``, a new ``.data`` or a new tensor computes it
        again) and ``v_init`` is unchanged. An engine makes every neuron layer's membrane anew
        on each call of ``simulate``: a ``CalibratedIF`` of 64 x 8 x 8 channels-last took 50 us
        per call (the value, then a broadcast copy into the layout), now 20."""
        if (template.shape[0] == 0 or type(self).threshold_for is not SpikingNeuron.threshold_for
                or (torch.is_grad_enabled() and any(t.requires_grad for t in sources))):
            return self.state_like(template, value())  # (a threshold of a subclass's own: as is)
        key = (tuple(template.shape[1:]), template.stride()[1:], template.dtype, template.device,
               self.v_init, tuple((t._version, t.data_ptr()) for t in sources))
        kept = _KEPT_STATES.get(self)
        if kept is None or kept[0] != key or any(a is not b for a, b in zip(kept[1], sources)):
            one = self.state_like(template[:1], value())
            kept = _KEPT_STATES[self] = (key, sources, one)
        one = kept[2]
        if template.shape[0] == 1 and template.stride()[1:] == one.stride()[1:]:
            if template.stride() != one.stride():
                # the same memory order; a sample dimension of size 1 may have any stride (a
                # tick of a one-sample block after a batch's call): kept with the template's,
                # which a clone keeps, as the kernels want it
                one = one.as_strided(template.shape, template.stride())
                _KEPT_STATES[self] = (key, sources, one)
            return one.clone()
        return self.state_like(template, one)

    @staticmethod
    def state_like(template: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
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
        theta = self.threshold_for(template)
        beta = self.beta_for(template)
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
            if beta is None:
                z, v = if_step(v, i_t, theta, self.reset, self.surrogate, self.detach_reset)
            else:
                z, v = lif_step(v, i_t, beta, theta, self.reset, self.surrogate, self.detach_reset)
            out.append(z)
        return torch.stack(out), v

    @without_grad
    def advance_block(self, current: torch.Tensor, v: torch.Tensor, steps: int,
                      static: bool = False, out: torch.Tensor | None = None,
                      counts: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`forward_block` of a no-gradient run that updates the membrane ``v`` in
        place instead of returning a new one (an engine's own state: no copy of every
        membrane per block). Returns the spikes ``(steps, B, ...)``. Only for classes that
        run the reference update (:meth:`runs_reference_update`)."""
        template = current if static else current[0]
        theta = self.threshold_for(template)
        beta = self.beta_for(template)
        out, _ = self._block_inplace(current, v, steps, static, theta, beta, out, counts,
                                     copy_state=False)
        return out

    @without_grad
    def _block_inplace(self, current, v, steps, static, theta, beta, out=None, counts=None,
                       copy_state=True):
        # The reference rule in place (step_into), written straight into one preallocated
        # output: one pass per block in the compiled kernel (snnedge/_event_kernels.c) where
        # it applies, else three memory passes per step (add, compare, reset).
        if copy_state:
            v = v.clone()
        shape = (steps, *v.shape)
        if (out is None or out.shape != shape or out.dtype != v.dtype or out.device != v.device
                or out[0].stride() != v.stride()):
            out = torch.empty(shape, dtype=v.dtype, device=v.device)
            if not v.is_contiguous():  # spikes in the membrane's layout (e.g. channels-last)
                out = out.as_strided(shape, (v.numel(), *v.stride()))
        theta_f = float(theta) if theta.dim() == 0 else theta
        if native_neuron_block(current, v, out, steps, static, theta_f, beta, self.reset == "zero",
                               counts):
            return out, v
        inputs = (current,) * steps if static else current.unbind(0)
        for i_t, z in zip(inputs, out.unbind(0)):
            step_into(v, i_t, z, theta_f, beta, self.reset)
        if counts is not None:
            counts.add_(sum_steps_and_batch(out))
        return out, v

    @without_grad
    def forward_block_pooled(self, current: torch.Tensor, v: torch.Tensor, steps: int,
                             static: bool, window: tuple[int, int], divisor: float,
                             out: torch.Tensor | None = None,
                             counts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """:meth:`forward_block` followed by a pool whose ``window`` tiles the map (an
        ``AvgPool2d`` with ``divisor`` = its size, or a ``SumPool2d`` with 1), in one pass of
        the compiled kernel that writes only the pooled spikes ``(steps, B, C, H / kh, W /
        kw)``: the same values as the two layers one after the other, without the spikes at
        full resolution in memory. Unlike :meth:`forward_block` it updates the membrane ``v``
        in place (the executor's own state; no copy). ``counts`` as in :meth:`forward_block`.
        Returns ``(pooled, v)``, or None (nothing done, ``v`` unchanged) where the kernel does
        not apply: gradients needed, a subclass with its own update, or not a channels-last
        CPU map."""
        template = current if static else current[0]
        if (torch.is_grad_enabled() or template.dim() != 4 or template.device.type != "cpu"
                or not type(self).runs_reference_update()):
            return None
        theta = self.threshold_for(template)
        beta = self.beta_for(template)
        b, c, h, w = template.shape
        shape = (steps, b, c, h // window[0], w // window[1])
        if out is None or out.shape != shape or out.dtype != v.dtype or out.device != v.device:
            out = torch.empty(steps, b, shape[3], shape[4], c, dtype=v.dtype).permute(0, 1, 4, 2, 3)
        theta_f = float(theta) if theta.dim() == 0 else theta
        if not native_neuron_pool_block(current, v, out, steps, static, theta_f, beta,
                                        self.reset == "zero", window, divisor, counts):
            return None
        return out, v

    def extra_repr(self) -> str:
        theta = self.threshold
        t = f"{float(theta):g}" if theta.dim() == 0 else f"per-channel[{theta.numel()}]"
        return (f"threshold={t}, reset={self.reset!r}, v_init={self.v_init:g}, "
                f"surrogate={self.surrogate.name!r}")


class IF(SpikingNeuron):
    """Integrate-and-fire neuron (no leak): ``v += I``; see :func:`if_step`."""


class LIF(SpikingNeuron):
    """Leaky integrate-and-fire neuron: ``v = beta * v + I``; see :func:`lif_step`.

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

    @property
    def decay(self) -> torch.Tensor:
        """The decay beta per step (a scalar or one per channel): ``sigmoid(beta_logit)``
        when it is learned, else the ``beta`` buffer."""
        return torch.sigmoid(self.beta_logit) if self.learn_beta else self.beta

    def beta_for(self, template: torch.Tensor) -> torch.Tensor | float:
        b = self.per_channel(self.decay.to(template), template)
        return float(b) if b.dim() == 0 and not b.requires_grad else b

    def extra_repr(self) -> str:
        b = self.decay
        bs = f"{float(b):g}" if b.dim() == 0 else f"per-channel[{b.numel()}]"
        return f"beta={bs}, " + super().extra_repr()


NEURONS: dict[str, type[SpikingNeuron]] = {"IF": IF, "LIF": LIF}
