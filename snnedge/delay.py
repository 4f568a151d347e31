r"""`Delay`: a layer's input, ``d`` steps later (NIR's ``Delay`` read in whole steps).

::

    y[t] = x[t - d]     (zeros for t < d);   d >= 0 an integer per element or one for all

The state is the last ``max(d)`` inputs, ``(max_d, B, ...)``, carried between blocks like a
neuron's membrane, so a delay costs memory in ``d``, not in ``T``. A delay passes its input's
kind on: spikes stay events (counted as events of the layers it feeds), analog values stay
analog.
"""
from __future__ import annotations

import torch

from .layers import TemporalModule


class Delay(TemporalModule):
    """Delay every element of its input by ``delay`` steps (an int, or an integer tensor of
    the per-sample shape for one delay per element).

    Example
    -------
    >>> import torch
    >>> Delay(2)(torch.arange(1., 5.).view(4, 1)).flatten().tolist()
    [0.0, 0.0, 1.0, 2.0]
    """

    emits_spikes = False
    emits_events = None  # as its input: see snnedge.simulate's counting

    def __init__(self, delay=1):
        super().__init__()
        d = torch.as_tensor(delay)
        if d.is_floating_point():
            if not torch.isfinite(d).all() or not torch.equal(d, d.round()):
                raise ValueError(f"The 'delay' parameter of Delay must be whole steps (integers >= 0). "
                                 f"Got {d.tolist()}; divide a delay in seconds by dt and round it "
                                 f"first if that is what you mean.")
            d = d.round()
        d = d.to(torch.int64)
        if d.numel() == 0 or bool((d < 0).any()):
            raise ValueError(f"The 'delay' parameter of Delay must be integers >= 0. Got {d.tolist()}.")
        self.register_buffer("delay", d.clone())

    @property
    def max_delay(self) -> int:
        return int(self.delay.max())

    def initial_state(self, template: torch.Tensor) -> torch.Tensor:
        """The inputs of the ``max_delay`` steps before t=0: zeros."""
        return template.new_zeros((self.max_delay, *template.shape))

    def forward_block(self, current: torch.Tensor, state: torch.Tensor, steps: int,
                      static: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        x = current.unsqueeze(0).expand(steps, *current.shape) if static else current
        d_max = self.max_delay
        if d_max == 0:
            return x, state
        full = torch.cat([state, x.to(state.dtype)])  # steps d_max + t for t = 0 .. steps - 1
        if self.delay.dim() == 0:
            y = full[:steps]
        else:
            if tuple(self.delay.shape) != tuple(x.shape[2:]):
                raise ValueError(f"Delay has one delay per element of shape {tuple(self.delay.shape)} "
                                 f"but its input has per-sample shape {tuple(x.shape[2:])}.")
            t = torch.arange(steps, device=x.device).view(-1, *([1] * (x.dim() - 1)))
            idx = (t + d_max - self.delay.to(x.device)).expand(x.shape)
            y = torch.gather(full, 0, idx)
        return y, full[full.shape[0] - d_max:].clone()

    def extra_repr(self) -> str:
        d = self.delay
        return f"delay={int(d)}" if d.dim() == 0 else f"delay=per-element[max {self.max_delay}]"
