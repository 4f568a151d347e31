"""Gain calibration (converters.gain, ``convert(..., calibrate_gain=True)``): the fitted slope
per channel, the thresholds it changes, and the one sweep against the per-layer reference."""
import pytest
import torch
from torch import nn

import converters.assemble as assemble
import converters.pipeline as pipeline
from converters import convert
from converters.gain import GAIN_MAX, GAIN_MIN, apply_gain, fit_gain
from converters.membrane import calibrate_membrane, calibrate_membrane_per_layer, calibrated_layers
from snnedge import IF
from test_convert import X12, rescat, vgg_tiny


def test_fit_gain_is_the_least_squares_slope_per_channel():
    g = torch.Generator().manual_seed(0)
    t = torch.rand(50, 3, 4, 4, generator=g) * 10
    c = t * torch.tensor([0.8, 1.0, 1.3]).view(1, 3, 1, 1) + 0.7
    assert torch.allclose(fit_gain(c, t), torch.tensor([0.8, 1.0, 1.3], dtype=torch.float64), atol=1e-6)
    flat = torch.full((5, 2), 3.0)                 # no variation: no slope to fit
    assert fit_gain(torch.rand(5, 2, generator=g), flat).tolist() == [1.0, 1.0]
    steep = fit_gain(torch.stack([t[:, 0] * 5, t[:, 0] * 0.1], 1), torch.stack([t[:, 0]] * 2, 1))
    assert steep.tolist() == [GAIN_MAX, GAIN_MIN]


def test_apply_gain_gives_one_threshold_per_channel():
    neuron = IF(threshold=2.0)
    apply_gain(neuron, torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64))
    assert neuron.threshold.tolist() == [1.0, 2.0, 3.0]
    x = torch.ones(4, 1, 3)                        # (T, B, C): constant input 1 per step
    spikes, _ = neuron.forward_block(x, neuron.initial_state(x[0]), 4)
    assert spikes.sum(0).flatten().tolist() == [4.0, 2.0, 1.0]


def test_gain_calibration_is_off_by_default_and_recorded_when_on():
    plain = convert(rescat(), X12, timesteps=8)
    assert plain.conversion_.gains == {} and plain.conversion_.gain_timesteps is None
    off = convert(rescat(), X12, timesteps=8, calibrate_gain=False)
    for a, b in zip(plain.state_dict().values(), off.state_dict().values()):
        assert torch.equal(a, b)
    on = convert(rescat(), X12, timesteps=8, calibrate_gain=True)
    info = on.conversion_
    assert info.gain_timesteps == pipeline.GAIN_TIMESTEPS
    assert info.gains and set(info.gains) == set(calibrated_layers(on))
    name = next(n for n, g in info.gains.items() if any(abs(v - 1) > 1e-3 for v in g))
    before = torch.as_tensor(info.thresholds[name], dtype=torch.float64)
    after = on.layer(name).threshold.double()
    assert torch.allclose(after, before * torch.tensor(info.gains[name], dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize("build", [rescat, lambda: vgg_tiny(nn.AvgPool2d)])
def test_one_sweep_gains_equal_the_per_layer_ones(build, monkeypatch):
    out = []
    for method in (calibrate_membrane, calibrate_membrane_per_layer):
        monkeypatch.setattr(assemble, "calibrate_membrane", method)
        out.append(convert(build(), X12, timesteps=8, calibrate_gain=True))
    sweep, per_layer = out
    assert sweep.conversion_.gains
    for (k, a), (k2, b) in zip(sweep.state_dict().items(), per_layer.state_dict().items()):
        assert k == k2 and torch.allclose(a, b, atol=1e-5), (k, float((a - b).abs().max()))
