"""CamSeq01 road-scene segmentation: datalist, block split, transforms, loss and mIoU of the ``camseq_snn`` bundle.

Data (``CamSeq01_SegNet480/``, the 101 labelled CamSeq01 frames in the SegNet tutorial's 480 x 360 version)::

    images/0016E5_07959.png ... 0016E5_08159.png   RGB PNG, 480 x 360 (W x H)
    labels/0016E5_07959.png ... 0016E5_08159.png   8-bit PNG, class indices 0..10, 11 = void (unlabelled)
    label_colors.txt                               index, display colour and name of the 12 values

Classes (SegNet's 11-class CamVid scheme): 0 Sky, 1 Building, 2 Pole, 3 Road, 4 Pavement, 5 Tree, 6 SignSymbol,
7 Fence, 8 Car, 9 Pedestrian, 10 Bicyclist; 11 = void, ignored by the loss and the scores.

Split (:func:`block_split`): the frames are consecutive video, so neighbours leak; the split is by contiguous
blocks of the name-sorted frames: the model trains and selects on the first 80 (the last ``num_val`` of them
validate), and is tested on the last 21 (``0016E5_08119.png`` to ``0016E5_08159.png``).

Transforms: MONAI ``LoadImaged`` (``PILReader``, default ``reverse_indexing=True``: a W x H PNG becomes
``(C, W, H)``, and ``SaveImaged`` writes it back as W x H), image 0..255 -> [0, 1], the label as an integer map.
Training: random patches (128 x 128, 4 per frame and pass) with horizontal flips (no vertical flips or rotations:
road scenes have an up). Evaluation on whole frames.

Scores: the mean IoU over the 11 classes from the confusion matrix pooled over all test pixels (MONAI's
``ConfusionMatrixMetric``, ``"threat score"`` = tp / (tp + fp + fn), ``compute_sample=False``), the CamVid / SegNet
convention; a class absent from both prediction and labels of the evaluated frames is skipped. Void pixels are
removed from both prediction and label before counting. Beside it: MONAI's ``MeanIoU`` per frame (averaged) and
the pooled pixel accuracy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.handlers import IgniteMetricHandler, MeanIoUHandler, from_engine
from monai.metrics import ConfusionMatrixMetric
from monai.networks.utils import one_hot
from monai.transforms import (
    AsDiscreted,
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    RandFlipd,
    RandSpatialCropSamplesd,
    ScaleIntensityRanged,
    Transform,
)
from PIL import Image
from torch import nn

from monai_snn.transforms import CheckChannelsd

__all__ = [
    "IMAGE",
    "LABEL",
    "PRED",
    "CLASS_NAMES",
    "NUM_CLASSES",
    "VOID",
    "TEST_FIRST",
    "check_rgb_image",
    "camseq_datalist",
    "block_split",
    "train_transforms",
    "eval_transforms",
    "eval_postprocessing",
    "VoidIgnoringCrossEntropy",
    "void_one_hot",
    "PooledMeanIoU",
    "camseq_scores",
    "camseq_metrics",
]

IMAGE, LABEL, PRED = "image", "label", "pred"
CLASS_NAMES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)  # fmt: skip
NUM_CLASSES = len(CLASS_NAMES)
VOID = 11
NUM_FRAMES, NUM_TEST = 101, 21
TEST_FIRST, TEST_LAST = "0016E5_08119", "0016E5_08159"
_NAME = re.compile(r"0016E5_(\d{5})\.png")
PRED_LABEL = from_engine([PRED, LABEL])


# --------------------------------------------------------------------------------------------------- datalist
def _read_png(path: Path, what: str, modes: Sequence[str], expected: str) -> np.ndarray:
    """The pixels of a PNG in one of ``modes``; anything else is a ValueError naming the file and what was expected."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{what} {path} is empty (0 bytes); expected {expected}.")
    try:
        with Image.open(path) as im:
            im.load()
            fmt, mode = im.format, im.mode
            arr = np.asarray(im)
    except (OSError, SyntaxError, ValueError) as e:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"{what} {path} is not a readable image file ({type(e).__name__}: {e}).") from e
    if fmt != "PNG":
        raise ValueError(f"{what} {path}: expected {expected}, got {fmt} data.")
    if mode not in modes:
        channels = 1 if arr.ndim == 2 else arr.shape[-1]
        raise ValueError(f"{what} {path}: expected {expected}, got PIL mode {mode!r} ({channels} channel(s)).")
    return arr


