r"""Spike function with surrogate gradients.

The forward pass is the Heaviside step :math:`z = H(x)` with :math:`x = v - \theta`
(a spike when :math:`v \ge \theta`). The backward pass replaces :math:`H'` by the
derivative of a smooth function :math:`\sigma(x)` that approaches :math:`H` as its
sharpness grows (Neftci, Mostafa & Zenke, IEEE Signal Process. Mag. 36:51, 2019,
doi:10.1109/MSP.2019.2931595). Each registered surrogate is a pair (smooth function,
its derivative); the test suite checks every derivative against autograd of the smooth
function.

=============  ======================================================  ===========================
name           smooth function :math:`\sigma(x)`                        source
=============  ======================================================  ===========================
atan           :math:`\tfrac1\pi\arctan(\tfrac\pi2\alpha x)+\tfrac12`   Fang et al., ICCV 2021
sigmoid        :math:`1/(1+e^{-\alpha x})`                              Zenke & Vogels, 2021
fast_sigmoid   :math:`\tfrac12\,\alpha x/(1+\alpha|x|)+\tfrac12`        Zenke & Ganguli, 2018
triangle       piecewise quadratic; :math:`\sigma'=\alpha\max(0,1-\alpha|x|)`  Esser et al., 2016
=============  ======================================================  ===========================
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .errors import check_choice, check_real


@dataclass(frozen=True)
class Surrogate:
    """A smooth stand-in for the Heaviside step, used only in the backward pass.

    Attributes
    ----------
    name:
        Registry name.
    alpha:
        Sharpness (1 / width of the gradient window, in units of the membrane variable).
    """

    name: str
    alpha: float

    def smooth(self, x: torch.Tensor) -> torch.Tensor:
        """The smooth function :math:`\\sigma(x)` whose derivative is the surrogate."""
        return _REGISTRY[self.name][0](x, self.alpha)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative :math:`\\sigma'(x)`."""
        return _REGISTRY[self.name][1](x, self.alpha)


def _atan(x, a):
    return torch.atan(math.pi / 2 * a * x) / math.pi + 0.5


def _atan_grad(x, a):
    return (a / 2) / (1 + (math.pi / 2 * a * x) ** 2)


def _sigmoid(x, a):
    return torch.sigmoid(a * x)


def _sigmoid_grad(x, a):
    s = torch.sigmoid(a * x)
    return a * s * (1 - s)


def _fast_sigmoid(x, a):
    return 0.5 * a * x / (1 + a * x.abs()) + 0.5


def _fast_sigmoid_grad(x, a):
    return 0.5 * a / (1 + a * x.abs()) ** 2


def _triangle(x, a):
    # Integral of a * max(0, 1 - a|x|): a ramp from 0 (x <= -1/a) to 1 (x >= 1/a).
    y = (a * x).clamp(-1, 1)
    return 0.5 + y - 0.5 * y * y.abs()


def _triangle_grad(x, a):
    return a * (1 - a * x.abs()).clamp(min=0)


SmoothFn = Callable[[torch.Tensor, float], torch.Tensor]
_REGISTRY: dict[str, tuple[SmoothFn, SmoothFn, float]] = {
    # name: (smooth function, its derivative, default alpha)
    "atan": (_atan, _atan_grad, 2.0),
    "sigmoid": (_sigmoid, _sigmoid_grad, 4.0),
    "fast_sigmoid": (_fast_sigmoid, _fast_sigmoid_grad, 10.0),
    "triangle": (_triangle, _triangle_grad, 1.0),
}

SURROGATES: tuple[str, ...] = tuple(_REGISTRY)


def get_surrogate(name: str, alpha: float | None = None) -> Surrogate:
    """Look up a surrogate by name; ``alpha`` defaults to the surrogate's usual sharpness."""
    check_choice(name, SURROGATES, param="surrogate", where="snnedge")
    if alpha is None:
        alpha = _REGISTRY[name][2]
    check_real(alpha, param="alpha", where=f"surrogate {name!r}", low=0, low_open=True)
    return Surrogate(name, float(alpha))


class _SpikeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.grad(x), None


def spike(x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
    """Heaviside ``x >= 0`` forward, ``surrogate.grad(x)`` backward."""
    return _SpikeFunction.apply(x, surrogate)
