# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""
Hippocampus data preparation (task code of the ``hippocampus_snn`` bundle, ``scripts/hippocampus.py``):
validated NIfTI loading, fixed-box crops around the hippocampus and five-fold MONAI datalists.

The bundle configs reach it as ``@scripts.hippocampus`` (``monai_snn.bundle.load_scripts(@bundle_root)``);
Python code imports it the same way::

    hippo = monai_snn.bundle.load_scripts("bundles/hippocampus_snn").hippocampus

Two kinds of input are supported:

* Whole-brain T1 volumes with a hippocampus mask (the ADNI case):
  :func:`crop_box_around_structure` crops a fixed box around the subject's right (or left) hippocampus.
* Medical Segmentation Decathlon Task04 (MSD) volumes, which are already cropped around one hippocampus:
  :func:`prepare_msd_folder` pads / crops every volume to one fixed box that holds every label voxel and
  writes a datalist with subject-level folds.

Conventions:

* Boxes are given in voxels along the array axes of the volume (nothing is resampled or reoriented).
* **Axis 0 is the slice axis**: a box ``(D, H, W)`` is ``D`` 2D slices of ``H x W`` voxels.
  ``H`` and ``W`` should be multiples of 8 so that a 4-level U-Net can downsample them three times
  (the paper used ``(24, 56, 48)``: 24 slices of 56 x 48).
* Every crop keeps the voxel grid; the affine translation is moved to the first voxel of the box
  (``affine @ [i0, j0, k0, 1]``), so a crop overlays the original volume exactly in any viewer.
* World coordinates follow the NIfTI convention (RAS+): the subject's right is the smaller world ``x``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Union

import nibabel as nib
import numpy as np
from monai.data import load_decathlon_datalist, partition_dataset
from monai.utils import optional_import
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from monai_snn.bundle.inputs import default_data_dir

sitk, _has_sitk = optional_import("SimpleITK")

