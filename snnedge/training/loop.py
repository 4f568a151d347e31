"""The fit loop: :func:`fit` trains a network with surrogate-gradient BPTT, :func:`evaluate`
measures it; one :func:`train_step` per batch."""
from __future__ import annotations

import time

import torch
from tqdm import tqdm

from .. import distributed as dist_glue
from ..encoders import ENCODERS
from ..errors import check_choice, check_positive_int, check_real
from ..formats import NumberFormat, get_format
from ..network import SpikingNetwork, module_device, module_dtype
from .data import LabelledData, Transform
from .forward import (BPTT_MODES, block_size, readout_sequence, training_view,
                      truncated_backward)
from .hardware import hardware_synapses
from .heap import heap_for_large_blocks
from .history import History
from .losses import LossFn, loss_function
from .optim import cosine_schedule, make_optimizer
from .parallel import DataParallel


def train_step(view: SpikingNetwork, xb: torch.Tensor, yb: torch.Tensor,
               optimizer: torch.optim.Optimizer, loss_fn: LossFn, timesteps: int, encoding: str,
               seed: int, bptt: str, block: int) -> tuple[float, int]:
    """One training step of ``view`` (a :func:`training_view`) on the batch ``(xb, yb)``, as
    :func:`fit` runs it: forward, backward (``bptt`` mode, blocks of ``block`` steps), and
    the optimizer's step. Returns the batch's loss and its number of correct predictions."""
    optimizer.zero_grad(set_to_none=True)
    if bptt == "truncated":
        loss, outs = truncated_backward(view, xb, yb, loss_fn, timesteps, encoding, seed, block)
    else:
        outs = readout_sequence(view, xb, timesteps, encoding, seed, bptt, block)
        loss = loss_fn(outs, yb)
        loss.backward()
        loss, outs = loss.detach(), outs.detach()
    optimizer.step()
    return float(loss), int((outs.sum(0).argmax(-1) == yb).sum())


def _check_plain_readout(net: SpikingNetwork, where: str) -> None:
    """Training's losses and predictions read the plain sum of the readout's steps: a network
    whose readout weights them (``readout_exponent``, :mod:`snnedge.readout`) is refused."""
    if getattr(net, "readout_exponent", 0.0):
        raise ValueError(f"{where} trains and scores the plain sum of the readout's steps, but this "
                         f"network weights step t of T by (t/T)^{net.readout_exponent:g} "
                         f"(readout_exponent, chosen by converters.convert). Set "
                         f"net.readout_exponent = 0 before training (convert(..., readout=0) "
                         f"gives it from the start); simulate then reads it the same way.")


