"""Tests of the hippocampus bundle's data code (``bundles/hippocampus_snn/scripts/hippocampus.py``) and of
``data_prep/hippocampus.py`` on real MSD Task04 volumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_snn.bundle import load_scripts

REPO = Path(__file__).resolve().parents[1]
hippo = load_scripts(REPO / "bundles" / "hippocampus_snn").hippocampus
MSD = hippo.default_data_dir() / hippo.MSD_TASK
SUBSET_SIZE = 12


def _require_data() -> Path:
    if not (MSD / "imagesTr").is_dir() or not (MSD / "labelsTr").is_dir():
        msg = f"MSD Task04 data not found at {MSD} (set MONAI_SNN_DATA)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return MSD


@pytest.fixture(scope="module")
def msd_dir() -> Path:
    return _require_data()


@pytest.fixture(scope="module")
def subset_dir(msd_dir, tmp_path_factory) -> Path:
    """12 real pairs, symlinked into an MSD-layout folder."""
    root = tmp_path_factory.mktemp("msd_subset")
    names = [p.name for p in sorted((msd_dir / "imagesTr").glob("hippocampus_*.nii.gz"))[:SUBSET_SIZE]]
    assert len(names) == SUBSET_SIZE, names
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir()
        for n in names:
            (root / sub / n).symlink_to(msd_dir / sub / n)
    return root


def _real(msd_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Image]:
    img = nib.load(str(msd_dir / "imagesTr" / name))
    lab = nib.load(str(msd_dir / "labelsTr" / name))
    return img.get_fdata(dtype=np.float32), np.asarray(lab.dataobj).astype(np.uint8), img


def _world(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def _world_set(affine: np.ndarray, mask: np.ndarray, values: np.ndarray) -> set:
    ijk = np.argwhere(mask)
    xyz = np.round(_world(affine, ijk.astype(float)), 3)
    return {(*p, int(v)) for p, v in zip(map(tuple, xyz), values[mask])}


# ---------------------------------------------------------------------------------------------------------------
# load_pair validation
# ---------------------------------------------------------------------------------------------------------------


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MONAI_SNN_DATA", str(tmp_path))
    assert hippo.default_data_dir() == tmp_path
    monkeypatch.delenv("MONAI_SNN_DATA")
    assert hippo.default_data_dir() == (REPO.parent / "shared" / "data").resolve()


def test_load_pair_ok(msd_dir):
    for name in ("hippocampus_001.nii.gz", "hippocampus_004.nii.gz"):  # uint8 and float32 images
        img, lab = hippo.load_pair(msd_dir / "imagesTr" / name, msd_dir / "labelsTr" / name)
        ref = nib.load(str(msd_dir / "imagesTr" / name))
        assert img.shape == lab.shape == ref.shape
        assert img.get_data_dtype() == np.float32 and lab.get_data_dtype() == np.uint8
        np.testing.assert_allclose(img.affine, ref.affine)
        np.testing.assert_array_equal(np.asarray(img.dataobj), ref.get_fdata(dtype=np.float32))
        assert set(np.unique(np.asarray(lab.dataobj))) == {0, 1, 2}


def _save(data, affine, path: Path) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


@pytest.mark.parametrize(
    "case, bad, phrase",
    [
        ("truncated", "image", "truncated"),
        ("not_nifti", "image", "not a readable nifti"),
        ("shape", "label", "shape mismatch"),
        ("affine", "label", "affine mismatch"),
        ("missing_label", "label", "not found"),
        ("values", "label", "[5]"),
        ("4d", "image", "3d volume"),
        ("nan", "image", "nan"),
    ],
)
def test_load_pair_bad_inputs(msd_dir, tmp_path, case, bad, phrase):
    name = "hippocampus_001.nii.gz"
    img_data, lab_data, ref = _real(msd_dir, name)
    aff = ref.affine
    ip, lp = tmp_path / f"img_{case}.nii.gz", tmp_path / f"lab_{case}.nii.gz"
    _save(img_data, aff, ip)
    _save(lab_data, aff, lp)
    if case == "truncated":
        raw = (msd_dir / "imagesTr" / "hippocampus_004.nii.gz").read_bytes()
        ip.write_bytes(raw[: len(raw) // 2])
    elif case == "not_nifti":
        ip.write_bytes(b"this is not a nifti file" * 10)
    elif case == "shape":
        _save(lab_data[:-1], aff, lp)
    elif case == "affine":
        shifted = aff.copy()
        shifted[:3, 3] += 2.0
        _save(lab_data, shifted, lp)
    elif case == "missing_label":
        lp.unlink()
    elif case == "values":
        lab_data[lab_data == 2] = 5
        _save(lab_data, aff, lp)
    elif case == "4d":
        _save(np.stack([img_data, img_data], axis=-1), aff, ip)
    elif case == "nan":
        img_data[3, 4, 5] = np.nan
        _save(img_data, aff, ip)
    expected = FileNotFoundError if case == "missing_label" else ValueError
    with pytest.raises(expected) as err:
        hippo.load_pair(ip, lp)
    msg = str(err.value)
    assert str(ip if bad == "image" else lp) in msg, msg
    assert phrase in msg.lower(), msg


def test_load_pair_empty_mask_warns(msd_dir, tmp_path):
    img_data, lab_data, ref = _real(msd_dir, "hippocampus_001.nii.gz")
    ip = _save(img_data, ref.affine, tmp_path / "img.nii.gz")
    lp = _save(np.zeros_like(lab_data), ref.affine, tmp_path / "empty_lab.nii.gz")
    with pytest.warns(UserWarning, match="empty_lab.nii.gz"):
        img, lab = hippo.load_pair(ip, lp)
    assert np.asarray(lab.dataobj).sum() == 0


def test_load_pair_float_labels(msd_dir, tmp_path):
    img_data, lab_data, ref = _real(msd_dir, "hippocampus_001.nii.gz")
    ip = _save(img_data, ref.affine, tmp_path / "img.nii.gz")
    lp = _save(lab_data.astype(np.float32), ref.affine, tmp_path / "lab.nii.gz")
    _, lab = hippo.load_pair(ip, lp)
    np.testing.assert_array_equal(np.asarray(lab.dataobj), lab_data)


# ---------------------------------------------------------------------------------------------------------------
# whole-brain crops
# ---------------------------------------------------------------------------------------------------------------

BRAIN = (120, 140, 120)


def _brain(msd_dir: Path, lr_axis: int, offsets: tuple[tuple[int, int, int], tuple[int, int, int]]):
    """Synthetic whole-brain volume with two real hippocampus crops: block P (hippocampus_001) and a flipped
    copy of another subject (block Q, same label values)."""
    rng = np.random.default_rng(0)
    vol = rng.normal(50.0, 5.0, BRAIN).astype(np.float32)
    lab = np.zeros(BRAIN, np.uint8)
    blocks = []
    for (name, flip), off in zip((("hippocampus_001.nii.gz", False), ("hippocampus_004.nii.gz", True)), offsets):
        img_d, lab_d, _ = _real(msd_dir, name)
        if flip:
            img_d, lab_d = np.flip(img_d, lr_axis).copy(), np.flip(lab_d, lr_axis).copy()
        sl = tuple(slice(o, o + s) for o, s in zip(off, img_d.shape))
        vol[sl] = img_d + 200.0  # distinct from the background
        lab[sl] = lab_d
        blocks.append((off, img_d + 200.0, lab_d))
    return vol, lab, blocks


def _affine(kind: str) -> tuple[np.ndarray, int, int]:
    """Affine, array axis along world x, and sign of d(world x)/d(index)."""
    if kind == "RAS":
        return np.diag([1.0, 1.0, 1.0, 1.0]) + np.c_[np.zeros((4, 3)), [-60, -70, -60, 0]], 0, 1
    if kind == "LPS":  # x and y flipped, anisotropic spacing
        aff = np.diag([-1.2, -1.0, 0.9, 1.0])
        aff[:3, 3] = [72.0, 70.0, -54.0]
        return aff, 0, -1
    if kind == "permuted":  # world x runs along array axis 1, reversed
        aff = np.array([[0.0, -1.0, 0.0, 70.0], [1.0, 0.0, 0.0, -60.0], [0.0, 0.0, 1.1, -66.0], [0, 0, 0, 1.0]])
        return aff, 1, -1
    raise ValueError(kind)


def _check_crop(vol, lab, aff, block, crop_img, crop_lab, box):
    off, img_b, lab_b = block
    assert crop_img.shape == crop_lab.shape == tuple(box)
    ci, cl = np.asarray(crop_img.dataobj), np.asarray(crop_lab.dataobj)
    # the crop's voxel (0,0,0) is an integer voxel of the original grid, with the same world position
    start = np.linalg.solve(aff, crop_img.affine[:, 3])[:3]
    np.testing.assert_allclose(start, np.round(start), atol=1e-6)
    start = np.round(start).astype(int)
    np.testing.assert_allclose(crop_img.affine[:3, :3], aff[:3, :3])
    np.testing.assert_allclose(crop_img.affine, crop_lab.affine)
    np.testing.assert_allclose(_world(crop_img.affine, np.zeros((1, 3))), _world(aff, start[None].astype(float)))
    # every label voxel of the selected block is in the crop, at the same world position, and nothing else
    full_b = np.zeros_like(lab)
    full_b[tuple(slice(o, o + s) for o, s in zip(off, lab_b.shape))] = lab_b
    assert _world_set(crop_lab.affine, cl > 0, cl) == _world_set(aff, full_b > 0, full_b)
    # the image content is the original volume seen through the box (padding: volume minimum)
    pad = [(max(0, -s), max(0, s + b - n)) for s, b, n in zip(start, box, vol.shape)]
    padded = np.pad(vol, pad, constant_values=vol.min())
    sl = tuple(slice(s + p[0], s + p[0] + b) for s, p, b in zip(start, pad, box))
    np.testing.assert_array_equal(ci, padded[sl])
    # the structure is centred in the box (within one voxel)
    lo, hi = np.argwhere(cl).min(0), np.argwhere(cl).max(0)
    assert np.all(np.abs(lo - (np.array(box) - 1 - hi)) <= 1), (lo, hi, box)
    return start


@pytest.mark.parametrize("kind", ["RAS", "LPS", "permuted"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_crop_picks_subject_side(msd_dir, kind, side):
    aff, lr_axis, sign = _affine(kind)
    low, high = [10, 30, 40], [10, 30, 40]
    low[lr_axis], high[lr_axis] = 8, 70
    vol, lab, blocks = _brain(msd_dir, lr_axis, (tuple(low), tuple(high)))
    # block 0 sits at low indices along the left-right axis: smaller world x (right) when sign > 0
    right_block = blocks[0] if sign > 0 else blocks[1]
    left_block = blocks[1] if sign > 0 else blocks[0]
    box = (32, 56, 48)
    ci, cl = hippo.crop_box_around_structure(
        nib.Nifti1Image(vol, aff), nib.Nifti1Image(lab, aff), box=box, side=side
    )
    _check_crop(vol, lab, aff, right_block if side == "right" else left_block, ci, cl, box)


def test_crop_pads_outside_volume_and_files(msd_dir, tmp_path):
    aff, lr_axis, _ = _affine("RAS")
    vol, lab, blocks = _brain(msd_dir, lr_axis, ((0, 0, 0), (70, 30, 40)))  # right block at the corner
    box = (64, 80, 72)
    ip, lp = _save(vol, aff, tmp_path / "t1.nii.gz"), _save(lab, aff, tmp_path / "mask.nii.gz")
    ci, cl = hippo.crop_box_around_structure(ip, lp, box=box, side="right")
    start = _check_crop(vol, lab, aff, blocks[0], ci, cl, box)
    assert np.all(start < 0)  # the box leaves the volume on every axis...
    ci_d, cl_d = np.asarray(ci.dataobj), np.asarray(cl.dataobj)
    assert np.all(ci_d[: -start[0]] == vol.min()) and np.all(cl_d[: -start[0]] == 0)  # ...and is padded
    # CLI-side helper writes crops that overlay the original
    written = hippo.crop_pairs_to_folder([ip], [lp], tmp_path / "out", box=box, side="right")
    saved = nib.load(str(written[0][1]))
    np.testing.assert_allclose(saved.affine, cl.affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(saved.dataobj), cl_d)
    assert saved.get_data_dtype() == np.uint8 and nib.load(str(written[0][0])).get_data_dtype() == np.float32


def test_crop_box_too_small_and_bad_side(msd_dir):
    aff, lr_axis, _ = _affine("RAS")
    vol, lab, _ = _brain(msd_dir, lr_axis, ((8, 30, 40), (70, 30, 40)))
    img, msk = nib.Nifti1Image(vol, aff), nib.Nifti1Image(lab, aff)
    with pytest.raises(ValueError, match="does not fit"):
        hippo.crop_box_around_structure(img, msk, box=(8, 8, 8))
    with pytest.raises(ValueError, match="side"):
        hippo.crop_box_around_structure(img, msk, side="middle")
    with pytest.raises(ValueError, match="no structure"):
        hippo.crop_box_around_structure(img, nib.Nifti1Image(np.zeros_like(lab), aff))


# ---------------------------------------------------------------------------------------------------------------
# MSD preparation
# ---------------------------------------------------------------------------------------------------------------


def test_label_extent_and_default_box(subset_dir):
    labels = sorted((subset_dir / "labelsTr").iterdir())
    ext = hippo.label_extent(labels)
    manual = np.max([np.ptp(np.argwhere(np.asarray(nib.load(str(p)).dataobj)), axis=0) + 1 for p in labels], axis=0)
    assert ext["extent"] == manual.tolist()
    assert ext["max_shape"] == np.max([nib.load(str(p)).shape for p in labels], axis=0).tolist()
    assert ext["num_files"] == len(labels)
    box = hippo.default_box(ext["extent"])
    assert box[0] == ext["extent"][0] and all(b % 8 == 0 and b >= e for b, e in zip(box[1:], ext["extent"][1:]))
    assert hippo.default_box([27, 47, 35]) == (27, 48, 40)


def test_fit_to_box(msd_dir):
    name = "hippocampus_006.nii.gz"
    ip, lp = msd_dir / "imagesTr" / name, msd_dir / "labelsTr" / name
    img, lab = hippo.fit_to_box(ip, lp, (40, 64, 56), merge_labels=False)
    assert set(np.unique(np.asarray(lab.dataobj))) == {0, 1, 2}
    ref = nib.load(str(lp))
    assert _world_set(lab.affine, np.asarray(lab.dataobj) > 0, np.asarray(lab.dataobj)) == _world_set(
        ref.affine, np.asarray(ref.dataobj) > 0, np.asarray(ref.dataobj)
    )
    with pytest.raises(ValueError, match="does not fit"):
        hippo.fit_to_box(ip, lp, (8, 64, 56))


def test_prepare_msd_folder(subset_dir, tmp_path):
    out = tmp_path / "prep"
    datalist_path = hippo.prepare_msd_folder(subset_dir, out, seed=0)
    meta = json.loads(datalist_path.read_text())
    box = tuple(meta["box"])
    ext = hippo.label_extent(sorted((subset_dir / "labelsTr").iterdir()))["extent"]
    assert box == hippo.default_box(ext) and meta["label_extent"] == ext
    assert meta["num_folds"] == 5 and meta["merge_labels"] is True and meta["seed"] == 0
    items = meta["training"]
    assert len(items) == len(list((subset_dir / "imagesTr").iterdir()))
    for it in items:
        assert not Path(it["image"]).is_absolute() and it["image"].startswith("imagesTr/")
        img, lab = nib.load(str(out / it["image"])), nib.load(str(out / it["label"]))
        assert img.shape == lab.shape == box
        assert img.get_data_dtype() == np.float32 and lab.get_data_dtype() == np.uint8
        src_i, src_l = nib.load(str(subset_dir / it["image"])), nib.load(str(subset_dir / it["label"]))
        src_lab, lab_d = np.asarray(src_l.dataobj), np.asarray(lab.dataobj)
        assert set(np.unique(lab_d)) == {0, 1}
        assert int(lab_d.sum()) == int((src_lab > 0).sum())  # every label voxel preserved
        np.testing.assert_allclose(img.affine, lab.affine)
        # world coordinates of label voxels (and image values there) are unchanged
        assert _world_set(lab.affine, lab_d > 0, lab_d) == _world_set(src_l.affine, src_lab > 0, (src_lab > 0))
        v = np.argwhere(lab_d > 0)[0]
        src_v = np.round(np.linalg.solve(src_i.affine, np.r_[_world(img.affine, v[None].astype(float))[0], 1]))
        assert np.asarray(img.dataobj)[tuple(v)] == np.float32(src_i.get_fdata()[tuple(src_v[:3].astype(int))])
    # folds: 5, subject-disjoint, every subject once
    folds = {k: {it["subject"] for it in items if it["fold"] == k} for k in range(5)}
    assert all(folds[k] for k in range(5))
    assert sum(len(s) for s in folds.values()) == len({it["subject"] for it in items}) == len(items)
    train, test = hippo.load_datalist_folds(datalist_path, fold=2)
    assert {it["subject"] for it in test} == folds[2]
    assert not {it["subject"] for it in train} & folds[2] and len(train) + len(test) == len(items)
    assert all(Path(it["image"]).is_absolute() and Path(it["label"]).is_file() for it in train + test)
    tr, val = hippo.split_validation(train, fraction=0.125, seed=0)
    assert val and not {it["subject"] for it in tr} & {it["subject"] for it in val}
    assert len(tr) + len(val) == len(train)
    assert hippo.split_validation(train, 0.125, seed=0) == (tr, val)
    with pytest.raises(ValueError):
        hippo.load_datalist_folds(datalist_path, fold=5)
    with pytest.raises(ValueError):
        hippo.load_datalist_folds(datalist_path, fold=0, num_folds=4)

    # idempotent: same parameters -> nothing rewritten
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")}
    time.sleep(0.01)
    assert hippo.prepare_msd_folder(subset_dir, out, seed=0) == datalist_path
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")} == stamp
    # same seed elsewhere -> same folds; other parameters -> rewritten
    other = json.loads(hippo.prepare_msd_folder(subset_dir, tmp_path / "again", seed=0).read_text())
    assert [(it["subject"], it["fold"]) for it in other["training"]] == [(it["subject"], it["fold"]) for it in items]
    seeded = json.loads(hippo.prepare_msd_folder(subset_dir, tmp_path / "seed1", seed=1).read_text())
    assert [it["fold"] for it in seeded["training"]] != [it["fold"] for it in items]
    two = json.loads(hippo.prepare_msd_folder(subset_dir, out, merge_labels=False, box=(32, 56, 48)).read_text())
    assert two["box"] == [32, 56, 48] and two["merge_labels"] is False
    lab2 = nib.load(str(out / two["training"][0]["label"]))
    assert lab2.shape == (32, 56, 48) and set(np.unique(np.asarray(lab2.dataobj))) == {0, 1, 2}
    with pytest.raises(ValueError, match="label extent"):
        hippo.prepare_msd_folder(subset_dir, tmp_path / "small", box=(8, 16, 16))
    assert not (tmp_path / "small" / "imagesTr").exists()


def test_prepare_without_folds_takes_any_number_of_volumes(subset_dir, tmp_path):
    """An evaluation set (num_folds=None): one volume is enough, items carry no fold, splitting it is an error."""
    one = tmp_path / "one"
    for sub in ("imagesTr", "labelsTr"):
        (one / sub).mkdir(parents=True)
        first = sorted((subset_dir / sub).iterdir())[0]
        os.symlink(first.resolve(), one / sub / first.name)
    with pytest.raises(ValueError, match="cannot be split into 2 folds"):
        hippo.prepare_msd_folder(one, tmp_path / "folds", num_folds=2)
    datalist = hippo.prepare_msd_folder(one, tmp_path / "eval", num_folds=None)
    meta = json.loads(datalist.read_text())
    assert meta["num_folds"] is None and len(meta["training"]) == 1 and "fold" not in meta["training"][0]
    assert (tmp_path / "eval" / meta["training"][0]["image"]).is_file()
    with pytest.raises(ValueError, match="prepared without folds"):
        hippo.load_datalist_folds(datalist, fold=0, num_folds=2)
    # other parameters (folds) -> prepared again, with folds
    assert hippo.prepare_msd_folder(subset_dir, tmp_path / "eval", num_folds=2) == datalist
    assert json.loads(datalist.read_text())["num_folds"] == 2


def test_prepare_fails_before_writing(subset_dir, tmp_path):
    bad = tmp_path / "bad_msd"
    for sub in ("imagesTr", "labelsTr"):
        (bad / sub).mkdir(parents=True)
        for p in sorted((subset_dir / sub).iterdir())[:6]:
            (bad / sub / p.name).symlink_to(p.resolve())
    victim = sorted((bad / "labelsTr").iterdir())[-1]
    ref = nib.load(str(victim))
    data = np.asarray(ref.dataobj).copy()
    data[data == 2] = 5
    victim.unlink()
    _save(data, ref.affine, victim)
    with pytest.raises(ValueError, match=victim.name):
        hippo.prepare_msd_folder(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=victim.name):
        hippo.prepare_msd_folder(bad, tmp_path / "out")


# ---------------------------------------------------------------------------------------------------------------
# CLI and download
# ---------------------------------------------------------------------------------------------------------------


def test_cli_help_and_msd(subset_dir, tmp_path):
    script = REPO / "data_prep" / "hippocampus.py"
    res = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0 and "msd" in res.stdout and "download" in res.stdout, res.stderr
    out = tmp_path / "cli"
    res = subprocess.run(
        [sys.executable, str(script), "msd", "--msd_dir", str(subset_dir), "--output_dir", str(out), "--num_folds", "3",
         "--keep_labels"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    meta = json.loads((out / "datalist.json").read_text())
    assert meta["num_folds"] == 3 and meta["merge_labels"] is False and "box:" in res.stdout


def test_download_monkeypatched(msd_dir, tmp_path, monkeypatch):
    import monai.apps.utils as app_utils
    from monai.apps import DecathlonDataset

    calls = []
    names = [p.name for p in sorted((msd_dir / "imagesTr").glob("hippocampus_*.nii.gz"))[:3]]

    def fake_download_url(url, filepath="", hash_val=None, hash_type="md5", progress=True, **kwargs):
        """Stands in for the network: builds the MSD tar from local files (with a macOS '._' fork)."""
        calls.append((url, hash_val, hash_type))
        with tarfile.open(filepath, "w") as tar:
            for sub in ("imagesTr", "labelsTr"):
                for n in names:
                    tar.add(msd_dir / sub / n, arcname=f"Task04_Hippocampus/{sub}/{n}")
                junk = tmp_path / "junk"
                junk.write_bytes(b"\x00\x05\x16\x07")
                tar.add(junk, arcname=f"Task04_Hippocampus/{sub}/._{names[0]}")

    monkeypatch.setattr(app_utils, "download_url", fake_download_url)
    root = tmp_path / "root"
    out = hippo.download_msd_hippocampus(root, progress=False)
    assert out == root.resolve() / "Task04_Hippocampus"
    task = "Task04_Hippocampus"
    assert calls == [(DecathlonDataset.resource[task], DecathlonDataset.md5[task], "md5")]
    assert (root / "Task04_Hippocampus.tar").is_file()
    assert sorted(p.name for p in (out / "imagesTr").iterdir() if not p.name.startswith(".")) == sorted(names)

    # already there: no second download
    def no_network(*args, **kwargs):
        raise AssertionError("download_url must not be called when the folder exists")

    monkeypatch.setattr(app_utils, "download_url", no_network)
    assert hippo.download_msd_hippocampus(root) == out
    # the downloaded folder is accepted by prepare_msd_folder (the '._' files are ignored)
    meta = json.loads(hippo.prepare_msd_folder(out, tmp_path / "prep", num_folds=3).read_text())
    assert len(meta["training"]) == 3 and sorted(it["fold"] for it in meta["training"]) == [0, 1, 2]