def check_rgb_image(path: str | Path) -> None:
    """Validate one inference input: a readable RGB PNG whose height and width are multiples of 8.

    Args:
        path: the image file.

    Raises:
        ValueError: an empty or unreadable file, another format, a grey / RGBA / palette image, or a size the U-Net
            cannot take (the message names the file, its size and what is expected).

    Example::

        check_rgb_image("CamSeq01_SegNet480/images/0016E5_08119.png")
    """
    arr = _read_png(Path(path), "input image", ("RGB",), "an 8-bit RGB PNG (3 channels)")
    h, w = arr.shape[:2]
    if h % 8 or w % 8:
        raise ValueError(
            f"input image {path} is {w} x {h} (W x H); the networks need both sides divisible by 8 (the training "
            "frames are 480 x 360): crop or pad it."
        )


def camseq_datalist(data_dir: str | Path) -> list[dict[str, Any]]:
    """Validated datalist of the 101 CamSeq01 frames (image + label), sorted by name.

    Every file is opened: an image must be an RGB PNG, its label an 8-bit single-channel PNG of the same size with
    values in 0..11 (11 = void).

    Args:
        data_dir: the ``CamSeq01_SegNet480`` folder (holding ``images/`` and ``labels/``).

    Returns:
        ``[{"image": path, "label": path, "name": stem}, ...]`` sorted by name.

    Raises:
        FileNotFoundError: a missing folder, an image without its label or a label without its image, no frames.
        ValueError: a file not named ``0016E5_<5 digits>.png``, an unreadable file, a wrong mode, a label of another
            size than its image or with a value outside 0..11 (named with the file).

    Example::

        items = camseq_datalist("../shared/data/CamSeq01_SegNet480")
        len(items), items[0]["name"]  # (101, '0016E5_07959')
    """
    root = Path(data_dir).expanduser().resolve()
    folders = {k: root / k for k in ("images", "labels")}
    for k, f in folders.items():
        if not f.is_dir():
            raise FileNotFoundError(f"CamSeq01 {k} folder not found: {f} (expected CamSeq01_SegNet480/{k}/).")
    listing = {}
    for k, f in folders.items():
        names = {}
        for p in sorted(f.iterdir()):
            if p.name.startswith(".") or p.suffix.lower() != ".png":
                continue
            if _NAME.fullmatch(p.name) is None:
                raise ValueError(f"{p}: not a CamSeq01 frame name (expected 0016E5_<5 digits>.png).")
            names[p.stem] = p
        listing[k] = names
    images, labels = listing["images"], listing["labels"]
    for a, b, what in ((images, labels, "label"), (labels, images, "image")):
        missing = sorted(set(a) - set(b))
        if missing:
            raise FileNotFoundError(f"{a[missing[0]]} has no {what}: no {missing[0]}.png in {folders[what + 's']}.")
    if not images:
        raise FileNotFoundError(f"no CamSeq01 frames in {folders['images']}.")
    items = []
    for stem in sorted(images):
        img = _read_png(images[stem], "image", ("RGB",), "an 8-bit RGB PNG")
        lab = _read_png(labels[stem], "label", ("L", "P"), "an 8-bit single-channel class-index PNG")
        if lab.shape != img.shape[:2]:
            raise ValueError(
                f"label {labels[stem]} is {lab.shape[1]} x {lab.shape[0]} (W x H) but its image is "
                f"{img.shape[1]} x {img.shape[0]}."
            )
        if int(lab.max()) > VOID:
            bad = sorted(int(v) for v in np.unique(lab[lab > VOID]))[:10]
            raise ValueError(
                f"label {labels[stem]}: values {bad} outside the class range 0..{NUM_CLASSES - 1} and the void label "
                f"{VOID}."
            )
        items.append({IMAGE: str(images[stem]), LABEL: str(labels[stem]), "name": stem})
    return items


def block_split(items: Sequence[dict[str, Any]], num_val: int = 8, num_test: int = NUM_TEST) -> dict[str, list]:
    """Contiguous-block split of the name-sorted frames: train | val (the last ``num_val`` of the first
    ``len - num_test``) | test (the last ``num_test``).

    Args:
        items: the datalist (:func:`camseq_datalist`).
        num_val: validation frames, taken from the end of the training block.
        num_test: test frames at the end (21: ``0016E5_08119`` to ``0016E5_08159`` for the full data set).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``.

    Raises:
        ValueError: too few frames for the split, or non-positive sizes.

    Example::

        split = block_split(camseq_datalist(data_dir))
        [len(split[k]) for k in ("train", "val", "test")]  # [72, 8, 21]
    """
    ordered = sorted(items, key=lambda it: Path(it[IMAGE]).name)
    if num_val < 1 or num_test < 1:
        raise ValueError(f"num_val and num_test must be positive, got {num_val} and {num_test}.")
    if len(ordered) < num_val + num_test + 1:
        raise ValueError(
            f"{len(ordered)} frames cannot be split into training, {num_val} validation and {num_test} test frames."
        )
    n_fit = len(ordered) - num_test
    return {
        "train": list(ordered[: n_fit - num_val]),
        "val": list(ordered[n_fit - num_val : n_fit]),
        "test": list(ordered[n_fit:]),
    }