def fit(net: SpikingNetwork, train, epochs: int = 1, timesteps: int | None = None,
        encoding: str = "direct",
        lr: float = 1e-3, batch_size: int = 64, seed: int = 0, *, val=None, loss: str | LossFn = "ce",
        optimizer=None, device: str | torch.device | None = None, progress: bool = True,
        bptt: str = "full", block_steps: int | None = None, shuffle: bool = True,
        lr_schedule: str | None = None, transform: Transform | None = None,
        fold_pooling: bool = True, channels_last: bool = True, distributed: bool = False,
        hardware: str | NumberFormat | None = None) -> History:
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
        Passes over the data; steps ``T`` per sample (default 8); ``"direct"``, ``"poisson"``,
        ``"latency"``, or ``"sequence"``: the inputs are sequences ``[N, T, *sample_shape]``
        (event frames, spikes or analog values per step) and ``T`` comes from them
        (``timesteps`` may be left out; a value that disagrees is an error).
    lr, optimizer:
        Adam with learning rate ``lr`` by default; or any ``torch.optim.Optimizer`` class
        (built with ``lr``) or instance (used as is, ``lr`` ignored).
    batch_size, seed, shuffle:
        Batches of a tensor pair, reshuffled every epoch from ``seed``; ``seed`` also seeds
        dropout and stochastic encoders, so a run repeats exactly.
    val:
        ``(x, y)`` or a DataLoader evaluated after every epoch (``val_loss``, ``val_accuracy``).
    loss:
        ``"ce"``, ``"count_ce"``, ``"count_mse"`` (:mod:`snnedge.training.losses`), or a callable
        ``loss(outputs (T, B, C), y) -> scalar``.
    device:
        Where to train; the network is moved there (default: where its parameters are).
    progress:
        One tqdm bar per epoch.
    bptt, block_steps:
        ``"full"``, ``"checkpoint"`` or ``"truncated"`` and the steps per block (default
        ``ceil(sqrt(T))`` for the last two); see :mod:`snnedge.training.forward`.
    lr_schedule:
        ``None`` (constant) or ``"cosine"``: the learning rate decays to 0 along a half cosine
        over all training batches (Loshchilov & Hutter, ICLR 2017, arXiv:1608.03983).
    transform:
        Data augmentation applied to every training batch, ``transform(x, generator) -> x``,
        drawing its randomness from ``generator`` (seeded from ``seed``), e.g.
        :func:`~snnedge.training.random_shift`.
    fold_pooling:
        Train each stride-1 ``Conv2d`` followed only by a non-overlapping ``AvgPool2d`` as one
        strided convolution (the same linear map with fewer multiply-accumulates; see
        :func:`~snnedge.training.training_view`). Validation and :func:`snnedge.simulate` run
        the layers as they are.
    channels_last:
        On the CPU, run the convolutions in the channels-last layout, where oneDNN's forward and
        backward convolutions are faster (:class:`~snnedge.training.folding.ChannelsLastConv`;
        examples/benchmarks/RESULTS.md has the measurements); ``False`` keeps torch's default
        layout. Either way the same function, rounded differently in float32.
        While it trains, ``fit`` keeps large freed blocks on glibc's heap instead of mapping
        them afresh every step (:mod:`snnedge.training.heap`; ``SNNEDGE_HEAP=off`` leaves
        ``malloc`` alone).
    distributed:
        Under ``torchrun`` (or an initialized ``torch.distributed`` process group): train with
        ``DistributedDataParallel``, each rank on its part of every batch (``batch_size`` stays
        the global batch, so ``lr`` needs no change); every rank ends with the same weights and
        the same :class:`History`; progress bars show on rank 0 only (and
        :func:`~snnedge.training.save_checkpoint` writes on rank 0 only). The network must be
        the same on every rank (checked by a hash of its state dict); a GPU rank trains on
        ``cuda:LOCAL_RANK`` (``device="cuda"``, or a network on a GPU). See :mod:`snnedge.training.parallel` for the sampling, the seeds
        and the loss weights.
    hardware:
        Train within a chip's number format: ``"truenorth"``, ``"dynap-cnn"``, ``"loihi"`` (the
        formats registered by ``neuromorphic_targets``, :mod:`snnedge.formats`) or a
        :class:`~snnedge.formats.NumberFormat`. Every weighted layer then computes with the
        chip's integers for its current weights, the gradient passing straight through
        (Esser et al., PNAS 2016; :mod:`snnedge.training.hardware`); validation runs the same
        chip-format layers. ``neuromorphic_targets.to_hardware`` afterwards gives the network
        the chip runs.

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
    _check_plain_readout(net, where)
    check_positive_int(epochs, param="epochs", where=where)
    check_choice(encoding, ENCODERS, param="encoding", where=where)
    sequence = encoding == "sequence"
    if timesteps is not None or not sequence:
        timesteps = check_positive_int(8 if timesteps is None else timesteps, param="timesteps",
                                       where=where)
    check_real(lr, param="lr", where=where, low=0, low_open=True)
    check_positive_int(batch_size, param="batch_size", where=where)
    check_choice(bptt, BPTT_MODES, param="bptt", where=where)
    if block_steps is not None:
        check_positive_int(block_steps, param="block_steps", where=where)
    if lr_schedule is not None:
        check_choice(lr_schedule, ("cosine",), param="lr_schedule", where=where)
    loss_fn = loss_function(loss, net, where)
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        total = sum(1 for _ in net.parameters())
        raise ValueError(f"fit: the network has no trainable parameters ({total} parameters, none "
                         f"with requires_grad=True). Add a weighted layer (nn.Conv2d, nn.Linear), "
                         f"set requires_grad=True, or use learn_threshold/learn_beta on the neurons.")
    if distributed and sequence:
        raise ValueError("fit(distributed=True) does not take encoding='sequence' yet; train on "
                         "sequences in one process.")
    train_data = LabelledData(train, net, where, "train", sequence, timesteps)
    timesteps = train_data.timesteps if sequence else timesteps  # a pair's T, else the first batch's
    val_data = LabelledData(val, net, where, "val", sequence, timesteps) if val is not None else None
    ctx = dist_glue.setup("fit") if distributed else None
    if ctx is not None:
        device = dist_glue.rank_device(ctx, device, module_device(net))
        dist_glue.check_same_network(net, ctx, "fit")
    device = torch.device(device) if device is not None else module_device(net)
    net.to(device)
    dtype = module_dtype(net)
    opt = make_optimizer(optimizer, params, lr)
    synapses = None
    if hardware is not None:
        synapses = hardware_synapses(net, get_format(hardware, where="fit"),
                                     net.input_shape or train_data.shape)
    view = training_view(net, fold_pooling=fold_pooling, synapses=synapses,
                         channels_last=channels_last)
    ddp = DataParallel(view, ctx, device, seed) if ctx is not None else None
    sched = None
    if lr_schedule == "cosine":
        n_batches = train_data.num_batches(batch_size) if ddp is None else \
            ddp.num_batches(train_data, batch_size)
        if n_batches is None:
            raise ValueError("fit(lr_schedule='cosine') needs the number of batches; give train "
                             "as (x, y) or a DataLoader with a length.")
        sched = cosine_schedule(opt, epochs * n_batches)
    history = History(timesteps=timesteps)  # None until a sequence loader gives its first batch
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    aug_gen = torch.Generator().manual_seed(seed + 1)
    if transform is not None and not callable(transform):
        raise TypeError(f"The 'transform' parameter of fit must be a callable transform(x, generator) "
                        f"-> x, such as snnedge.training.random_shift(1). Got {type(transform).__name__}.")
    was_training = net.training
    with heap_for_large_blocks(), \
            torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed + (ctx.rank if ctx else 0))  # dropout masks repeat with the seed
        try:
            for epoch in range(epochs):
                net.train()
                start = time.perf_counter()
                total_loss, correct, seen = 0.0, 0, 0
                bar = tqdm(total=(len(train_data) // (ctx.world_size if ctx else 1)) or None,
                           desc=f"epoch {epoch + 1}/{epochs}", unit="sample",
                           disable=not progress or (ctx is not None and not ctx.main))
                batches = train_data.batches(batch_size, generator) if ddp is None else \
                    ddp.batches(train_data, batch_size, generator, transform, aug_gen, epoch)
                step = train_step if ddp is None else ddp.train_step
                for i, (xb, yb) in enumerate(batches):
                    if transform is not None and ddp is None:
                        xb = transform(xb, aug_gen)
                    xb, yb = xb.to(device, dtype), yb.to(device)
                    steps = xb.shape[1] if sequence else timesteps
                    b_loss, b_correct = step(view, xb, yb, opt, loss_fn, steps, encoding,
                                             seed + 1_000_003 * epoch + i, bptt,
                                             block_size(bptt, block_steps, steps))
                    if sched is not None:
                        sched.step()
                    total_loss += b_loss * xb.shape[0]
                    correct += b_correct
                    seen += xb.shape[0]
                    bar.update(xb.shape[0])
                    bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}")
                bar.close()
                if ddp is not None:
                    total_loss, correct, seen = ddp.totals(total_loss, correct, seen)
                if history.timesteps is None:
                    history.timesteps = train_data.timesteps
                history.epoch_time_s.append(time.perf_counter() - start)
                history.loss.append(total_loss / seen)
                history.accuracy.append(correct / seen)
                if val_data is not None:
                    run = evaluate_data if ddp is None else ddp.sharded(evaluate_data)
                    metrics = run(view if hardware is not None else net, val_data, timesteps,
                                  encoding, max(batch_size, 256), loss_fn, seed, device)
                    history.val_loss.append(metrics["loss"])
                    history.val_accuracy.append(metrics["accuracy"])
        finally:
            net.train(was_training)
    return history


