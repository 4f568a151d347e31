r"""Surrogate-gradient training of spiking networks: :func:`fit`, :func:`evaluate`, checkpoints.

Backpropagation through time (BPTT) with surrogate gradients (Neftci, Mostafa & Zenke, IEEE
Signal Process. Mag. 36:51, 2019, doi:10.1109/MSP.2019.2931595): the forward pass is the
network of :mod:`snnedge.neurons` with Heaviside spikes; the backward pass replaces the
Heaviside derivative by the neuron's surrogate :math:`\sigma'(v - \theta)`.

The forward pass is the dense engine's multi-step execution (:class:`snnedge.engine._Executor`):
every synaptic layer runs once per time block with time folded into the batch
(``(T_block * B, ...)``) and a static input (direct encoding) goes through the first layer
once, not ``T`` times. Neuron layers (:class:`~snnedge.IF`, :class:`~snnedge.LIF`) run a
fused block (:class:`_NeuronBlock`): the forward loop is the same in-place arithmetic as the
simulator's, and it saves one tensor per step (the membrane before reset, ``u``) for a
hand-written backward:

.. code-block:: text

    forward   u[t] = beta * v[t-1] + I[t];   z[t] = H(u[t] - theta)
              v[t] = u[t] - z[t] * theta   (reset "subtract")   |   u[t] * (1 - z[t])   ("zero")
    backward  s = sigma'(u[t] - theta);  gz = dL/dz[t] - theta * gv  (subtract)  |  - u[t] * gv  (zero)
              (gz = dL/dz[t] with detach_reset)
              dL/du[t] = gv + gz * s  (subtract)  |  gv * (1 - z[t]) + gz * s  (zero)
              dL/dI[t] = dL/du[t];  gv <- dL/dv[t-1] = beta * dL/du[t]
              dL/dbeta += dL/du[t] * v[t-1];  dL/dtheta -= gz * s (+ z[t] * gv for subtract)

A convolution followed only by a non-overlapping average pool is trained as one strided
convolution whose kernel is the conv kernel convolved with the pooling box (``fold_pooling``,
:class:`_ConvAvgPool`): the same linear map with 0.44x the multiply-accumulates for a 3x3
kernel and 2x2 pool, and no full-resolution intermediate. The network itself keeps its layers,
so :func:`snnedge.simulate` runs them as they are and agrees with the training forward pass to
float rounding (bit for bit without folding).

Memory in ``T`` (``bptt=``):

``"full"``        exact BPTT over all ``T`` steps at once; activations grow linearly in ``T``.
``"checkpoint"``  exact BPTT; blocks of ``block_steps`` steps are recomputed in the backward
                  pass (``torch.utils.checkpoint``), only the neuron state at block borders is
                  kept: memory ~ one block + ``T / block_steps`` states.
``"truncated"``   truncated BPTT (Williams & Peng, Neural Comput. 2:490, 1990,
                  doi:10.1162/neco.1990.2.4.490): the state is detached at block borders, so
                  gradients reach back at most ``block_steps`` steps. One gradient-free pass
                  gives the loss and its gradient with respect to every step's readout; a
                  second pass back-propagates block by block. Memory ~ one block, whatever ``T``.

Losses take the readout of every step, ``(T, B, C)``: ``"ce"``, cross-entropy on the mean
readout (the accumulated readout of :func:`snnedge.simulate` divided by ``T``); ``"count_ce"``,
cross-entropy on the output layer's spike counts; ``"count_mse"``, mean squared error between
spike counts and targets of ``0.8 T`` (correct class) and ``0.2 T`` (others), after snnTorch's
``mse_count_loss`` (Eshraghian et al., Proc. IEEE 111:1016, 2023, doi:10.1109/JPROC.2023.3308088).
Predictions are the argmax of the accumulated readout, as in :func:`snnedge.simulate`.
"""
from __future__ import annotations

import copy
import math
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.checkpoint import checkpoint
from tqdm import tqdm

from .atomic import atomic_path
from .encoders import ENCODERS, get_encoder
from .engine import _Executor, _Value
from .errors import check_choice, check_positive_int, check_real
from .layers import INPUT, TemporalModule
from .network import Node, SpikingNetwork
from .neurons import SpikingNeuron

BPTT_MODES = ("full", "checkpoint", "truncated")
CHECKPOINT_FORMAT = "snnedge-checkpoint"
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


# -- fused neuron block ---------------------------------------------------------------
def _fire(h: torch.Tensor, neuron: SpikingNeuron, smooth: bool) -> torch.Tensor:
    """Spikes from ``h = u - theta``: Heaviside, or the surrogate's smooth function."""
    return neuron.surrogate.smooth(h) if smooth else (h >= 0).to(h.dtype)