__all__ = [
    "MSD_TASK",
    "SLICE_AXIS",
    "default_data_dir",
    "load_image",
    "load_pair",
    "crop_box_around_structure",
    "crop_pairs_to_folder",
    "label_extent",
    "default_box",
    "fit_to_box",
    "prepare_msd_folder",
    "load_datalist_folds",
    "read_datalist",
    "split_validation",
    "download_msd_hippocampus",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
ImageOrPath = Union[nib.Nifti1Image, PathLike]

MSD_TASK = "Task04_Hippocampus"
"""Name of the MSD task folder (and of the MONAI download resource)."""

SLICE_AXIS = 0
"""Array axis used as the 2D slice axis: a box ``(D, H, W)`` holds ``D`` slices of ``H x W``."""

_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_PREP_VERSION = 1
_READ_ERRORS = (ImageFileError, HeaderDataError, OSError, EOFError, zlib.error, ValueError)


# ----------------------------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------------------------


def _stem(path: PathLike) -> str:
    name = Path(path).name
    for suffix in _NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _content_sha1(path: Path) -> str:
    """SHA-1 of a file's bytes (the preparation cache's notion of "the same source")."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _list_nifti(folder: Path) -> list[Path]:
    """NIfTI files of ``folder``, sorted; hidden files (e.g. macOS ``._*`` forks in the MSD tar) are skipped."""
    return sorted(p for p in folder.iterdir() if p.name.endswith(_NIFTI_SUFFIXES) and not p.name.startswith("."))


def _as_box(box: Sequence[int], name: str = "box") -> tuple[int, int, int]:
    values = tuple(int(b) for b in box)
    if len(values) != 3 or any(b <= 0 for b in values) or any(float(b) != float(v) for b, v in zip(values, box)):
        raise ValueError(f"{name} must be three positive integers (slices, height, width), got {tuple(box)}.")
    return values  # type: ignore[return-value]


def _new_image(data: np.ndarray, affine: np.ndarray, ref: nib.spatialimages.SpatialImage | None) -> nib.Nifti1Image:
    """New NIfTI image holding ``data`` with ``affine``; codes and units copied from ``ref``."""
    img = nib.Nifti1Image(data, affine)  # no header given: the header dtype follows ``data``
    qcode, scode, units = 1, 1, ("mm", "sec")
    if isinstance(ref, nib.Nifti1Image):
        qcode = int(ref.header["qform_code"]) or 1
        scode = int(ref.header["sform_code"]) or 1
        xyz, t = ref.header.get_xyzt_units()
        units = (xyz if xyz != "unknown" else "mm", t if t != "unknown" else "sec")
    img.set_qform(affine, code=qcode)
    img.set_sform(affine, code=scode)
    img.header.set_xyzt_units(*units)
    return img


def _shift_affine(affine: np.ndarray, start: Sequence[int]) -> np.ndarray:
    """Affine of a crop whose voxel (0, 0, 0) is voxel ``start`` of the original grid."""
    new = np.array(affine, dtype=np.float64, copy=True)
    new[:3, 3] = (np.asarray(affine, dtype=np.float64) @ np.array([*start, 1.0]))[:3]
    return new


def _crop_pad(array: np.ndarray, start: Sequence[int], box: Sequence[int], fill: float) -> np.ndarray:
    """``array[start:start + box]``; the part of the box outside ``array`` is filled with ``fill``."""
    out = np.full(tuple(box), fill, dtype=array.dtype)
    src, dst = [], []
    for s, b, n in zip(start, box, array.shape):
        lo, hi = max(s, 0), min(s + b, n)
        if hi <= lo:  # the box misses the volume along this axis
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = array[tuple(src)]
    return out


def _bbox(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Inclusive (lo, hi) voxel bounds of the nonzero voxels, or ``None`` for an empty mask."""
    idx = np.nonzero(mask)
    if idx[0].size == 0:
        return None
    return np.array([i.min() for i in idx]), np.array([i.max() for i in idx])


def _centered_start(lo: np.ndarray, hi: np.ndarray, box: Sequence[int]) -> list[int]:
    """First voxel of a box centred on the inclusive bounding box ``[lo, hi]`` (integer voxel shift)."""
    size = hi - lo + 1
    return [int(low - (b - s) // 2) for low, s, b in zip(lo, size, box)]


def _check_fits(size: np.ndarray, box: Sequence[int], what: str, allow_label_loss: bool) -> None:
    if np.any(size > np.asarray(box)):
        msg = (
            f"{what}: the labelled structure spans {tuple(int(s) for s in size)} voxels, which does not fit in "
            f"the box {tuple(box)}; label voxels would be cut off. Use a larger box"
            " (or allow_label_loss=True)."
        )
        if not allow_label_loss:
            raise ValueError(msg)
        warnings.warn(msg, UserWarning, stacklevel=3)


def _arrays(
    image: ImageOrPath, label: ImageOrPath
) -> tuple[nib.spatialimages.SpatialImage, nib.spatialimages.SpatialImage]:
    """Images from paths (validated with :func:`load_pair`) or checks that two given images share a grid."""
    if not isinstance(image, nib.spatialimages.SpatialImage) or not isinstance(label, nib.spatialimages.SpatialImage):
        if isinstance(image, nib.spatialimages.SpatialImage) or isinstance(label, nib.spatialimages.SpatialImage):
            raise TypeError("image and label must both be paths or both be nibabel images.")
        return load_pair(image, label, label_values=None)
    if image.shape != label.shape or len(image.shape) != 3:
        raise ValueError(f"image shape {image.shape} and label shape {label.shape} must be equal and 3D.")
    if not np.allclose(image.affine, label.affine, atol=1e-3):
        raise ValueError(f"image and label affines differ:\n{image.affine}\nvs\n{label.affine}")
    return image, label


# ----------------------------------------------------------------------------------------------------------------
# loading with validation
# ----------------------------------------------------------------------------------------------------------------


_EXPECTED_VOLUME = "a 3D single-channel .nii/.nii.gz volume"


def _read(path: Path, role: str) -> tuple[nib.spatialimages.SpatialImage, np.ndarray]:
    """NIfTI image and voxel array of ``path``; every failure is a ``ValueError`` naming the file and the cause."""
    if not path.is_file():
        raise FileNotFoundError(f"{role} file not found: {path} (expected an existing .nii/.nii.gz file).")
    if path.stat().st_size == 0:
        raise ValueError(f"{role} file {path} is empty (0 bytes); expected {_EXPECTED_VOLUME}.")
    try:
        img = nib.load(str(path))
    except _READ_ERRORS as e:
        raise ValueError(
            f"{role} file {path} is not a readable NIfTI file ({type(e).__name__}: {e}); "
            f"expected {_EXPECTED_VOLUME}."
        ) from e
    shape = tuple(int(n) for n in img.shape)
    if len(shape) != 3:
        hint = f", i.e. {shape[3]} channels or time points" if len(shape) == 4 else ""
        raise ValueError(
            f"{role} file {path} has shape {shape} ({len(shape)}D{hint}); expected a 3D volume with one channel "
            "(one value per voxel). Split multi-channel or 4D images into 3D volumes first."
        )
    try:
        data = np.asanyarray(img.dataobj)
    except _READ_ERRORS as e:
        raise ValueError(
            f"{role} file {path} is truncated or corrupt, its voxel data cannot be read "
            f"({type(e).__name__}: {e}); expected a complete .nii/.nii.gz volume."
        ) from e
    if data.dtype.fields is not None or not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise ValueError(
            f"{role} file {path} holds {data.dtype} voxels (e.g. RGB or complex); expected one real value per voxel."
        )
    return img, data


def _check_finite(data: np.ndarray, path: PathLike, role: str) -> None:
    bad = ~np.isfinite(data)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{role} {path} has {int(bad.sum())} NaN/infinite voxel(s) (first at {first}); "
            "expected finite intensities. Fix or drop the volume."
        )


def load_image(path: PathLike, role: str = "image") -> nib.Nifti1Image:
    """
    Load one image volume and check that it can be fed to the networks: the validation every entry point uses
    (data preparation and datalists through :func:`load_pair`, 2D slicing, bundle inference).

    Args:
        path: path of the image (``.nii`` or ``.nii.gz``).
        role: what the file is, for the error messages (``"image"``, ``"inference input"``, ...).

    Returns:
        the image with its voxels in memory as ``float32``; affine and units are kept.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when the file is empty (0 bytes), not a readable NIfTI file, truncated, not 3D (4D, or a
            channel axis), holds non-numeric voxels, or holds NaN / infinite voxels. The message names the file.

    Example::

        img = load_image("imagesTr/hippocampus_001.nii.gz")
        img.shape, img.get_fdata().dtype  # (35, 51, 35), float64
    """
    path = Path(path)
    img, data = _read(path, role)
    data = np.asarray(data, dtype=np.float32)
    _check_finite(data, path, role)
    return _new_image(data, img.affine, img)


def load_pair(
    image_path: PathLike, label_path: PathLike, label_values: Sequence[int] | None = (0, 1, 2)
) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """
    Load an image / label NIfTI pair and check that they belong together.

    The returned images hold their voxels in memory: the image as ``float32`` and the label as ``uint8``
    (labels stored as floats, as in some MSD copies, are accepted when their values are whole numbers from
    ``label_values``). Affines and units are kept.

    Args:
        image_path: path of the image (``.nii`` or ``.nii.gz``).
        label_path: path of the label map on the same voxel grid.
        label_values: the allowed label values; ``None`` allows any non-negative whole numbers.

    Raises:
        FileNotFoundError: when one of the files does not exist.
        ValueError: when a file is empty, not a readable or a truncated NIfTI file, or not 3D, when the image
            holds NaN / infinite voxels (see :func:`load_image`), when the image and the label differ in shape or
            affine (``atol=1e-3``), or when the label holds values outside ``label_values``. The message names
            the file.

    Warns:
        UserWarning: when the label map is empty (no foreground voxel); the pair is still returned.

    Example::

        img, lab = load_pair("imagesTr/hippocampus_001.nii.gz", "labelsTr/hippocampus_001.nii.gz")
        img.shape, lab.get_fdata().max()  # (35, 51, 35), 2.0
    """
    image_path, label_path = Path(image_path), Path(label_path)
    # existence of both first, so a missing label fails before the image is decompressed
    for role, path in (("image", image_path), ("label", label_path)):
        if not path.is_file():
            raise FileNotFoundError(f"{role} file not found: {path} (expected an existing .nii/.nii.gz file).")
    img = load_image(image_path, "image")
    lab, lab_data = _read(label_path, "label")

    if img.shape != lab.shape:
        raise ValueError(
            f"shape mismatch: image {image_path} has shape {img.shape} but label {label_path} has shape "
            f"{lab.shape}; expected identical voxel grids."
        )
    if not np.allclose(img.affine, lab.affine, atol=1e-3):
        raise ValueError(
            f"affine mismatch between image {image_path} and label {label_path}; expected the same affine "
            f"(atol 1e-3), got\n{np.array2string(img.affine, precision=4)}\nand\n"
            f"{np.array2string(lab.affine, precision=4)}"
        )

    values = np.unique(lab_data)
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)) or np.any(values < 0):
        raise ValueError(
            f"label {label_path} holds non-integer, negative or NaN values {values[:10].tolist()}; "
            "expected whole-number class labels."
        )
    if label_values is not None:
        unexpected = np.setdiff1d(values, np.asarray(label_values))
        if unexpected.size:
            raise ValueError(
                f"label {label_path} holds values {unexpected.astype(int).tolist()} outside the expected set "
                f"{sorted(int(v) for v in label_values)}."
            )
    top = int(values.max()) if values.size else 0
    lab_dtype = np.uint8 if top <= 255 else np.int32
    lab_data = np.asarray(lab_data).astype(lab_dtype)
    if top == 0:
        warnings.warn(f"label {label_path} is empty (no foreground voxel).", UserWarning, stacklevel=2)

    return img, _new_image(lab_data, img.affine, lab)


