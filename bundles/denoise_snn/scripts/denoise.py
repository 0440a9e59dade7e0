"""Blind Gaussian denoising (grey and colour): data sets, splits, noise, transforms, metrics and output files of the
``denoise_snn`` bundle.

Data (``$MONAI_SNN_DATA``, clean ground truth only; noise is added here)::

    Train400/test_001.png ... test_400.png   grey training set, 8-bit PNG, 180 x 180 (DnCNN's Train400)
    BSD68/test001.png ... test068.png        grey test set, 8-bit PNG, 481 x 321 or 321 x 481
    CBSD_train/<id>.jpg                      colour training set, 200 RGB JPEG (BSDS300 train, "BSD200")
    CBSD68/<id>.png                          colour test set, 68 RGB PNG (the colour versions of BSD68)

Conventions (section 4.3.3 of the Spiking-UNet paper, and the issue):

* images are read with MONAI's ``LoadImaged`` (``PILReader`` with ``reverse_indexing=False``, so arrays are
  H x W (x 3) as in numpy / PIL; ``NumpyReader`` for ``.npy`` inputs of the inference), made channel-first and
  scaled from [0, 255] to [0, 1] without clipping (noisy inputs may lie outside);
* training: random patches with random flips and 90-degree rotations; the clean patch is copied to ``label`` and
  MONAI's ``RandGaussianNoised(sample_std=True)`` adds Gaussian noise whose sigma is drawn per patch in
  [0, ``sigma_max``] (55 on the [0, 255] scale): blind denoising;
* evaluation: :class:`FixedGaussianNoised` adds noise of one sigma with a seed derived from the image's name, the
  sigma and a base seed, so every run, model and machine sees the same noisy images (float, not clipped);
* the network predicts the noise map and :class:`monai_snn.inferers.ResidualInferer` returns ``noisy - noise``;
  the loss (L1 by default) compares that with the clean image;
* scores: the denoised image is clipped to [0, 255] and compared with the clean one by MONAI's ``PSNRMetric``
  (peak 255) and ``SSIMMetric`` (data range 255, 11 x 11 Gaussian window), per image, then averaged.
"""

from __future__ import annotations

import zlib
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import NumpyReader, PILReader, partition_dataset
from monai.handlers import IgniteMetricHandler, from_engine
from monai.metrics import PSNRMetric, SSIMMetric
from monai.transforms import (
    Compose,
    CopyItemsd,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    RandFlipd,
    RandGaussianNoised,
    RandRotate90d,
    RandSpatialCropSamplesd,
    ScaleIntensityRanged,
    Transform,
)
from monai.utils import str2bool
from PIL import Image

from monai_snn.transforms import CheckChannelsd, channel_kind, channels_text, item_source

__all__ = [
    "IMAGE",
    "LABEL",
    "PRED",
    "DATA_SETS",
    "IMAGE_SUFFIXES",
    "INPUT_SUFFIXES",
    "SIGMA_MAX",
    "TEST_SIGMAS",
    "color_flag",
    "num_channels",
    "check_sigma",
    "read_image",
    "check_input_image",
    "denoise_datalist",
    "train_val_split",
    "noise_seed",
    "FixedGaussianNoised",
    "CheckFinited",
    "load_transforms",
    "train_transforms",
    "eval_transforms",
    "inference_transforms",
    "eval_postprocessing",
    "denoise_metrics",
    "SaveDenoisedd",
]

IMAGE, LABEL, PRED = "image", "label", "pred"
# colour? -> (training set, test set)
DATA_SETS = {False: ("Train400", "BSD68"), True: ("CBSD_train", "CBSD68")}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
INPUT_SUFFIXES = (".png", ".npy")
SIGMA_MAX = 55.0
TEST_SIGMAS = (15.0, 25.0, 50.0)
_PIL_MODES = {"L": 1, "RGB": 3}


def color_flag(value: Any, what: str = "--color") -> bool:
    """The ``color`` option as a bool: ``true`` / ``false`` (also ``yes`` / ``no``, ``1`` / ``0``) from the CLI.

    Raises:
        ValueError: anything else (names the option).

    Example:
        >>> color_flag("false"), color_flag(True), color_flag(1)
        (False, True, True)
    """
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    try:
        return str2bool(value)
    except ValueError as e:
        raise ValueError(f"{what} must be true (the colour model) or false (the grey model), got {value!r}.") from e