class _NeuronBlock(torch.autograd.Function):
    """``steps`` ticks of an IF/LIF layer with the hand-written backward of the module docstring.

    ``smooth=True`` fires ``sigma(u - theta)`` instead of ``H(u - theta)``: the smooth model
    whose exact gradient the same backward computes (checked against finite differences).
    """

    @staticmethod
    def forward(ctx, current, v0, theta, beta, neuron, steps, static, smooth):
        # The arithmetic of SpikingNeuron._block_inplace, with u[t] kept for the backward pass.
        u_all = torch.empty((steps, *v0.shape), dtype=v0.dtype, device=v0.device)
        out = torch.empty_like(u_all)
        v = v0.clone()
        scalar = theta.dim() == 0
        theta_f = float(theta) if scalar else theta
        for t in range(steps):
            u, z = u_all[t], out[t]
            i_t = current if static else current[t]
            if beta is None:
                torch.add(v, i_t, out=u)
            else:
                torch.mul(v, beta, out=u)
                u.add_(i_t)
            if smooth:
                z.copy_(neuron.surrogate.smooth(u - theta))
            else:
                torch.ge(u, theta_f, out=z)
            if neuron.reset == "zero":
                torch.addcmul(u, u, z, value=-1.0, out=v)
            elif scalar:
                torch.sub(u, z, alpha=theta_f, out=v)
            else:
                torch.addcmul(u, z, theta, value=-1.0, out=v)
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
                    g_u = torch.addcmul(g_zs, g_v, 1 - _fire(h, neuron, smooth))
            if need_theta:
                acc_theta.sub_(g_zs)
                if subtract and g_v is not None:
                    acc_theta.sub_(_fire(h, neuron, smooth) * g_v)
            if need_beta:
                if t == 0:
                    v_prev = v0
                else:  # the membrane after step t-1's reset
                    u_prev = u_all[t - 1]
                    z_prev = _fire(u_prev - theta, neuron, smooth)
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


class _FusedNeuron(TemporalModule):
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
        theta = n._per_channel(n.threshold.to(template), template)
        return _NeuronBlock.apply(current, v, theta, n._beta(template), n, steps, static, self.smooth)


def _fusable(module) -> bool:
    cls = type(module)
    # A subclass that changes the dynamics keeps its own (autograd) block.
    return isinstance(module, SpikingNeuron) and all(
        getattr(cls, m) is getattr(SpikingNeuron, m)
        for m in ("forward_block", "_block_autograd", "_block_inplace"))


class _ConvAvgPool(nn.Conv2d):
    """``avg_pool2d(conv(x), p)`` as one convolution with stride ``p``.

    The folded kernel is the conv kernel convolved with a ``p x p`` box of ``1/p^2``: the same
    linear map with ``(k + p - 1)^2 / (p^2 k^2)`` of the multiply-accumulates (0.44 for k=3,
    p=2) and no full-resolution intermediate. It is rebuilt from ``conv.weight`` on every call,
    so gradients reach the original weight. Subclassing ``nn.Conv2d`` keeps it a weighted layer
    of the graph; it owns no parameters of its own.
    """

    def __init__(self, conv: nn.Conv2d, pool: int):
        nn.Module.__init__(self)
        self.conv, self.pool = conv, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, p = self.conv, self.pool
        w = c.weight
        box = torch.full((1, 1, p, p), 1.0 / (p * p), dtype=w.dtype, device=w.device)
        k = F.conv_transpose2d(w.reshape(-1, 1, *w.shape[2:]), box)
        k = k.view(*w.shape[:2], *k.shape[2:])
        return F.conv2d(x, k, c.bias, stride=p, padding=c.padding, groups=c.groups)

    def extra_repr(self) -> str:
        return f"{self.conv!r} + AvgPool2d({self.pool})"


def _pool_size(pool) -> int | None:
    """``p`` for an ``nn.AvgPool2d`` with non-overlapping ``p x p`` windows and no padding."""
    if type(pool) is not nn.AvgPool2d or pool.padding not in (0, (0, 0)) or pool.ceil_mode:
        return None
    k = pool.kernel_size if isinstance(pool.kernel_size, int) else (
        pool.kernel_size[0] if pool.kernel_size[0] == pool.kernel_size[1] else None)
    stride = pool.stride if isinstance(pool.stride, int) else (
        pool.stride[0] if pool.stride[0] == pool.stride[1] else None)
    if k is None or stride != k or pool.divisor_override is not None:
        return None
    return k