# ------------------------------------------------------------------------------------------------- transforms
def _load(keys: Sequence[str]) -> list[Transform]:
    with_label = LABEL in keys
    out: list[Transform] = [
        LoadImaged(keys, reader="PILReader", image_only=True),
        EnsureChannelFirstd(keys),
        CheckChannelsd(IMAGE, 3),
        ScaleIntensityRanged(IMAGE, a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0, clip=True),
        EnsureTyped(IMAGE, dtype=torch.float32),
    ]
    if with_label:
        out += [CheckChannelsd(LABEL, 1), EnsureTyped(LABEL, dtype=torch.long)]
    return out


def train_transforms(patch_size: Sequence[int] = (128, 128), num_samples: int = 4, flip_prob: float = 0.5) -> Compose:
    """Load, scale, then ``num_samples`` random patches per frame with horizontal flips.

    Args:
        patch_size: patch size in the loaded ``(W, H)`` order; multiples of 8.
        num_samples: patches per frame and pass.
        flip_prob: probability of a horizontal flip (the W axis, spatial axis 0 of the loaded tensors).

    Raises:
        ValueError: a patch size that is not a multiple of 8, or ``num_samples < 1``.

    Example::

        patches = train_transforms()(items[0])  # 4 dicts: image [3, 128, 128] float, label [1, 128, 128] long
    """
    size = tuple(int(s) for s in patch_size)
    if any(s % 8 or s < 8 for s in size):
        raise ValueError(f"patch_size must be positive multiples of 8 (three poolings), got {size}.")
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}.")
    keys = [IMAGE, LABEL]
    return Compose(
        _load(keys)
        + [
            RandSpatialCropSamplesd(keys, roi_size=size, num_samples=num_samples, random_size=False),
            RandFlipd(keys, prob=flip_prob, spatial_axis=0),
        ]
    )


def eval_transforms(with_label: bool = True) -> Compose:
    """Whole frames: load, image to [0, 1] float, label as integers.

    Example::

        eval_transforms()(items[0])["image"].shape  # torch.Size([3, 480, 360])
    """
    return Compose(_load([IMAGE, LABEL] if with_label else [IMAGE]))


def eval_postprocessing(keys: KeysCollection = PRED) -> Compose:
    """Logits ``[11, W, H]`` -> class map ``[1, W, H]`` (argmax), as the metric handlers and the writer expect."""
    return Compose([AsDiscreted(keys, argmax=True)])


# ------------------------------------------------------------------------------------------------------- loss
class VoidIgnoringCrossEntropy(nn.Module):
    """Cross-entropy over the classes with the void label ignored; labels ``[B, 1, *spatial]`` or ``[B, *spatial]``.

    Args:
        num_classes: classes of the readout (11).
        void: the ignored label (11).
        weight: optional class weights (e.g. median frequency balancing).

    Raises:
        ValueError: (when called) a label value outside ``0 .. num_classes - 1`` other than ``void``, or a readout
            with another number of channels.

    Example::

        loss = VoidIgnoringCrossEntropy()(logits, labels)  # logits [B, 11, H, W], labels [B, 1, H, W]
    """

    def __init__(self, num_classes: int = NUM_CLASSES, void: int = VOID, weight: Sequence[float] | None = None) -> None:
        super().__init__()
        self.num_classes, self.void = num_classes, void
        w = None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        self.ce = nn.CrossEntropyLoss(weight=w, ignore_index=void)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: A002 - torch's name
        if input.shape[1] != self.num_classes:
            raise ValueError(f"the readout has {input.shape[1]} channels, expected {self.num_classes} classes.")
        t = target.as_tensor() if hasattr(target, "as_tensor") else target
        if t.ndim == input.ndim:
            t = t[:, 0]
        t = t.long()
        bad = (t < 0) | ((t >= self.num_classes) & (t != self.void))
        if bool(bad.any()):
            raise ValueError(
                f"label values {sorted(set(t[bad].tolist()))[:10]} outside 0..{self.num_classes - 1} and the void "
                f"label {self.void}."
            )
        return self.ce(input, t)


