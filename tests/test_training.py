"""snnedge.training: the fused BPTT neuron block, fit, memory modes, checkpoints and errors."""
import itertools
import re
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import snnedge
from snnedge import training
from snnedge.datasets import synthetic_images
from snnedge.executor import Executor, Value
from snnedge.training import (History, evaluate, fit, load_checkpoint, output_sequence,
                              save_checkpoint)
from snnedge.training.folding import ChannelsLastConv, ConvAvgPool
from snnedge.training.loop import train_step
from snnedge.training.losses import ce_loss
from snnedge.training.neuron_grad import FusedNeuron

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "benchmarks"))
from peak_memory import measure_peak_memory, step_peak_memory  # noqa: E402


def conv_net(classes: int = 4, out_neuron: bool = False, **lif) -> snnedge.SpikingNetwork:
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 4, 3, padding=1), nn.AvgPool2d(2), snnedge.LIF(beta=0.9, **lif),
              nn.Conv2d(4, 8, 3, padding=1), nn.AvgPool2d(2), snnedge.LIF(beta=0.9, **lif),
              nn.Flatten(), nn.Linear(8 * 4 * 4, classes)]
    if out_neuron:
        layers.append(snnedge.LIF(beta=0.9, threshold=0.25))
    return snnedge.sequential(*layers)


@pytest.fixture(scope="module")
def data():
    x, y = synthetic_images(96, shape=(1, 16, 16), classes=4, seed=0)
    return x, y


# -- the fused neuron block against the core's autograd path ---------------------------
CASES = [c for c in itertools.product(("IF", "LIF"), ("subtract", "zero"), (False, True),
                                      (False, True), (False, True), (False, True), (False, True))
         if not (c[0] == "IF" and c[4])]