def num_channels(color: bool) -> int:
    """3 for the colour model, 1 for the grey one."""
    return 3 if color else 1



def check_sigma(sigma: Any, what: str = "sigma") -> float:
    """A noise level on the [0, 255] scale as a float.

    Raises:
        ValueError: not a number or outside [0, 255] (names ``what``, e.g. the config option).

    Example:
        >>> check_sigma(25)
        25.0
    """
    try:
        value = float(sigma)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be a noise level (standard deviation) in [0, 255], got {sigma!r}.") from e
    if not 0.0 <= value <= 255.0 or value != value:
        raise ValueError(
            f"{what} must be a noise level in [0, 255] (the standard deviation on the 8-bit scale, e.g. 25), "
            f"got {sigma!r}."
        )
    return value


def read_image(path: str | Path, what: str = "image") -> np.ndarray:
    """The pixels of an 8-bit grey / RGB PNG or JPEG, or of a ``.npy`` float array, validated.

    Args:
        path: the file.
        what: how errors name the file (``"image"``, ``"input image"``).

    Returns:
        ``H x W`` (grey) or ``H x W x 3`` (colour), uint8 for images, float32 for ``.npy``.

    Raises:
        ValueError: an empty or unreadable file, an image that is not 8-bit grey / RGB, an array that is not
            ``H x W`` or ``H x W x 3`` real numbers, NaN or infinite values; each message names the file.

    Example:
        >>> read_image("BSD68/test001.png").shape
        (321, 481)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist.")
    if path.stat().st_size == 0:
        raise ValueError(f"{what} {path} is empty (0 bytes).")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"{what} {path} is not a readable .npy array ({type(e).__name__}: {e}).") from e
        if arr.dtype.kind not in "fiu" or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (1, 3))):
            raise ValueError(
                f"{what} {path}: expected a float array of shape H x W (grey) or H x W x 3 (colour) in [0, 255], got "
                f"dtype {arr.dtype} and shape {arr.shape}."
            )
        arr = arr.astype(np.float32)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if not np.isfinite(arr).all():
            raise ValueError(f"{what} {path} holds {int((~np.isfinite(arr)).sum())} NaN or infinite values.")
        return arr
    try:
        with Image.open(path) as im:
            im.load()
            mode, bands = im.mode, im.getbands()
            arr = np.asarray(im)
    except (OSError, SyntaxError, ValueError) as e:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"{what} {path} is not a readable image file ({type(e).__name__}: {e}).") from e
    if mode not in _PIL_MODES:
        raise ValueError(
            f"{what} {path}: expected an 8-bit grey (PIL mode 'L') or RGB image, got mode {mode} with "
            f"{channels_text(len(bands))}."
        )
    return arr


def _channels_of(arr: np.ndarray) -> int:
    return 1 if arr.ndim == 2 else int(arr.shape[-1])


def check_input_image(path: str | Path, color: bool = False) -> None:
    """Validate one input of the inference for the grey (``color=False``) or the colour model.

    Raises:
        ValueError: see :func:`read_image`; a grey image for the colour model or the reverse (names the file and
            both channel counts).

    Example:
        >>> check_input_image("noisy/test001.npy", color=False)
    """
    arr = read_image(path, "input image")
    got, want = _channels_of(arr), num_channels(color)
    if got != want:
        raise ValueError(
            f"input image {path} has {channels_text(got)} ({channel_kind(got)}) but the {channel_kind(want)} model "
            f"expects {channels_text(want)}: use --color {'false' if got == 1 else 'true'} for {channel_kind(got)} "
            "images."
        )


def denoise_datalist(folder: str | Path, color: bool = False, check: bool = True) -> list[dict[str, Any]]:
    """Validated datalist of one data set folder (every PNG / JPEG in it, sorted by name).

    Args:
        folder: e.g. ``$MONAI_SNN_DATA/BSD68``.
        color: the images must be RGB (True) or grey (False).
        check: open every file (:func:`read_image`) and check its channels.

    Returns:
        ``[{"image": path, "name": stem}, ...]``.

    Raises:
        FileNotFoundError: a missing folder or one without images.
        ValueError: see :func:`check_input_image`.

    Example:
        >>> len(denoise_datalist("../shared/data/BSD68"))
        68
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"denoising data folder not found: {root} (set MONAI_SNN_DATA or --data_dir).")
    paths = sorted(p for p in root.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))  # fmt: skip
    if not paths:
        raise FileNotFoundError(f"no {' / '.join(IMAGE_SUFFIXES)} images in {root}.")
    items = []
    for p in paths:
        if check:
            got, want = _channels_of(read_image(p)), num_channels(color)
            if got != want:
                raise ValueError(f"image {p} has {channels_text(got)} ({channel_kind(got)}); the {channel_kind(want)} "
                                 f"data set {root.name} needs {channels_text(want)}.")  # fmt: skip
        items.append({IMAGE: str(p), "name": p.stem})
    return items


