"""The training forward pass: the network's training view run over blocks of time steps.

The forward pass is the dense engine's multi-step execution (:class:`snnedge.executor.Executor`):
every synaptic layer runs once per time block with time folded into the batch
(``(T_block * B, ...)``) and a static input (direct encoding) goes through the layers it
feeds once per batch, not ``T`` times. Neuron layers run the fused block of
:mod:`snnedge.training.neuron_grad`; conv + average pool pairs may run folded
(:mod:`snnedge.training.folding`).

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
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..encoders import get_encoder
from ..errors import check_choice, check_positive_int
from ..executor import Executor, Value
from ..layers import INPUT
from ..network import Node, SpikingNetwork
from .folding import ChannelsLastConv, ConvAvgPool, foldable_pool
from .losses import LossFn
from .neuron_grad import FusedNeuron, fusable

BPTT_MODES = ("full", "checkpoint", "truncated")


def training_view(net: SpikingNetwork, smooth: bool = False,
                  fold_pooling: bool = True,
                  synapses: dict[str, nn.Module] | None = None,
                  channels_last: bool = True) -> SpikingNetwork:
    """The same graph and the same module objects, arranged for training.

    IF/LIF layers run the fused block; with ``fold_pooling`` each stride-1 ``Conv2d`` followed
    only by a non-overlapping ``AvgPool2d`` becomes one strided convolution
    (:class:`~snnedge.training.folding.ConvAvgPool`: the same function, rounded differently in
    float32), and the pool an ``Identity``. With ``channels_last`` every ``Conv2d`` (folded or
    not) runs on the CPU in the channels-last layout
    (:class:`~snnedge.training.folding.ChannelsLastConv`: faster forward and backward
    convolutions, rounded differently in float32). Nothing of ``net`` is changed; parameters are
    shared, so training the view trains ``net``. ``smooth=True`` gives the smooth surrogate
    model (spikes ``sigma(v - theta)``), used to check gradients against finite differences.
    ``synapses`` replaces weighted layers by name (the chip-format layers of
    :func:`~snnedge.training.hardware.hardware_synapses`), before any folding.
    """
    swap: dict[str, nn.Module] = {}
    synapses = synapses or {}
    for node in net.nodes:
        if fusable(node.module):
            swap[node.name] = FusedNeuron(node.module, smooth)
        elif fold_pooling and (p := foldable_pool(net, node.name)) is not None:
            swap[node.name] = ConvAvgPool(synapses.get(node.name, node.module), p)
            swap[net.consumers_of(node.name)[0]] = nn.Identity()
        elif node.name in synapses:
            swap[node.name] = synapses[node.name]
    if channels_last:
        for node in net.nodes:
            if isinstance(node.module, nn.Conv2d):
                swap[node.name] = ChannelsLastConv(swap.get(node.name, node.module))
    nodes = [Node(n.name, swap.get(n.name, n.module), n.inputs) for n in net.nodes]
    return SpikingNetwork(nodes, input_shape=net.input_shape, readout_exponent=net.readout_exponent)


def static_prefix(net: SpikingNetwork, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every layer fed only by a static input ``x`` ``(B, ...)``, computed once (as the
    executor would); handed to each block's executor so that no block recomputes it."""
    vals, cache = {INPUT: x}, {}
    for name in net.names:
        ins = net.inputs_of(name)
        if net.kind(name) != "temporal" and all(i in vals for i in ins):
            vals[name] = cache[name] = net.get_submodule(name)(*[vals[i] for i in ins])
    return cache


def run_block(net: SpikingNetwork, static: dict, state: dict, inp: Value,
              steps: int) -> tuple[torch.Tensor, dict]:
    """One block from ``state``: the readout at each step ``(steps, B, C)`` and the state after."""
    ex = Executor(net, "dense", state=state, static=static)
    y = ex.output(inp, steps)
    return y.reshape(steps, y.shape[1], -1), ex.state


def blocks(timesteps: int, block_steps: int) -> list[tuple[int, int]]:
    """``[(t0, t1), ...]``: the steps of each block."""
    return [(t0, min(t0 + block_steps, timesteps)) for t0 in range(0, timesteps, block_steps)]


