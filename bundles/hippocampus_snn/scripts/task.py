# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""The hippocampus task as the bundle configs use it: data preparation, fold / validation split, slices for
training, the loss, the input intensity range.

Every function is reached from the configs as ``@scripts.task.<name>``; generic stage code (conversion, evaluation,
result files) lives in :mod:`monai_snn.bundle`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from .hippocampus import load_datalist_folds, load_pair, prepare_msd_folder, read_datalist, split_validation
from .slices import SLICE_INTENSITY, volume_slices

__all__ = [
    "LOSSES",
    "ENCODINGS",
    "prepare_data",
    "fold_split",
    "all_items",
    "encoding_range",
    "make_slices",
    "make_loss",
]

logger = logging.getLogger(__name__)

LOSSES = ("bce", "dice", "bce_dice")
ENCODINGS = ("static", "poisson_binary", "poisson_ternary")


def prepare_data(
    data_dir: str | os.PathLike,
    prep_dir: str | os.PathLike,
    box: Sequence[int] | None = None,
    num_folds: int | None = 5,
    seed: int = 0,
) -> str:
    """Validate and fit an MSD-layout folder to one box (``None``: from its labels) -> ``datalist.json`` path.

    Args:
        data_dir: folder with ``imagesTr/`` and ``labelsTr/``.
        prep_dir: output folder of the crops and the datalist.
        box: ``(slices, height, width)``; ``None`` picks it from the folder's label extent.
        num_folds: subject-level folds; ``None``: no folds (an evaluation set of any size, e.g. for the shipped
            models).
        seed: fold seed.

    Raises:
        FileNotFoundError: ``data_dir`` does not exist (the message says how to pass it).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"data_dir {data_dir} does not exist: pass --data_dir <folder with imagesTr/ and labelsTr/> "
            "(MSD Task04_Hippocampus layout) or set MONAI_SNN_DATA."
        )
    return str(
        prepare_msd_folder(
            data_dir,
            prep_dir,
            box=None if box is None else tuple(box),
            num_folds=None if num_folds is None else int(num_folds),
            seed=int(seed),
        )
    )


def all_items(datalist: str) -> list[dict]:
    """Every item of a datalist (paths resolved against its folder), each pair validated as in data preparation.

    Args:
        datalist: a datalist json with a ``"training"`` list of ``{"image", "label"}`` items.

    Raises:
        FileNotFoundError: when the datalist or a file it names does not exist.
        ValueError: when the datalist is empty or not a datalist, or a pair is invalid (see :func:`_check_items`).
    """
    path = Path(datalist)
    items = read_datalist(path)["training"]
    for i, it in enumerate(items):
        if not isinstance(it, dict) or not all(isinstance(it.get(k), str) for k in ("image", "label")):
            raise ValueError(
                f"item {i} of datalist {datalist} is {it!r}; expected a dict with one 'image' and one 'label' path."
            )
    out = [dict(it, image=str(path.parent / it["image"]), label=str(path.parent / it["label"])) for it in items]
    _check_items(out, datalist)
    return out


def _check_items(items: Sequence[dict], datalist: str) -> None:
    """Validate every image / label pair of ``items`` with :func:`scripts.hippocampus.load_pair`.

    What data preparation checks (readable 3D NIfTI files, same shape and affine, finite intensities, labels in
    {0, 1, 2}) holds for a user's datalist too; an empty label warns, naming the file.

    Raises:
        FileNotFoundError: when a file does not exist (the message names it and the datalist).
        ValueError: when ``items`` is empty or a pair is invalid (the message names the file and the datalist).
    """
    if not items:
        raise ValueError(
            f"datalist {datalist} holds no items; expected at least one image / label pair under "
            "'training' (leave --datalist unset to prepare --data_dir instead)."
        )
    for it in items:
        for key in ("image", "label"):
            if not isinstance(it.get(key), str):
                raise ValueError(f"an item of datalist {datalist} has {key}={it.get(key)!r}; expected one file path.")
            if not os.path.isfile(it[key]):
                raise FileNotFoundError(f"{key} file named in {datalist} does not exist: {it[key]}")
    for it in items:
        try:
            load_pair(it["image"], it["label"])
        except ValueError as e:
            raise ValueError(f"invalid pair in datalist {datalist}: {e}") from None  # the message says it all


def fold_split(
    datalist: str, fold: int, num_folds: int = 5, val_fraction: float = 0.125, seed: int = 0
) -> dict[str, list[dict]]:
    """Train / validation / test items of one fold; the validation split comes from the training folds only.

    Every pair is validated (see :func:`_check_items`) before anything else runs, so a datalist naming a missing,
    corrupt or mismatched file fails at once with a message naming it.

    Args:
        datalist: a datalist json whose items have ``"image"``, ``"label"`` and ``"fold"``.
        fold: the test fold.
        num_folds: number of folds (checked against the datalist's ``"num_folds"`` when it has one).
        val_fraction: fraction of the training subjects held out for validation.
        seed: seed of the validation split.

    Returns:
        ``{"train", "val", "test", "all"}`` item lists.

    Raises:
        FileNotFoundError: when the datalist or a file it names does not exist.
        ValueError: when the datalist is empty, the test fold or the training folds hold no item, or a pair is
            invalid. The message names the datalist (and the file).
    """
    train, test = load_datalist_folds(datalist, fold=int(fold), num_folds=int(num_folds))
    _check_items(train + test, datalist)
    for part, name in ((test, f"test volume in fold {fold}"), (train, f"training volume outside fold {fold}")):
        if not part:
            folds = sorted({int(it["fold"]) for it in train + test})
            raise ValueError(
                f"datalist {datalist} holds no {name} (its items are in folds {folds}, num_folds={num_folds}); "
                "give every fold at least one item, or choose --fold / --num_folds accordingly."
            )
    train, val = split_validation(train, fraction=float(val_fraction), seed=int(seed))
    if not val:
        val = train[:1]
    logger.info("fold %d: %d train, %d validation, %d test volumes", fold, len(train), len(val), len(test))
    return {"train": train, "val": val, "test": test, "all": train + val + test}


def encoding_range(encoding: str) -> tuple[float, float]:
    """Input intensity range for an input encoding: ``[-1, 1]`` for ternary Poisson coding, else ``[0, 1]``.

    Raises:
        ValueError: an unknown encoding.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}.")
    return SLICE_INTENSITY["ternary"] if encoding == "poisson_ternary" else SLICE_INTENSITY["binary"]