# ----------------------------------------------------------------------------------------------------------------
# whole-brain crops (ADNI)
# ----------------------------------------------------------------------------------------------------------------


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    if not _has_sitk:
        raise RuntimeError("crop_box_around_structure needs SimpleITK for connected components.")
    cc = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), False)
    comps = sitk.GetArrayFromImage(cc)  # same array layout as ``mask``
    return comps, int(comps.max())


def crop_box_around_structure(
    image: ImageOrPath,
    label: ImageOrPath,
    box: Sequence[int] = (24, 56, 48),
    side: str = "right",
    structure_values: Sequence[int] | None = None,
    min_component_fraction: float = 0.01,
    allow_label_loss: bool = False,
) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """
    Crop a fixed box around the right (or left) hippocampus of a whole-brain volume.

    The mask (``label``, restricted to ``structure_values``) is split into 3D connected structures
    (face connectivity). The two largest structures define the mid-line between them, in world ``x``
    (RAS+ from the affine, so LPS-stored or flipped volumes are handled): every structure whose centroid lies
    on the requested side of it belongs to the selected hippocampus (fragments included; structures smaller than
    ``min_component_fraction`` of the largest one only keep their labels but do not move the box). The box is
    centred on the bounding box of the selected structure, in voxels along the array axes; where it leaves the
    volume, the image is padded with its minimum and the label with 0. The crops keep the voxel grid: their
    affine is the original one with the translation moved to the first box voxel.

    Args:
        image: whole-brain image (nibabel image or path).
        label: mask on the same grid (nibabel image or path; paths are validated with :func:`load_pair`).
        box: box size in voxels along array axes 0, 1, 2 (axis 0 is the slice axis).
        side: ``"right"`` (smaller world x) or ``"left"``; subject's side, not array order.
        structure_values: label values forming the structure; ``None`` uses every nonzero voxel.
        min_component_fraction: structures smaller than this fraction of the largest one do not move the box.
        allow_label_loss: warn instead of raising when the structure is larger than ``box``.

    Returns:
        ``(cropped_image, cropped_label)``: float32 image, label with the original values of the selected
        structure (voxels of the other side's structures are set to 0).

    Raises:
        ValueError: when ``side`` or ``box`` is invalid, the mask has no structure, the image and label grids
            differ, or the structure does not fit in ``box`` (unless ``allow_label_loss``).

    Example::

        img, lab = crop_box_around_structure("t1.nii.gz", "hippo_mask.nii.gz", box=(24, 56, 48), side="right")
        nib.save(img, "t1_right_hippo.nii.gz")
    """
    side = side.lower()
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}.")
    box = _as_box(box)
    image, label = _arrays(image, label)
    name = label.get_filename() or "label"
    img_data = np.asarray(image.dataobj, dtype=np.float32)
    lab_data = np.asanyarray(label.dataobj)
    if lab_data.dtype.kind == "f":
        lab_data = np.rint(lab_data)
    lab_data = lab_data.astype(np.uint8 if lab_data.max(initial=0) <= 255 else np.int32)
    mask = np.isin(lab_data, structure_values) if structure_values is not None else lab_data > 0

    comps, n = _components(mask)
    if n == 0:
        raise ValueError(
            f"{name}: no structure found (values {structure_values if structure_values is not None else '> 0'})."
        )
    index = np.arange(1, n + 1)
    sizes = np.bincount(comps.ravel(), minlength=n + 1)[1:]
    coords = np.nonzero(comps)
    which = comps[coords]
    centroid_vox = np.stack([np.bincount(which, weights=c, minlength=n + 1)[1:] / sizes for c in coords], axis=1)
    centroid_x = (np.c_[centroid_vox, np.ones(n)] @ np.asarray(image.affine, dtype=np.float64).T)[:, 0]

    if n == 1:
        chosen = index
        volume_center_x = (image.affine @ np.array([*((np.array(img_data.shape) - 1) / 2.0), 1.0]))[0]
        wrong = centroid_x[0] > volume_center_x if side == "right" else centroid_x[0] < volume_center_x
        if wrong:
            warnings.warn(
                f"{name}: only one structure found and it lies on the subject's "
                f"{'left' if side == 'right' else 'right'} half; cropping it anyway.",
                UserWarning,
                stacklevel=2,
            )
    else:
        largest = np.argsort(sizes)[::-1][:2]
        mid_x = centroid_x[largest].mean()
        chosen = index[centroid_x < mid_x] if side == "right" else index[centroid_x > mid_x]
    significant = chosen[sizes[chosen - 1] >= min_component_fraction * sizes.max()]
    bounds = _bbox(np.isin(comps, significant))
    assert bounds is not None
    lo, hi = bounds
    _check_fits(hi - lo + 1, box, str(name), allow_label_loss)
    selected = np.isin(comps, chosen)
    start = _centered_start(lo, hi, box)
    logger.debug("%s: %s structure bounding box %s-%s, box start %s", name, side, lo, hi, start)

    out_lab = np.where(selected, lab_data, 0).astype(lab_data.dtype)
    cropped_img = _crop_pad(img_data, start, box, float(img_data.min()))
    cropped_lab = _crop_pad(out_lab, start, box, 0)
    lost = int(np.count_nonzero(out_lab)) - int(np.count_nonzero(cropped_lab))
    if lost:
        logger.warning("%s: %d voxel(s) of small fragments of the %s structure fall outside the box.", name, lost, side)
    affine = _shift_affine(image.affine, start)
    return _new_image(cropped_img, affine, image), _new_image(cropped_lab, affine, label)


