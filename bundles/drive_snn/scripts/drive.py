"""DRIVE retinal vessel segmentation: datalist, preprocessing and patch sampling of the ``drive_snn`` bundle.

Preprocessing follows the pipeline of the Spiking-UNet paper (Li et al., arXiv:2307.10974, section 4.2.1: "CLAHE
and gamma adjustment ... convert these processed images into grayscale ... patches"). Its reference code
preprocesses DRIVE with the ``my_PreProc`` chain of orobix/retina-unet (``lib/pre_processing.py``), in this order:

1. grey: ``0.299 R + 0.587 G + 0.114 B`` (float, not rounded);
2. ``dataset_normalized``: z-score with the mean / std of the *whole set*, then per image min-max to [0, 255];
3. ``clahe_equalized``: OpenCV CLAHE, ``clipLimit=2.0``, ``tileGridSize=(8, 8)``, on the image cast to uint8;
4. ``adjust_gamma(imgs, 1.2)``: a uint8 look-up table ``255 * (x / 255) ** (1 / 1.2)`` (so "gamma 1.2" raises
   intensities to the power 1 / 1.2 and brightens);
5. ``/ 255``.

(The paper's text names CLAHE and gamma before the grey conversion; the code converts first and equalizes the grey
image, which is what is done here.) :func:`preprocess_transforms` does the same in float with MONAI / scikit-image:

1. :class:`RGBToGreyd`: the same weights;
2. ``NormalizeIntensityd`` (per-image z-score), then ``ScaleIntensityd(minv=0, maxv=1)``. A per-image min-max
   undoes any positive affine map, so this equals the reference's dataset z-score + min-max exactly (tested);
3. :class:`CLAHEd`: ``skimage.exposure.equalize_adapthist`` with ``clip_limit=2 / 256`` (OpenCV's ``clipLimit`` is
   relative to a flat histogram of 256 bins: each bin is clipped at ``2 * tile pixels / 256``, which is
   scikit-image's ``clip_limit * kernel pixels``), 8 x 8 tiles (``kernel_size = shape // 8``) and 256 bins; output
   rescaled to [0, 1] by scikit-image;
4. ``AdjustContrastd(gamma=1 / 1.2)``: ``x ** (1 / 1.2)`` on [0, 1] (MONAI scales by the image's min / max, which
   are 0 and 1 after step 3).

Differences that remain: no uint8 truncation between the steps, and scikit-image's CLAHE interpolates its tiles
slightly differently from OpenCV's (OpenCV pads the image to a multiple of 8, scikit-image uses ``shape // 8``).
Measured once against the reference code run with OpenCV 5.0 (not a dependency, so not a test) on training images
21-26: mean absolute difference 0.014-0.018 on [0, 1] (about 4 grey levels), correlation inside the FOV 0.985-0.991,
FOV mean intensity within 0.011.

Images are read with MONAI's ``PILReader`` (``.tif`` / ``.gif``). With its default ``reverse_indexing=True`` a
584 x 565 (H x W) DRIVE image becomes a ``(C, 565, 584)`` tensor; ``SaveImaged`` with ``PILWriter`` reverses
it back. Labels (``1st_manual``) become float {0, 1}, FOV masks float {0, 1}.

Training uses random 48 x 48 patches (:func:`train_transforms`, as the reference: patches anywhere in the image,
not only inside the FOV, unless ``fov_centred=True``) with random flips. Evaluation runs on whole images
(:func:`eval_transforms`) through MONAI's ``SlidingWindowInferer`` with 48 x 48 windows and overlap
(:func:`eval_inferer`); metrics are then computed inside the FOV (``scripts/metrics.py``).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.inferers import SlidingWindowInferer
from monai.transforms import (
    AdjustContrastd,
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    NormalizeIntensityd,
    RandFlipd,
    RandSpatialCropSamplesd,
    RandWeightedCropd,
    ScaleIntensityd,
    Transform,
)
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor
from PIL import Image

from monai_snn.transforms import BinarizeLabeld, CheckChannelsd, channels_text, item_source, source_of

__all__ = [
    "IMAGE",
    "LABEL",
    "MASK",
    "PATCH_SIZE",
    "GREY_WEIGHTS",
    "IMAGE_SUFFIXES",
    "check_colour_image",
    "drive_datalist",
    "split_train_val",
    "RGBToGrey",
    "RGBToGreyd",
    "CLAHE",
    "CLAHEd",
    "load_transforms",
    "preprocess_transforms",
    "train_transforms",
    "eval_transforms",
    "eval_inferer",
]

IMAGE, LABEL, MASK = "image", "label", "mask"
PATCH_SIZE = (48, 48)
GREY_WEIGHTS = (0.299, 0.587, 0.114)
SPLITS = ("training", "test")
IMAGE_SUFFIXES = (".tif", ".tiff", ".gif", ".png", ".jpg", ".jpeg", ".bmp")


# --------------------------------------------------------------------------------------------------- datalist


def _index_folder(folder: Path, what: str) -> dict[int, list[Path]]:
    """Image files of ``folder`` keyed by the number their name starts with (``21_training.tif`` -> 21)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"DRIVE {what} folder not found: {folder}")
    index: dict[int, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        match = re.match(r"(\d+)_", path.name)
        if match is None:
            raise ValueError(
                f"{path}: cannot tell its image number (DRIVE file names start with it, e.g. 21_training.tif, "
                "21_manual1.gif, 21_training_mask.gif)."
            )
        index.setdefault(int(match.group(1)), []).append(path)
    return index


def _read_image(path: Path, what: str) -> tuple[np.ndarray, str]:
    """The pixel array and PIL mode of ``path``; a 0-byte or unreadable file is a ValueError naming it."""
    if path.stat().st_size == 0:
        raise ValueError(f"{what} {path} is empty (0 bytes).")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im.convert("L") if mode == "1" else im)
    except (OSError, SyntaxError, ValueError) as e:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"{what} {path} is not a readable image file ({type(e).__name__}: {e}).") from e
    return arr, mode