# ---------------------------------------------------------------------------------------------------- metrics
def void_one_hot(x: torch.Tensor, void_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Class map ``[1, *spatial]`` -> one-hot ``[11, *spatial]`` with every channel 0 where ``void_mask`` (or the
    map itself) is void.

    Example::

        void_one_hot(torch.tensor([[0, 11]]))  # column 1 is all zeros
    """
    t = x.as_tensor() if hasattr(x, "as_tensor") else x
    t = t.long()
    void = (t == VOID) if void_mask is None else void_mask
    oh = one_hot(t.clamp(0, VOID), num_classes=VOID + 1, dim=0, dtype=torch.float32)[:NUM_CLASSES]
    return oh * (~void).to(oh.dtype)


def _one_hot_pairs(output: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Engine output -> (pred, label) one-hot lists with void pixels removed from both (the label's void)."""
    preds, labels = PRED_LABEL(output)
    if isinstance(preds, torch.Tensor) and preds.ndim == 4:
        preds, labels = list(preds), list(labels)
    out_p, out_y = [], []
    for p, y in zip(preds, labels):
        yt = y.as_tensor() if hasattr(y, "as_tensor") else y
        void = yt.long() == VOID
        out_p.append(void_one_hot(p, void))
        out_y.append(void_one_hot(yt, void))
    return out_p, out_y


class PooledMeanIoU(ConfusionMatrixMetric):
    """Mean over classes of the IoU from the confusion matrix pooled over all images (MONAI ``"threat score"``,
    ``compute_sample=False``, ``reduction="sum_batch"``), or the pooled pixel accuracy (``pixel_accuracy=True``).

    Classes absent from prediction and label (tp + fp + fn = 0) give NaN and are skipped by the mean.

    Example::

        metric = PooledMeanIoU()
        metric(one_hot_preds, one_hot_labels)
        metric.aggregate()  # tensor(0.62)
    """

    def __init__(self, pixel_accuracy: bool = False) -> None:
        super().__init__(
            include_background=True, metric_name="threat score", compute_sample=False, reduction="sum_batch"
        )
        self.pixel_accuracy = pixel_accuracy

    def aggregate(self, compute_sample: bool = False, reduction: Any = None) -> torch.Tensor:  # type: ignore[override]
        if self.pixel_accuracy:
            cm = self.get_buffer()  # [N, C, 4]: tp, fp, tn, fn per image and class
            tp, fn = cm[..., 0].sum(), cm[..., 3].sum()
            return tp / (tp + fn)
        per_class = super().aggregate()[0]
        return torch.nanmean(per_class)

    def per_class(self) -> torch.Tensor:
        """Pooled IoU of each class ``[11]`` (NaN for absent classes)."""
        return super().aggregate()[0]


def camseq_scores(pred: Sequence[torch.Tensor], label: Sequence[torch.Tensor]) -> dict[str, Any]:
    """Pooled mIoU, per-class IoU and pixel accuracy of class maps ``[1, *spatial]`` (void from the labels ignored).

    Example::

        camseq_scores([pred_map], [label_map])["miou"]
    """
    p, y = _one_hot_pairs({PRED: list(pred), LABEL: list(label)})
    iou, acc = PooledMeanIoU(), PooledMeanIoU(pixel_accuracy=True)
    iou(p, y)
    acc(p, y)
    per_class = iou.per_class()
    return {
        "miou": float(iou.aggregate()),
        "pixel_accuracy": float(acc.aggregate()),
        "iou_per_class": {n: float(v) for n, v in zip(CLASS_NAMES, per_class)},
    }


def camseq_metrics(output_transform: Callable = _one_hot_pairs) -> dict[str, IgniteMetricHandler]:
    """Metric handlers of the evaluators: ``miou`` (pooled, the key metric), ``miou_mean`` (MONAI ``MeanIoU`` per
    frame, averaged) and ``pixel_accuracy`` (pooled, void excluded).

    Example::

        metrics = camseq_metrics()
        evaluator = SupervisedEvaluator(..., key_val_metric={"miou": metrics["miou"]})
    """
    return {
        "miou": IgniteMetricHandler(metric_fn=PooledMeanIoU(), output_transform=output_transform),
        "miou_mean": MeanIoUHandler(include_background=True, output_transform=output_transform),
        "pixel_accuracy": IgniteMetricHandler(
            metric_fn=PooledMeanIoU(pixel_accuracy=True), output_transform=output_transform
        ),
    }
