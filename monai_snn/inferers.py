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

__all__ = ["ResidualInferer", "PADDING_MODES"]

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

