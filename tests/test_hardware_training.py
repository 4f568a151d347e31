"""fit(..., hardware=...): training through a chip's number format with straight-through
estimators. The training view computes what the chip computes, gradients pass straight
through, and the trained network runs on the chip (to_hardware) as it trained."""
import pytest
import torch
from torch import nn

import snnedge
from neuromorphic_targets import to_hardware
from snnedge.formats import get_format
from snnedge.training import training_view
from snnedge.training.forward import readout_sequence
from snnedge.training.hardware import hardware_synapses


def quadrants(n=256, seed=0):
    """4x4 images, the class is the bright quadrant."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.rand(n, 1, 4, 4, generator=g) * 0.3
    for k in range(4):
        r, c = divmod(k, 2)
        x[y == k, 0, 2 * r:2 * r + 2, 2 * c:2 * c + 2] += 0.7
    return x, y


def network(reset="subtract"):
    torch.manual_seed(0)
    return snnedge.sequential(nn.Conv2d(1, 4, 3, padding=1), snnedge.IF(reset=reset), nn.AvgPool2d(2),
                              nn.Flatten(), nn.Linear(16, 16), snnedge.IF(reset=reset),
                              nn.Linear(16, 4), input_shape=(1, 4, 4))


@pytest.mark.parametrize("target", ["truenorth", "dynap-cnn", "loihi"])
def test_trained_in_the_format_it_runs_on_the_chip_as_it_trained(target):
    x, y = quadrants()
    net = network("zero" if target == "loihi" else "subtract")
    first = net.layer("4").weight.detach().clone()
    hist = snnedge.fit(net, (x, y), epochs=6, timesteps=8, lr=1e-2, hardware=target,
                       progress=False, val=(x, y))
    assert not torch.equal(first, net.layer("4").weight)  # the float weights learned
    hw = to_hardware(net, target)
    view = training_view(net, synapses=hardware_synapses(net, get_format(target)))
    for encoding in ("direct", "poisson"):
        with torch.no_grad():
            trained = readout_sequence(view, x, 8, encoding, 0, "full", 8).sum(0).argmax(-1)
        chip = snnedge.simulate(hw, x, timesteps=8, encoding=encoding, seed=0, batch_size=256)
        assert float((trained == chip.predictions).double().mean()) >= 0.97, encoding
    assert snnedge.simulate(hw, x, timesteps=8, labels=y).accuracy() >= 0.85
    assert hist.val_accuracy[-1] >= 0.85  # validation runs the chip-format layers too


def test_the_gradient_passes_straight_through_the_quantization():
    net = network()
    x, y = quadrants(32)
    view = training_view(net, fold_pooling=False,
                         synapses=hardware_synapses(net, get_format("truenorth")))
    out = readout_sequence(view, x, 4, "direct", 0, "full", 4).sum(0)
    torch.nn.functional.cross_entropy(out, y).backward()
    g_latent = net.layer("6").weight.grad.clone()
    # the same loss with the quantized weights as leaves: the same gradient
    net.zero_grad()
    w_hw = view.layer("6").weight.detach().requires_grad_(True)
    assert not torch.equal(w_hw, net.layer("6").weight)  # quantized, not the float weights
    h = {}
    view.layer("6").register_forward_hook(lambda m, i, o: h.setdefault("in", i[0].detach()))
    readout_sequence(view, x, 4, "direct", 0, "full", 4)
    logits = (h["in"] @ w_hw.T + view.layer("6").bias.detach()).view(4, 32, 4).sum(0)
    torch.nn.functional.cross_entropy(logits, y).backward()
    assert torch.allclose(w_hw.grad, g_latent, atol=1e-6)


def test_formats_the_core_has_no_number_for_are_refused():
    x, y = quadrants(16)
    with pytest.raises(ValueError, match="no number format 'dynap-se' is registered"):
        snnedge.fit(network(), (x, y), epochs=1, hardware="dynap-se", progress=False)
    with pytest.raises(ValueError, match="layer '1' resets by 'subtract'.*reset='zero'"):
        snnedge.fit(network("subtract"), (x, y), epochs=1, hardware="loihi", progress=False)
    lif = snnedge.sequential(nn.Flatten(), nn.Linear(16, 8), snnedge.LIF(), nn.Linear(8, 4))
    with pytest.raises(ValueError, match="layer '2' is a LIF neuron.*'truenorth'"):
        snnedge.fit(lif, (x, y), epochs=1, hardware="truenorth", progress=False)
    with pytest.raises(TypeError, match="'hardware' parameter of fit"):
        snnedge.fit(network(), (x, y), epochs=1, hardware=8, progress=False)


def test_the_training_view_leaves_the_network_alone():
    net = network()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    view = training_view(net, synapses=hardware_synapses(net, get_format("dynap-cnn")))
    readout_sequence(view, quadrants(8)[0], 4, "direct", 0, "full", 4)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p is q for p, q in zip(net.parameters(), view.parameters()))
