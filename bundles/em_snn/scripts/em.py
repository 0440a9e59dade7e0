"""ISBI 2012 EM membrane segmentation: datalist, splits, transforms, inferer and metrics of the ``em_snn`` bundle.

Data (``ISBI2012_EM/``, the ISBI 2012 challenge's *Drosophila* ventral nerve cord, serial-section TEM)::

    train/image/0.png ... 29.png   greyscale 8-bit PNG, 512 x 512
    train/label/0.png ... 29.png   8-bit PNG, values {0, 255}: 255 = cell interior, 0 = membrane
    test/image/0.png ... 29.png    greyscale 8-bit PNG, 512 x 512, no labels (never released)

``k.png`` is slice ``k`` of the original stack. :func:`em_datalist` opens and validates every file when listing it.

Splits (only the 30 labelled training slices can be scored):

* :func:`holdout_split`: the shipped model trains on slices 0-24, validates on 22-24 (taken from those 25, so
  it trains on 0-21) and is tested on 25-29;
* :func:`cv_split`: five-fold cross-validation over the 30 slices; the folds are MONAI's
  ``partition_dataset(shuffle=True, seed=seed)``, the validation slices come from the training folds only.

Transforms: images are read with MONAI's ``PILReader``; with its default ``reverse_indexing=True`` a PNG of H x W
becomes a ``(1, W, H)`` tensor (``SaveImaged`` with ``PILWriter`` reverses it back; the slices are square anyway).
Intensities 0..255 -> [0, 1] (``ScaleIntensityRanged``); labels 255 -> 1 (cell interior, the positive class of
the scores), 0 -> 0 (membrane), float32. Training draws random 128 x 128 patches with random flips on both axes and
random 90-degree rotations (:func:`train_transforms`); evaluation runs on whole 512 x 512 slices through MONAI's
``SlidingWindowInferer`` (:func:`eval_inferer`), then ``sigmoid`` and threshold 0.5 (:func:`eval_postprocessing`).

Metrics: F1, Jaccard (MONAI's ``"threat score"``, tp / (tp + fp + fn)) and accuracy with the cell interior as the
positive class, and the membrane F1 (label 0 as positive) beside them, all from MONAI's ``ConfusionMatrixMetric``
on the two-channel one-hot ``[membrane, interior]`` of the binary prediction and label
(``include_background=True``: both channels are scored):

* **pooled** over all pixels of the evaluated slices: ``compute_sample=False, reduction="sum_batch"`` sums the
  per-slice confusion matrices ``[N, 2, 4]`` over the slices, then computes each channel's score;
* **per-slice mean**: ``compute_sample=True, reduction="mean_batch"`` computes each slice's score, then averages
  over the slices per channel (NaNs, e.g. F1 of a slice without any positive, are skipped).

MONAI's default ``reduction="mean"`` is not used: with ``compute_sample=False`` it averages the confusion matrices
over slices *and channels* before the score (mixing membrane and interior counts), and with ``compute_sample=True``
it averages the two classes' scores (a macro mean). :func:`em_scores` / :func:`em_per_image` give the numbers as
plain functions, :func:`em_metrics` the ``monai.handlers.ConfusionMatrix`` handlers of a bundle's evaluator.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor, partition_dataset
from monai.handlers import ConfusionMatrix, from_engine
from monai.inferers import SlidingWindowInferer
from monai.metrics import ConfusionMatrixMetric
from monai.networks.utils import one_hot
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    RandFlipd,
    RandRotate90d,
    RandSpatialCropSamplesd,
    ScaleIntensityRanged,
    Transform,
)
from PIL import Image

from monai_snn.transforms import BinarizeLabeld, CheckChannelsd

__all__ = [
    "IMAGE",
    "LABEL",
    "PRED",
    "PATCH_SIZE",
    "MEMBRANE",
    "INTERIOR",
    "METRIC_NAMES",
    "REDUCTIONS",
    "PRED_LABEL",
    "em_datalist",
    "holdout_split",
    "cv_split",
    "load_transforms",
    "intensity_transforms",
    "augment_transforms",
    "train_transforms",
    "eval_transforms",
    "eval_inferer",
    "eval_postprocessing",
    "em_one_hot",
    "em_confusion_metric",
    "em_scores",
    "em_per_image",
    "SelectClass",
    "em_metric_handler",
    "em_metrics",
]

IMAGE, LABEL, PRED = "image", "label", "pred"
PATCH_SIZE = (128, 128)
SPLITS = ("train", "test")
NUM_SLICES = 30
MEMBRANE, INTERIOR = 0, 1  # channels of em_one_hot: label 0 = membrane, label 1 (255 in the PNGs) = cell interior

# our name -> (MONAI's ConfusionMatrixMetric name, positive class = channel of em_one_hot)
_METRICS = {
    "f1": ("f1 score", INTERIOR),
    "jaccard": ("threat score", INTERIOR),
    "accuracy": ("accuracy", INTERIOR),
    "membrane_f1": ("f1 score", MEMBRANE),
}
METRIC_NAMES = tuple(_METRICS)
_MONAI_NAMES = ("f1 score", "threat score", "accuracy")
# our reduction -> ConfusionMatrixMetric(compute_sample=..., reduction=...); see the module docstring
REDUCTIONS = {
    "pooled": (False, "sum_batch"),
    "mean": (True, "mean_batch"),
    "per_image": (True, "none"),
}
PRED_LABEL = from_engine([PRED, LABEL])  # default output_transform of the metric handlers


# --------------------------------------------------------------------------------------------------- datalist


def _index_folder(folder: Path, what: str) -> dict[int, Path]:
    """PNG files of ``folder`` keyed by their slice number (``7.png`` -> 7); hidden and non-PNG files are ignored."""
    if not folder.is_dir():
        raise FileNotFoundError(f"ISBI 2012 EM {what} folder not found: {folder}")
    index: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() != ".png":
            continue
        match = re.fullmatch(r"(\d+)\.png", path.name, flags=re.IGNORECASE)
        if match is None:
            raise ValueError(
                f"{path}: cannot tell its slice number (ISBI 2012 EM files are named by the slice, 0.png ... 29.png)."
            )
        number = int(match.group(1))
        if number in index:
            raise ValueError(f"two {what} files for slice {number} in {folder}: {index[number].name}, {path.name}.")
        index[number] = path
    if not index:
        raise FileNotFoundError(f"no {what} files in {folder} (expected PNG files named 0.png ... 29.png).")
    return index


def _read_grey_png(path: Path, what: str) -> np.ndarray:
    """The pixels of an 8-bit greyscale PNG; anything else is a ValueError naming the file and what was expected."""
    if path.stat().st_size == 0:
        raise ValueError(f"{what} {path} is empty (0 bytes); expected an 8-bit greyscale PNG.")
    try:
        with Image.open(path) as im:
            im.load()
            fmt, mode, bands = im.format, im.mode, im.getbands()
            arr = np.asarray(im)
    except (OSError, SyntaxError, ValueError) as e:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"{what} {path} is not a readable image file ({type(e).__name__}: {e}).") from e
    if fmt != "PNG":
        raise ValueError(f"{what} {path}: expected a PNG file, got {fmt} data.")
    if mode != "L":
        if len(bands) > 1:
            kind = f"a colour image with {len(bands)} channels"
        elif mode == "P":
            kind = "a palette image (save it in mode 'L')"
        else:
            kind = "a single-channel image that is not 8-bit grey"
        raise ValueError(f"{what} {path}: expected an 8-bit greyscale PNG (PIL mode 'L'), got {kind} (mode {mode}).")
    return arr


def check_grey_image(path: str | Path) -> None:
    """Validate one input of the inference: a readable 8-bit greyscale PNG.

    Args:
        path: the image file.

    Raises:
        ValueError: an empty or unreadable file, another format, or a colour / palette / 16-bit image (the message
            names the file and what the model expects).

    Example:
        >>> check_grey_image("ISBI2012_EM/test/image/0.png")
    """
    _read_grey_png(Path(path), "input image")


def em_datalist(data_dir: str | Path, split: str = "train") -> list[dict[str, Any]]:
    """Validated datalist of the ISBI 2012 EM training slices (image + label) or test slices (image only).

    Reads ``<data_dir>/train/image/k.png`` with ``train/label/k.png``, or ``<data_dir>/test/image/k.png``. Every
    file is opened: each must be a readable 8-bit greyscale PNG (PIL mode ``L``), a label must have its image's
    H x W and only the values 0 (membrane) and 255 (cell interior). Hidden and non-PNG files are ignored.

    Args:
        data_dir: the ``ISBI2012_EM`` folder itself (holding ``train/`` and ``test/``).
        split: ``"train"`` (30 labelled slices) or ``"test"`` (30 unlabelled slices).

    Returns:
        ``[{"image": path, "label": path, "slice": k}, ...]`` (no ``"label"`` for ``"test"``) sorted by the slice
        number ``k``, paths as absolute strings.

    Raises:
        ValueError: unknown split; a PNG not named ``<k>.png``; an empty or unreadable file; a file that is not an
            8-bit greyscale PNG (e.g. a colour image); a label whose H x W differs from its image's or with values
            other than {0, 255}.
        FileNotFoundError: a missing folder; a folder without PNG files; an image without its label or a label
            without its image.

    Example:
        >>> items = em_datalist("../shared/data/ISBI2012_EM")
        >>> len(items), items[3]["slice"], Path(items[3]["label"]).name
        (30, 3, '3.png')
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    root = Path(data_dir).expanduser().resolve() / split
    images = _index_folder(root / "image", "image")
    labels = _index_folder(root / "label", "label") if split == "train" else {}
    if split == "train":
        orphans = sorted(set(labels) - set(images))
        if orphans:
            raise FileNotFoundError(
                f"label {labels[orphans[0]]} has no image: no file {orphans[0]}.png in {root / 'image'}."
            )
    items: list[dict[str, Any]] = []
    for number in sorted(images):
        image = _read_grey_png(images[number], "image")
        item: dict[str, Any] = {IMAGE: str(images[number])}
        if split == "train":
            if number not in labels:
                raise FileNotFoundError(
                    f"image {images[number]} has no label: no file {number}.png in {root / 'label'}."
                )
            label = _read_grey_png(labels[number], "label")
            if label.shape != image.shape:
                raise ValueError(
                    f"label {labels[number]} is {label.shape[0]}x{label.shape[1]} (H x W) but its image "
                    f"{images[number]} is {image.shape[0]}x{image.shape[1]}."
                )
            values = np.unique(label)
            bad = values[(values != 0) & (values != 255)]
            if bad.size:
                raise ValueError(
                    f"label {labels[number]}: values {bad[:10].tolist()} outside the expected {{0, 255}} "
                    f"(0 = membrane, 255 = cell interior; found {values[:10].tolist()}"
                    f"{' ...' if values.size > 10 else ''})."
                )
            item[LABEL] = str(labels[number])
        item["slice"] = number
        items.append(item)
    return items