def _channels(arr: np.ndarray) -> int:
    return 1 if arr.ndim == 2 else int(arr.shape[-1])


def _check_binary(arr: np.ndarray, mode: str, path: Path, what: str) -> None:
    """Single channel, values in {0, 255}, at least one 255."""
    if arr.ndim != 2:
        raise ValueError(
            f"{what} {path}: expected a single-channel (grey) image, got {_channels(arr)} channels (PIL mode {mode})."
        )
    values = np.unique(arr)
    bad = values[(values != 0) & (values != 255)]
    if bad.size:
        raise ValueError(
            f"{what} {path}: values {bad[:10].tolist()} outside the expected {{0, 255}} "
            f"(found {values[:10].tolist()}, PIL mode {mode}"
            + ("; a palette image holds palette indices, save it in mode 'L'" if mode == "P" else "")
            + ")."
        )
    if not (values == 255).any():
        raise ValueError(
            f"{what} {path}: no foreground pixel (value 255); expected a binary image with both 0 and 255."
        )


def check_colour_image(path: str | Path) -> None:
    """Validate one input of the inference: a readable colour (RGB) image.

    Args:
        path: the image file.

    Raises:
        ValueError: an empty or unreadable file, or an image without 3 channels (the message names the file, its
            channel count and PIL mode, and what the model expects).

    Example:
        >>> check_colour_image("DRIVE/test/images/01_test.tif")
    """
    image, mode = _read_image(Path(path), "input image")
    if image.ndim != 3 or image.shape[-1] != 3:
        n = _channels(image)
        raise ValueError(
            f"input image {path}: the DRIVE model expects a colour (RGB) fundus image with 3 channels, got {n} "
            f"channel{'s' if n != 1 else ''} (PIL mode {mode})."
        )


