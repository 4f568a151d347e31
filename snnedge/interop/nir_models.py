r"""NIR nodes for snnedge's other temporal modules: CubaLIF, LI, I (Integrator), Threshold, Delay.

The discrete reading of each NIR node, one snnedge step being ``dt`` (forward Euler, the
synaptic current updated before the membrane reads it, as snnTorch's ``Synaptic`` does)::

    CubaLIF  tau_syn dI/dt = -I + w_in S          ->  I[t] = (1 - dt/tau_syn) I[t-1] + (dt w_in / tau_syn) S[t]
             tau_mem dv/dt = (v_leak - v) + r I   ->  v[t] = (1 - dt/tau_mem) v[t-1] + (dt r / tau_mem) I[t]
             z = H(v - v_threshold), then the reset (an explicit option, as for IF and LIF)
    LI       tau dv/dt = (v_leak - v) + r I       ->  v[t] = (1 - dt/tau) v[t-1] + (dt r / tau) I[t]
    I        dv/dt = r I                          ->  v[t] = v[t-1] + (r dt) I[t]
    Threshold  z = H(I - threshold)               ->  z[t] = H(I[t] - threshold)
    Delay    y(t) = x(t - delay)                  ->  y[t] = x[t - d],  d = delay / dt  (whole steps)

so with ``beta_syn = 1 - dt/tau_syn``, ``beta = 1 - dt/tau_mem`` and the gains
``g_syn = dt w_in / tau_syn``, ``g_mem = dt r / tau_mem``, a NIR CubaLIF is
:class:`snnedge.CubaLIF` ``(beta, beta_syn, theta = v_threshold / (g_syn g_mem))`` (its
current and membrane scaled by ``1/g_syn`` and ``1/(g_syn g_mem)``: the same spikes); an LI
is :class:`snnedge.LI` ``(beta, gain = dt r / tau)``, an I :class:`snnedge.Integrator`
``(gain = r dt)``. ``tau = inf`` with ``r = inf`` (or ``w_in = inf``) is how exporters write a
decay of exactly 1: its gain is read as 1 (the limit). Export writes the inverse
(``tau = dt / (1 - beta)`` nudged to give ``beta`` back exactly, ``r = gain tau / dt``,
``w_in = tau_syn / dt``), so a round trip is exact. ``v_leak`` must be 0 (snnedge's neurons
leak towards 0); the reset, ``dt`` and the initial membrane are :func:`snnedge.from_nir`'s
options, as for IF and LIF. NIR fires at ``v > v_threshold``, snnedge at ``v >= theta``: they
differ only on exact ties.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..delay import Delay
from ..neuron_models import CubaLIF, Integrator, LI, Threshold
from .nir_nodes import GAIN_TOL, exact_tau, full_array, numpy_of, per_channel_value, typed_tensor

#: The snnedge modules this file writes, and the NIR node types it reads.
EXPORTED = (CubaLIF, LI, Integrator, Threshold, Delay)
IMPORTED = ("CubaLIF", "LI", "I", "Threshold", "Delay")


def _tau(beta: np.ndarray, dt: float) -> np.ndarray:
    """``dt / (1 - beta)`` exactly invertible, ``inf`` where ``beta == 1``."""
    beta = np.asarray(beta, dtype=np.float64)
    with np.errstate(divide="ignore"):
        tau = np.where(beta == 1.0, np.inf, dt / np.where(beta == 1.0, 0.5, 1.0 - beta))
    finite = np.isfinite(tau)
    if finite.any():
        tau[finite] = exact_tau(beta[finite], dt)
    return tau


def _decay_gain(tau, scale, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """``(1 - dt/tau, dt scale / tau)`` with the gain of ``tau = scale = inf`` read as 1 and
    gains within :data:`GAIN_TOL` of 1 snapped to 1."""
    tau = np.asarray(tau, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    beta = 1.0 - dt / tau
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = np.where(np.isinf(tau) & np.isinf(scale), 1.0, dt * scale / tau)
    return beta, np.where(np.abs(gain - 1.0) <= GAIN_TOL, 1.0, gain)


def export_model(nir, where: str, module: nn.Module, shape, dt: float, flavor: str):
    """The NIR node of a CubaLIF, LI, Integrator, Threshold or Delay layer (``None`` for
    other modules)."""
    if not isinstance(module, EXPORTED):
        return None
    if flavor == "snntorch":
        raise ValueError(f"to_nir(flavor='snntorch'): {where} has no node snnTorch 1.0.0's importer "
                         f"runs as written; export with flavor='nir'.")
    shape = tuple(shape)
    if isinstance(module, Delay):
        return nir.Delay(delay=full_array(module.delay.to(torch.float64) * dt, shape, np.float64))
    if isinstance(module, Threshold):
        return nir.Threshold(threshold=full_array(module.threshold, shape, numpy_of(module.threshold).dtype))
    if isinstance(module, LI):
        gain = full_array(module.gain.to(torch.float64), shape, np.float64)
        if isinstance(module, Integrator):
            return nir.I(r=gain / dt)
        tau = _tau(full_array(module.beta.to(torch.float64), shape, np.float64), dt)
        with np.errstate(invalid="ignore"):
            r = np.where(np.isinf(tau), np.inf, gain * tau / dt)
        if np.any(np.isinf(tau) & (gain != 1.0)):
            raise ValueError(f"to_nir: {where} has beta = 1 with gain != 1, which NIR's LI cannot say "
                             f"(tau = r = inf); use snnedge.Integrator(gain) instead.")
        return nir.LI(tau=tau, r=r, v_leak=np.zeros(shape))
    dtype = numpy_of(module.threshold).dtype
    beta = full_array(module.membrane.decay.detach().to(torch.float64), shape, np.float64)
    beta_syn = full_array(module.beta_syn.to(torch.float64), shape, np.float64)
    tau_mem, tau_syn = _tau(beta, dt), _tau(beta_syn, dt)
    zeros = np.zeros(shape, dtype)
    meta = {"snnedge_reset": module.reset, "dt": dt, "snnedge_v_init": module.v_init}
    return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=zeros,
                       v_threshold=full_array(module.threshold, shape, dtype), v_reset=zeros,
                       w_in=tau_syn / dt, metadata=meta)


def import_model(nir, key: str, node, reset: str, dt: float, v_init) -> nn.Module | None:
    """The snnedge module of a NIR CubaLIF, LI, I, Threshold or Delay node (``None`` for
    other types); a ``ValueError`` names the node when its parameters have no reading."""
    kind = type(node).__name__
    if kind not in IMPORTED:
        return None
    where = f"from_nir: NIR node {key!r} ({kind})"
    if kind == "Delay":
        steps = np.asarray(node.delay, dtype=np.float64) / dt
        whole = np.round(steps)
        if np.any(np.abs(steps - whole) > 1e-9 * np.maximum(1.0, np.abs(steps))) or np.any(whole < 0):
            raise ValueError(f"{where} delays by {np.unique(steps)[:4].tolist()} steps of dt={dt:g}; "
                             f"snnedge delays by whole steps >= 0. Pass the dt the graph was written "
                             f"with.")
        flat = whole.reshape(-1)
        return Delay(int(flat[0]) if flat.size and np.all(flat == flat[0]) else
                     torch.as_tensor(whole, dtype=torch.int64))
    if kind == "Threshold":
        theta = typed_tensor(per_channel_value(node.threshold, key, node, "threshold"), node.threshold)
        module = Threshold(theta)
        module.threshold = theta  # NIR's float type kept
        return module
    if kind in ("LI", "I"):
        if kind == "I":
            beta, gain = None, np.asarray(node.r, dtype=np.float64) * dt
            gain = np.where(np.abs(gain - 1.0) <= GAIN_TOL, 1.0, gain)
        else:
            _no_leak(node, where)
            beta, gain = _decay_gain(node.tau, node.r, dt)
            _check_decay(beta, where, dt, "tau")
        like = node.r
        module = Integrator() if beta is None else LI(beta=per_channel_value(beta, key, node, "beta"))
        if beta is not None:  # NIR's float type kept (the constructor makes the default one)
            module.beta = typed_tensor(per_channel_value(beta, key, node, "beta"), like)
        module.gain = typed_tensor(per_channel_value(gain, key, node, "gain"), like)
        return module
    _no_leak(node, where)
    v_reset = np.asarray(node.v_reset if node.v_reset is not None else 0.0, dtype=np.float64)
    if reset == "zero" and np.any(v_reset != 0):
        raise ValueError(f"{where} resets to v_reset = {np.unique(v_reset)[:4].tolist()}; snnedge "
                         f"resets to 0 (reset='zero') or subtracts the threshold (reset='subtract').")
    beta, g_mem = _decay_gain(node.tau_mem, node.r, dt)
    beta_syn, g_syn = _decay_gain(node.tau_syn, node.w_in, dt)
    _check_decay(beta, where, dt, "tau_mem")
    _check_decay(beta_syn, where, dt, "tau_syn", allow_zero=True)
    gain = g_syn * g_mem
    if np.any(gain <= 0) or not np.all(np.isfinite(gain)):
        raise ValueError(f"{where} has an input gain of {float(np.min(gain)):g} (w_in, r, tau_syn, "
                         f"tau_mem with dt={dt:g}); it must be positive and finite.")
    theta = np.asarray(node.v_threshold, dtype=np.float64)
    theta = np.broadcast_to(theta / gain if np.any(gain != 1.0) else theta,
                            np.broadcast_shapes(theta.shape, gain.shape))
    v0 = torch.as_tensor(v_init, dtype=torch.float64)
    if v0.dim() > 0:
        raise ValueError(f"{where}: per-neuron initial membranes are for IF and LIF layers; give "
                         f"this layer one v_init.")
    like = node.v_threshold
    module = CubaLIF(beta=0.5, beta_syn=0.5, reset=reset, v_init=float(v0))
    module.membrane.beta = typed_tensor(per_channel_value(np.broadcast_to(beta, theta.shape), key, node,
                                                          "beta"), like)
    module.beta_syn = typed_tensor(per_channel_value(np.broadcast_to(beta_syn, theta.shape), key, node,
                                                     "beta_syn"), like)
    module.membrane.threshold = typed_tensor(per_channel_value(theta, key, node, "threshold"), like)
    return module


def _no_leak(node, where: str) -> None:
    if np.any(np.asarray(node.v_leak) != 0):
        raise ValueError(f"{where} has v_leak != 0; snnedge's neurons leak towards 0.")


def _check_decay(beta: np.ndarray, where: str, dt: float, tau: str, allow_zero: bool = False) -> None:
    low = np.min(beta)
    if (low < 0 if allow_zero else low <= 0) or np.max(beta) > 1:
        raise ValueError(f"{where} gives a decay 1 - dt/{tau} = {float(low):g} with dt={dt:g}; it must "
                         f"be in {'[' if allow_zero else '('}0, 1]. Pass the step the graph was written "
                         f"with (snnTorch uses dt=1e-4).")