# ----------------------------------------------------------------------------------------------------- splits


def _by_slice(items: Sequence[Mapping[str, Any]], labelled: bool = True) -> dict[int, dict[str, Any]]:
    """Items keyed by their slice number; duplicates, missing slice numbers or (``labelled``) labels are errors."""
    out: dict[int, dict[str, Any]] = {}
    for item in items:
        if "slice" not in item:
            raise ValueError(f"item {dict(item)} has no 'slice' number (use em_datalist).")
        if labelled and LABEL not in item:
            raise ValueError(
                f"item of slice {item['slice']} ({item.get(IMAGE)}) has no label: only the labelled training "
                "slices can be split for training and scoring (the test slices' labels were never released)."
            )
        number = int(item["slice"])
        if number in out:
            raise ValueError(f"slice {number} appears twice in the items.")
        out[number] = dict(item)
    if not out:
        raise ValueError("no items to split.")
    return out


def holdout_split(
    items: Sequence[Mapping[str, Any]],
    test_slices: Iterable[int] = range(25, 30),
    val_slices: Iterable[int] = (22, 23, 24),
) -> dict[str, list[dict[str, Any]]]:
    """Hold-out split of the labelled slices: train / validation / test by slice number.

    The shipped model trains on slices 0-24 (validation taken from those: by default the last three, so training
    uses 0-21) and is tested on 25-29.

    Args:
        items: items of :func:`em_datalist` for ``split="train"``.
        test_slices: slice numbers of the test part.
        val_slices: slice numbers of the validation part (not among ``test_slices``).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each sorted by slice number; training gets every slice
        that is neither validation nor test.

    Raises:
        ValueError: unlabelled or duplicate items; a validation or test slice not among the items; a slice both in
            validation and test; an empty test or training part.

    Example:
        >>> parts = holdout_split(em_datalist(root))
        >>> [len(parts[k]) for k in ("train", "val", "test")]
        [22, 3, 5]
    """
    by_slice = _by_slice(items)
    test, val = sorted({int(k) for k in test_slices}), sorted({int(k) for k in val_slices})
    for what, numbers in (("test", test), ("validation", val)):
        missing = [k for k in numbers if k not in by_slice]
        if missing:
            raise ValueError(f"{what} slices {missing} are not among the items (slices {sorted(by_slice)}).")
    both = sorted(set(test) & set(val))
    if both:
        raise ValueError(f"slices {both} are both validation and test slices.")
    if not test:
        raise ValueError("no test slices given.")
    train = [k for k in sorted(by_slice) if k not in set(test) | set(val)]
    if not train:
        raise ValueError("no training slices left after taking the validation and test slices.")
    return {
        "train": [by_slice[k] for k in train],
        "val": [by_slice[k] for k in val],
        "test": [by_slice[k] for k in test],
    }