def block_size(bptt: str, block_steps: int | None, timesteps: int) -> int:
    """Steps per block: ``block_steps``, else all ``T`` for full BPTT, else ``ceil(sqrt(T))``."""
    if block_steps is not None:
        return min(block_steps, timesteps)
    return timesteps if bptt == "full" else max(1, math.ceil(math.sqrt(timesteps)))


def readout_sequence(view: SpikingNetwork, x: torch.Tensor, timesteps: int, encoding: str,
                     seed: int, bptt: str, block_steps: int) -> torch.Tensor:
    """The readout of ``view`` at every step, ``(T, B, C)``, for a batch ``x`` ``(B, ...)``
    encoded with ``encoding`` (``bptt`` ``"full"`` or ``"checkpoint"``)."""
    encoder = get_encoder(encoding)
    encoder.start(x, timesteps, seed)
    static = static_prefix(view, x) if encoder.static else {}
    state, outs = {}, []
    for t0, t1 in blocks(timesteps, block_steps):
        inp = Value(encoder.block(t0, t1), encoder.static)
        if bptt == "checkpoint" and torch.is_grad_enabled():
            y, state = checkpoint(run_block, view, static, state, inp, t1 - t0, use_reentrant=False)
        else:
            y, state = run_block(view, static, state, inp, t1 - t0)
        outs.append(y)
    return torch.cat(outs) if len(outs) > 1 else outs[0]


def detached(state):
    """A layer's state cut from the graph: tensors detached, tuples of them (CubaLIF's
    current and membrane) element by element, anything else as it is."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, tuple):
        return tuple(detached(s) for s in state)
    return state


def output_sequence(net: SpikingNetwork, x: torch.Tensor, timesteps: int, encoding: str = "direct",
                    seed: int = 0, bptt: str = "full", block_steps: int | None = None,
                    fold_pooling: bool = True, channels_last: bool = True) -> torch.Tensor:
    """The readout at every step, ``(T, B, C)``, as :func:`snnedge.fit` computes it
    (differentiable).

    ``x`` is a batch ``(B, ...)``; ``bptt`` is ``"full"`` or ``"checkpoint"`` (see the module
    docstring). Summed over time it is ``simulate(...).output``: bit for bit (as a running sum)
    with ``fold_pooling=False, channels_last=False``, to float rounding with the folded pooling
    and the channels-last convolutions that ``fit`` uses (the same in float64).
    """
    check_positive_int(timesteps, param="timesteps", where="output_sequence")
    check_choice(bptt, BPTT_MODES[:2], param="bptt", where="output_sequence")
    view = training_view(net, fold_pooling=fold_pooling, channels_last=channels_last)
    return readout_sequence(view, x, timesteps, encoding, seed, bptt,
                            block_size(bptt, block_steps, timesteps))


def truncated_backward(view: SpikingNetwork, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn,
                       timesteps: int, encoding: str, seed: int,
                       block_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated BPTT in two passes (gradients land in the parameters' ``.grad``); returns
    the loss and the outputs (no graph)."""
    rng = torch.get_rng_state()  # the same dropout masks in both passes
    cuda_rng = torch.cuda.get_rng_state(x.device) if x.is_cuda else None
    with torch.no_grad():
        outs = readout_sequence(view, x, timesteps, encoding, seed, "full", block_steps)
    outs.requires_grad_(True)
    loss = loss_fn(outs, y)
    (g_outs,) = torch.autograd.grad(loss, outs)
    torch.set_rng_state(rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state(cuda_rng, x.device)
    encoder = get_encoder(encoding)
    encoder.start(x, timesteps, seed)
    static = static_prefix(view, x) if encoder.static else {}
    leaves = {k: v.detach().requires_grad_(v.requires_grad) for k, v in static.items()}
    state = {}
    for t0, t1 in blocks(timesteps, block_steps):
        inp = Value(encoder.block(t0, t1), encoder.static)
        out, state = run_block(view, leaves, state, inp, t1 - t0)
        if out.requires_grad:
            out.backward(g_outs[t0:t1])
        state = {k: detached(v) for k, v in state.items()}
    pairs = [(static[k], leaves[k].grad) for k in static if leaves[k].grad is not None]
    if pairs:
        torch.autograd.backward([p[0] for p in pairs], [p[1] for p in pairs])
    return loss.detach(), outs.detach()
