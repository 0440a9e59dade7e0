# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""TensorBoard image panel of the evaluate stage: a few axial slices with hippocampus, as
``input | label | model 1 | model 2 | ...`` (each model's mask, sigmoid > 0.5), one row per slice."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["foreground_slices", "panel", "log_image_panel"]


def foreground_slices(dataset: Sequence[Mapping[str, Any]], num: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` axial slices that hold label, spread evenly over the volumes of ``dataset``.

    Args:
        dataset: items ``{"image": [1, D, H, W], "label": [1, D, H, W]}`` (e.g. the evaluate stage's volumes).
        num: number of slices.

    Returns:
        ``(images, labels)``, each ``[n, 1, H, W]`` (``n <= num``; 0 when no slice holds label). Only slices of the
        in-plane size of the first one are taken, so volumes of other sizes do not break the panel.
    """
    found: list[tuple[int, int]] = []
    for v in range(len(dataset)):
        lab = torch.as_tensor(dataset[v]["label"])
        found += [(v, int(k)) for k in (lab[0].flatten(1).sum(1) > 0).nonzero().flatten()]
    picked = found[:: max(1, len(found) // num)][:num]
    xs, ys = [], []
    for v, k in picked:
        item = dataset[v]
        x, y = torch.as_tensor(item["image"])[:, k], torch.as_tensor(item["label"])[:, k]
        if xs and x.shape != xs[0].shape:
            continue
        xs.append(x.as_tensor() if hasattr(x, "as_tensor") else x)
        ys.append(y.as_tensor() if hasattr(y, "as_tensor") else y)
    if not xs:
        return torch.zeros(0, 1, 1, 1), torch.zeros(0, 1, 1, 1)
    return torch.stack(xs).float(), torch.stack(ys).float()


def panel(x: torch.Tensor, y: torch.Tensor, *preds: torch.Tensor) -> torch.Tensor:
    """Image | label | prediction(s) panel ``[3, n*H, (2 + len(preds))*W]`` of ``[n, 1, H, W]`` tensors (each image
    scaled to [0, 1] on its own)."""
    rows = []
    for i in range(len(x)):
        xi = (x[i, 0] - x[i, 0].min()) / (x[i, 0].max() - x[i, 0].min() + 1e-8)
        rows.append(torch.cat([xi, y[i, 0].float(), *(p[i, 0].float() for p in preds)], dim=1))
    return torch.cat(rows, dim=0)[None].repeat(3, 1, 1)


@torch.no_grad()
def log_image_panel(
    writer: Any,
    dataset: Sequence[Mapping[str, Any]],
    models: Mapping[str, str | os.PathLike],
    network_def: torch.nn.Module,
    num_steps: Mapping[str, int | None] | None = None,
    num: int = 4,
) -> str | None:
    """Write the panel ``test/input_label_<model names>`` (global step 0) to ``writer``.

    Args:
        writer: a TensorBoard ``SummaryWriter`` (the stage's writer).
        dataset: the evaluated volumes (see :func:`foreground_slices`).
        models: name -> weights file (missing files are left out), as for :func:`monai_snn.bundle.load_model`.
        network_def: the ANN architecture.
        num_steps: name -> ``T`` of the spiking models (``None`` / absent: the stored ``T``).
        num: number of slices (rows).

    Returns:
        the image tag, or ``None`` when no slice holds label.
    """
    from monai_snn.bundle import load_model, model_kind

    x, y = foreground_slices(dataset, num)
    if not len(x):
        return None
    names, masks = [], []
    for name, path in models.items():
        if not path or not os.path.isfile(path):
            continue
        steps = (num_steps or {}).get(name) if model_kind(path) == "snn" else None
        net = load_model(name, models, network_def, steps)
        masks.append(net(x) > 0)  # sigmoid > 0.5
        names.append(name)
    tag = "test/input_label_" + "_".join(names)
    writer.add_image(tag, panel(x, y, *masks), 0)
    writer.flush()
    return tag
