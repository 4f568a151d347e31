r"""The fused IF/LIF block of training: the reference update forward, a hand-written backward.

Backpropagation through time with surrogate gradients (Neftci, Mostafa & Zenke, IEEE Signal
Process. Mag. 36:51, 2019, doi:10.1109/MSP.2019.2931595): the forward pass is the neuron's
update rule with Heaviside spikes (:func:`snnedge.neurons.lif_step`, run in place by
:func:`snnedge.neurons.step_into`, the same arithmetic as the simulator's); the backward pass
replaces the Heaviside derivative by the neuron's surrogate :math:`\sigma'(u - \theta)`.
The forward loop saves one tensor per step (the membrane before reset, ``u``) for the
backward:

.. code-block:: text

    forward   u[t] = beta * v[t-1] + I[t];   z[t] = H(u[t] - theta)
              v[t] = u[t] - z[t] * theta   (reset "subtract")   |   u[t] * (1 - z[t])   ("zero")
    backward  s = sigma'(u[t] - theta);  gz = dL/dz[t] - theta * gv  (subtract)  |  - u[t] * gv  (zero)
              (gz = dL/dz[t] with detach_reset)
              dL/du[t] = gv + gz * s  (subtract)  |  gv * (1 - z[t]) + gz * s  (zero)
              dL/dI[t] = dL/du[t];  gv <- dL/dv[t-1] = beta * dL/du[t]
              dL/dbeta += dL/du[t] * v[t-1];  dL/dtheta -= gz * s (+ z[t] * gv for subtract)

tests/test_training.py checks the block against autograd through
:meth:`snnedge.SpikingNeuron.forward_block` (forward bit for bit, gradients to float64
rounding), and tests/test_neurons.py its forward against the reference step.
"""
from __future__ import annotations

import torch

from ..events import is_channels_last, native_kernel, native_neuron_block
from ..kernel_threads import run_split
from ..layers import TemporalModule
from ..neurons import SpikingNeuron, step_into


def fire(h: torch.Tensor, neuron: SpikingNeuron, smooth: bool) -> torch.Tensor:
    """Spikes from ``h = u - theta``: Heaviside, or the surrogate's smooth function."""
    return neuron.surrogate.smooth(h) if smooth else (h >= 0).to(h.dtype)


class NeuronBlock(torch.autograd.Function):
    """``steps`` ticks of an IF/LIF layer with the hand-written backward of the module docstring.

    ``smooth=True`` fires ``sigma(u - theta)`` instead of ``H(u - theta)``: the smooth model
    whose exact gradient the same backward computes (checked against finite differences).
    """

    @staticmethod
    def forward(ctx, current, v0, theta, beta, neuron, steps, static, smooth):
        u_all = steps_like(v0, steps)
        out = torch.empty_like(u_all)
        v = v0.clone()
        theta_f = float(theta) if theta.dim() == 0 else theta
        smooth_fn = neuron.surrogate.smooth if smooth else None
        if smooth or not native_neuron_block(current, v, out, steps, static, theta_f, beta,
                                             neuron.reset == "zero", u_out=u_all):
            for t in range(steps):
                step_into(v, current if static else current[t], out[t], theta_f, beta, neuron.reset,
                          u=u_all[t], fire=smooth_fn)
        beta_t = beta if isinstance(beta, torch.Tensor) else None
        ctx.save_for_backward(u_all, v0, theta, beta_t)
        ctx.beta_f = None if beta_t is not None else beta
        ctx.neuron, ctx.static, ctx.smooth = neuron, static, smooth
        ctx.set_materialize_grads(False)  # no zero tensors for an unused final membrane
        return out, v

    @staticmethod
    def backward(ctx, g_out, g_v):
        u_all, v0, theta, beta_t = ctx.saved_tensors
        neuron, static, smooth = ctx.neuron, ctx.static, ctx.smooth
        beta = beta_t if beta_t is not None else ctx.beta_f
        need_i, need_v0, need_theta, need_beta = ctx.needs_input_grad[:4]
        subtract, detach = neuron.reset == "subtract", neuron.detach_reset
        if not (need_theta or need_beta or smooth):
            native = native_backward(u_all, g_out, g_v, theta, beta, neuron, static, need_v0)
            if native is not None:
                return (native[0] if need_i else None, native[1], None, None, None, None, None, None)
        g_in = torch.zeros_like(v0) if static else torch.empty_like(u_all)
        acc_theta = torch.zeros_like(v0) if need_theta else None
        acc_beta = torch.zeros_like(v0) if need_beta else None
        for t in range(u_all.shape[0] - 1, -1, -1):
            u = u_all[t]
            h = u - theta
            g_z = g_out[t] if g_out is not None else torch.zeros_like(u)
            if g_v is None:  # the final membrane is unused: no gradient through the last reset
                g_u = g_zs = g_z * neuron.surrogate.grad(h)
            else:
                if not detach:
                    g_z = g_z - (theta * g_v if subtract else u * g_v)
                g_zs = g_z * neuron.surrogate.grad(h)
                if subtract:
                    g_u = g_v + g_zs
                else:
                    g_u = torch.addcmul(g_zs, g_v, 1 - fire(h, neuron, smooth))
            if need_theta:
                acc_theta.sub_(g_zs)
                if subtract and g_v is not None:
                    acc_theta.sub_(fire(h, neuron, smooth) * g_v)
            if need_beta:
                if t == 0:
                    v_prev = v0
                else:  # the membrane after step t-1's reset
                    u_prev = u_all[t - 1]
                    z_prev = fire(u_prev - theta, neuron, smooth)
                    v_prev = u_prev - z_prev * theta if subtract else u_prev * (1 - z_prev)
                acc_beta.add_(g_u * v_prev)
            if static:
                g_in.add_(g_u)
            else:
                g_in[t] = g_u
            g_v = g_u if beta is None else g_u * beta
        return (g_in if need_i else None, g_v if need_v0 else None,
                acc_theta.sum_to_size(theta.shape) if need_theta else None,
                acc_beta.sum_to_size(beta_t.shape) if need_beta else None, None, None, None, None)