def crop_pairs_to_folder(
    image_paths: Sequence[PathLike],
    label_paths: Sequence[PathLike],
    output_dir: PathLike,
    box: Sequence[int] = (24, 56, 48),
    side: str = "right",
    structure_values: Sequence[int] | None = None,
    allow_label_loss: bool = False,
) -> list[tuple[Path, Path]]:
    """
    Apply :func:`crop_box_around_structure` to image / label pairs and save the crops.

    Every pair is validated first (nothing is written if one is bad); crops are written to
    ``output_dir/imagesTr/<name>.nii.gz`` (float32) and ``output_dir/labelsTr/<name>.nii.gz``.

    Args:
        image_paths: whole-brain images.
        label_paths: masks, in the same order as ``image_paths``.
        output_dir: output folder.
        box: box in voxels along the array axes.
        side: ``"right"`` or ``"left"``.
        structure_values: label values of the structure (``None``: every nonzero voxel).
        allow_label_loss: warn instead of raising when a structure is larger than ``box``.

    Returns:
        the written ``(image, label)`` paths.

    Raises:
        ValueError: when the lists differ in length or a pair is invalid (see :func:`load_pair`).

    Example::

        crop_pairs_to_folder(sorted(Path("t1").glob("*.nii.gz")), sorted(Path("masks").glob("*.nii.gz")), "crops")
    """
    if len(image_paths) != len(label_paths):
        raise ValueError(f"got {len(image_paths)} images but {len(label_paths)} labels.")
    if not image_paths:
        raise ValueError("no image given.")
    crops = []
    for ip, lp in zip(image_paths, label_paths):
        crops.append(
            crop_box_around_structure(
                ip, lp, box=box, side=side, structure_values=structure_values, allow_label_loss=allow_label_loss
            )
        )
    out = Path(output_dir)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    written = []
    for ip, (ci, cl) in zip(image_paths, crops):
        name = _stem(ip) + ".nii.gz"
        pi, pl = out / "imagesTr" / name, out / "labelsTr" / name
        nib.save(ci, str(pi))
        nib.save(cl, str(pl))
        written.append((pi, pl))
    logger.info("wrote %d %s-side crops of %s voxels to %s", len(written), side, tuple(box), out)
    return written


