"""2D slice training on 3D volumes (task code of the ``hippocampus_snn`` bundle): cut prepared volumes into slices,
and stack slice predictions back into volumes for 3D Dice.

The bundle trains on these slices; its evaluations (validation volumes in the conversion stage, test volumes in the
conversion and evaluate stages) load whole volumes instead and run the 2D network on every slice through MONAI's
``SliceInferer`` (see ``scripts/metrics.py``), with the same intensity scaling as :func:`volume_slices`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import DiceMetric
from monai.transforms import ScaleIntensityRangePercentiles

from .hippocampus import load_pair

__all__ = ["volume_slices", "stack_slices", "dice_2d_3d", "SLICE_INTENSITY"]

SLICE_INTENSITY = {"binary": (0.0, 1.0), "ternary": (-1.0, 1.0)}


def volume_slices(
    items: Sequence[dict[str, Any]],
    axis: int = 0,
    value_range: tuple[float, float] = (0.0, 1.0),
    foreground_only: bool = False,
    progress: Callable | None = None,
) -> list[dict[str, Any]]:
    """Load 3D image/label volumes and cut them into 2D slice dicts for MONAI datasets.

    Every pair is validated with :func:`scripts.hippocampus.load_pair` (readable 3D NIfTI files, same
    grid, finite intensities, whole-number labels; an empty label warns), and all volumes must share one slice
    size, so that slices can be batched. Intensities are scaled per volume from the 0.5th-99.5th percentile to
    ``value_range`` (``(0, 1)`` for binary Poisson coding, ``(-1, 1)`` for ternary) and clipped; labels are
    binarised (``> 0``).

    Args:
        items: dicts with ``"image"`` and ``"label"`` file paths (e.g. from ``load_datalist_folds``).
        axis: slice axis of the volumes (0 for volumes written by ``prepare_msd_folder``).
        value_range: output intensity range.
        foreground_only: keep only slices that contain label.
        progress: optional wrapper for the item iterator (e.g. ``tqdm.tqdm``).

    Returns:
        one dict per slice: ``image`` and ``label`` ``[1, H, W]`` float tensors, ``subject`` (index into
        ``items``), ``slice`` (position along ``axis``) and ``image_path``.

    Raises:
        FileNotFoundError: when a file does not exist.
        ValueError: when a pair is invalid (see ``load_pair``; the message names the file) or two volumes differ
            in slice size (the message names both files and their sizes).

    Example::

        train_slices = volume_slices(train_items)
        ds = monai.data.Dataset(train_slices)
    """
    lo, hi = value_range
    scale = ScaleIntensityRangePercentiles(lower=0.5, upper=99.5, b_min=lo, b_max=hi, clip=True)
    out: list[dict[str, Any]] = []
    iterator = enumerate(items)
    if progress is not None:
        iterator = progress(iterator, total=len(items))
    first: tuple[tuple[int, ...], str] | None = None  # slice size of the first volume, and its file
    for idx, item in iterator:
        img_nii, lab_nii = load_pair(item["image"], item["label"], label_values=None)
        img = torch.as_tensor(np.asarray(img_nii.dataobj, dtype=np.float32))
        lab = torch.as_tensor(np.asarray(lab_nii.dataobj) > 0, dtype=torch.float32)
        size = tuple(n for d, n in enumerate(img.shape) if d != axis % img.ndim)
        if first is None:
            first = (size, str(item["image"]))
        elif size != first[0]:
            raise ValueError(
                f"volumes of different slice sizes cannot be sliced together: {item['image']} has slices of "
                f"{size[0]} x {size[1]} (shape {tuple(img.shape)}, slice axis {axis}) but {first[1]} has "
                f"{first[0][0]} x {first[0][1]}. Prepare the folder so that every volume has one box "
                "(scripts.hippocampus.prepare_msd_folder; the bundle does it when no --datalist is given), "
                "or crop / pad the volumes to one size."
            )
        img = torch.as_tensor(scale(img[None]))[0]
        for k in range(img.shape[axis]):
            lab_k = lab.select(axis, k)
            if foreground_only and not lab_k.any():
                continue
            out.append(
                {
                    "image": img.select(axis, k)[None].clone(),
                    "label": lab_k[None].clone(),
                    "subject": idx,
                    "slice": k,
                    "image_path": str(item["image"]),
                }
            )
    return out


def stack_slices(values: torch.Tensor, subjects: Sequence[int], positions: Sequence[int]) -> dict[int, torch.Tensor]:
    """Stack per-slice maps ``[N, C, H, W]`` back into volumes ``{subject: [C, D, H, W]}`` in slice order."""
    volumes: dict[int, list[tuple[int, torch.Tensor]]] = {}
    for v, s, p in zip(values, subjects, positions):
        volumes.setdefault(int(s), []).append((int(p), v))
    return {s: torch.stack([v for _, v in sorted(parts, key=lambda t: t[0])], dim=1) for s, parts in volumes.items()}


def dice_2d_3d(
    pred: torch.Tensor, label: torch.Tensor, subjects: Sequence[int], positions: Sequence[int]
) -> dict[str, float]:
    """2D slice-wise and 3D per-subject Dice (mean +- std) of binary predictions, with MONAI's ``DiceMetric``.

    Slices without label and without prediction count as Dice 1 (MONAI's ``ignore_empty=False``); 3D Dice is
    computed per subject on the re-stacked volume.

    Args:
        pred: binary predictions ``[N, 1, H, W]``.
        label: binary labels ``[N, 1, H, W]``.
        subjects: subject index of each slice.
        positions: slice position of each slice.

    Returns:
        ``dice_2d_mean``, ``dice_2d_std``, ``dice_3d_mean``, ``dice_3d_std``, ``num_subjects``.
    """
    metric2d = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    d2 = metric2d(pred.float(), label.float()).flatten()
    pv, lv = stack_slices(pred, subjects, positions), stack_slices(label, subjects, positions)
    metric3d = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    d3 = torch.cat([metric3d(pv[s][None].float(), lv[s][None].float()).flatten() for s in sorted(pv)])
    return {
        "dice_2d_mean": float(d2.mean()),
        "dice_2d_std": float(d2.std()) if d2.numel() > 1 else 0.0,
        "dice_3d_mean": float(d3.mean()),
        "dice_3d_std": float(d3.std()) if d3.numel() > 1 else 0.0,
        "num_subjects": len(pv),
    }
