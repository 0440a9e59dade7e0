"""Surrogate gradients for the non-differentiable spike function.

The forward pass of every surrogate is the Heaviside step ``H(u - theta)``; only the backward pass differs.

:data:`SURROGATES` maps names to surrogate factories (called with the keyword arguments of :func:`make_surrogate`);
every ``surrogate=`` argument of the package (neurons, ``convert_to_snn``, ``spiking_from_scratch``) is looked up
there. Registering one is one line::

    SURROGATES["steep_sigmoid"] = functools.partial(SigmoidSurrogate, alpha=10.0)
    neuron = MultiThresholdNeuron(surrogate="steep_sigmoid")
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from monai_snn.neurons.registry import look_up

__all__ = [
    "Surrogate",
    "TriangleSurrogate",
    "RelativeTriangleSurrogate",
    "SigmoidSurrogate",
    "RectangleSurrogate",
    "SURROGATES",
    "make_surrogate",
    "surrogate_from_name",
]


class _SpikeFn(torch.autograd.Function):
    """Heaviside forward, ``surrogate.grad(u, theta)`` backward."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, theta: float, surrogate: "Surrogate") -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(u)
        ctx.theta = theta
        ctx.surrogate = surrogate
        return (u >= theta).to(u.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (u,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.grad(u, ctx.theta), None, None


class Surrogate:
    """Base class: ``spike(u, theta)`` is ``H(u - theta)`` with the derivative given by :meth:`grad`."""

    def grad(self, u: torch.Tensor, theta: float) -> torch.Tensor:
        raise NotImplementedError

    def spike(self, u: torch.Tensor, theta: float) -> torch.Tensor:
        return _SpikeFn.apply(u, theta, self)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class TriangleSurrogate(Surrogate):
    """Linear (triangle) surrogate of Bellec et al., used by the hippocampus paper: ``alpha * max(0, 1 - |u - V|)``.

    Args:
        alpha: height of the triangle (dampening factor), 0.3 in Bellec et al.; 1.0 by default.
        width: half-width of the triangle in membrane units (1.0 in the paper's formula).

    Example::

        s = TriangleSurrogate(alpha=0.3).spike(u, 1.0)
    """

    def __init__(self, alpha: float = 1.0, width: float = 1.0) -> None:
        self.alpha = float(alpha)
        self.width = float(width)

    def grad(self, u: torch.Tensor, theta: float) -> torch.Tensor:
        return self.alpha * torch.clamp(1.0 - (u - theta).abs() / self.width, min=0.0) / self.width


class RelativeTriangleSurrogate(Surrogate):
    """Kim et al.'s threshold-relative triangle: ``max(0, 1 - |(u - theta) / theta|)`` (scaled by ``alpha``).

    Args:
        alpha: scale of the derivative.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = float(alpha)

    def grad(self, u: torch.Tensor, theta: float) -> torch.Tensor:
        return self.alpha * torch.clamp(1.0 - ((u - theta) / theta).abs(), min=0.0)


class SigmoidSurrogate(Surrogate):
    """Smooth surrogate: the derivative of ``sigmoid(alpha * (u - theta))``.

    Args:
        alpha: steepness.
    """

    def __init__(self, alpha: float = 4.0) -> None:
        self.alpha = float(alpha)

    def grad(self, u: torch.Tensor, theta: float) -> torch.Tensor:
        s = torch.sigmoid(self.alpha * (u - theta))
        return self.alpha * s * (1.0 - s)


class RectangleSurrogate(Surrogate):
    """Rectangular surrogate of STBP (Wu et al. 2018) and multi-level firing (Feng et al. 2022):
    ``1[|u - theta| < width / 2] / width``.

    Args:
        width: width of the window around the threshold (1.0 in the multi-level firing paper).

    Example::

        s = RectangleSurrogate(width=1.0).spike(u, 0.6)
    """

    def __init__(self, width: float = 1.0) -> None:
        if not width > 0:
            raise ValueError(f"RectangleSurrogate: width must be positive, got {width!r}.")
        self.width = float(width)

    def grad(self, u: torch.Tensor, theta: float) -> torch.Tensor:
        return ((u - theta).abs() < 0.5 * self.width).to(u.dtype) / self.width


SURROGATES: dict[str, Callable[..., Surrogate]] = {
    "triangle": TriangleSurrogate,
    "relative_triangle": RelativeTriangleSurrogate,
    "sigmoid": SigmoidSurrogate,
    "rectangle": RectangleSurrogate,
}
_SURROGATES = SURROGATES  # former private name, same dict


def make_surrogate(name: str | Surrogate, **kwargs) -> Surrogate:
    """Build a surrogate from its :data:`SURROGATES` name, or pass a :class:`Surrogate` through unchanged.

    Args:
        name: ``"triangle"``, ``"relative_triangle"``, ``"sigmoid"``, ``"rectangle"`` (or any registered name), or a
            surrogate.
        kwargs: forwarded to the factory (e.g. ``alpha``).

    Raises:
        ValueError: unknown name (MONAI's ``look_up_option`` message: the closest name and all valid ones).

    Example::

        make_surrogate("triangle", alpha=0.3)  # TriangleSurrogate(alpha=0.3, width=1.0)
    """
    if isinstance(name, Surrogate):
        return name
    return look_up("surrogate", name, SURROGATES)(**kwargs)


surrogate_from_name = make_surrogate  # former name, kept for existing callers