# ----------------------------------------------------------------------------------------------------------------
# MSD Task04: fixed box holding every label
# ----------------------------------------------------------------------------------------------------------------


def _extent_summary(shapes: list[tuple[int, ...]], sizes: list[np.ndarray], empty: list[str]) -> dict[str, Any]:
    if not shapes:
        raise ValueError("no label file given.")
    ext = np.max(np.stack(sizes), axis=0) if sizes else np.zeros(3, dtype=int)
    return {
        "extent": [int(v) for v in ext],
        "max_shape": [int(v) for v in np.max(np.array(shapes), axis=0)],
        "min_shape": [int(v) for v in np.min(np.array(shapes), axis=0)],
        "num_files": len(shapes),
        "empty": empty,
    }


def label_extent(label_paths: Sequence[PathLike]) -> dict[str, Any]:
    """
    Per-axis size of the largest label bounding box over a set of label files.

    Args:
        label_paths: 3D label maps.

    Returns:
        a dict with ``"extent"`` (per-axis maximum over files of the bounding-box size of the nonzero voxels),
        ``"max_shape"`` / ``"min_shape"`` (per-axis maximum / minimum volume shape), ``"num_files"`` and
        ``"empty"`` (files without foreground, which do not count for ``"extent"``).

    Raises:
        FileNotFoundError: when a file does not exist.
        ValueError: when ``label_paths`` is empty or a file is unreadable or not 3D.

    Example::

        label_extent(sorted(Path("labelsTr").glob("*.nii.gz")))["extent"]  # [27, 47, 35] for MSD Task04
    """
    shapes, sizes, empty = [], [], []
    for path in label_paths:
        _, data = _read(Path(path), "label")
        shapes.append(data.shape)
        bounds = _bbox(data)
        if bounds is None:
            empty.append(str(path))
        else:
            sizes.append(bounds[1] - bounds[0] + 1)
    return _extent_summary(shapes, sizes, empty)


def default_box(extent: Sequence[int], multiple: int = 8) -> tuple[int, int, int]:
    """
    Smallest box holding ``extent`` whose in-plane sizes are multiples of ``multiple``.

    The slice axis (axis 0) keeps the extent; axes 1 and 2 (the 2D slice plane) are rounded up.

    Args:
        extent: per-axis label extent, e.g. ``label_extent(...)["extent"]``.
        multiple: in-plane divisor (8 for a U-Net with three 2x downsamplings).

    Returns:
        the box ``(slices, height, width)``.

    Example::

        default_box([27, 47, 35])  # (27, 48, 40)
    """
    e = _as_box(extent, "extent")
    return e[0], multiple * math.ceil(e[1] / multiple), multiple * math.ceil(e[2] / multiple)


def fit_to_box(
    image: ImageOrPath,
    label: ImageOrPath,
    box: Sequence[int],
    merge_labels: bool = True,
    allow_label_loss: bool = False,
) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """
    Pad or crop an (already hippocampus-centred) MSD volume to a fixed box that holds its whole label.

    The box is centred on the bounding box of the nonzero label voxels (on the volume centre for an empty
    label); the image is padded with its minimum and the label with 0 where the box leaves the volume. The
    affine translation is moved to the first box voxel, so the output overlays the input exactly.

    Args:
        image: image (nibabel image or path).
        label: label map on the same grid (nibabel image or path).
        box: output shape ``(slices, height, width)``; axis 0 is the slice axis.
        merge_labels: map every nonzero label (MSD: 1 anterior, 2 posterior) to 1; ``False`` keeps the values.
        allow_label_loss: warn instead of raising when the label does not fit in ``box``.

    Returns:
        ``(image, label)`` of shape ``box``: float32 image and uint8 label.

    Raises:
        ValueError: when ``box`` is invalid, the grids differ, or the label does not fit (see ``allow_label_loss``).

    Example::

        img, lab = fit_to_box("imagesTr/hippocampus_001.nii.gz", "labelsTr/hippocampus_001.nii.gz", (27, 48, 40))
    """
    box = _as_box(box)
    image, label = _arrays(image, label)
    img_data = np.asarray(image.dataobj, dtype=np.float32)
    lab_data = np.asanyarray(label.dataobj)
    if lab_data.dtype.kind == "f":
        lab_data = np.rint(lab_data)
    lab_data = (lab_data > 0).astype(np.uint8) if merge_labels else lab_data.astype(np.uint8)
    bounds = _bbox(lab_data)
    if bounds is None:
        center = (np.array(lab_data.shape) - 1) // 2
        lo, hi = center, center
    else:
        lo, hi = bounds
        _check_fits(hi - lo + 1, box, str(label.get_filename() or "label"), allow_label_loss)
    start = _centered_start(lo, hi, box)
    affine = _shift_affine(image.affine, start)
    out_img = _crop_pad(img_data, start, box, float(img_data.min()))
    out_lab = _crop_pad(lab_data, start, box, 0)
    return _new_image(out_img, affine, image), _new_image(out_lab, affine, label)