def _foldable(net: SpikingNetwork, name: str) -> int | None:
    """The pool size when layer ``name`` is a stride-1 Conv2d whose only consumer is a foldable
    AvgPool2d, else None."""
    conv = net.layer(name)
    if type(conv) is not nn.Conv2d or conv.stride != (1, 1) or conv.dilation != (1, 1) \
            or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return None
    consumers = net.consumers_of(name)
    if len(consumers) != 1 or name == net.output_name:
        return None
    return _pool_size(net.layer(consumers[0]))


def training_view(net: SpikingNetwork, smooth: bool = False,
                  fold_pooling: bool = True) -> SpikingNetwork:
    """The same graph and the same module objects, arranged for training.

    IF/LIF layers run the fused block; with ``fold_pooling`` each stride-1 ``Conv2d`` followed
    only by a non-overlapping ``AvgPool2d`` becomes one strided convolution (:class:`_ConvAvgPool`:
    the same function, rounded differently in float32), and the pool an ``Identity``.
    Nothing of ``net`` is changed; parameters are shared, so training the view trains ``net``.
    ``smooth=True`` gives the smooth surrogate model (spikes ``sigma(v - theta)``), used to
    check gradients against finite differences.
    """
    swap: dict[str, nn.Module] = {}
    for node in net.nodes:
        if _fusable(node.module):
            swap[node.name] = _FusedNeuron(node.module, smooth)
        elif fold_pooling and (p := _foldable(net, node.name)) is not None:
            swap[node.name] = _ConvAvgPool(node.module, p)
            swap[net.consumers_of(node.name)[0]] = nn.Identity()
    nodes = [Node(n.name, swap.get(n.name, n.module), n.inputs) for n in net.nodes]
    return SpikingNetwork(nodes, input_shape=net.input_shape)