def drive_datalist(data_dir: str | Path, split: str = "training") -> list[dict[str, str]]:
    """Validated datalist of one DRIVE split, matched by the image number.

    Reads ``<data_dir>/<split>/images/NN_<split>.tif``, ``1st_manual/NN_manual1.gif`` (label) and
    ``mask/NN_<split>_mask.gif`` (FOV), each file matched by the number its name starts with. Every file is opened:
    the image must be a readable colour image with 3 channels, the label and the mask readable single-channel images
    of the same H x W with values in {0, 255} and at least one 255. Files not ending in an image suffix and hidden
    files are ignored; labels or masks without an image are ignored.

    Args:
        data_dir: the DRIVE root (holding ``training/`` and ``test/``).
        split: ``"training"`` (20 images, 21-40) or ``"test"`` (20 images, 01-20).

    Returns:
        ``[{"image": path, "label": path, "mask": path, "name": "21_training"}, ...]`` sorted by image number,
        paths as absolute strings.

    Raises:
        ValueError: unknown split; a file name without a leading number; two files with the same number in a folder;
            an empty or unreadable file; an image without 3 channels; a label / mask that is not single-channel,
            not of the image's H x W, not valued in {0, 255}, or without a 255 pixel.
        FileNotFoundError: a missing folder, an ``images`` folder without images, a missing label or mask.

    Example:
        >>> items = drive_datalist("../shared/data/DRIVE", "training")
        >>> len(items), items[0]["name"]
        (20, '21_training')
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    root = Path(data_dir).expanduser().resolve() / split
    folders = {"image": root / "images", "label": root / "1st_manual", "mask": root / "mask"}
    indexes = {key: _index_folder(folder, key) for key, folder in folders.items()}
    if not indexes["image"]:
        raise FileNotFoundError(
            f"no images in {folders['image']} (expected files such as 21_training.tif with suffix {IMAGE_SUFFIXES})."
        )
    items = []
    for number in sorted(indexes["image"]):
        paths = {}
        for key, folder in folders.items():
            found = indexes[key].get(number, [])
            if len(found) > 1:
                raise ValueError(
                    f"{len(found)} {key} files with number {number} in {folder}: {[str(p) for p in found]}."
                )
            if not found:
                raise FileNotFoundError(
                    f"missing {key} for image {indexes['image'][number][0]}: no file '{number:02d}_*' in {folder}."
                )
            paths[key] = found[0]
        image, mode = _read_image(paths["image"], "image")
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(
                f"image {paths['image']}: expected a colour (RGB) image with 3 channels, "
                f"got {_channels(image)} channel{'s' if _channels(image) != 1 else ''} (PIL mode {mode})."
            )
        for key in ("label", "mask"):
            arr, mode = _read_image(paths[key], key)
            if arr.shape[:2] != image.shape[:2]:
                raise ValueError(
                    f"{key} {paths[key]} is {arr.shape[0]}x{arr.shape[1]} (H x W) but its image {paths['image']} "
                    f"is {image.shape[0]}x{image.shape[1]}."
                )
            _check_binary(arr, mode, paths[key], key)
        items.append({key: str(path) for key, path in paths.items()} | {"name": paths["image"].stem})
    return items


def split_train_val(
    items: Sequence[Mapping[str, Any]], num_val: int, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split DRIVE training items into training and validation items (validation never uses test images).

    Args:
        items: items of :func:`drive_datalist` for ``split="training"``.
        num_val: number of validation images, ``1 <= num_val < len(items)``.
        seed: seed of the random permutation (``numpy.random.default_rng``).

    Returns:
        ``(train, val)``, each sorted by name.

    Raises:
        ValueError: a test image among ``items`` (name ending in ``_test`` or image under a ``test/`` folder),
            duplicate names, or ``num_val`` out of range.

    Example:
        >>> train, val = split_train_val(drive_datalist(root, "training"), num_val=4, seed=0)
        >>> len(train), len(val)
        (16, 4)
    """
    items = [dict(item) for item in items]
    for item in items:
        if str(item["name"]).endswith("_test") or Path(item["image"]).parent.parent.name == "test":
            raise ValueError(
                f"validation images come from the DRIVE training images only; got test image {item['image']}."
            )
    names = [item["name"] for item in items]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate names in the items: {sorted(n for n in set(names) if names.count(n) > 1)}.")
    if not 1 <= num_val < len(items):
        raise ValueError(f"num_val must be in [1, {len(items) - 1}] for {len(items)} training items, got {num_val}.")
    order = np.random.default_rng(seed).permutation(len(items))
    val = sorted((items[i] for i in order[:num_val]), key=lambda d: d["name"])
    train = sorted((items[i] for i in order[num_val:]), key=lambda d: d["name"])
    return train, val


