# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Dice of whole hippocampus volumes for the bundle's evaluator: 3D Dice per volume and 2D Dice per axial slice,
each as a mean or a standard deviation, through MONAI's Dice (``DiceMetric``'s ``compute_dice``,
``include_background=True``, ``ignore_empty=False``: an empty prediction of an empty label counts 1).

The evaluator (``common.json``: ``SpikingEvaluator`` with ``SliceInferer(roi_size=(-1, -1), spatial_dim=0)`` and
sigmoid > 0.5) gives one binary prediction ``[1, D, H, W]`` per volume; the metric names of the config are

* ``dice_3d_mean`` / ``dice_3d_std``: Dice of each volume, mean / standard deviation over the volumes (subjects);
* ``dice_2d_mean`` / ``dice_2d_std``: Dice of each axial slice (axis 0 of the volume), over all slices of all
  volumes.

Example (a bundle config)::

    "metrics": {"dice_3d_mean": "$@scripts.metrics.VolumeDiceHandler('3d', 'mean')",
                "dice_2d_mean": "$@scripts.metrics.VolumeDiceHandler('2d', 'mean')"}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.handlers import IgniteMetricHandler, from_engine
from monai.metrics import CumulativeIterationMetric, compute_dice

__all__ = ["KINDS", "STATISTICS", "VolumeDiceMetric", "VolumeDiceHandler"]

KINDS = ("3d", "2d")
STATISTICS = ("mean", "std")


class VolumeDiceMetric(CumulativeIterationMetric):
    """Dice per volume (``kind="3d"``) or per slice along ``slice_dim`` (``kind="2d"``), accumulated over
    iterations; ``aggregate()`` gives their mean or (unbiased) standard deviation.

    Args:
        kind: ``"3d"`` (one value per volume) or ``"2d"`` (one per slice).
        statistic: ``"mean"`` or ``"std"`` (0 for a single value).
        slice_dim: spatial axis of the slices (0: the first spatial axis of ``[B, C, D, H, W]``).

    Raises:
        ValueError: an unknown ``kind`` / ``statistic``; inputs that are not 3D volumes ``[B, C, D, H, W]``.

    Example::

        metric = VolumeDiceMetric("2d", "mean")
        metric(pred, label)  # [B, 1, D, H, W] binary
        metric.aggregate()   # tensor(0.80)
    """

    def __init__(self, kind: str = "3d", statistic: str = "mean", slice_dim: int = 0) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
        if statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}.")
        self.kind, self.statistic, self.slice_dim = kind, statistic, int(slice_dim)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore
        if y is None:
            raise ValueError("VolumeDiceMetric needs the labels y.")
        if y_pred.ndim != 5 or y_pred.shape != y.shape:
            raise ValueError(
                f"expected a prediction and a label of one shape [B, C, D, H, W] (whole volumes), got "
                f"{tuple(y_pred.shape)} and {tuple(y.shape)}."
            )
        y_pred, y = y_pred.float(), y.float()
        if self.kind == "2d":  # every slice becomes an item: [B * D, C, H, W]
            d = 2 + self.slice_dim
            y_pred, y = y_pred.movedim(d, 1).flatten(0, 1), y.movedim(d, 1).flatten(0, 1)
        return compute_dice(y_pred, y, include_background=True, ignore_empty=False)  # [N, C]

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        values = self.get_buffer()
        if not isinstance(values, torch.Tensor) or values.numel() == 0:
            raise ValueError("VolumeDiceMetric has no data: call it on at least one volume before aggregate().")
        values = values.flatten().double()
        if self.statistic == "mean":
            return values.mean()
        return values.std() if values.numel() > 1 else torch.zeros((), dtype=values.dtype)


class VolumeDiceHandler(IgniteMetricHandler):
    """Ignite / MONAI metric handler of :class:`VolumeDiceMetric` (``y_pred`` / ``y`` from ``engine.state.output``:
    the post-processed binary ``pred`` and the ``label``), e.g. in ``key_val_metric`` of a ``SupervisedEvaluator``.
    With ``save_details`` the per-volume (per-slice) values go to ``engine.state.metric_details[name]``.

    Example::

        SpikingEvaluator(..., inferer=SliceInferer(roi_size=(-1, -1), spatial_dim=0),
                         key_val_metric={"dice_3d_mean": VolumeDiceHandler("3d", "mean")})
    """

    def __init__(
        self,
        kind: str = "3d",
        statistic: str = "mean",
        slice_dim: int = 0,
        output_transform: Callable[[Any], Any] = from_engine(["pred", "label"]),
        save_details: bool = True,
    ) -> None:
        super().__init__(
            metric_fn=VolumeDiceMetric(kind, statistic, slice_dim),
            output_transform=output_transform,
            save_details=save_details,
        )