def train_val_split(items: Sequence[Mapping[str, Any]], num_val: int = 8, seed: int = 0) -> dict[str, list]:
    """Hold ``num_val`` images of a training set out for validation (MONAI's ``partition_dataset``, shuffled).

    Raises:
        ValueError: ``num_val`` not in ``[1, len(items) - 1]``.

    Example:
        >>> split = train_val_split(denoise_datalist(".../Train400"), num_val=8)
        >>> len(split["train"]), len(split["val"])
        (392, 8)
    """
    items = list(items)
    if not 1 <= int(num_val) < len(items):
        raise ValueError(f"num_val must be in [1, {len(items) - 1}] for {len(items)} training images, got {num_val}.")
    val_idx = set(partition_dataset(list(range(len(items))), ratios=[len(items) - num_val, num_val], shuffle=True,
                                    seed=seed)[1])  # fmt: skip
    return {"train": [it for i, it in enumerate(items) if i not in val_idx],
            "val": [it for i, it in enumerate(items) if i in val_idx]}  # fmt: skip


def noise_seed(name: str, sigma: float, seed: int = 0) -> int:
    """The seed of the noise of one test image: stable across runs, machines, processes and orderings.

    Example:
        >>> noise_seed("test001", 25.0) == noise_seed("test001", 25.0) != noise_seed("test002", 25.0)
        True
    """
    return int(np.random.SeedSequence([int(seed), zlib.crc32(name.encode()), int(round(sigma * 1000))])
               .generate_state(1)[0])  # fmt: skip


class FixedGaussianNoised(MapTransform):
    """Add Gaussian noise of a fixed ``sigma`` (on the [0, 255] scale) to images scaled to [0, 1], seeded per image.

    The noise is drawn in float64 with ``numpy.random.default_rng(noise_seed(name, sigma, seed))``, divided by
    ``scale`` (255 for images in [0, 1]) and added without clipping, as the evaluation protocol of the paper
    (noise added in float to the [0, 255] image). ``name`` is the item's ``name_key`` (the file stem).

    Args:
        keys: keys of the images.
        sigma: noise standard deviation on the [0, 255] scale.
        seed: base seed.
        scale: the images' intensity scale (255: images in [0, 1]).
        name_key: the item key holding the image's name.

    Raises:
        ValueError: ``sigma`` outside [0, 255]; an item without ``name_key``.

    Example:
        >>> d = FixedGaussianNoised("image", sigma=25)({"image": torch.zeros(1, 4, 4), "name": "a"})
        >>> float(d["image"].std() * 255) > 0
        True
    """

    def __init__(self, keys: KeysCollection, sigma: float, seed: int = 0, scale: float = 255.0,
                 name_key: str = "name", allow_missing_keys: bool = False) -> None:  # fmt: skip
        super().__init__(keys, allow_missing_keys)
        self.sigma = check_sigma(sigma)
        self.seed, self.scale, self.name_key = int(seed), float(scale), name_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.name_key not in d:
            raise ValueError(f"FixedGaussianNoised needs the item's {self.name_key!r} (the image name) to seed the "
                             f"noise; item keys: {sorted(map(str, d))}.")  # fmt: skip
        for key in self.key_iterator(d):
            img = d[key]
            rng = np.random.default_rng(noise_seed(str(d[self.name_key]), self.sigma, self.seed))
            noise = rng.normal(0.0, self.sigma / self.scale, size=tuple(img.shape))
            d[key] = img + torch.as_tensor(noise, dtype=img.dtype if torch.is_tensor(img) else torch.float32)
        return d