def _msd_pairs(msd_dir: Path) -> list[tuple[Path, Path]]:
    images_dir, labels_dir = msd_dir / "imagesTr", msd_dir / "labelsTr"
    for d in (images_dir, labels_dir):
        if not d.is_dir():
            raise FileNotFoundError(
                f"MSD folder {msd_dir} has no {d.name}/ sub-folder (expected imagesTr/ and labelsTr/)."
            )
    images = _list_nifti(images_dir)
    if not images:
        raise ValueError(f"no .nii/.nii.gz image found in {images_dir}.")
    pairs = []
    for ip in images:
        lp = labels_dir / ip.name
        if not lp.is_file():
            raise FileNotFoundError(f"label file not found: {lp} (expected a label for image {ip}).")
        pairs.append((ip, lp))
    orphans = sorted({p.name for p in _list_nifti(labels_dir)} - {p.name for p in images})
    if orphans:
        logger.warning("%d label(s) without image in %s are ignored: %s", len(orphans), labels_dir, orphans[:5])
    return pairs


def _folds(subjects: list[str], num_folds: int | None, seed: int) -> dict[str, int] | None:
    if num_folds is None:  # an evaluation set: no folds
        return None
    unique = sorted(set(subjects))
    if num_folds < 2:
        raise ValueError(f"num_folds must be at least 2, got {num_folds}.")
    if len(unique) < num_folds:
        raise ValueError(f"{len(unique)} subject(s) cannot be split into {num_folds} folds.")
    parts = partition_dataset(data=unique, num_partitions=num_folds, shuffle=True, seed=seed, even_divisible=False)
    return {s: k for k, part in enumerate(parts) for s in part}