def make_slices(items: Sequence[dict], encoding: str = "static", foreground_only: bool = False) -> list[dict]:
    """2D slices (axis 0) of the volumes, scaled for ``encoding`` (training data of ``train_ann`` / ``finetune``).

    Args:
        items: data dicts with ``"image"`` and ``"label"`` paths of volumes that share one slice size.
        encoding: input encoding, which sets the intensity range (see :func:`encoding_range`).
        foreground_only: keep only slices that contain label.

    Raises:
        ValueError: when ``items`` is empty, a pair is invalid or the volumes differ in slice size (see
            :func:`scripts.slices.volume_slices`).
    """
    if not items:
        raise ValueError("no volumes to cut into slices: the item list is empty (check the datalist and the fold).")
    return volume_slices(items, axis=0, value_range=encoding_range(encoding), foreground_only=foreground_only)


def make_loss(name: str) -> torch.nn.Module:
    """``bce`` -> ``BCEWithLogitsLoss``; ``dice`` -> ``DiceLoss(sigmoid)``; ``bce_dice`` -> 0.3 BCE + 0.7 Dice.

    Raises:
        ValueError: an unknown loss name.
    """
    from monai.losses import DiceCELoss, DiceLoss

    if name == "bce":
        return torch.nn.BCEWithLogitsLoss()
    if name == "dice":
        return DiceLoss(sigmoid=True)
    if name == "bce_dice":
        return DiceCELoss(sigmoid=True, lambda_ce=0.3, lambda_dice=0.7)
    raise ValueError(f"loss_name must be one of {LOSSES}, got {name!r}.")
