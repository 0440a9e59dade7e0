#!/usr/bin/env python
"""
Hippocampus data preparation (thin CLI over the bundle's task code ``bundles/hippocampus_snn/scripts/hippocampus.py``).

Examples (from the repository root)::

    python data_prep/hippocampus.py msd --output_dir /tmp/hippo_prep
    python data_prep/hippocampus.py msd --output_dir /tmp/hippo_prep_2cls --keep_labels --box 32 56 48
    python data_prep/hippocampus.py crop --images t1/ --labels masks/ --output_dir crops --box 24 56 48 --side right
    python data_prep/hippocampus.py download --root_dir ./data

Boxes are ``slices height width`` in voxels along array axes 0, 1, 2 (axis 0 is the slice axis).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
try:
    from monai_snn.bundle import load_scripts
except ImportError:  # not installed: fall back to the repository checkout
    sys.path.insert(0, str(REPO))
    from monai_snn.bundle import load_scripts

hippo = load_scripts(REPO / "bundles" / "hippocampus_snn").hippocampus


def _paths(arg: list[str]) -> list[Path]:
    """Files given one by one, or every NIfTI file of a single folder (sorted)."""
    if len(arg) == 1 and Path(arg[0]).is_dir():
        folder = Path(arg[0])
        names = (p for p in folder.iterdir() if not p.name.startswith("."))
        return sorted(p for p in names if p.name.endswith((".nii.gz", ".nii")))
    return [Path(a) for a in arg]


def _msd(args: argparse.Namespace) -> None:
    datalist = hippo.prepare_msd_folder(
        args.msd_dir,
        args.output_dir,
        box=args.box,
        merge_labels=not args.keep_labels,
        num_folds=args.num_folds,
        seed=args.seed,
        allow_label_loss=args.allow_label_loss,
    )
    meta = json.loads(Path(datalist).read_text())
    folds = [sum(1 for it in meta["training"] if it["fold"] == k) for k in range(meta["num_folds"])]
    print(f"label extent (axes 0, 1, 2): {meta['label_extent']}")
    d, h, w = meta["box"]
    print(f"box: {meta['box']} (axis {meta['slice_axis']} = {d} slices of {h} x {w})")
    print(f"{meta['numTraining']} volumes, fold sizes {folds}; datalist: {datalist}")


def _crop(args: argparse.Namespace) -> None:
    images, labels = _paths(args.images), _paths(args.labels)
    written = hippo.crop_pairs_to_folder(
        images,
        labels,
        args.output_dir,
        box=args.box,
        side=args.side,
        structure_values=args.structure_values,
        allow_label_loss=args.allow_label_loss,
    )
    print(f"wrote {len(written)} {args.side}-side crops of {tuple(args.box)} voxels to {args.output_dir}")


def _download(args: argparse.Namespace) -> None:
    print(hippo.download_msd_hippocampus(args.root_dir))


def build_parser() -> argparse.ArgumentParser:
    data = hippo.default_data_dir()
    parser = argparse.ArgumentParser(
        description="Prepare hippocampus data: MSD Task04 fixed-box crops + folds, whole-brain crops, download.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    msd = sub.add_parser(
        "msd",
        help="fit MSD Task04 volumes to one box and write datalist.json with folds",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    msd.add_argument("--msd_dir", type=Path, default=data / hippo.MSD_TASK, help="folder with imagesTr/ and labelsTr/")
    msd.add_argument("--output_dir", type=Path, required=True, help="output folder")
    msd.add_argument(
        "--box", type=int, nargs=3, default=None, metavar=("D", "H", "W"),
        help="box (slices, height, width); default: label extent, in-plane rounded up to multiples of 8",
    )  # fmt: skip
    msd.add_argument("--keep_labels", action="store_true", help="keep labels 1/2 instead of merging them into 1")
    msd.add_argument("--num_folds", type=int, default=5, help="number of cross-validation folds")
    msd.add_argument("--seed", type=int, default=0, help="fold shuffling seed")
    msd.add_argument("--allow_label_loss", action="store_true", help="accept a box smaller than the label extent")
    msd.set_defaults(func=_msd)

    crop = sub.add_parser(
        "crop",
        help="crop a box around the right/left hippocampus of whole-brain volumes",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    crop.add_argument("--images", nargs="+", required=True, help="image files, or one folder")
    crop.add_argument("--labels", nargs="+", required=True, help="mask files (same order), or one folder")
    crop.add_argument("--output_dir", type=Path, required=True, help="output folder (imagesTr/, labelsTr/)")
    crop.add_argument("--box", type=int, nargs=3, default=[24, 56, 48], metavar=("D", "H", "W"), help="box in voxels")
    crop.add_argument("--side", choices=("right", "left"), default="right", help="subject's side (RAS+ world x)")
    crop.add_argument("--structure_values", type=int, nargs="+", default=None, help="mask values (default: all > 0)")
    crop.add_argument("--allow_label_loss", action="store_true", help="accept structures larger than the box")
    crop.set_defaults(func=_crop)

    dl = sub.add_parser(
        "download", help="download MSD Task04_Hippocampus (needs internet)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )  # fmt: skip
    dl.add_argument("--root_dir", type=Path, default=data, help="download folder")
    dl.set_defaults(func=_download)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        logging.getLogger("data_prep.hippocampus").error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