class CheckFinited(MapTransform):
    """Raise a clear error for NaN or infinite values (naming the file), e.g. in ``.npy`` inputs.

    Example:
        >>> CheckFinited("image")({"image": torch.tensor([[[float("nan")]]])})  # ValueError: ... 1 NaN or infinite
    """

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            bad = int((~torch.isfinite(torch.as_tensor(d[key]))).sum())
            if bad:
                raise ValueError(f"{item_source(d, key)} holds {bad} NaN or infinite values.")
        return d


def load_transforms(color: bool = False, keys: KeysCollection = IMAGE) -> list[Transform]:
    """Load (PNG / JPEG through ``PILReader``, ``.npy`` through ``NumpyReader``), channel-first, check the channels
    and finiteness, scale [0, 255] -> [0, 1] (not clipped), float32.

    Raises:
        ValueError: (when run) a wrong channel count or NaN values, naming the file.

    Example:
        >>> Compose(load_transforms(color=True))({"image": "CBSD68/101085.png"})["image"].shape
        torch.Size([3, 321, 481])
    """
    return [
        LoadImaged(keys, reader=[NumpyReader(), PILReader(reverse_indexing=False)], image_only=True),
        EnsureChannelFirstd(keys, channel_dim=-1 if color else "no_channel"),
        CheckChannelsd(keys, num_channels(color)),
        CheckFinited(keys),
        ScaleIntensityRanged(keys, a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0, clip=False),
        EnsureTyped(keys, dtype=torch.float32),
    ]


def train_transforms(
    color: bool = False,
    patch_size: Sequence[int] = (64, 64),
    num_samples: int = 8,
    sigma_max: float = SIGMA_MAX,
) -> Compose:
    """Training chain: load, ``num_samples`` random patches with random flips / 90-degree rotations, clean patch ->
    ``label``, then blind Gaussian noise (sigma uniform in [0, ``sigma_max``] per patch, MONAI's
    ``RandGaussianNoised(sample_std=True)``) on ``image``.

    Everything before the crop is deterministic, so a ``CacheDataset`` caches the loaded images.

    Raises:
        ValueError: ``sigma_max`` outside [0, 255], a non-square patch.

    Example:
        >>> patches = train_transforms(patch_size=(32, 32))({"image": "Train400/test_001.png", "name": "test_001"})
        >>> len(patches), patches[0]["image"].shape, patches[0]["label"].shape
        (8, torch.Size([1, 32, 32]), torch.Size([1, 32, 32]))
    """
    size = tuple(int(s) for s in patch_size)
    if len(set(size)) != 1:
        raise ValueError(f"random 90-degree rotations need a square patch, got patch_size {size}.")
    sigma = check_sigma(sigma_max, "sigma_max")
    return Compose(
        load_transforms(color)
        + [
            RandSpatialCropSamplesd(IMAGE, roi_size=size, num_samples=int(num_samples), random_size=False),
            RandFlipd(IMAGE, prob=0.5, spatial_axis=0),
            RandFlipd(IMAGE, prob=0.5, spatial_axis=1),
            RandRotate90d(IMAGE, prob=0.75, max_k=3, spatial_axes=(0, 1)),
            CopyItemsd(IMAGE, names=LABEL),
            RandGaussianNoised(IMAGE, prob=1.0, mean=0.0, std=sigma / 255.0, sample_std=True),
            EnsureTyped([IMAGE, LABEL], dtype=torch.float32),
        ]
    )