def prepare_msd_folder(
    msd_dir: PathLike,
    output_dir: PathLike,
    box: Sequence[int] | None = None,
    merge_labels: bool = True,
    num_folds: int | None = 5,
    seed: int = 0,
    allow_label_loss: bool = False,
    subject_fn: Callable[[str], str] | None = None,
) -> Path:
    """
    Fit every volume of an MSD Task04 folder to one fixed box and write a datalist with subject-level folds.

    Steps: validate every ``imagesTr`` / ``labelsTr`` pair with :func:`load_pair` (nothing is written when a pair
    is bad), compute the label extent over the folder (logged), choose the box (``None``:
    :func:`default_box` of the extent, i.e. axis 0, the slice axis, keeps the extent and the two in-plane axes
    are rounded up to multiples of 8), write ``output_dir/imagesTr/*.nii.gz`` (float32) and
    ``output_dir/labelsTr/*.nii.gz`` (uint8) with :func:`fit_to_box`, and write ``output_dir/datalist.json``::

        {"box": [27, 48, 40], "slice_axis": 0, "merge_labels": true, "num_folds": 5, "seed": 0,
         "label_extent": [...], "labels": {...},
         "training": [{"image": "imagesTr/x.nii.gz", "label": "labelsTr/x.nii.gz", "fold": 3,
                       "subject": "x"}, ...]}

    Folds come from :func:`monai.data.partition_dataset` (``shuffle=True, seed=seed``) over subjects, so one
    subject never falls in two folds. The parameters are stored in ``output_dir/prep.json``; a second call with
    the same parameters and sources returns at once when every output exists.

    Args:
        msd_dir: folder with ``imagesTr/`` and ``labelsTr/`` (same file names in both).
        output_dir: output folder (must differ from ``msd_dir``).
        box: output shape ``(slices, height, width)``; ``None`` picks it from the label extent.
        merge_labels: merge labels 1 and 2 into one hippocampus mask (value 1).
        num_folds: number of cross-validation folds; ``None``: no folds (an evaluation set of any size: the items
            get no ``"fold"`` and the datalist's ``"num_folds"`` is ``null``).
        seed: fold shuffling seed.
        allow_label_loss: accept a ``box`` smaller than the label extent (label voxels are cut off).
        subject_fn: maps a file stem to a subject id (MSD gives none: by default each file is one subject).

    Returns:
        the path of ``datalist.json``.

    Raises:
        FileNotFoundError: when ``imagesTr`` / ``labelsTr`` or a label file is missing.
        ValueError: when a pair is invalid (the message names the file), the box is too small for the labels,
            or there are fewer subjects than folds.

    Example::

        datalist = prepare_msd_folder(default_data_dir() / "Task04_Hippocampus", "/tmp/hippo_prep")
        train, test = load_datalist_folds(datalist, fold=0)
    """
    msd_dir, output_dir = Path(msd_dir).resolve(), Path(output_dir).resolve()
    if msd_dir == output_dir:
        raise ValueError(f"output_dir must differ from msd_dir ({msd_dir}); the sources would be overwritten.")
    requested_box = list(_as_box(box)) if box is not None else None
    pairs = _msd_pairs(msd_dir)
    subject_fn = subject_fn or (lambda stem: stem)
    # content hashes, not sizes: a same-size edit of an uncompressed .nii must invalidate the cache
    sources = [[ip.name, _content_sha1(ip), _content_sha1(lp)] for ip, lp in pairs]
    params = {
        "version": _PREP_VERSION,
        "msd_dir": str(msd_dir),
        "box": requested_box,
        "merge_labels": bool(merge_labels),
        "num_folds": None if num_folds is None else int(num_folds),
        "seed": int(seed),
        "allow_label_loss": bool(allow_label_loss),
        "subjects": [subject_fn(_stem(ip)) for ip, _ in pairs],
        "sources_sha1": hashlib.sha1(json.dumps(sources).encode()).hexdigest(),
    }
    datalist_path, prep_path = output_dir / "datalist.json", output_dir / "prep.json"
    if prep_path.is_file() and datalist_path.is_file():
        try:
            done = json.loads(prep_path.read_text()).get("params") == params
            items = json.loads(datalist_path.read_text())["training"] if done else []
        except (json.JSONDecodeError, KeyError):
            done, items = False, []
        if done and len(items) == len(pairs) and all(
            (output_dir / it[k]).is_file() for it in items for k in ("image", "label")
        ):
            logger.info("%s is up to date (same parameters), nothing to do.", output_dir)
            return datalist_path

    # pass 1: validate everything and measure the labels; nothing is written yet
    fold_of = _folds(params["subjects"], num_folds, seed)
    shapes, sizes, empty = [], [], []
    for ip, lp in pairs:
        _, lab = load_pair(ip, lp)
        data = np.asanyarray(lab.dataobj)
        shapes.append(data.shape)
        bounds = _bbox(data)
        if bounds is None:
            empty.append(lp.name)
        else:
            sizes.append(bounds[1] - bounds[0] + 1)
    summary = _extent_summary(shapes, sizes, empty)
    chosen_box = tuple(requested_box) if requested_box is not None else default_box(summary["extent"])
    logger.info(
        "label extent over %d volumes: %s (volume shapes %s to %s); box: %s (axis %d = slices of %d x %d)",
        len(pairs), summary["extent"], summary["min_shape"], summary["max_shape"], chosen_box, SLICE_AXIS,
        chosen_box[1], chosen_box[2],
    )  # fmt: skip
    if any(b % 8 for b in chosen_box[1:]):
        logger.warning("in-plane box sizes %s are not multiples of 8 (needed by a 4-level U-Net).", chosen_box[1:])
    too_small = np.array(summary["extent"]) > np.array(chosen_box)
    if too_small.any():
        msg = f"box {chosen_box} is smaller than the label extent {summary['extent']} of {msd_dir}."
        if not allow_label_loss:
            raise ValueError(msg + " Use a larger box or allow_label_loss=True.")
        logger.warning(msg + " Label voxels will be cut off.")

    # pass 2: write
    if prep_path.exists():
        prep_path.unlink()  # an interrupted run must not look complete
    (output_dir / "imagesTr").mkdir(parents=True, exist_ok=True)
    (output_dir / "labelsTr").mkdir(parents=True, exist_ok=True)
    training = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # empty labels were reported in pass 1
        for (ip, lp), subject in zip(pairs, params["subjects"]):
            img, lab = fit_to_box(
                *load_pair(ip, lp), box=chosen_box, merge_labels=merge_labels, allow_label_loss=allow_label_loss
            )
            name = _stem(ip) + ".nii.gz"
            nib.save(img, str(output_dir / "imagesTr" / name))
            nib.save(lab, str(output_dir / "labelsTr" / name))
            item = {"image": f"imagesTr/{name}", "label": f"labelsTr/{name}", "subject": subject}
            if fold_of is not None:
                item["fold"] = fold_of[subject]
            training.append(item)
    labels = {"0": "background", "1": "hippocampus"} if merge_labels else {
        "0": "background", "1": "anterior", "2": "posterior"}  # fmt: skip
    datalist = {
        "name": MSD_TASK,
        "box": list(chosen_box),
        "slice_axis": SLICE_AXIS,
        "merge_labels": bool(merge_labels),
        "num_folds": params["num_folds"],
        "seed": int(seed),
        "label_extent": summary["extent"],
        "labels": labels,
        "numTraining": len(training),
        "training": training,
    }
    datalist_path.write_text(json.dumps(datalist, indent=2))
    prep_path.write_text(json.dumps({"params": params, "box": list(chosen_box), "summary": summary}, indent=2))
    logger.info("wrote %d volumes and %s", len(training), datalist_path)
    return datalist_path


def load_datalist_folds(
    datalist_path: PathLike, fold: int, num_folds: int = 5
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """
    Training and test items of one cross-validation fold of a datalist written by :func:`prepare_msd_folder`.

    Args:
        datalist_path: ``datalist.json``; relative paths are resolved against its folder.
        fold: the test fold, ``0 <= fold < num_folds``; every other fold is training.
        num_folds: expected number of folds (checked against the datalist).

    Returns:
        ``(train_items, test_items)``: MONAI data dicts with absolute ``"image"`` / ``"label"`` paths.

    Raises:
        FileNotFoundError: when ``datalist_path`` does not exist.
        ValueError: when the datalist is not valid JSON, has no ``"training"`` list, an item has no integer
            ``"fold"``, ``fold`` is out of range or ``num_folds`` differs from the datalist.

    Example::

        train, test = load_datalist_folds("/tmp/hippo_prep/datalist.json", fold=0)
        train, val = split_validation(train, fraction=0.125, seed=0)
    """
    datalist_path = Path(datalist_path)
    meta = read_datalist(datalist_path)
    if "num_folds" in meta and meta["num_folds"] is None:
        raise ValueError(
            f"{datalist_path} was prepared without folds (an evaluation set, num_folds=None); prepare it with "
            "num_folds >= 2 to split it into folds."
        )
    stored = int(meta.get("num_folds", num_folds))
    if stored != num_folds:
        raise ValueError(f"{datalist_path} has {stored} folds, but num_folds={num_folds} was asked.")
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in [0, {num_folds}), got {fold}.")
    items = load_decathlon_datalist(datalist_path, True, "training", base_dir=datalist_path.parent)
    folds = []
    for i, it in enumerate(items):
        try:
            folds.append(int(it["fold"]))
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"item {i} of datalist {datalist_path} has no integer 'fold' (got {it.get('fold')!r}); expected "
                "items {'image', 'label', 'fold'} as prepare_msd_folder writes them."
            ) from None
    train = [it for it, k in zip(items, folds) if k != fold]
    test = [it for it, k in zip(items, folds) if k == fold]
    return train, test