def cv_split(
    items: Sequence[Mapping[str, Any]], fold: int, num_folds: int = 5, seed: int = 0, num_val: int = 3
) -> dict[str, list[dict[str, Any]]]:
    """Train / validation / test parts of one cross-validation fold over the labelled slices.

    The items, sorted by slice number, are cut into ``num_folds`` disjoint folds by MONAI's
    ``partition_dataset(num_partitions=num_folds, shuffle=True, seed=seed)`` (one fixed random permutation, then
    every ``num_folds``-th item: folds of 6 slices for 30). Fold ``fold`` is the test part. The validation slices
    come from the training folds only: the first ``num_val`` of the following folds (``fold + 1``, ``fold + 2``,
    ... cyclically, each in its shuffled order), so with ``num_val`` at most a fold's size the validation parts of
    the folds are disjoint too. The rest is the training part.

    Args:
        items: items of :func:`em_datalist` for ``split="train"``.
        fold: the test fold, ``0 <= fold < num_folds``.
        num_folds: number of folds (``2 <= num_folds <= len(items)``).
        seed: seed of the permutation (``partition_dataset``'s ``numpy.random.RandomState(seed)``).
        num_val: number of validation slices, ``0 <= num_val`` < number of training-fold slices.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each sorted by slice number.

    Raises:
        ValueError: unlabelled or duplicate items, ``fold`` / ``num_folds`` / ``num_val`` out of range.

    Example:
        >>> parts = cv_split(em_datalist(root), fold=0)
        >>> [len(parts[k]) for k in ("train", "val", "test")]
        [21, 3, 6]
    """
    by_slice = _by_slice(items)
    if not 2 <= num_folds <= len(by_slice):
        raise ValueError(f"num_folds must be in [2, {len(by_slice)}] for {len(by_slice)} slices, got {num_folds}.")
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in [0, {num_folds - 1}], got {fold}.")
    ordered = [by_slice[k] for k in sorted(by_slice)]
    folds = partition_dataset(ordered, num_partitions=num_folds, shuffle=True, seed=seed)
    rest = [item for i in range(1, num_folds) for item in folds[(fold + i) % num_folds]]
    if not 0 <= num_val < len(rest):
        raise ValueError(f"num_val must be in [0, {len(rest) - 1}] for {len(rest)} training slices, got {num_val}.")

    def _sorted(part: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(part, key=lambda d: int(d["slice"]))

    return {"train": _sorted(rest[num_val:]), "val": _sorted(rest[:num_val]), "test": _sorted(folds[fold])}


# ------------------------------------------------------------------------------------------------- transforms


def load_transforms(keys: KeysCollection = (IMAGE, LABEL), reverse_indexing: bool = True) -> list[Transform]:
    """``LoadImaged`` with MONAI's ``PILReader``, ``EnsureChannelFirstd`` and a check for one (grey) channel.

    Args:
        keys: keys of the files to load.
        reverse_indexing: ``PILReader``'s spatial order: True (MONAI's default) gives ``(C, W, H)``, False
            ``(C, H, W)`` as numpy / PIL.

    Raises:
        ValueError: (when the chain runs, wrapped by ``Compose`` in a RuntimeError) a file without exactly one
            channel, e.g. a colour PNG; names the file.

    Example:
        >>> Compose(load_transforms())(items[0])["image"].shape
        torch.Size([1, 512, 512])
    """
    return [
        LoadImaged(keys, reader="PILReader", image_only=True, reverse_indexing=reverse_indexing),
        EnsureChannelFirstd(keys),
        CheckChannelsd(keys, 1),
    ]


def intensity_transforms(image_key: str | None = IMAGE, label_key: str | None = LABEL) -> list[Transform]:
    """Image 0..255 -> [0, 1] (``ScaleIntensityRanged``, clipped); label {0, 255} -> float32 {0, 1}, 1 = interior.

    Args:
        image_key: the image key (None: no image).
        label_key: the label key (None: no label).

    Example:
        >>> Compose(intensity_transforms())({"image": torch.full((1, 2, 2), 255.0), "label": torch.zeros(1, 2, 2)})
    """
    out: list[Transform] = []
    if image_key is not None:
        out.append(ScaleIntensityRanged(image_key, a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0, clip=True))
    if label_key is not None:
        out.append(BinarizeLabeld(label_key, values=(0, 255)))
    return out


def augment_transforms(
    keys: KeysCollection = (IMAGE, LABEL),
    patch_size: Sequence[int] = PATCH_SIZE,
    num_samples: int = 4,
    flip_prob: float = 0.5,
    rotate_prob: float = 0.5,
) -> list[Transform]:
    """Random patches with random flips on both axes and random 90-degree rotations, then float32.

    The same random crop / flip / rotation is applied to every key, so labels stay aligned with their images.

    Args:
        keys: keys of the channel-first images to augment.
        patch_size: patch size (square when ``rotate_prob > 0``, else rotated patches would change shape).
        num_samples: patches per image and pass (``RandSpatialCropSamplesd``).
        flip_prob: probability of each of the flips along the two spatial axes (``RandFlipd``).
        rotate_prob: probability of a rotation by 90, 180 or 270 degrees (``RandRotate90d(max_k=3)``).

    Raises:
        ValueError: a non-square patch with ``rotate_prob > 0``, ``num_samples < 1``.

    Example:
        >>> patches = Compose(augment_transforms(patch_size=(32, 32)))({"image": x, "label": y})
        >>> len(patches), patches[0]["image"].shape
        (4, torch.Size([1, 32, 32]))
    """
    size = tuple(int(s) for s in patch_size)
    if rotate_prob > 0 and len(set(size)) != 1:
        raise ValueError(f"random 90-degree rotations need a square patch, got patch_size {size}.")
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
    return [
        RandSpatialCropSamplesd(keys, roi_size=size, num_samples=num_samples, random_size=False),
        RandFlipd(keys, prob=flip_prob, spatial_axis=0),
        RandFlipd(keys, prob=flip_prob, spatial_axis=1),
        RandRotate90d(keys, prob=rotate_prob, max_k=3, spatial_axes=(0, 1)),
        EnsureTyped(keys, dtype=torch.float32),
    ]


def train_transforms(
    patch_size: Sequence[int] = PATCH_SIZE,
    num_samples: int = 4,
    flip_prob: float = 0.5,
    rotate_prob: float = 0.5,
    reverse_indexing: bool = True,
) -> Compose:
    """Training chain: load image / label, intensities to [0, 1], label to {0, 1}, then ``num_samples`` random
    patches with random flips and 90-degree rotations (:func:`augment_transforms`).

    Everything before the crop is deterministic, so a ``CacheDataset`` caches the whole prepared slices. Each item
    yields a list of ``num_samples`` dicts with ``image`` / ``label`` of shape ``(1, *patch_size)``, float32.

    Args:
        patch_size: patch size (128 x 128).
        num_samples: patches per slice and pass.
        flip_prob: see :func:`augment_transforms`.
        rotate_prob: see :func:`augment_transforms`.
        reverse_indexing: see :func:`load_transforms`.

    Example:
        >>> patches = train_transforms()(items[0])
        >>> len(patches), patches[0]["image"].shape
        (4, torch.Size([1, 128, 128]))
    """
    keys = [IMAGE, LABEL]
    return Compose(
        load_transforms(keys, reverse_indexing)
        + intensity_transforms(IMAGE, LABEL)
        + augment_transforms(keys, patch_size, num_samples, flip_prob, rotate_prob)
    )


def eval_transforms(with_label: bool = True, reverse_indexing: bool = True) -> Compose:
    """Evaluation / inference chain on whole slices (512 x 512): load, intensities to [0, 1], label to {0, 1}.

    Args:
        with_label: load ``label`` too (False for the unlabelled test slices).
        reverse_indexing: see :func:`load_transforms`.

    Example:
        >>> eval_transforms()(items[0])["image"].shape
        torch.Size([1, 512, 512])
    """
    keys = [IMAGE, LABEL] if with_label else [IMAGE]
    return Compose(
        load_transforms(keys, reverse_indexing)
        + intensity_transforms(IMAGE, LABEL if with_label else None)
        + [EnsureTyped(keys, dtype=torch.float32)]
    )


def eval_inferer(
    roi_size: Sequence[int] = PATCH_SIZE, overlap: float = 0.25, sw_batch_size: int = 16, mode: str = "constant"
) -> SlidingWindowInferer:
    """``SlidingWindowInferer`` over whole slices with the training patch size.

    Args:
        roi_size: window size (128 x 128, as the training patches).
        overlap: window overlap.
        sw_batch_size: windows per forward pass.
        mode: blending of overlapping windows (``"constant"`` or ``"gaussian"``).

    Example:
        >>> eval_inferer()(torch.rand(1, 1, 512, 512), torch.nn.Identity()).shape
        torch.Size([1, 1, 512, 512])
    """
    return SlidingWindowInferer(roi_size=roi_size, sw_batch_size=sw_batch_size, overlap=overlap, mode=mode)


def eval_postprocessing(keys: KeysCollection = PRED, threshold: float = 0.5) -> Compose:
    """Network logits -> binary prediction: ``sigmoid``, then 1 where ``prob >= threshold`` (cell interior).

    The metric handlers (:func:`em_metrics`) expect this binary ``pred``.

    Args:
        keys: keys of the network outputs.
        threshold: probability threshold.

    Example:
        >>> eval_postprocessing()({"pred": torch.tensor([[[-1.0, 0.0, 2.0]]])})["pred"]
        tensor([[[0., 1., 1.]]])
    """
    return Compose([Activationsd(keys, sigmoid=True), AsDiscreted(keys, threshold=threshold)])


# ---------------------------------------------------------------------------------------------------- metrics


def _plain(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.as_tensor() if isinstance(x, MetaTensor) else x
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as e:
            raise TypeError(f"{what} must be a tensor or an array, got {type(x).__name__}.") from e
    return t.detach()


def _check_binary(t: torch.Tensor, what: str) -> None:
    values = torch.unique(t.float())
    bad = values[(values != 0) & (values != 1)]
    if bad.numel():
        raise ValueError(
            f"{what} must be binary {{0, 1}} (1 = cell interior), got values {bad[:10].tolist()}"
            + (
                "; apply a sigmoid and threshold 0.5 to the network output first (eval_postprocessing)."
                if what.startswith("pred")
                else "."
            )
        )


def em_one_hot(x: Any, dim: int = 1, what: str = "input") -> torch.Tensor:
    """Binary map {0, 1} (1 = cell interior) with one channel at ``dim`` -> float32 one-hot ``[membrane, interior]``.

    Args:
        x: binary tensor or array, e.g. ``[B, 1, H, W]`` (``dim=1``) or ``[1, H, W]`` (``dim=0``).
        dim: the channel dimension.
        what: name used in error messages.

    Raises:
        ValueError: values other than 0 / 1, or not one channel at ``dim``.

    Example:
        >>> em_one_hot(torch.tensor([[[0.0, 1.0]]]), dim=0)
        tensor([[[1., 0.]],
                [[0., 1.]]])
    """
    t = _plain(x, what)
    if t.ndim <= dim or t.shape[dim] != 1:
        raise ValueError(f"{what}: expected one channel at dim {dim}, got shape {tuple(t.shape)}.")
    _check_binary(t, what)
    return one_hot(t.float(), num_classes=2, dim=dim, dtype=torch.float32)


def em_confusion_metric(reduction: str = "pooled") -> ConfusionMatrixMetric:
    """MONAI's ``ConfusionMatrixMetric`` computing ``"f1 score"``, ``"threat score"`` and ``"accuracy"`` of each
    channel of the one-hot ``[membrane, interior]`` (``include_background=True``).

    ``aggregate()`` returns one tensor per name, in that order: shape ``[2]`` (membrane, interior) for
    ``"pooled"`` / ``"mean"``, ``[N, 2]`` for ``"per_image"``.

    Args:
        reduction: ``"pooled"`` (``compute_sample=False, reduction="sum_batch"``: confusion matrices summed over the
            images, then the scores), ``"mean"`` (``compute_sample=True, reduction="mean_batch"``: per-image scores
            averaged, NaNs skipped; 0 if every image is NaN, MONAI's convention) or ``"per_image"``
            (``compute_sample=True, reduction="none"``).

    Raises:
        ValueError: unknown reduction.

    Example:
        >>> metric = em_confusion_metric("pooled")
        >>> metric(em_one_hot(pred), em_one_hot(label))
        >>> f1, jaccard, accuracy = metric.aggregate()  # each [membrane, interior]
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {tuple(REDUCTIONS)}, got {reduction!r}.")
    compute_sample, monai_reduction = REDUCTIONS[reduction]
    return ConfusionMatrixMetric(
        include_background=True, metric_name=_MONAI_NAMES, compute_sample=compute_sample, reduction=monai_reduction
    )


def _images(x: Any, what: str) -> list[torch.Tensor]:
    """One image (``[H, W]`` or ``[1, H, W]``), a batch ``[B, 1, H, W]`` or a list of images -> ``[1, H, W]`` list."""
    if isinstance(x, (list, tuple)):
        parts = [_plain(p, f"{what}[{i}]") for i, p in enumerate(x)]
    else:
        t = _plain(x, what)
        parts = list(t) if t.ndim == 4 else [t]
    out = []
    for i, p in enumerate(parts):
        p = p[None] if p.ndim == 2 else p
        if p.ndim != 3 or p.shape[0] != 1:
            raise ValueError(
                f"{what}: expected 2D binary maps ([H, W], [1, H, W], [B, 1, H, W] or a list of them), "
                f"got shape {tuple(p.shape)} (image {i})."
            )
        out.append(p)
    if not out:
        raise ValueError(f"{what}: no images.")
    return out


def _pairs(pred: Any, label: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    preds, labels = _images(pred, "pred"), _images(label, "label")
    if len(preds) != len(labels):
        raise ValueError(f"got {len(preds)} predictions but {len(labels)} labels.")
    for i, (p, y) in enumerate(zip(preds, labels)):
        if p.shape != y.shape:
            raise ValueError(f"pred and label of image {i} differ in shape: {tuple(p.shape)} vs {tuple(y.shape)}.")
    return (
        [em_one_hot(p, dim=0, what="pred") for p in preds],
        [em_one_hot(y, dim=0, what="label") for y in labels],
    )


def _by_name(metric: ConfusionMatrixMetric) -> dict[str, torch.Tensor]:
    return dict(zip(_MONAI_NAMES, metric.aggregate()))


def em_scores(pred: Any, label: Any) -> dict[str, float]:
    """F1, Jaccard, accuracy (cell interior positive) and membrane F1, pooled and as the mean over the images.

    Args:
        pred: binary prediction {0, 1} (1 = cell interior): one image ``[H, W]`` / ``[1, H, W]``, a batch
            ``[B, 1, H, W]`` or a list of images (sizes may differ between images).
        label: binary label {0, 1} of the same layout and shapes.

    Returns:
        ``{"f1", "jaccard", "accuracy", "membrane_f1"}``: scores of all pixels of all images pooled (one
        confusion matrix), and the same names with ``"_mean"``: means of the per-image scores (NaNs skipped). A
        pooled score whose denominator is 0 is NaN.

    Raises:
        ValueError: values other than 0 / 1 (a prediction must be thresholded first), different numbers of images
            or shapes, not one channel.

    Example:
        >>> em_scores(torch.tensor([[1, 1], [0, 0]]), torch.tensor([[1, 0], [0, 0]]))["f1"]
        0.6666666865348816
    """
    y_pred, y = _pairs(pred, label)
    out: dict[str, float] = {}
    for reduction, suffix in (("pooled", ""), ("mean", "_mean")):
        metric = em_confusion_metric(reduction)
        metric(y_pred, y)
        values = _by_name(metric)
        for name, (monai_name, channel) in _METRICS.items():
            out[name + suffix] = float(values[monai_name][channel])
    return out


def em_per_image(pred: Any, label: Any) -> dict[str, list[float]]:
    """Per-image F1, Jaccard, accuracy (cell interior positive) and membrane F1.

    Args:
        pred: binary prediction, see :func:`em_scores`.
        label: binary label, see :func:`em_scores`.

    Returns:
        ``{name: [score of image 0, image 1, ...]}`` for ``METRIC_NAMES``; NaN where a denominator is 0.

    Raises:
        ValueError: see :func:`em_scores`.

    Example:
        >>> em_per_image(torch.ones(2, 1, 4, 4), torch.ones(2, 1, 4, 4))["f1"]
        [1.0, 1.0]
    """
    y_pred, y = _pairs(pred, label)
    metric = em_confusion_metric("per_image")
    metric(y_pred, y)
    values = _by_name(metric)
    return {name: values[monai_name][:, channel].tolist() for name, (monai_name, channel) in _METRICS.items()}


class SelectClass:
    """Output transform of the metric handlers: ``(pred, label)`` binary maps -> one channel of their one-hot
    ``[membrane, interior]`` (:func:`em_one_hot`), i.e. the maps with ``channel`` as the positive class.

    Args:
        channel: ``INTERIOR`` (1, the maps as they are) or ``MEMBRANE`` (0, the maps inverted).
        output_transform: ``engine.state.output`` -> ``(pred, label)``, batch-first tensors or lists of
            channel-first tensors (MONAI evaluators give lists).

    Raises:
        ValueError: (when called) non-binary maps (a prediction must go through :func:`eval_postprocessing`), not
            one channel.

    Example:
        >>> SelectClass(MEMBRANE, lambda o: o)((torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)))[0].sum()
        tensor(0.)
    """

    def __init__(self, channel: int = INTERIOR, output_transform: Callable = PRED_LABEL) -> None:
        if channel not in (MEMBRANE, INTERIOR):
            raise ValueError(f"channel must be {MEMBRANE} (membrane) or {INTERIOR} (interior), got {channel!r}.")
        self.channel = channel
        self.output_transform = output_transform

    def _select(self, x: Any, what: str) -> Any:
        if isinstance(x, (list, tuple)):
            return [em_one_hot(p, dim=0, what=f"{what}[{i}]")[self.channel : self.channel + 1] for i, p in enumerate(x)]
        return em_one_hot(x, dim=1, what=what)[:, self.channel : self.channel + 1]

    def __call__(self, output: Any) -> tuple[Any, Any]:
        y_pred, y = self.output_transform(output)
        return self._select(y_pred, "pred"), self._select(y, "label")


def em_metric_handler(
    name: str = "f1", reduction: str = "pooled", output_transform: Callable = PRED_LABEL, save_details: bool = True
) -> ConfusionMatrix:
    """MONAI ``ConfusionMatrix`` handler of one score, for a ``SupervisedEvaluator``'s metrics.

    ``include_background=True`` on the one selected class channel (:class:`SelectClass`); ``"pooled"``:
    ``compute_sample=False, reduction="sum_batch"``, ``"mean"``: ``compute_sample=True, reduction="mean_batch"``
    (see :func:`em_confusion_metric`). The handler's value is a float; with ``save_details`` the per-image
    confusion matrices ``[N, 1, 4]`` go to ``engine.state.metric_details[name]``.

    Args:
        name: one of ``METRIC_NAMES`` (``"f1"``, ``"jaccard"``, ``"accuracy"``, ``"membrane_f1"``).
        reduction: ``"pooled"`` or ``"mean"``.
        output_transform: ``engine.state.output`` -> ``(pred, label)``; ``pred`` must be binary (the evaluator's
            postprocessing :func:`eval_postprocessing`).
        save_details: see above.

    Raises:
        ValueError: unknown name or reduction.

    Example:
        >>> evaluator = SupervisedEvaluator(..., postprocessing=eval_postprocessing(),
        ...     key_val_metric={"val_f1": em_metric_handler("f1")})
    """
    if name not in _METRICS:
        raise ValueError(f"unknown metric name {name!r}; choose from {METRIC_NAMES}.")
    if reduction not in ("pooled", "mean"):
        raise ValueError(f"reduction must be 'pooled' or 'mean', got {reduction!r}.")
    monai_name, channel = _METRICS[name]
    compute_sample, monai_reduction = REDUCTIONS[reduction]
    return ConfusionMatrix(
        include_background=True,
        metric_name=monai_name,
        compute_sample=compute_sample,
        reduction=monai_reduction,
        output_transform=SelectClass(channel, output_transform),
        save_details=save_details,
    )


def em_metrics(
    prefix: str = "",
    names: Sequence[str] = METRIC_NAMES,
    reductions: Sequence[str] = ("pooled",),
    output_transform: Callable = PRED_LABEL,
    save_details: bool = True,
) -> dict[str, ConfusionMatrix]:
    """Metric handlers by name for a bundle config: ``prefix + name`` (pooled) and ``prefix + name + "_mean"``
    (mean over the images), each from :func:`em_metric_handler`.

    Args:
        prefix: prefix of the names, e.g. ``"val_"``.
        names: any of ``METRIC_NAMES``.
        reductions: any of ``"pooled"``, ``"mean"``.
        output_transform: ``engine.state.output`` -> ``(pred, label)`` (``from_engine(["pred", "label"])``).
        save_details: see :func:`em_metric_handler`.

    Raises:
        ValueError: unknown names or reductions, none given.

    Example:
        >>> em_metrics("val_", names=["f1"])  # key_val_metric of the evaluator
        {'val_f1': <monai.handlers.confusion_matrix.ConfusionMatrix ...>}
        >>> sorted(em_metrics("val_", names=["jaccard", "membrane_f1"], reductions=["pooled", "mean"]))
        ['val_jaccard', 'val_jaccard_mean', 'val_membrane_f1', 'val_membrane_f1_mean']
    """
    names, reductions = list(names), list(reductions)
    if not names or not reductions:
        raise ValueError(f"need at least one name and one reduction, got names {names}, reductions {reductions}.")
    return {
        f"{prefix}{name}{'' if reduction == 'pooled' else '_' + reduction}": em_metric_handler(
            name, reduction, output_transform, save_details
        )
        for name in names
        for reduction in reductions
    }