@pytest.mark.parametrize("cls, reset, detach, learn_theta, learn_beta, per_channel, static", CASES)
def test_fused_block_matches_core_autograd(cls, reset, detach, learn_theta, learn_beta,
                                           per_channel, static):
    kw = dict(reset=reset, detach_reset=detach, learn_threshold=learn_theta, v_init=0.3,
              threshold=[0.8, 1.2, 1.0] if per_channel else 1.0)
    if cls == "LIF":
        kw.update(learn_beta=learn_beta, beta=[0.9, 0.7, 0.8] if per_channel else 0.85)
    neuron = getattr(snnedge, cls)(**kw).double()
    gen = torch.Generator().manual_seed(1)
    shape = (4, 3, 5) if static else (6, 4, 3, 5)
    current = (0.8 * torch.randn(shape, generator=gen, dtype=torch.float64) + 0.5).requires_grad_()
    g_z = torch.randn((6, 4, 3, 5), generator=gen, dtype=torch.float64)
    g_v = torch.randn((4, 3, 5), generator=gen, dtype=torch.float64)
    results = []
    for module in (neuron, FusedNeuron(neuron)):
        v0 = module.initial_state(current if static else current[0])
        z, v = module.forward_block(current, v0, 6, static)
        params = [current, *neuron.parameters()]
        grads = torch.autograd.grad((z * g_z).sum() + (v * g_v).sum(), params)
        results.append((z.detach(), v.detach(), grads))
    (z_ref, v_ref, g_ref), (z, v, g) = results
    assert torch.equal(z, z_ref)
    torch.testing.assert_close(v, v_ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_fused_block_with_unused_final_membrane(reset):
    # fit never uses the last membrane: its gradient arrives as None, not as zeros.
    neuron = snnedge.LIF(beta=0.8, reset=reset, learn_threshold=True, learn_beta=True).double()
    current = (torch.randn(7, 3, 5, dtype=torch.float64) + 0.6).requires_grad_()
    g_z = torch.randn(7, 3, 5, dtype=torch.float64)
    grads = []
    for module in (neuron, FusedNeuron(neuron)):
        z, _ = module.forward_block(current, module.initial_state(current[0]), 7)
        grads.append(torch.autograd.grad((z * g_z).sum(), [current, *neuron.parameters()]))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_fused_forward_is_the_simulator_arithmetic():
    # float32, same spikes and membrane bit for bit as the no-grad in-place path.
    neuron = snnedge.LIF(beta=0.93, threshold=0.7)
    current = torch.randn(16, 8, 32)
    with torch.no_grad():
        z_ref, v_ref = neuron.forward_block(current, neuron.initial_state(current[0]), 16)
    z, v = FusedNeuron(neuron).forward_block(
        current.requires_grad_(), neuron.initial_state(current[0]), 16)
    assert torch.equal(z, z_ref) and torch.equal(v, v_ref)


def test_training_view_leaves_the_network_alone():
    net = conv_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modules = [n.module for n in net.nodes]
    view = training.training_view(net)
    assert [n.module for n in net.nodes] == modules
    assert net.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert isinstance(view.layer("2"), FusedNeuron)
    assert isinstance(view.layer("0"), ChannelsLastConv)
    assert view.layer("0").conv.conv is net.layer("0") and isinstance(view.layer("1"), nn.Identity)
    unfolded = training.training_view(net, fold_pooling=False, channels_last=False)
    assert unfolded.layer("0") is net.layer("0") and unfolded.layer("1") is net.layer("1")
    assert training.training_view(net, fold_pooling=False).layer("0").conv is net.layer("0")


@pytest.mark.parametrize("k, pad, pool, groups, size", [
    (3, 1, 2, 1, 14), (3, 0, 2, 2, 15), (5, 2, 3, 1, 13), (1, 0, 2, 1, 8)])
def test_folded_conv_pool_is_conv_then_pool(k, pad, pool, groups, size):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, k, padding=pad, groups=groups).double()
    x = torch.randn(3, 4, size, size, dtype=torch.float64, requires_grad=True)
    ref = nn.functional.avg_pool2d(conv(x), pool)
    got = ConvAvgPool(conv, pool)(x)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(got, [x, conv.weight, conv.bias], g),
                    torch.autograd.grad(ref, [x, conv.weight, conv.bias], g)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_only_plain_conv_pool_pairs_fold():
    torch.manual_seed(0)
    net = snnedge.sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.AvgPool2d(2), snnedge.IF(),          # folds
        nn.Conv2d(2, 2, 3, stride=2), nn.AvgPool2d(2), snnedge.IF(),           # strided conv
        nn.Conv2d(2, 2, 1), nn.AvgPool2d(3, stride=1), snnedge.IF(),           # overlapping pool
        nn.Flatten(), nn.Linear(2, 2))
    view = training.training_view(net, channels_last=False)
    kinds = [type(view.layer(str(i))).__name__ for i in range(9)]
    assert kinds == ["ConvAvgPool", "Identity", "FusedNeuron", "Conv2d", "AvgPool2d",
                     "FusedNeuron", "Conv2d", "AvgPool2d", "FusedNeuron"]


