"""Surrogate gradients: every registered surrogate against autograd of its smooth function,
and a tiny network's training gradient against finite differences of the smooth model.

The reference for a surrogate is its own smooth function sigma(x): the spike's backward must
be exactly d sigma / dx (autograd of ``smooth``), and the network's backward (the fused BPTT
block of snnedge.training) must be the exact gradient of the network in which every
Heaviside spike is replaced by sigma (finite differences in float64).
"""
import itertools

import pytest
import torch
from torch import nn

import snnedge
from snnedge import training
from snnedge.surrogate import SURROGATES, get_surrogate, spike
from snnedge.training.forward import readout_sequence
from snnedge.training.losses import ce_loss

ALPHAS = (None, 0.5, 3.0)  # None = the surrogate's default sharpness


def grid(alpha: float) -> torch.Tensor:
    # A dense grid, plus the edge points: 0 (threshold), +-1/alpha (the triangle's corners),
    # the smallest normal floats around 0, and far tails where the gradient vanishes.
    edges = [0.0, 1 / alpha, -1 / alpha, 2 / alpha, -2 / alpha, 1e-300, -1e-300, 1e3, -1e3]
    return torch.cat([torch.linspace(-4, 4, 801, dtype=torch.float64),
                      torch.tensor(edges, dtype=torch.float64)])


@pytest.mark.parametrize("name, alpha", list(itertools.product(SURROGATES, ALPHAS)))
def test_surrogate_backward_matches_autograd_of_smooth(name, alpha):
    sur = get_surrogate(name, alpha)
    x = grid(sur.alpha).requires_grad_(True)
    (ref,) = torch.autograd.grad(sur.smooth(x).sum(), x)
    torch.testing.assert_close(sur.grad(x.detach()), ref, rtol=1e-12, atol=1e-12)
    # The spike's backward is the upstream gradient times sigma'(x); its forward is H(x).
    g_up = torch.randn_like(x)
    z = spike(x, sur)
    (g,) = torch.autograd.grad(z, x, g_up)
    torch.testing.assert_close(g, g_up * ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(z, (x >= 0).to(x.dtype))


@pytest.mark.parametrize("name", SURROGATES)
def test_smooth_function_is_a_step_in_the_limit(name):
    # sigma rises from 0 to 1 through 1/2 at the threshold and sharpens with alpha.
    x = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    sharp = get_surrogate(name, 1e4).smooth(x)
    torch.testing.assert_close(sharp, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64),
                               atol=1e-3, rtol=0)


def tiny_net(surrogate: str, reset: str) -> snnedge.SpikingNetwork:
    torch.manual_seed(3)
    return snnedge.sequential(
        nn.Conv2d(1, 2, 3),
        snnedge.LIF(beta=0.8, surrogate=surrogate, reset=reset, learn_beta=True, learn_threshold=True),
        nn.Flatten(), nn.Linear(2 * 4 * 4, 5),
        snnedge.IF(threshold=[0.5, 1.0, 1.5, 1.0, 0.8], surrogate=surrogate, reset=reset),
        nn.Linear(5, 3)).double()


@pytest.mark.parametrize("name, reset, bptt", [
    *[(n, r, "full") for n in SURROGATES for r in ("subtract", "zero")],
    ("atan", "subtract", "checkpoint")])
def test_network_gradient_matches_finite_differences_of_smooth_model(name, reset, bptt):
    net = tiny_net(name, reset)
    smooth = training.training_view(net, smooth=True)
    gen = torch.Generator().manual_seed(0)
    x = 2 * torch.rand(4, 1, 6, 6, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1])
    steps = 5

    def loss() -> torch.Tensor:
        return ce_loss(readout_sequence(smooth, x, steps, "direct", 0, bptt, 2), y)

    params = list(net.parameters())  # conv, beta, threshold, linear, linear
    grads = torch.autograd.grad(loss(), params)
    eps = 1e-6
    with torch.no_grad():
        for p, g in zip(params, grads):
            flat = p.view(-1)
            for i in range(min(flat.numel(), 5)):
                old = float(flat[i])
                flat[i] = old + eps
                up = float(loss())
                flat[i] = old - eps
                down = float(loss())
                flat[i] = old
                fd = (up - down) / (2 * eps)
                assert float(g.view(-1)[i]) == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_smooth_model_differs_from_spiking_model():
    # The check above is not vacuous: the smooth model's outputs are not the spiking ones.
    net = tiny_net("atan", "subtract")
    x = 2 * torch.rand(4, 1, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        spiking = training.output_sequence(net, x, 5)
        smooth = readout_sequence(training.training_view(net, smooth=True), x, 5, "direct", 0,
                                  "full", 5)
    assert not torch.allclose(spiking, smooth)