# -- forward over time blocks -----------------------------------------------------------
def _static_prefix(net: SpikingNetwork, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every layer fed only by a static input, computed once (as the engine would)."""
    vals, cache = {INPUT: x}, {}
    for name in net.names:
        ins = net.inputs_of(name)
        if net.kind(name) != "temporal" and all(i in vals for i in ins):
            vals[name] = cache[name] = net.get_submodule(name)(*[vals[i] for i in ins])
    return cache


def _run_block(net: SpikingNetwork, static: dict, state: dict, inp: _Value, steps: int):
    ex = _Executor(net, "dense")
    ex.static_cache, ex.state = dict(static), dict(state)
    out = ex.block(inp, steps)[net.output_name]
    y = out.tensor.unsqueeze(0).expand(steps, *out.tensor.shape) if out.static else out.tensor
    return y.reshape(steps, y.shape[1], -1), ex.state


def _blocks(timesteps: int, block_steps: int):
    return [(t0, min(t0 + block_steps, timesteps)) for t0 in range(0, timesteps, block_steps)]


def output_sequence(net: SpikingNetwork, x: torch.Tensor, timesteps: int, encoding: str = "direct",
                    seed: int = 0, bptt: str = "full", block_steps: int | None = None,
                    fold_pooling: bool = True) -> torch.Tensor:
    """The readout at every step, ``(T, B, C)``, as :func:`fit` computes it (differentiable).

    ``x`` is a batch ``(B, ...)``; ``bptt`` is ``"full"`` or ``"checkpoint"`` (see the module
    docstring). Summed over time it is ``simulate(...).output``: bit for bit (as a running sum)
    with ``fold_pooling=False``, to float rounding with the folded pooling that :func:`fit` uses.
    """
    check_positive_int(timesteps, param="timesteps", where="output_sequence")
    check_choice(bptt, BPTT_MODES[:2], param="bptt", where="output_sequence")
    view = training_view(net, fold_pooling=fold_pooling)
    return _sequence(view, x, timesteps, encoding, seed, bptt, _block_size(bptt, block_steps, timesteps))


def _sequence(view: SpikingNetwork, x, timesteps, encoding, seed, bptt, block_steps) -> torch.Tensor:
    encoder = get_encoder(encoding)
    encoder.start(x, timesteps, seed)
    static = _static_prefix(view, x) if encoder.static else {}
    state, outs = {}, []
    for t0, t1 in _blocks(timesteps, block_steps):
        inp = _Value(encoder.block(t0, t1), encoder.static)
        if bptt == "checkpoint" and torch.is_grad_enabled():
            y, state = checkpoint(_run_block, view, static, state, inp, t1 - t0, use_reentrant=False)
        else:
            y, state = _run_block(view, static, state, inp, t1 - t0)
        outs.append(y)
    return torch.cat(outs) if len(outs) > 1 else outs[0]


def _block_size(bptt: str, block_steps: int | None, timesteps: int) -> int:
    if block_steps is not None:
        return min(block_steps, timesteps)
    return timesteps if bptt == "full" else max(1, math.ceil(math.sqrt(timesteps)))


def _truncated_backward(view, x, y, loss_fn, timesteps, encoding, seed, block_steps):
    """Truncated BPTT in two passes; returns the loss and the outputs (no graph)."""
    rng = torch.get_rng_state()  # the same dropout masks in both passes
    cuda_rng = torch.cuda.get_rng_state(x.device) if x.is_cuda else None
    with torch.no_grad():
        outs = _sequence(view, x, timesteps, encoding, seed, "full", block_steps)
    outs.requires_grad_(True)
    loss = loss_fn(outs, y)
    (g_outs,) = torch.autograd.grad(loss, outs)
    torch.set_rng_state(rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state(cuda_rng, x.device)
    encoder = get_encoder(encoding)
    encoder.start(x, timesteps, seed)
    static = _static_prefix(view, x) if encoder.static else {}
    leaves = {k: v.detach().requires_grad_(v.requires_grad) for k, v in static.items()}
    state = {}
    for t0, t1 in _blocks(timesteps, block_steps):
        inp = _Value(encoder.block(t0, t1), encoder.static)
        out, state = _run_block(view, leaves, state, inp, t1 - t0)
        if out.requires_grad:
            out.backward(g_outs[t0:t1])
        state = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
    pairs = [(static[k], leaves[k].grad) for k in static if leaves[k].grad is not None]
    if pairs:
        torch.autograd.backward([p[0] for p in pairs], [p[1] for p in pairs])
    return loss.detach(), outs.detach()


# -- losses ---------------------------------------------------------------------------
def _ce(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs.mean(0), y)


def _count_ce(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs.sum(0), y)


def count_mse_loss(correct_rate: float = 0.8, incorrect_rate: float = 0.2) -> LossFn:
    """MSE between spike counts and ``rate * T`` targets (``correct_rate`` for the label)."""
    check_real(correct_rate, param="correct_rate", where="count_mse_loss", low=0, high=1)
    check_real(incorrect_rate, param="incorrect_rate", where="count_mse_loss", low=0, high=1)

    def loss(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        steps = outputs.shape[0]
        target = torch.full_like(outputs[0], incorrect_rate * steps)
        target.scatter_(1, y.view(-1, 1), correct_rate * steps)
        return F.mse_loss(outputs.sum(0), target)
    return loss


LOSSES: dict[str, LossFn] = {"ce": _ce, "count_ce": _count_ce, "count_mse": count_mse_loss()}


def _loss_fn(loss, net: SpikingNetwork, where: str) -> LossFn:
    if callable(loss):
        return loss
    check_choice(loss, LOSSES, param="loss", where=where)
    if loss.startswith("count_"):
        out = net.output_name
        if not (net.kind(out) == "temporal" and net.layer(out).emits_spikes):
            raise ValueError(f"The {loss!r} loss of {where} needs spike counts, but the output layer "
                             f"{out!r} ({type(net.layer(out)).__name__}) does not spike. End the "
                             f"network with a neuron layer (e.g. snnedge.LIF) or use loss='ce'.")
    return LOSSES[loss]


# -- data -----------------------------------------------------------------------------
def _check_pair(x, y, where: str, param: str) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"The {param!r} data of {where} must be tensors (x, y). Got "
                        f"({type(x).__name__}, {type(y).__name__}); convert with torch.as_tensor.")
    if x.dim() < 2 or x.shape[0] == 0 or not x.is_floating_point():
        raise ValueError(f"The {param!r} inputs of {where} must be a floating-point tensor [N, ...] "
                         f"with N >= 1. Got {x.dtype} of shape {tuple(x.shape)}.")
    if y.dim() != 1 or y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise TypeError(f"The {param!r} labels of {where} must be a 1-D integer tensor of class "
                        f"indices [N]. Got {y.dtype} of shape {tuple(y.shape)}; use y.long().")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{where} got {x.shape[0]} samples in x but {y.shape[0]} labels in y "
                         f"({param!r} data); x and y need the same length N.")


class _Data:
    """A ``(x, y)`` pair (checked once, batched and shuffled here) or a DataLoader (checked
    batch by batch) of labelled samples for ``net``."""

    def __init__(self, data, net: SpikingNetwork, where: str, param: str):
        self.net, self.where, self.param = net, where, param
        self.shape = self.classes = None
        self.pair = isinstance(data, (tuple, list)) and len(data) == 2 and not any(
            isinstance(d, (tuple, list)) for d in data)
        if self.pair:
            self.data = tuple(data)
            self.check(*self.data)
        elif isinstance(data, Iterable) and not isinstance(data, (torch.Tensor, str, dict)):
            self.data = data
        else:
            raise TypeError(f"The {param!r} parameter of {where} must be a pair (x, y) of tensors "
                            f"or a DataLoader of (x, y) batches. Got {type(data).__name__}.")

    def __len__(self) -> int:  # samples, or 0 when a loader does not say
        if self.pair:
            return self.data[0].shape[0]
        try:
            return len(self.data.dataset)
        except (AttributeError, TypeError):
            return 0

    def num_batches(self, batch_size: int) -> int | None:
        if self.pair:
            return math.ceil(len(self) / batch_size)
        try:
            return len(self.data)
        except TypeError:
            return None

    def check(self, x, y) -> None:
        _check_pair(x, y, self.where, self.param)
        shape, net = tuple(x.shape[1:]), self.net
        if shape != self.shape:
            if net.input_shape is not None and shape != net.input_shape:
                raise ValueError(f"{self.where}: the network expects input of shape [N, "
                                 f"{', '.join(map(str, net.input_shape))}] but got {list(x.shape)}.")
            out = net.shapes(shape)[net.output_name]  # names the first layer that cannot take it
            self.shape, self.classes = shape, math.prod(out)
        if not torch.isfinite(x).all():
            raise ValueError(f"{self.where}: the {self.param!r} inputs hold NaN or infinite values; "
                             f"clean them first (e.g. torch.nan_to_num).")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= self.classes:
            raise ValueError(f"The labels of {self.where} must be class indices in [0, {self.classes}) "
                             f"for a network with {self.classes} outputs (output layer "
                             f"{net.output_name!r}). Got labels in [{lo}, {hi}] ({self.param!r} data); "
                             f"check the labels or the size of the last layer.")

    def batches(self, batch_size: int, generator: torch.Generator | None = None):
        """``(x, y)`` batches; a pair is reshuffled from ``generator`` when one is given."""
        if self.pair:
            x, y = self.data
            n = x.shape[0]
            order = torch.randperm(n, generator=generator) if generator is not None else None
            for i in range(0, n, batch_size):
                idx = order[i:i + batch_size] if order is not None else slice(i, i + batch_size)
                yield x[idx], y[idx]
            return
        for item in self.data:
            if not (isinstance(item, (tuple, list)) and len(item) >= 2):
                raise TypeError(f"{self.where}: {self.param!r} batches must be (x, y) pairs. Got "
                                f"{type(item).__name__}.")
            self.check(item[0], item[1])
            yield item[0], item[1]


def random_shift(max_shift: int = 1) -> Transform:
    """Augmentation for :func:`fit`: shift each image ``[N, C, H, W]`` by up to ``max_shift``
    pixels in each direction (uniform integers), filling with zeros."""
    check_positive_int(max_shift, param="max_shift", where="random_shift")

    def shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"random_shift expects images [N, C, H, W]. Got shape {tuple(x.shape)}.")
        n, _, h, w = x.shape
        d = torch.randint(0, 2 * max_shift + 1, (2, n, 1), generator=generator).to(x.device)
        padded = F.pad(x, (max_shift,) * 4)
        rows = torch.arange(h, device=x.device) + d[0]  # [N, H]
        cols = torch.arange(w, device=x.device) + d[1]  # [N, W]
        out = padded[torch.arange(n, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
        return out.permute(0, 3, 1, 2).contiguous()  # advanced indexing put channels last
    return shift


# -- history --------------------------------------------------------------------------
@dataclass
class History:
    """What :func:`fit` measured, one entry per epoch.

    ``loss`` and ``accuracy`` are running means over the epoch's training batches (the weights
    change as it goes); ``val_loss`` and ``val_accuracy`` are measured after the epoch (empty
    without ``val=``); ``epoch_time_s`` is the wall time of the training part of each epoch.
    """

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    epoch_time_s: list[float] = field(default_factory=list)
    timesteps: int = 0

    @property
    def epochs(self) -> int:
        return len(self.loss)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """A readable table, one row per epoch."""
        head = f"{'epoch':>5} {'loss':>8} {'acc':>7}"
        head += f" {'val_loss':>9} {'val_acc':>8}" if self.val_loss else ""
        rows = [head + f" {'time_s':>7}"]
        for i in range(self.epochs):
            row = f"{i + 1:>5} {self.loss[i]:>8.4f} {self.accuracy[i]:>7.4f}"
            if self.val_loss:
                row += f" {self.val_loss[i]:>9.4f} {self.val_accuracy[i]:>8.4f}"
            rows.append(row + f" {self.epoch_time_s[i]:>7.1f}")
        return "\n".join(rows)


# -- fit / evaluate -------------------------------------------------------------------
def _optimizer(optimizer, params, lr: float) -> torch.optim.Optimizer:
    if optimizer is None:
        return torch.optim.Adam(params, lr=lr)
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        return optimizer(params, lr=lr)
    raise TypeError(f"The 'optimizer' parameter of fit must be None (Adam), a torch.optim.Optimizer "
                    f"instance or class. Got {type(optimizer).__name__}.")


def _net_device(net: SpikingNetwork) -> torch.device:
    p = next(iter([*net.parameters(), *net.buffers()]), None)
    return p.device if p is not None else torch.device("cpu")


def _net_dtype(net: SpikingNetwork) -> torch.dtype:
    p = next((t for t in net.parameters() if t.is_floating_point()), None)
    return p.dtype if p is not None else torch.get_default_dtype()


def _train_step(view, xb, yb, optimizer, loss_fn, timesteps, encoding, seed, bptt, block):
    optimizer.zero_grad(set_to_none=True)
    if bptt == "truncated":
        loss, outs = _truncated_backward(view, xb, yb, loss_fn, timesteps, encoding, seed, block)
    else:
        outs = _sequence(view, xb, timesteps, encoding, seed, bptt, block)
        loss = loss_fn(outs, yb)
        loss.backward()
        loss, outs = loss.detach(), outs.detach()
    optimizer.step()
    return float(loss), int((outs.sum(0).argmax(-1) == yb).sum())


def fit(net: SpikingNetwork, train, epochs: int = 1, timesteps: int = 8, encoding: str = "direct",
        lr: float = 1e-3, batch_size: int = 64, seed: int = 0, *, val=None, loss: str | LossFn = "ce",
        optimizer=None, device: str | torch.device | None = None, progress: bool = True,
        bptt: str = "full", block_steps: int | None = None, shuffle: bool = True,
        lr_schedule: str | None = None, transform: Transform | None = None,
        fold_pooling: bool = True) -> History:
    """Train ``net`` in place with surrogate-gradient BPTT; returns a :class:`History`.

    Parameters
    ----------
    net:
        Any :class:`~snnedge.SpikingNetwork`; its IF/LIF layers use their surrogates, learnable
        thresholds (``learn_threshold``), decays (``learn_beta``) and ``detach_reset``.
    train:
        ``(x, y)``: inputs ``[N, ...]`` and integer labels ``[N]``; or a DataLoader of
        ``(x, y)`` batches (then ``batch_size`` and ``shuffle`` are the loader's).
    epochs, timesteps, encoding:
        Passes over the data; steps ``T`` per sample; ``"direct"``, ``"poisson"``, ``"latency"``.
    lr, optimizer:
        Adam with learning rate ``lr`` by default; or any ``torch.optim.Optimizer`` class
        (built with ``lr``) or instance (used as is, ``lr`` ignored).
    batch_size, seed, shuffle:
        Batches of a tensor pair, reshuffled every epoch from ``seed``; ``seed`` also seeds
        dropout and stochastic encoders, so a run repeats exactly.
    val:
        ``(x, y)`` or a DataLoader evaluated after every epoch (``val_loss``, ``val_accuracy``).
    loss:
        ``"ce"``, ``"count_ce"``, ``"count_mse"`` (module docstring), or a callable
        ``loss(outputs (T, B, C), y) -> scalar``.
    device:
        Where to train; the network is moved there (default: where its parameters are).
    progress:
        One tqdm bar per epoch.
    bptt, block_steps:
        ``"full"``, ``"checkpoint"`` or ``"truncated"`` and the steps per block (default
        ``ceil(sqrt(T))`` for the last two); see the module docstring.
    lr_schedule:
        ``None`` (constant) or ``"cosine"``: the learning rate decays to 0 along a half cosine
        over all training batches (Loshchilov & Hutter, ICLR 2017, arXiv:1608.03983).
    transform:
        Data augmentation applied to every training batch, ``transform(x, generator) -> x``,
        drawing its randomness from ``generator`` (seeded from ``seed``), e.g.
        :func:`random_shift`.
    fold_pooling:
        Train each stride-1 ``Conv2d`` followed only by a non-overlapping ``AvgPool2d`` as one
        strided convolution (the same linear map with fewer multiply-accumulates; see
        :func:`training_view`). Validation and :func:`snnedge.simulate` run the layers as they are.

    Example
    -------
    >>> import torch, torch.nn as nn, snnedge
    >>> from snnedge.training import fit
    >>> net = snnedge.sequential(nn.Flatten(), nn.Linear(4, 8), snnedge.LIF(), nn.Linear(8, 2))
    >>> x, y = torch.rand(32, 1, 2, 2), torch.randint(0, 2, (32,))
    >>> hist = fit(net, (x, y), epochs=2, timesteps=4, progress=False)
    >>> hist.epochs, len(hist.accuracy)
    (2, 2)
    """
    where = "fit"
    if not isinstance(net, SpikingNetwork):
        raise TypeError(f"fit expects a snnedge.SpikingNetwork. Got {type(net).__name__}; build one "
                        f"with snnedge.sequential(...) or convert an ANN with converters.convert.")
    check_positive_int(epochs, param="epochs", where=where)
    check_positive_int(timesteps, param="timesteps", where=where)
    check_choice(encoding, ENCODERS, param="encoding", where=where)
    check_real(lr, param="lr", where=where, low=0, low_open=True)
    check_positive_int(batch_size, param="batch_size", where=where)
    check_choice(bptt, BPTT_MODES, param="bptt", where=where)
    if block_steps is not None:
        check_positive_int(block_steps, param="block_steps", where=where)
    if lr_schedule is not None:
        check_choice(lr_schedule, ("cosine",), param="lr_schedule", where=where)
    loss_fn = _loss_fn(loss, net, where)
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        total = sum(1 for _ in net.parameters())
        raise ValueError(f"fit: the network has no trainable parameters ({total} parameters, none "
                         f"with requires_grad=True). Add a weighted layer (nn.Conv2d, nn.Linear), "
                         f"set requires_grad=True, or use learn_threshold/learn_beta on the neurons.")
    train_data = _Data(train, net, where, "train")
    val_data = _Data(val, net, where, "val") if val is not None else None
    device = torch.device(device) if device is not None else _net_device(net)
    net.to(device)
    dtype = _net_dtype(net)
    opt = _optimizer(optimizer, params, lr)
    block = _block_size(bptt, block_steps, timesteps)
    view = training_view(net, fold_pooling=fold_pooling)
    sched = None
    if lr_schedule == "cosine":
        n_batches = train_data.num_batches(batch_size)
        if n_batches is None:
            raise ValueError("fit(lr_schedule='cosine') needs the number of batches; give train "
                             "as (x, y) or a DataLoader with a length.")
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * n_batches)
    history = History(timesteps=timesteps)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    aug_gen = torch.Generator().manual_seed(seed + 1)
    if transform is not None and not callable(transform):
        raise TypeError(f"The 'transform' parameter of fit must be a callable transform(x, generator) "
                        f"-> x, such as snnedge.training.random_shift(1). Got {type(transform).__name__}.")
    was_training = net.training
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # dropout masks repeat with the seed
        try:
            for epoch in range(epochs):
                net.train()
                start = time.perf_counter()
                total_loss, correct, seen = 0.0, 0, 0
                bar = tqdm(total=len(train_data) or None, desc=f"epoch {epoch + 1}/{epochs}",
                           unit="sample", disable=not progress)
                for i, (xb, yb) in enumerate(train_data.batches(batch_size, generator)):
                    if transform is not None:
                        xb = transform(xb, aug_gen)
                    xb, yb = xb.to(device, dtype), yb.to(device)
                    b_loss, b_correct = _train_step(view, xb, yb, opt, loss_fn, timesteps, encoding,
                                                    seed + 1_000_003 * epoch + i, bptt, block)
                    if sched is not None:
                        sched.step()
                    total_loss += b_loss * xb.shape[0]
                    correct += b_correct
                    seen += xb.shape[0]
                    bar.update(xb.shape[0])
                    bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}")
                bar.close()
                history.epoch_time_s.append(time.perf_counter() - start)
                history.loss.append(total_loss / seen)
                history.accuracy.append(correct / seen)
                if val_data is not None:
                    metrics = _evaluate(net, val_data, timesteps, encoding, max(batch_size, 256),
                                        loss_fn, seed, device)
                    history.val_loss.append(metrics["loss"])
                    history.val_accuracy.append(metrics["accuracy"])
        finally:
            net.train(was_training)
    return history


def evaluate(net: SpikingNetwork, data, timesteps: int = 8, encoding: str = "direct", *,
             batch_size: int = 256, loss: str | LossFn = "ce", seed: int = 0,
             device: str | torch.device | None = None) -> dict:
    """Mean loss and accuracy of ``net`` on ``data`` (``(x, y)`` or a DataLoader), in eval mode.

    Runs the simulator's engine without gradients (the same spikes as :func:`snnedge.simulate`
    with the same ``seed`` and ``batch_size``). Returns ``{"loss", "accuracy", "num_samples"}``.
    """
    where = "evaluate"
    check_positive_int(timesteps, param="timesteps", where=where)
    check_choice(encoding, ENCODERS, param="encoding", where=where)
    check_positive_int(batch_size, param="batch_size", where=where)
    device = torch.device(device) if device is not None else _net_device(net)
    return _evaluate(net, _Data(data, net, where, "data"), timesteps, encoding, batch_size,
                     _loss_fn(loss, net, where), seed, device)


@torch.no_grad()
def _evaluate(net, data: _Data, timesteps, encoding, batch_size, loss_fn, seed, device) -> dict:
    was_training = net.training
    net.eval()
    total, correct, seen = 0.0, 0, 0
    try:
        for i, (xb, yb) in enumerate(data.batches(batch_size)):
            xb, yb = xb.to(device, _net_dtype(net)), yb.to(device)
            outs = _sequence(net, xb, timesteps, encoding, seed + i, "full", timesteps)
            total += float(loss_fn(outs, yb)) * xb.shape[0]
            correct += int((outs.sum(0).argmax(-1) == yb).sum())
            seen += xb.shape[0]
    finally:
        net.train(was_training)
    return {"loss": total / seen, "accuracy": correct / seen, "num_samples": seen}


# -- checkpoints ----------------------------------------------------------------------
def save_checkpoint(net: SpikingNetwork, path: str | Path, *, optimizer=None,
                    history: History | None = None) -> Path:
    """Write ``net``'s state dict (and optionally an optimizer's and a history) to ``path``.

    Only tensors, numbers, strings, lists and dicts are written, so :func:`load_checkpoint`
    reads it back with ``torch.load(weights_only=True)`` (no pickled code runs).
    """
    path = Path(path)
    payload = {"format": CHECKPOINT_FORMAT, "version": 1, "state_dict": net.state_dict()}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if history is not None:
        payload["history"] = history.to_dict()
    with atomic_path(path) as tmp:  # a reader never sees half a file
        torch.save(payload, tmp)
    return path


def load_checkpoint(net: SpikingNetwork, path: str | Path, *, optimizer=None, strict: bool = True,
                    map_location=None) -> History | None:
    """Load a checkpoint written by :func:`save_checkpoint` into ``net`` (and ``optimizer``).

    Returns the saved :class:`History` or ``None``. Loading uses ``weights_only=True``.
    """
    payload = torch.load(Path(path), map_location=map_location or _net_device(net), weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a snnedge checkpoint (no 'format': {CHECKPOINT_FORMAT!r}); "
                         f"write it with snnedge.training.save_checkpoint, or load a bare state dict "
                         f"with net.load_state_dict(torch.load(path, weights_only=True)).")
    net.load_state_dict(payload["state_dict"], strict=strict)
    if optimizer is not None and "optimizer" in payload:
        optimizer.load_state_dict(payload["optimizer"])
    return History(**payload["history"]) if "history" in payload else None


# -- memory ---------------------------------------------------------------------------
class _PeakMemory(TorchDispatchMode):
    """Live bytes of tensor storages created inside the mode, and their peak."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.layout == torch.strided:
                self._track(t.untyped_storage())
        return out

    def _track(self, storage) -> None:
        key = id(storage)
        if key in self._seen:
            return
        nbytes = storage.nbytes()
        self._seen.add(key)
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, key, nbytes)

    def _free(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes


def measure_peak_memory(fn: Callable, *args, **kwargs):
    """Run ``fn(*args, **kwargs)``; returns ``(result, peak_bytes)``.

    ``peak_bytes`` is the largest total size of tensor storages that torch allocated during the
    call and that were alive at once (activations kept for backward, gradients, optimizer
    state, temporaries); storages that existed before the call are not counted. Works on any
    device (it watches torch's operators, not an allocator).
    """
    mode = _PeakMemory()
    with mode:
        result = fn(*args, **kwargs)
    return result, mode.peak


def step_peak_memory(net: SpikingNetwork, x: torch.Tensor, y: torch.Tensor, timesteps: int,
                     encoding: str = "direct", *, bptt: str = "full", block_steps: int | None = None,
                     loss: str | LossFn = "ce", lr: float = 1e-3, fold_pooling: bool = True) -> int:
    """Peak bytes of one training step (forward, backward, Adam) on a copy of ``net``, as
    :func:`fit` runs it with these options (see :func:`measure_peak_memory`)."""
    work = copy.deepcopy(net)
    check_choice(bptt, BPTT_MODES, param="bptt", where="step_peak_memory")
    params = [p for p in work.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    block = _block_size(bptt, block_steps, timesteps)
    loss_fn = _loss_fn(loss, work, "step_peak_memory")
    view = training_view(work, fold_pooling=fold_pooling)
    _, peak = measure_peak_memory(_train_step, view, x, y, opt, loss_fn, timesteps, encoding, 0,
                                  bptt, block)
    return peak