def eval_transforms(color: bool = False, sigma: float = 25.0, seed: int = 0) -> Compose:
    """Evaluation chain on whole images: load, clean image -> ``label``, fixed-seed noise of ``sigma`` on ``image``
    (:class:`FixedGaussianNoised`).

    Example:
        >>> d = eval_transforms(sigma=25)({"image": "BSD68/test001.png", "name": "test001"})
        >>> d["image"].shape == d["label"].shape
        True
    """
    return Compose(load_transforms(color) + [CopyItemsd(IMAGE, names=LABEL),
                                             FixedGaussianNoised(IMAGE, sigma=sigma, seed=seed)])  # fmt: skip


def inference_transforms(color: bool = False) -> Compose:
    """Inference chain: load the noisy input (PNG or ``.npy`` in [0, 255]) and scale it to [0, 1]."""
    return Compose(load_transforms(color))


def eval_postprocessing(keys: KeysCollection = (PRED, LABEL)) -> Compose:
    """Back to the [0, 255] scale for the scores: the denoised ``pred`` clipped to [0, 255], ``label`` scaled.

    Example:
        >>> eval_postprocessing()({"pred": torch.tensor([[[1.2]]]), "label": torch.tensor([[[0.5]]])})["pred"]
        tensor([[[255.]]])
    """
    keys = [keys] if isinstance(keys, str) else list(keys)
    out: list[Transform] = [ScaleIntensityRanged(keys[0], 0.0, 1.0, 0.0, 255.0, clip=True)]
    if len(keys) > 1:
        out.append(ScaleIntensityRanged(keys[1:], 0.0, 1.0, 0.0, 255.0, clip=False))
    return Compose(out)


def denoise_metrics(prefix: str = "", names: Sequence[str] = ("psnr", "ssim")) -> dict[str, IgniteMetricHandler]:
    """Metric handlers by name: ``psnr`` (MONAI ``PSNRMetric``, peak 255) and ``ssim`` (``SSIMMetric``, data range
    255), each per image then averaged over the images, on the [0, 255] outputs of :func:`eval_postprocessing`.

    Raises:
        ValueError: an unknown name.

    Example:
        >>> sorted(denoise_metrics("val_"))
        ['val_psnr', 'val_ssim']
    """
    make = {
        "psnr": lambda: PSNRMetric(max_val=255.0, reduction="mean"),
        "ssim": lambda: SSIMMetric(spatial_dims=2, data_range=255.0, reduction="mean"),
    }
    out = {}
    for name in names:
        if name not in make:
            raise ValueError(f"unknown metric {name!r}; choose from {sorted(make)}.")
        out[f"{prefix}{name}"] = IgniteMetricHandler(metric_fn=make[name](),
                                                     output_transform=from_engine([PRED, LABEL]))  # fmt: skip
    return out


class SaveDenoisedd(MapTransform):
    """Write each denoised image as ``<stem>.npy`` (float32 in [0, 255], the input's shape: H x W or H x W x 3) and
    ``<stem>.png`` (8-bit, rounded) in ``output_dir``, ``stem`` being the input file's.

    Args:
        keys: the denoised image (channel-first, [0, 1] scale).
        output_dir: the output folder (created).

    Raises:
        ValueError: an output file would overwrite its own input (``output_dir`` is the input folder and the input
            is a PNG).

    Example:
        >>> SaveDenoisedd("pred", "out")({"pred": torch.rand(1, 8, 8), "image": noisy})  # out/<stem>.npy + .png
    """

    def __init__(self, keys: KeysCollection, output_dir: str | Path, source_key: str = IMAGE) -> None:
        super().__init__(keys)
        self.output_dir = Path(output_dir)
        self.source_key = source_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        source = Path(item_source(d, self.source_key))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for key in self.key_iterator(d):
            x = torch.as_tensor(d[key]).detach().float().cpu().clamp(0.0, 1.0) * 255.0
            arr = x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()
            writers = {".npy": lambda p: np.save(p, arr.astype(np.float32)),
                       ".png": lambda p: Image.fromarray(np.rint(arr).astype(np.uint8)).save(p)}  # fmt: skip
            for suffix, write in writers.items():
                target = self.output_dir / f"{source.stem}{suffix}"
                if target.resolve() == source.resolve():
                    raise ValueError(f"output {target} would overwrite its input: give another --output_dir.")
                tmp = target.with_name(f".{target.name}.tmp{suffix}")
                write(tmp)
                tmp.replace(target)
        return d