# ------------------------------------------------------------------------------------------------- transforms


class RGBToGrey(Transform):
    """Channel-first RGB image -> one grey channel ``0.299 R + 0.587 G + 0.114 B`` (float32).

    Args:
        weights: weight of each input channel (the reference's ITU-R BT.601 luma weights by default).

    Raises:
        ValueError: when the image has not ``len(weights)`` channels; names the file and both channel counts.

    Example:
        >>> RGBToGrey()(torch.ones(3, 4, 4)).shape
        torch.Size([1, 4, 4])
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, weights: Sequence[float] = GREY_WEIGHTS) -> None:
        self.weights = tuple(float(w) for w in weights)

    def __call__(self, img: Any, source: str | None = None) -> torch.Tensor:
        img_t = convert_to_tensor(img, track_meta=get_track_meta())
        n = len(self.weights)
        if img_t.ndim < 2 or img_t.shape[0] != n:
            got = img_t.shape[0] if img_t.ndim >= 2 else 1
            kind = "a grey image" if got == 1 else "an image"
            raise ValueError(
                f"{source or source_of(img, 'image')}: expected a colour image with {channels_text(n)} (channel first), "
                f"got {kind} with {channels_text(got)} (shape {tuple(img_t.shape)})."
            )
        w = torch.as_tensor(self.weights, dtype=torch.float32, device=img_t.device).view(n, *[1] * (img_t.ndim - 1))
        grey = (img_t.as_tensor() if isinstance(img_t, MetaTensor) else img_t).float().mul(w).sum(0, keepdim=True)
        out, *_ = convert_to_dst_type(grey, img_t, dtype=torch.float32)
        return out


class RGBToGreyd(MapTransform):
    """Dictionary version of :class:`RGBToGrey`; errors name the loaded file (or the item's ``name``)."""

    backend = RGBToGrey.backend

    def __init__(
        self, keys: KeysCollection, weights: Sequence[float] = GREY_WEIGHTS, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = RGBToGrey(weights)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key], source=item_source(d, key))
        return d