def read_datalist(datalist_path: PathLike) -> dict[str, Any]:
    """
    The JSON content of a datalist, checked to hold a ``"training"`` list.

    Args:
        datalist_path: the datalist file (MSD / MONAI layout, e.g. written by :func:`prepare_msd_folder`).

    Returns:
        the parsed JSON object.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when it is not valid JSON or has no ``"training"`` list. The message names the file.
    """
    datalist_path = Path(datalist_path)
    if not datalist_path.is_file():
        raise FileNotFoundError(f"datalist not found: {datalist_path} (expected a datalist.json file).")
    try:
        meta = json.loads(datalist_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"datalist {datalist_path} is not valid JSON ({e}).") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("training"), list):
        raise ValueError(
            f"datalist {datalist_path} has no 'training' list; expected "
            '{"training": [{"image": ..., "label": ..., "fold": ...}, ...]}.'
        )
    return meta


def split_validation(
    items: Sequence[dict[str, Any]], fraction: float = 0.125, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """
    Split a validation set off training items, by subject (``"subject"`` key; else the image path).

    Args:
        items: data dicts, e.g. the training part of :func:`load_datalist_folds`.
        fraction: fraction of subjects for validation (at least one subject when ``fraction > 0``).
        seed: shuffling seed (:func:`monai.data.partition_dataset`).

    Returns:
        ``(train_items, val_items)``, subject-disjoint, in the input order.

    Raises:
        ValueError: when ``fraction`` is not in ``[0, 1)``.

    Example::

        train, val = split_validation(train, fraction=0.125, seed=0)
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}.")
    key = [str(it.get("subject", it["image"])) for it in items]
    subjects = sorted(set(key))
    n_val = 0 if fraction == 0 or len(subjects) < 2 else max(1, round(fraction * len(subjects)))
    n_val = min(n_val, len(subjects) - 1) if subjects else 0
    if n_val == 0:
        return list(items), []
    _, val_subjects = partition_dataset(subjects, ratios=[len(subjects) - n_val, n_val], shuffle=True, seed=seed)
    val_set = set(val_subjects)
    return [it for it, k in zip(items, key) if k not in val_set], [it for it, k in zip(items, key) if k in val_set]


# ----------------------------------------------------------------------------------------------------------------
# download
# ----------------------------------------------------------------------------------------------------------------


def download_msd_hippocampus(root_dir: PathLike, progress: bool = True) -> Path:
    """
    Download and extract MSD Task04_Hippocampus with MONAI (needs internet), unless it is already there.

    Uses :func:`monai.apps.utils.download_url` (md5-checked) and :func:`monai.apps.utils.extractall`, the two
    steps of :func:`monai.apps.download_and_extract`, with the URL and md5 that :class:`monai.apps.DecathlonDataset`
    knows. The tar is kept in ``root_dir`` so repeated calls do not download again, and nothing is downloaded when
    ``root_dir/Task04_Hippocampus`` already holds ``imagesTr`` and ``labelsTr`` volumes.

    Args:
        root_dir: folder to download into (created if needed).
        progress: show a download progress bar.

    Returns:
        ``root_dir/Task04_Hippocampus``, a folder :func:`prepare_msd_folder` accepts.

    Raises:
        RuntimeError: when the extracted folder has no ``imagesTr`` / ``labelsTr`` volumes.

    Example::

        msd_dir = download_msd_hippocampus("./data")
        prepare_msd_folder(msd_dir, "./data/hippocampus_prep")
    """
    from monai.apps import DecathlonDataset
    from monai.apps import utils as app_utils

    root = Path(root_dir).expanduser().resolve()
    dataset_dir = root / MSD_TASK

    def _complete() -> bool:
        return all((dataset_dir / d).is_dir() and _list_nifti(dataset_dir / d) for d in ("imagesTr", "labelsTr"))

    if _complete():
        logger.info("%s already exists, skipped downloading.", dataset_dir)
        return dataset_dir
    root.mkdir(parents=True, exist_ok=True)
    url, md5 = DecathlonDataset.resource[MSD_TASK], DecathlonDataset.md5[MSD_TASK]
    logger.info("downloading %s to %s", url, root)
    tar_path = root / f"{MSD_TASK}.tar"
    # the two steps of ``download_and_extract``, without its file-name look-up (an extra HTTP request that
    # needs the optional ``requests`` package); ``download_url`` checks the md5 and reuses a complete tar
    app_utils.download_url(url=url, filepath=tar_path, hash_val=md5, hash_type="md5", progress=progress)
    app_utils.extractall(filepath=tar_path, output_dir=root, has_base=True)
    if not _complete():
        raise RuntimeError(f"download of {url} did not produce {dataset_dir}/imagesTr and labelsTr volumes.")
    return dataset_dir