@pytest.mark.parametrize("fold_pooling", [False, True])
@pytest.mark.parametrize("encoding", ["direct", "poisson"])
def test_channels_last_training_is_the_same_function(data, fold_pooling, encoding):
    net = conv_net().double()
    x, y = data[0][:16].double(), data[1][:16]
    layouts = []
    hook = net.layer("6").register_forward_hook(lambda m, i, o: layouts.append(
        (i[0].is_contiguous(), i[0].is_contiguous(memory_format=torch.channels_last))))
    runs = []
    for cl in (False, True):
        out = output_sequence(net, x, 5, encoding, seed=2, fold_pooling=fold_pooling,
                              channels_last=cl)
        runs.append((out.detach(), param_grads(net, ce_loss(out, y))))
    hook.remove()
    # the second neuron's spikes (the Flatten's input): torch's layout, then channels-last
    assert layouts == [(True, False), (False, True)]
    torch.testing.assert_close(runs[1][0], runs[0][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(runs[1][1], runs[0][1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_neuron_block_kernels_read_channels_last_steps(static, dtype, monkeypatch):
    """The compiled forward and backward on channels-last steps: the same numbers, bit for bit,
    as on torch's layout, and laid out as the input."""
    from snnedge.training import neuron_grad
    if neuron_grad.native_kernel() is None:
        pytest.skip("the compiled kernels are not built")
    compiled = []
    native = neuron_grad.native_backward
    monkeypatch.setattr(neuron_grad, "native_backward",
                        lambda *a: compiled.append(native(*a)) or compiled[-1])
    torch.manual_seed(1)
    lif = snnedge.LIF(beta=0.8, threshold=[0.5, 1.0, 1.5]).to(dtype)
    cur = torch.randn(5, 4, 3, 6, 7, dtype=dtype) * 2
    g_z, g_v = torch.randn(5, 4, 3, 6, 7, dtype=dtype), torch.randn(4, 3, 6, 7, dtype=dtype)
    cur = cur[0] if static else cur
    results = []
    for cl in (False, True):
        c = cur
        if cl:  # each step's (B, C, H, W) channels-last, steps packed: a convolution's output
            c = (cur.contiguous(memory_format=torch.channels_last) if static else
                 cur.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(cur.shape))
        c = c.clone().requires_grad_(True)
        v0 = lif.initial_state(c if static else c[0])
        z, v = FusedNeuron(lif).forward_block(c, v0, 5, static)
        (g_c,) = torch.autograd.grad((z * g_z).sum() + (v * g_v).sum(), c)
        results.append((z, v, g_c))
        for t in (z[0], v, g_c if static else g_c[0]):
            assert t.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    (z0, v0_, g0), (z1, v1, g1) = results
    assert torch.equal(z0, z1) and torch.equal(v0_, v1) and torch.equal(g0, g1)
    assert z0.sum() > 0 and g0.abs().sum() > 0
    assert len(compiled) == 2 and None not in compiled  # both backward passes compiled


# -- memory modes ---------------------------------------------------------------------
def param_grads(net, loss):
    return torch.autograd.grad(loss, [p for p in net.parameters()])


@pytest.mark.parametrize("encoding", ["direct", "poisson"])
def test_checkpoint_gives_the_full_gradient(data, encoding):
    net = conv_net().double()
    x, y = data[0][:16].double(), data[1][:16]
    full = param_grads(net, ce_loss(output_sequence(net, x, 9, encoding, seed=5), y))
    ckpt = param_grads(net, ce_loss(
        output_sequence(net, x, 9, encoding, seed=5, bptt="checkpoint", block_steps=2), y))
    for a, b in zip(full, ckpt):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def truncated_reference(net, x, y, steps, block):
    """Truncated BPTT written the plain way: one graph, state detached at block borders."""
    ex = Executor(net, "dense")
    outs = []
    for t0 in range(0, steps, block):
        n = min(block, steps - t0)
        outs.append(ex.block(Value(x, True), n)[net.output_name].tensor)
        ex.state = {k: v.detach() for k, v in ex.state.items()}
    return param_grads(net, ce_loss(torch.cat(outs).flatten(2), y))


@pytest.mark.parametrize("block", [3, 8])
def test_truncated_gradient(data, block):
    net = conv_net().double()
    x, y = data[0][:16].double(), data[1][:16]
    opt = torch.optim.SGD(net.parameters(), lr=0.0)  # lr 0: leaves the weights, keeps .grad
    view = training.training_view(net)
    train_step(view, x, y, opt, ce_loss, 8, "direct", 0, "truncated", block)
    got = [p.grad for p in net.parameters()]
    for a, b in zip(got, truncated_reference(net, x, y, 8, block)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    if block == 8:  # one block: truncation changes nothing
        full = param_grads(net, ce_loss(output_sequence(net, x, 8), y))
        for a, b in zip(got, full):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_memory_stays_bounded_in_time(data):
    net = conv_net()
    x, y = data[0][:32], data[1][:32]
    full_8 = step_peak_memory(net, x, y, 8)
    full_64 = step_peak_memory(net, x, y, 64)
    ckpt_64 = step_peak_memory(net, x, y, 64, bptt="checkpoint", block_steps=8)
    trunc_64 = step_peak_memory(net, x, y, 64, bptt="truncated", block_steps=8)
    assert full_64 > 5 * full_8  # BPTT keeps every step
    assert ckpt_64 < 0.4 * full_64
    assert trunc_64 < 1.5 * full_8  # one block of 8 steps, whatever T


def test_peak_memory_counts_live_tensors():
    def work():
        a = torch.ones(1000, 250)  # 1 MB
        b = a + 1                  # 2 MB live
        del a
        c = b * 2                  # 2 MB live again
        return float(c.sum())
    _, peak = measure_peak_memory(work)
    assert 2_000_000 <= peak < 2_100_000


# -- fit ------------------------------------------------------------------------------
def test_fit_learns_and_reports(data):
    x, y = data
    net = conv_net()
    hist = fit(net, (x, y), epochs=4, timesteps=4, lr=5e-3, batch_size=16, val=(x[:32], y[:32]),
               progress=False)
    assert isinstance(hist, History) and hist.epochs == 4 and hist.timesteps == 4
    assert len(hist.accuracy) == len(hist.val_loss) == len(hist.val_accuracy) == 4
    assert hist.loss[-1] < hist.loss[0] and hist.accuracy[-1] > 0.6
    assert hist.val_accuracy[-1] == evaluate(net, (x[:32], y[:32]), 4)["accuracy"]
    assert "val_acc" in hist.summary() and hist.to_dict()["loss"] == hist.loss


def test_trained_network_simulates_the_same(data):
    x, y = data
    net = conv_net()
    fit(net, (x, y), epochs=2, timesteps=6, lr=5e-3, batch_size=16, progress=False)
    for encoding in ("direct", "poisson"):
        res = snnedge.simulate(net, x, timesteps=6, encoding=encoding, engine="dense",
                               batch_size=96, seed=0, progress=False)
        # The forward pass of fit (with gradients, pooling folded into the convolutions):
        # the same predictions; the readout agrees to float32 rounding.
        train_out = output_sequence(net, x, 6, encoding, seed=0)
        assert torch.equal(train_out.sum(0).argmax(-1), res.predictions)
        torch.testing.assert_close(train_out.detach().sum(0), res.output, rtol=1e-4, atol=1e-4)
        # Without folding it is the simulator's arithmetic, bit for bit (summed over time in
        # the simulator's order, a running sum).
        exact = output_sequence(net, x, 6, encoding, seed=0, fold_pooling=False,
                                channels_last=False).detach()
        assert torch.equal(torch.cumsum(exact, 0)[-1], res.output)


def test_fit_is_reproducible(data):
    x, y = data
    runs = []
    for _ in range(2):
        net = conv_net()
        hist = fit(net, (x, y), epochs=1, timesteps=3, encoding="poisson", batch_size=32,
                   progress=False)
        runs.append((hist.loss, net.state_dict()))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def dropout_net(dropout: nn.Module) -> snnedge.SpikingNetwork:
    torch.manual_seed(0)
    return snnedge.sequential(nn.Conv2d(1, 4, 3, padding=1), snnedge.LIF(beta=0.9), dropout,
                              nn.Conv2d(4, 8, 3, stride=2, padding=1), snnedge.LIF(beta=0.9),
                              nn.Flatten(), nn.Linear(8 * 8 * 8, 4))


def test_channel_dropout_trains_and_simulates_as_identity(data):
    x, y = data
    net, plain = dropout_net(nn.Dropout2d(0.5)).double(), dropout_net(nn.Identity()).double()
    xs = x[:16].double()
    # Simulation (eval mode): the identity, bit for bit.
    runs = [snnedge.simulate(n, xs, timesteps=5, engine=e, progress=False).output
            for n in (net, plain) for e in ("dense", "event")]
    assert all(torch.equal(r, runs[0]) for r in runs)
    # Training: whole channels of each step's spikes dropped, the rest scaled by 1 / (1 - p).
    seen = []
    hook = net.layer("2").register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    net.train()
    torch.manual_seed(3)
    full = param_grads(net, ce_loss(output_sequence(net, xs, 6), y[:16]))
    hook.remove()
    (inp, out), = seen
    assert inp.shape[0] == 6 * 16  # time folded into the batch: a mask per step and sample
    kept = out.flatten(2).ne(0).any(-1)
    assert torch.equal(out, inp * 2 * kept[..., None, None])
    assert 0.3 < 1 - kept[inp.flatten(2).ne(0).any(-1)].double().mean() < 0.7
    # The checkpointed pass recomputes its blocks with the same masks.
    torch.manual_seed(3)
    ckpt = param_grads(net, ce_loss(output_sequence(net, xs, 6, bptt="checkpoint", block_steps=2),
                                    y[:16]))
    for a, b in zip(full, ckpt):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    hist = fit(dropout_net(nn.Dropout2d(0.2)), (x, y), epochs=3, timesteps=4, lr=5e-3,
               batch_size=16, progress=False)
    assert hist.loss[-1] < hist.loss[0]


@pytest.mark.parametrize("loss", ["count_ce", "count_mse"])
def test_count_losses(data, loss):
    x, y = data
    net = conv_net(out_neuron=True)
    hist = fit(net, (x, y), epochs=4, timesteps=8, lr=1e-2, batch_size=16, loss=loss, progress=False)
    assert hist.loss[-1] < 0.5 * hist.loss[0] and hist.accuracy[-1] > 0.8


def test_count_mse_targets():
    # 2 steps, spikes [1, 1, 0] then [1, 0, 0]: counts [2, 1, 0]; label 0 -> targets
    # [0.8 * 2, 0.2 * 2, 0.2 * 2] = [1.6, 0.4, 0.4]; MSE = (0.16 + 0.36 + 0.16) / 3.
    out = torch.tensor([[[1.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]]])
    got = training.count_mse_loss()(out, torch.tensor([0]))
    assert float(got) == pytest.approx((0.16 + 0.36 + 0.16) / 3)


def test_optimizers_and_loaders(data):
    x, y = data
    net = conv_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    hist = fit(net, loader, epochs=1, timesteps=3, optimizer=opt, progress=False, val=loader)
    assert hist.epochs == 1 and opt.state  # the given optimizer did the steps
    net2 = conv_net()
    fit(net2, (x, y), epochs=1, timesteps=3, optimizer=torch.optim.RMSprop, lr=1e-3, progress=False)
    assert not torch.equal(net2.layer("0").weight, conv_net().layer("0").weight)


def test_learnable_neuron_parameters_train(data):
    x, y = data
    net = conv_net(learn_beta=True, learn_threshold=True)
    before = [p.detach().clone() for p in net.layer("2").parameters()]
    fit(net, (x, y), epochs=1, timesteps=4, lr=1e-2, batch_size=32, progress=False)
    assert all(not torch.equal(b, p) for b, p in zip(before, net.layer("2").parameters()))


def test_cosine_schedule_and_bptt_modes(data):
    x, y = data
    net = conv_net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    fit(net, (x, y), epochs=2, timesteps=4, batch_size=32, optimizer=opt, lr_schedule="cosine",
        bptt="checkpoint", progress=False)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    hist = fit(net, (x, y), epochs=1, timesteps=4, batch_size=32, bptt="truncated", block_steps=2,
               progress=False)
    assert hist.loss[0] == hist.loss[0]


# -- checkpoints ----------------------------------------------------------------------
def test_checkpoint_roundtrip(tmp_path, data):
    x, y = data
    net = conv_net(learn_threshold=True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    hist = fit(net, (x, y), epochs=1, timesteps=3, optimizer=opt, progress=False)
    path = save_checkpoint(net, tmp_path / "net.pt", optimizer=opt, history=hist)
    torch.load(path, weights_only=True)  # loads without unpickling code
    fresh = conv_net(learn_threshold=True)
    opt2 = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    back = load_checkpoint(fresh, path, optimizer=opt2)
    assert back == hist and opt2.state_dict()["state"].keys() == opt.state_dict()["state"].keys()
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), fresh.state_dict().values()))
    res_a = snnedge.simulate(net, x, timesteps=3, progress=False)
    res_b = snnedge.simulate(fresh, x, timesteps=3, progress=False)
    assert torch.equal(res_a.output, res_b.output)
    torch.save(net.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="is not a snnedge checkpoint"):
        load_checkpoint(fresh, tmp_path / "bare.pt")


# -- bad input ------------------------------------------------------------------------
def test_labels_out_of_range(data):
    x, y = data
    bad = y.clone()
    bad[3] = 4
    msg = ("The labels of fit must be class indices in [0, 4) for a network with 4 outputs "
           "(output layer '7'). Got labels in [0, 4] ('train' data); check the labels or the size "
           "of the last layer.")
    with pytest.raises(ValueError, match=re.escape(msg)):
        fit(conv_net(), (x, bad), progress=False)
    loader = DataLoader(TensorDataset(x, bad - 1), batch_size=200)
    with pytest.raises(ValueError, match=re.escape("Got labels in [-1, 3] ('train' data)")):
        fit(conv_net(), loader, progress=False)


def test_mismatched_lengths(data):
    x, y = data
    with pytest.raises(ValueError, match=re.escape(
            "fit got 96 samples in x but 95 labels in y ('train' data); x and y need the same "
            "length N.")):
        fit(conv_net(), (x, y[:-1]), progress=False)
    with pytest.raises(ValueError, match=re.escape("fit got 96 samples in x but 10 labels in y ('val'")):
        fit(conv_net(), (x, y), val=(x, y[:10]), progress=False)


@pytest.mark.parametrize("epochs", [0, -1])
def test_epochs_must_be_positive(data, epochs):
    with pytest.raises(ValueError, match=re.escape(
            f"The 'epochs' parameter of fit must be a positive integer. Got {epochs} instead.")):
        fit(conv_net(), data, epochs=epochs, progress=False)


def test_no_trainable_parameters(data):
    net = snnedge.sequential(nn.AvgPool2d(2), snnedge.IF(), nn.Flatten())
    with pytest.raises(ValueError, match=re.escape(
            "fit: the network has no trainable parameters (0 parameters, none with "
            "requires_grad=True).")):
        fit(net, data, progress=False)
    frozen = conv_net()
    frozen.requires_grad_(False)
    with pytest.raises(ValueError, match=re.escape("(6 parameters, none with requires_grad=True)")):
        fit(frozen, data, progress=False)


def test_other_bad_input(data):
    x, y = data
    with pytest.raises(TypeError, match=re.escape(
            "The 'train' labels of fit must be a 1-D integer tensor of class indices [N]. Got "
            "torch.float32 of shape (96,); use y.long().")):
        fit(conv_net(), (x, y.float()), progress=False)
    with pytest.raises(TypeError, match="fit expects a snnedge.SpikingNetwork. Got Sequential"):
        fit(nn.Sequential(nn.Linear(2, 2)), (x, y), progress=False)
    with pytest.raises(ValueError, match=re.escape(
            "The 'count_ce' loss of fit needs spike counts, but the output layer '7' (Linear) "
            "does not spike.")):
        fit(conv_net(), (x, y), loss="count_ce", progress=False)
    with pytest.raises(ValueError, match=re.escape("The 'bptt' parameter of fit must be one of "
                                                   "'full', 'checkpoint', 'truncated'. Got 'tbptt'")):
        fit(conv_net(), (x, y), bptt="tbptt", progress=False)
    with pytest.raises(TypeError, match="The 'optimizer' parameter of fit must be None"):
        fit(conv_net(), (x, y), optimizer="adam", progress=False)
    with pytest.raises(ValueError, match="Layer '0' \\(Conv2d\\) cannot take an input"):
        fit(conv_net(), (torch.rand(8, 2, 16, 16), y[:8]), progress=False)


# -- properties -----------------------------------------------------------------------

@given(beta=st.floats(0.3, 1.0), theta=st.floats(0.2, 2.0), steps=st.integers(1, 9),
       reset=st.sampled_from(["subtract", "zero"]), surrogate=st.sampled_from(snnedge.SURROGATES),
       seed=st.integers(0, 2**31 - 1))
def test_fused_block_property(beta, theta, steps, reset, surrogate, seed):
    neuron = snnedge.LIF(beta=beta, threshold=theta, reset=reset, surrogate=surrogate).double()
    gen = torch.Generator().manual_seed(seed)
    current = torch.randn(steps, 2, 6, generator=gen, dtype=torch.float64).requires_grad_()
    g_z = torch.randn(steps, 2, 6, generator=gen, dtype=torch.float64)
    outs = []
    for module in (neuron, FusedNeuron(neuron)):
        z, _ = module.forward_block(current, module.initial_state(current[0]), steps)
        outs.append((z.detach(), torch.autograd.grad((z * g_z).sum(), current)[0]))
    assert torch.equal(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-10, atol=1e-12)
    # Spikes stay binary and at most one per step.
    assert set(outs[1][0].unique().tolist()) <= {0.0, 1.0}
