"""Input encoders: how an image becomes the input current of the first layer at each time step.

* :class:`StaticEncoder` (analog current): the same input every step, so the first layer is computed once.
* :class:`PoissonEncoder` binary: data in ``[0, 1]``, a spike (value 1) with probability ``x`` at each step.
* :class:`PoissonEncoder` ternary (``signed=True``): data in ``[-1, 1]``, a spike of value ``sign(x)`` with
  probability ``|x|``.

Encoders produce ``[k, B, C, *spatial]`` chunks of time steps; seeded encoders repeat their spikes exactly.

:data:`ENCODERS` maps names to encoder factories, each called as ``factory(seed=seed)``; every ``encoding=``
argument of the package (``convert_to_snn``, ``SpikingSimulator``, ``spiking_from_scratch``) is looked up there.
Registering one is one line::

    ENCODERS["latency"] = LatencyEncoder  # an Encoder subclass whose __init__ takes ``seed``
    snn = convert_to_snn(ann, calibration, encoding="latency")
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from monai_snn.neurons.registry import look_up

__all__ = ["Encoder", "StaticEncoder", "PoissonEncoder", "make_encoder", "ENCODERS", "ENCODINGS"]


class Encoder:
    """Base class. ``static`` encoders return the input unchanged and are evaluated once per sample."""

    static: bool = False

    def reset(self, x: torch.Tensor) -> None:
        """Called once per sample before the first step (validates ``x``, reseeds)."""

    def __call__(self, x: torch.Tensor, num_steps: int) -> torch.Tensor:
        raise NotImplementedError


class StaticEncoder(Encoder):
    """Analog input current, constant over time (direct coding).

    Args:
        seed: unused (a static input is deterministic); accepted so that every encoder factory takes ``seed``.

    Example::

        enc = StaticEncoder()
        enc(x, 4).shape  # (4, *x.shape), a view of x
    """

    static = True

    def __init__(self, seed: int | None = None) -> None:
        del seed

    def __call__(self, x: torch.Tensor, num_steps: int) -> torch.Tensor:
        return x.unsqueeze(0).expand(num_steps, *x.shape)

    def __repr__(self) -> str:
        return "StaticEncoder()"


class PoissonEncoder(Encoder):
    """Poisson (Bernoulli per step) rate coding.

    Args:
        signed: ``False``: binary spikes for data in ``[0, 1]``; ``True``: ternary spikes ``sign(x)`` with
            probability ``|x|`` for data in ``[-1, 1]``.
        seed: seed of the encoder's own random generator, re-applied at every sample (``None``: not seeded).
        tolerance: values this far outside the range are clipped silently; further is an error.

    Raises:
        ValueError: input outside the data range of the encoding.

    Example::

        enc = PoissonEncoder(signed=True, seed=0)
        enc.reset(x)
        spikes = enc(x, 8)  # values in {-1, 0, 1}
    """

    def __init__(self, signed: bool = False, seed: int | None = 0, tolerance: float = 1e-4) -> None:
        self.signed = bool(signed)
        self.seed = seed
        self.tolerance = float(tolerance)
        self._generator: torch.Generator | None = None

    @property
    def value_range(self) -> tuple[float, float]:
        return (-1.0, 1.0) if self.signed else (0.0, 1.0)

    def reset(self, x: torch.Tensor) -> None:
        lo, hi = self.value_range
        xmin, xmax = float(x.min()), float(x.max())
        if xmin < lo - self.tolerance or xmax > hi + self.tolerance:
            kind = "ternary (signed)" if self.signed else "binary"
            raise ValueError(
                f"{kind} Poisson encoding expects input in [{lo:g}, {hi:g}], got values in [{xmin:.4g}, {xmax:.4g}]; "
                f"normalise the images first (e.g. monai.transforms.ScaleIntensity(minv={lo:g}, maxv={hi:g}))."
            )
        self._generator = None
        if self.seed is not None:
            self._generator = torch.Generator(device=x.device)
            self._generator.manual_seed(int(self.seed))

    def __call__(self, x: torch.Tensor, num_steps: int) -> torch.Tensor:
        lo, hi = self.value_range
        x = x.clamp(lo, hi)
        u = torch.rand((num_steps, *x.shape), generator=self._generator, device=x.device, dtype=x.dtype)
        if self.signed:
            return (u < x.abs()).to(x.dtype) * torch.sign(x)
        return (u < x).to(x.dtype)

    def __repr__(self) -> str:
        return f"PoissonEncoder(signed={self.signed}, seed={self.seed})"


ENCODERS: dict[str, Callable[..., Encoder]] = {
    "static": StaticEncoder,
    "poisson_binary": functools.partial(PoissonEncoder, signed=False),
    "poisson_ternary": functools.partial(PoissonEncoder, signed=True),
    "poisson": functools.partial(PoissonEncoder, signed=False),  # short name of "poisson_binary"
}
ENCODINGS = ENCODERS.keys()  # former tuple of names: a live view of the registered names


def make_encoder(encoding: str | Encoder, seed: int | None = 0) -> Encoder:
    """Build an encoder by its :data:`ENCODERS` name, or pass an :class:`Encoder` through unchanged.

    Args:
        encoding: ``"static"``, ``"poisson_binary"`` (``"poisson"``), ``"poisson_ternary"`` or any registered
            name, or an encoder.
        seed: seed of the encoder's random generator (ignored by the static encoder).

    Raises:
        ValueError: unknown name (MONAI's ``look_up_option`` message: the closest name and all valid ones).

    Example::

        enc = make_encoder("poisson_ternary", seed=1)  # PoissonEncoder(signed=True, seed=1)
    """
    if isinstance(encoding, Encoder):
        return encoding
    return look_up("encoding", encoding, ENCODERS)(seed=seed)
