# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""``ResidualInferer``: residual learning (DnCNN-style denoising) for any network and any MONAI inferer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from monai.inferers import Inferer, SimpleInferer
from monai.utils import look_up_option

__all__ = ["ResidualInferer", "NoisyInputInferer", "PADDING_MODES"]

PADDING_MODES = ("reflect", "replicate", "constant")


class ResidualInferer(Inferer):
    """``inputs - network(inputs)``: the network predicts the residual (e.g. the noise map) and the inferer returns the
    restored image, so losses and metrics compare it with the clean image directly.

    With a spiking network the readout is the output layer's membrane potential averaged over ``T`` (what
    :class:`~monai_snn.networks.SpikingSimulator` returns), as in the Spiking-UNet denoiser. Inputs whose spatial
    sizes are not multiples of ``divisor`` (a U-Net's ``2 ** poolings``) are padded on the far side (``reflect`` by
    default: zero padding would show as dark borders in a restored image) and the output is cropped back. Composes
    with :class:`~monai_snn.engines.SpikingForwardInferer`, so a stock ``SupervisedTrainer``, a
    :class:`~monai_snn.engines.SpikingTrainer` and a :class:`~monai_snn.engines.SpikingEvaluator` all use it.

    Args:
        inferer: the inner inferer that runs the network (``SimpleInferer`` by default; a ``SlidingWindowInferer``
            for large images).
        divisor: pad every spatial size to a multiple of this (1: no padding).
        padding_mode: ``"reflect"``, ``"replicate"`` or ``"constant"`` (zeros).

    Raises:
        ValueError: ``divisor < 1`` or an unknown padding mode; (when called) a network output whose shape differs
            from its input's (the residual needs as many output as input channels).

    Example:
        >>> inferer = ResidualInferer(divisor=8)
        >>> denoised = inferer(noisy, unet)  # noisy - unet(noisy), any H x W
    """

    def __init__(self, inferer: Inferer | None = None, divisor: int = 1, padding_mode: str = "reflect") -> None:
        super().__init__()
        if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 1:
            raise ValueError(f"divisor must be a positive integer (a U-Net's 2 ** poolings), got {divisor!r}.")
        self.inferer = SimpleInferer() if inferer is None else inferer
        self.divisor = divisor
        self.padding_mode = look_up_option(padding_mode, PADDING_MODES)

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        sizes = list(x.shape[2:])
        extra = [(-s) % self.divisor for s in sizes]
        if not any(extra):
            return x, sizes
        pads: list[int] = []
        for e in reversed(extra):  # F.pad lists the last dimension first
            pads += [0, e]
        if self.padding_mode == "reflect" and any(e >= s for e, s in zip(extra, sizes)):
            return F.pad(x, pads, mode="replicate"), sizes  # too small to reflect
        return F.pad(x, pads, mode=self.padding_mode), sizes

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        """Run ``network`` on ``inputs`` (``[B, C, *spatial]``) through the inner inferer; returns ``inputs - out``."""
        padded, sizes = self._pad(inputs)
        out = self.inferer(padded, network, *args, **kwargs)
        out = out[(slice(None), slice(None), *(slice(0, s) for s in sizes))]
        if out.shape != inputs.shape:
            raise ValueError(
                f"ResidualInferer: the network output {tuple(out.shape)} does not match its input "
                f"{tuple(inputs.shape)}; a residual network needs out_channels == in_channels."
            )
        return inputs - out

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(inferer={self.inferer!r}, divisor={self.divisor}, padding_mode={self.padding_mode!r})"



class NoisyInputInferer(Inferer):
    """Adds Gaussian noise ``N(0, sigma^2)`` to the inputs, then runs an inner inferer: robustness tests.

    The noise is reproducible: the ``k``-th call since construction (or :meth:`reset`) draws from a generator seeded
    with ``seed + k``, so every model evaluated with a fresh inferer sees the same noisy images (in loader order).
    ``sigma`` is in the units of the network input (e.g. on [0, 1] images, 0.1 is 10 % of the range).

    Args:
        inferer: the inner inferer (``None``: ``SimpleInferer``).
        sigma: noise standard deviation, >= 0 (0 passes the inputs through).
        seed: base seed.
        clip: ``(low, high)`` to clip the noisy input to (e.g. ``(0, 1)``: images stay images, and rate-coded
            (Poisson) networks need probabilities); ``None``: not clipped.

    Raises:
        ValueError: a negative or non-finite ``sigma``, or a ``clip`` that is not ``(low, high)`` with low < high.

    Example::

        noisy = NoisyInputInferer(SlidingWindowInferer((128, 128)), sigma=0.1)
        pred = noisy(images, network)
    """

    def __init__(
        self,
        inferer: Callable[..., Any] | None = None,
        sigma: float = 0.1,
        seed: int = 0,
        clip: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        sigma = float(sigma)
        if not (sigma >= 0 and sigma < float("inf")):
            raise ValueError(f"NoisyInputInferer: sigma must be a finite number >= 0, got {sigma!r}.")
        if clip is not None and (len(clip) != 2 or not float(clip[0]) < float(clip[1])):
            raise ValueError(f"NoisyInputInferer: clip must be (low, high) with low < high, got {clip!r}.")
        self.clip = None if clip is None else (float(clip[0]), float(clip[1]))
        self.inferer = SimpleInferer() if inferer is None else inferer
        self.sigma, self.seed = sigma, int(seed)
        self.reset()

    def reset(self) -> None:
        """Start the noise sequence again (call number 0)."""
        self.calls = 0

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.sigma > 0:
            g = torch.Generator(device="cpu").manual_seed(self.seed + self.calls)
            noise = torch.randn(inputs.shape, generator=g, dtype=torch.float32).to(inputs.device, inputs.dtype)
            inputs = inputs + self.sigma * noise
            if self.clip is not None:
                inputs = inputs.clamp(*self.clip)
        self.calls += 1
        return self.inferer(inputs, network, *args, **kwargs)

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(sigma={self.sigma}, seed={self.seed}, clip={self.clip}, inferer={self.inferer!r})"