def evaluate(net: SpikingNetwork, data, timesteps: int | None = None, encoding: str = "direct", *,
             batch_size: int = 256, loss: str | LossFn = "ce", seed: int = 0,
             device: str | torch.device | None = None) -> dict:
    """Mean loss and accuracy of ``net`` on ``data`` (``(x, y)`` or a DataLoader), in eval mode.

    Runs the simulator's engine without gradients (the same spikes as :func:`snnedge.simulate`
    with the same ``seed`` and ``batch_size``). Returns ``{"loss", "accuracy", "num_samples"}``.
    ``timesteps`` defaults to 8; with ``encoding="sequence"`` it comes from the data.
    """
    where = "evaluate"
    _check_plain_readout(net, where)
    check_choice(encoding, ENCODERS, param="encoding", where=where)
    sequence = encoding == "sequence"
    if timesteps is not None or not sequence:
        timesteps = check_positive_int(8 if timesteps is None else timesteps, param="timesteps",
                                       where=where)
    check_positive_int(batch_size, param="batch_size", where=where)
    device = torch.device(device) if device is not None else module_device(net)
    return evaluate_data(net, LabelledData(data, net, where, "data", sequence, timesteps), timesteps,
                         encoding, batch_size, loss_function(loss, net, where), seed, device)


@torch.no_grad()
def evaluate_data(net: SpikingNetwork, data: LabelledData, timesteps: int, encoding: str,
                  batch_size: int, loss_fn: LossFn, seed: int, device: torch.device) -> dict:
    """What :func:`evaluate` returns, for data already wrapped and a loss already chosen."""
    was_training = net.training
    net.eval()
    total, correct, seen = 0.0, 0, 0
    try:
        for i, (xb, yb) in enumerate(data.batches(batch_size)):
            xb, yb = xb.to(device, module_dtype(net)), yb.to(device)
            steps = xb.shape[1] if encoding == "sequence" else timesteps
            outs = readout_sequence(net, xb, steps, encoding, seed + i, "full", steps)
            total += float(loss_fn(outs, yb)) * xb.shape[0]
            correct += int((outs.sum(0).argmax(-1) == yb).sum())
            seen += xb.shape[0]
    finally:
        net.train(was_training)
    return {"loss": total / seen, "accuracy": correct / seen, "num_samples": seen}