def steps_like(v: torch.Tensor, steps: int) -> torch.Tensor:
    """An uninitialized ``(steps, *v.shape)`` tensor whose steps are laid out as ``v``: packed
    one after another, a channels-last ``v`` (the output of a channels-last convolution) giving
    channels-last steps, so the compiled kernels read all of them in one memory order."""
    if is_channels_last(v):
        return torch.empty((steps * v.shape[0], *v.shape[1:]), dtype=v.dtype, device=v.device,
                           memory_format=torch.channels_last).view(steps, *v.shape)
    return torch.empty((steps, *v.shape), dtype=v.dtype, device=v.device)


def packed_steps(x: torch.Tensor) -> bool:
    """Whether ``x`` ``(steps, B, ...)`` is laid out as :func:`steps_like` makes it."""
    first = x[0]
    return (first.is_contiguous() or is_channels_last(first)) and (
        x.shape[0] == 1 or x.stride(0) == first.numel())


def laid_out_as(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``x`` broadcast to ``like``'s shape with ``like``'s strides and dtype: ``x`` itself if
    it has them, else a copy (:meth:`~snnedge.SpikingNeuron.state_like`)."""
    if x.shape == like.shape and x.stride() == like.stride() and x.dtype == like.dtype:
        return x
    return SpikingNeuron.state_like(like, x)


NATIVE_SURROGATES = {"atan": 0, "fast_sigmoid": 1, "triangle": 2}
# Below this many element-steps per thread, one thread runs the backward pass.
BACKWARD_MIN_WORK = 200_000


def native_backward(u_all: torch.Tensor, g_out: torch.Tensor | None, g_v: torch.Tensor | None,
                    theta: torch.Tensor, beta, neuron: SpikingNeuron, static: bool,
                    need_v0: bool) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """:meth:`NeuronBlock.backward` without threshold or decay gradients in one pass per block
    of the compiled kernel (``snnedge/_event_kernels_body.h``, ``backward_body_``) instead of
    about ten tensor operations per step: ``(dL/dI, dL/dv0 or None)``, or None where it does
    not apply (no compiled kernels, not a float CPU tensor, a surrogate it does not have)."""
    kernel = native_kernel()
    code = NATIVE_SURROGATES.get(neuron.surrogate.name)
    if kernel is None or code is None or u_all.device.type != "cpu" \
            or u_all.dtype not in (torch.float32, torch.float64) or not packed_steps(u_all):
        return None
    steps, batch = u_all.shape[0], u_all.shape[1]
    size = u_all[0, 0].numel()
    # every tensor the kernel reads or writes in u_all's memory order (torch's or channels-last)
    if g_out is not None:
        g_out = laid_out_as(g_out, u_all)
    if g_v is not None:
        g_v = laid_out_as(g_v, u_all[0])
    maps = [None if p is None else laid_out_as(torch.as_tensor(p).to(u_all), u_all[0, :1])
            for p in (theta, beta)]
    g_in = torch.empty_like(u_all[0]) if static else torch.empty_like(u_all)
    g_v0 = torch.empty_like(u_all[0]) if need_v0 else None
    ptr = lambda t: 0 if t is None else t.data_ptr()  # noqa: E731
    args = (u_all.data_ptr(), ptr(g_out), ptr(g_v), maps[0].data_ptr(), ptr(maps[1]), g_in.data_ptr(),
            ptr(g_v0), u_all.dtype == torch.float64, neuron.reset == "zero", neuron.detach_reset,
            code, float(neuron.surrogate.alpha), static, steps)
    tail = (size, batch * size)
    threads = int(min(torch.get_num_threads(), batch, u_all.numel() // BACKWARD_MIN_WORK))
    parts = [(batch * i // max(threads, 1), batch * (i + 1) // max(threads, 1), 0, size)
             for i in range(max(threads, 1))]
    run_split(kernel.neuron_backward, [(*args, *part, *tail) for part in parts])
    return g_in, g_v0


class FusedNeuron(TemporalModule):
    """Training view of an IF/LIF layer: the fused block when gradients are needed."""

    emits_spikes = True

    def __init__(self, neuron: SpikingNeuron, smooth: bool = False):
        super().__init__()
        self.neuron, self.smooth = neuron, smooth

    def initial_state(self, template):
        return self.neuron.initial_state(template)

    def forward_block(self, current, v, steps, static=False):
        n = self.neuron
        if not (torch.is_grad_enabled() or self.smooth):
            return n.forward_block(current, v, steps, static)
        template = current if static else current[0]
        return NeuronBlock.apply(current, v, n.threshold_for(template), n.beta_for(template), n,
                                 steps, static, self.smooth)


def fusable(module) -> bool:
    """Whether ``module`` is an IF/LIF layer that the fused block can stand in for (a subclass
    that changes the dynamics keeps its own, autograd, block)."""
    return isinstance(module, SpikingNeuron) and type(module).runs_reference_update()
