r"""Chip power as static power plus a marginal cost per synaptic event.

TrueNorth's often quoted 26 pJ per synaptic event is *total* chip energy divided by events at
one operating point (0.775 V, 20 Hz mean rate, 128 active synapses per neuron: 72 mW). Used
as a constant it is wrong away from that point: Akopyan et al. (2015, Fig. 17) report it off
by -41 % at 11.6 Hz and +256 % at 95.9 Hz, because most of the chip's power does not depend
on activity. snnedge therefore models a fully used chip as

.. math::

    P(r, s) = P_\mathrm{static} + e_\mathrm{syn} \cdot N_\mathrm{chip} \cdot r \cdot s

with :math:`N_\mathrm{chip}` neurons per chip, mean rate :math:`r` (Hz) and :math:`s` active
synapses per neuron (:func:`~neuromorphic_targets.chip_power` evaluates it for a profile), and
fits the two parameters on two published operating points (:func:`fit_static_plus_marginal`,
which :mod:`~neuromorphic_targets.profiles` uses to derive TrueNorth's figures):

* the floor, no spikes: 42 mW (0.70 V, 0 Hz; Merolla et al. 2014). With no events all power is
  static (leakage, clock and the 1 kHz tick's neuron updates), so
  :math:`P_\mathrm{static} = 42\ \mathrm{mW}`;
* the typical network: 72 mW at 20 Hz and 128 active synapses (0.775 V; Merolla et al. 2014).
  With :math:`N_\mathrm{chip} = 4096 \cdot 256 = 1\,048\,576` that is
  :math:`1\,048\,576 \cdot 20 \cdot 128 = 2.684 \cdot 10^{9}` events/s, so
  :math:`e_\mathrm{syn} = (72 - 42)\ \mathrm{mW} / 2.684 \cdot 10^{9}\,\mathrm{s^{-1}}
  = 11.18\ \mathrm{pJ}`.

Checks: the model's average energy per event at the typical point is 72 mW / 2.684e9 = 26.8 pJ
(published: 26 pJ). At 11.6 Hz it gives 59.4 mW (38.2 pJ/event, so a constant 26 pJ would be
32 % low; Akopyan: 41 %); at 95.9 Hz 185.9 mW (14.4 pJ/event, a constant 26 pJ 80 % high;
Akopyan: 256 %). The model gets the direction of the error right but not all of its size.

Limits of the fit (stated, not hidden): the two points are at different supply voltages
(0.70 V and 0.775 V), so the voltage step's extra static power is lumped into
:math:`e_\mathrm{syn}`, which makes it an upper bound of the true marginal cost. At the top of
the published envelope (200 Hz, 256 synapses, 1.05 V: 323 mW) the model gives 642 mW, 2.0x the
measurement: for high-rate networks the dynamic part is overestimated.

References: Merolla et al., Science 345:668 (2014), doi:10.1126/science.1254642; Akopyan et
al., IEEE TCAD 34:1537 (2015), doi:10.1109/TCAD.2015.2474396.
"""
from __future__ import annotations


def fit_static_plus_marginal(neurons_per_chip: int, floor_w: float, point_w: float,
                             rate_hz: float, active_synapses: float) -> tuple[float, float]:
    """``(p_static_w, e_synop_j)`` of ``P = p_static + e_synop * N * r * s`` through two points.

    ``floor_w`` is the chip's power with no spikes; ``point_w`` its power at ``rate_hz`` and
    ``active_synapses`` per neuron.

    >>> p, e = fit_static_plus_marginal(1_048_576, 0.042, 0.072, 20.0, 128)
    >>> round(p * 1e3, 3), round(e * 1e12, 2)
    (42.0, 11.18)
    """
    events_per_s = neurons_per_chip * rate_hz * active_synapses
    if events_per_s <= 0 or point_w < floor_w:
        raise ValueError(f"fit_static_plus_marginal needs an operating point with events and at "
                         f"least the floor's power. Got {point_w} W at {events_per_s} events/s "
                         f"over a floor of {floor_w} W.")
    return floor_w, (point_w - floor_w) / events_per_s