class CLAHE(Transform):
    """Contrast limited adaptive histogram equalization of each channel (``skimage.exposure.equalize_adapthist``).

    The defaults reproduce OpenCV's ``createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))`` of the reference pipeline:
    ``num_tiles`` tiles per spatial dimension (``kernel_size = shape // num_tiles``), 256 histogram bins, each bin
    clipped at ``clip_limit * tile pixels`` = ``2 * tile pixels / 256``. Output is float32 in [0, 1].

    Args:
        clip_limit: scikit-image's normalized clip limit (OpenCV's ``clipLimit`` / ``nbins``).
        num_tiles: tiles per spatial dimension.
        nbins: histogram bins.

    Raises:
        ValueError: intensities outside [0, 1] (rescale first) or a constant image; names the file.

    Example:
        >>> CLAHE()(torch.rand(1, 64, 64)).shape
        torch.Size([1, 64, 64])
    """

    backend = [TransformBackends.NUMPY]

    def __init__(self, clip_limit: float = 2.0 / 256, num_tiles: int = 8, nbins: int = 256) -> None:
        self.clip_limit = float(clip_limit)
        self.num_tiles = int(num_tiles)
        self.nbins = int(nbins)

    def __call__(self, img: Any, source: str | None = None) -> torch.Tensor:
        from skimage.exposure import equalize_adapthist

        img_t = convert_to_tensor(img, track_meta=get_track_meta())
        arr = np.asarray(img_t.detach().cpu().numpy() if isinstance(img_t, torch.Tensor) else img_t, dtype=np.float64)
        src = source or source_of(img, "image")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"{src}: CLAHE expects intensities in [0, 1], got [{lo:.4g}, {hi:.4g}] (rescale first).")
        if hi == lo:
            raise ValueError(f"{src}: constant image ({lo:g}), nothing to equalize.")
        kernel = [max(s // self.num_tiles, 1) for s in arr.shape[1:]]
        out = np.stack(
            [equalize_adapthist(c, kernel_size=kernel, clip_limit=self.clip_limit, nbins=self.nbins) for c in arr]
        ).astype(np.float32)
        result, *_ = convert_to_dst_type(out, img_t, dtype=torch.float32)
        return result


class CLAHEd(MapTransform):
    """Dictionary version of :class:`CLAHE`; errors name the loaded file (or the item's ``name``)."""

    backend = CLAHE.backend

    def __init__(
        self,
        keys: KeysCollection,
        clip_limit: float = 2.0 / 256,
        num_tiles: int = 8,
        nbins: int = 256,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.equalizer = CLAHE(clip_limit, num_tiles, nbins)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.equalizer(d[key], source=item_source(d, key))
        return d


# ---------------------------------------------------------------------------------------------- transform chains


def load_transforms(keys: KeysCollection = (IMAGE, LABEL, MASK), reverse_indexing: bool = True) -> list[Transform]:
    """``LoadImaged`` with MONAI's ``PILReader`` (reads DRIVE's .tif / .gif) and ``EnsureChannelFirstd``.

    Args:
        keys: keys of the files to load.
        reverse_indexing: ``PILReader``'s spatial order: True (MONAI's default) gives ``(C, W, H)``, False
            ``(C, H, W)`` as numpy / PIL.

    Example:
        >>> Compose(load_transforms())(items[0])["image"].shape
        torch.Size([3, 565, 584])
    """
    return [
        LoadImaged(keys, reader="PILReader", image_only=True, reverse_indexing=reverse_indexing),
        EnsureChannelFirstd(keys),
    ]


def preprocess_transforms(
    keys: KeysCollection = IMAGE, gamma: float = 1.2, clip_limit: float = 2.0 / 256, num_tiles: int = 8
) -> list[Transform]:
    """The reference preprocessing of a channel-first RGB image (module docstring): grey, per-image z-score,
    min-max to [0, 1], CLAHE, gamma.

    Args:
        keys: image keys.
        gamma: the reference's ``adjust_gamma`` value: intensities become ``x ** (1 / gamma)`` (brightens for
            ``gamma > 1``); MONAI's ``AdjustContrastd`` is given ``1 / gamma``.
        clip_limit: CLAHE clip limit, see :class:`CLAHE`.
        num_tiles: CLAHE tiles per spatial dimension.

    Example:
        >>> Compose(load_transforms("image") + preprocess_transforms("image"))({"image": path})["image"].shape
        torch.Size([1, 565, 584])
    """
    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}.")
    return [
        RGBToGreyd(keys),
        NormalizeIntensityd(keys),
        ScaleIntensityd(keys, minv=0.0, maxv=1.0),
        CLAHEd(keys, clip_limit=clip_limit, num_tiles=num_tiles),
        AdjustContrastd(keys, gamma=1.0 / gamma),
    ]


def _label_transforms(keys: Sequence[str]) -> list[Transform]:
    if not keys:
        return []
    return [CheckChannelsd(keys, 1), BinarizeLabeld(keys, values=(0, 255), require_foreground=True)]


def train_transforms(
    num_samples: int = 16,
    patch_size: Sequence[int] = PATCH_SIZE,
    flip_prob: float = 0.5,
    fov_centred: bool = False,
    gamma: float = 1.2,
    reverse_indexing: bool = True,
) -> Compose:
    """Training chain: load image / label / mask, preprocess, then ``num_samples`` random patches with flips.

    Everything before the crop is deterministic, so a ``CacheDataset`` caches the preprocessed whole images. Each
    item yields a list of ``num_samples`` dicts with ``image`` / ``label`` / ``mask`` of shape ``(1, *patch_size)``
    (the mask is cropped too, for a loss restricted to the FOV if wanted).

    Args:
        num_samples: patches per image and pass (``RandSpatialCropSamplesd``); the reference draws 12,000 patches
            from the 20 training images (after cropping rows 9:574; here the whole image is sampled).
        patch_size: patch size (48 x 48 in the reference).
        flip_prob: probability of each of the horizontal and vertical flips (``RandFlipd``).
        fov_centred: False (reference): patches anywhere in the image; True: patch centres inside the FOV
            (``RandWeightedCropd`` weighted by the mask).
        gamma: see :func:`preprocess_transforms`.
        reverse_indexing: see :func:`load_transforms`.

    Example:
        >>> patches = train_transforms(num_samples=4)(items[0])
        >>> len(patches), patches[0]["image"].shape
        (4, torch.Size([1, 48, 48]))
    """
    keys = [IMAGE, LABEL, MASK]
    if fov_centred:
        crop: Transform = RandWeightedCropd(keys, w_key=MASK, spatial_size=patch_size, num_samples=num_samples)
    else:
        crop = RandSpatialCropSamplesd(keys, roi_size=patch_size, num_samples=num_samples, random_size=False)
    return Compose(
        load_transforms(keys, reverse_indexing)
        + _label_transforms([LABEL, MASK])
        + preprocess_transforms(IMAGE, gamma=gamma)
        + [
            crop,
            RandFlipd(keys, prob=flip_prob, spatial_axis=0),
            RandFlipd(keys, prob=flip_prob, spatial_axis=1),
            EnsureTyped(keys, dtype=torch.float32),
        ]
    )


def eval_transforms(
    with_label: bool = True, with_mask: bool = True, gamma: float = 1.2, reverse_indexing: bool = True
) -> Compose:
    """Evaluation / inference chain on whole images: load, preprocess, labels and masks to {0, 1}.

    Inference runs on the whole preprocessed image with :func:`eval_inferer` (``SlidingWindowInferer``, 48 x 48
    windows with overlap); metrics are computed inside the FOV mask at the original size (``scripts.metrics``).

    Args:
        with_label: load ``label`` (1st_manual) too.
        with_mask: load ``mask`` (FOV) too.
        gamma: see :func:`preprocess_transforms`.
        reverse_indexing: see :func:`load_transforms`.

    Example:
        >>> eval_transforms()(items[0])["image"].shape
        torch.Size([1, 565, 584])
    """
    binary = [key for key, keep in ((LABEL, with_label), (MASK, with_mask)) if keep]
    keys = [IMAGE, *binary]
    return Compose(
        load_transforms(keys, reverse_indexing)
        + _label_transforms(binary)
        + preprocess_transforms(IMAGE, gamma=gamma)
        + [EnsureTyped(keys, dtype=torch.float32)]
    )


def eval_inferer(
    roi_size: Sequence[int] = PATCH_SIZE, overlap: float = 0.25, sw_batch_size: int = 64, mode: str = "constant"
) -> SlidingWindowInferer:
    """``SlidingWindowInferer`` over whole DRIVE images with the training patch size.

    Args:
        roi_size: window size (48 x 48, as the training patches).
        overlap: window overlap (the reference tiles the zero-padded image without overlap).
        sw_batch_size: windows per forward pass.
        mode: blending of overlapping windows (``"constant"`` or ``"gaussian"``).

    Example:
        >>> eval_inferer()(torch.rand(1, 1, 565, 584), torch.nn.Identity()).shape
        torch.Size([1, 1, 565, 584])
    """
    return SlidingWindowInferer(roi_size=roi_size, sw_batch_size=sw_batch_size, overlap=overlap, mode=mode)
