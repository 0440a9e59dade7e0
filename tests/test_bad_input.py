"""Bad-input corpus: every entry point validates its input and names the file (issue 8).

The corpus is built in a temporary folder from copies of three real MSD Task04 volumes: a NaN / infinite voxel,
an affine mismatch, a label value 3, an empty label, a truncated .nii.gz, a text file named .nii.gz, a 0-byte file,
a 4D image, a 2-channel image, and datalists that are empty, leave a fold empty or mix in-plane sizes. Each case
goes through the Python entry points it applies to (data preparation, ``fold_split`` / ``all_items`` of a user
datalist, slicing, inference, conversion, the simulator); two cases go through the real bundle CLI.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_snn.bundle import load_scripts
from tests.conftest import HIPPO, REPO, require_data

_SCRIPTS = load_scripts(REPO / "bundles" / "hippocampus_snn")  # the bundle's task code
bu, hippo = _SCRIPTS.task, _SCRIPTS.hippocampus

GOOD = ("hippocampus_001", "hippocampus_004", "hippocampus_006")  # uint8 and float32 images, 3 in-plane sizes
BASE = "hippocampus_004"  # the volume the bad cases are made from

# case -> (which file of the pair is bad, phrase of the error message, lower case)
PAIR_CASES = {
    "nan": ("image", "nan/infinite voxel"),
    "inf": ("image", "nan/infinite voxel"),
    "affine": ("label", "affine mismatch"),
    "label3": ("label", "outside the expected set"),
    "truncated": ("image", "truncated"),
    "not_nifti": ("image", "not a readable nifti file"),
    "zero_bytes": ("image", "empty (0 bytes)"),
    "4d": ("image", "3d volume with one channel"),
    "2ch": ("image", "2 channels"),
}
IMAGE_CASES = [c for c, (bad, _) in PAIR_CASES.items() if bad == "image"]


def _save(data: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """``{case: (image, label)}``: the good copies under their names, and one pair per bad case."""
    require_data(HIPPO)
    root = tmp_path_factory.mktemp("bad_input")
    pairs: dict[str, tuple[Path, Path]] = {}
    for name in GOOD:
        ip, lp = root / f"{name}_img.nii.gz", root / f"{name}_lab.nii.gz"
        shutil.copyfile(HIPPO / "imagesTr" / f"{name}.nii.gz", ip)
        shutil.copyfile(HIPPO / "labelsTr" / f"{name}.nii.gz", lp)
        pairs[name] = (ip, lp)
    src_img, src_lab = pairs[BASE]
    ref = nib.load(str(src_img))
    img = np.asarray(ref.dataobj, dtype=np.float32)
    lab = np.asarray(nib.load(str(src_lab)).dataobj).astype(np.uint8)
    aff = ref.affine
    for case, (bad, _) in [*PAIR_CASES.items(), ("empty_label", ("label", ""))]:
        ip, lp = root / f"{case}_img.nii.gz", root / f"{case}_lab.nii.gz"
        shutil.copyfile(src_img, ip)
        shutil.copyfile(src_lab, lp)
        target = ip if bad == "image" else lp
        if case in ("nan", "inf"):
            broken = img.copy()
            broken[18, 26, 19] = np.nan if case == "nan" else np.inf
            _save(broken, aff, target)
        elif case == "affine":
            shifted = aff.copy()
            shifted[:3, 3] += 2.0
            _save(lab, shifted, target)
        elif case == "label3":
            _save(np.where(lab == 2, 3, lab).astype(np.uint8), aff, target)
        elif case == "empty_label":
            _save(np.zeros_like(lab), aff, target)
        elif case == "truncated":
            raw = src_img.read_bytes()
            target.write_bytes(raw[: len(raw) // 2])
        elif case == "not_nifti":
            target.write_text("hippocampus volume, exported as text by mistake\n" * 20)
        elif case == "zero_bytes":
            target.write_bytes(b"")
        elif case == "4d":
            _save(np.stack([img, img, img], axis=-1), aff, target)
        elif case == "2ch":
            _save(np.stack([img, img], axis=-1), aff, target)
        pairs[case] = (ip, lp)
    return pairs


def _datalist(path: Path, pairs: list[tuple[Path, Path]], folds: list[int], num_folds: int = 2) -> Path:
    items = [{"image": str(i), "label": str(lab), "fold": f} for (i, lab), f in zip(pairs, folds)]
    path.write_text(json.dumps({"num_folds": num_folds, "training": items}))
    return path


def _bad_file(corpus, case: str) -> Path:
    ip, lp = corpus[case]
    return ip if PAIR_CASES[case][0] == "image" else lp


def _assert_names(err: pytest.ExceptionInfo, *paths: Path, phrase: str = "") -> str:
    msg = str(err.value)
    for p in paths:
        assert str(p) in msg, msg
    assert phrase in msg.lower(), msg
    return msg


# ------------------------------------------------------------------------------------------------ the validators
@pytest.mark.parametrize("case", IMAGE_CASES)
def test_load_image_names_the_file(corpus, case):
    with pytest.raises(ValueError) as err:
        hippo.load_image(_bad_file(corpus, case))
    _assert_names(err, _bad_file(corpus, case), phrase=PAIR_CASES[case][1])


@pytest.mark.parametrize("case", list(PAIR_CASES))
def test_load_pair_names_the_file(corpus, case):
    with pytest.raises(ValueError) as err:
        hippo.load_pair(*corpus[case])
    _assert_names(err, _bad_file(corpus, case), phrase=PAIR_CASES[case][1])


def test_good_copies_pass(corpus):
    for name in GOOD:
        img = hippo.load_image(corpus[name][0])
        assert img.get_data_dtype() == np.float32 and len(img.shape) == 3


# ------------------------------------------------------------------------------------------------ datalists
@pytest.mark.parametrize("case", list(PAIR_CASES))
def test_fold_split_validates_a_user_datalist(corpus, case, tmp_path):
    good = [corpus[n] for n in GOOD[:2]]
    datalist = _datalist(tmp_path / "my.json", [*good, corpus[case]], [0, 1, 1])
    with pytest.raises(ValueError) as err:
        bu.fold_split(str(datalist), fold=0, num_folds=2)
    _assert_names(err, _bad_file(corpus, case), datalist, phrase=PAIR_CASES[case][1])


@pytest.mark.parametrize("case", ["nan", "affine", "label3", "truncated", "2ch"])
def test_all_items_validates_a_user_datalist(corpus, case, tmp_path):
    datalist = _datalist(tmp_path / "my.json", [corpus[GOOD[0]], corpus[case]], [0, 1])
    with pytest.raises(ValueError) as err:
        bu.all_items(str(datalist))
    _assert_names(err, _bad_file(corpus, case), datalist, phrase=PAIR_CASES[case][1])


def test_empty_label_in_a_datalist_warns(corpus, tmp_path):
    datalist = _datalist(tmp_path / "my.json", [corpus[GOOD[0]], corpus[GOOD[1]], corpus["empty_label"]], [0, 1, 1])
    with pytest.warns(UserWarning, match=corpus["empty_label"][1].name):
        split = bu.fold_split(str(datalist), fold=0, num_folds=2)
    assert len(split["test"]) == 1 and len(split["train"]) + len(split["val"]) >= 2
    with pytest.warns(UserWarning, match=corpus["empty_label"][1].name):
        assert len(bu.all_items(str(datalist))) == 3


def test_empty_datalist_and_empty_fold(corpus, tmp_path):
    empty = _datalist(tmp_path / "empty.json", [], [])
    for fn in (lambda: bu.all_items(str(empty)), lambda: bu.fold_split(str(empty), fold=0, num_folds=2)):
        with pytest.raises(ValueError) as err:
            fn()
        _assert_names(err, empty, phrase="holds no items")
    one_fold = _datalist(tmp_path / "one_fold.json", [corpus[n] for n in GOOD[:2]], [1, 1])
    with pytest.raises(ValueError) as err:
        bu.fold_split(str(one_fold), fold=0, num_folds=2)
    _assert_names(err, one_fold, phrase="no test volume in fold 0")
    no_fold = tmp_path / "no_fold.json"
    no_fold.write_text(json.dumps({"training": [{"image": str(corpus[GOOD[0]][0]), "label": str(corpus[GOOD[0]][1])}]}))
    with pytest.raises(ValueError) as err:
        bu.fold_split(str(no_fold), fold=0, num_folds=2)
    _assert_names(err, no_fold, phrase="no integer 'fold'")
    not_json = tmp_path / "not_json.json"
    not_json.write_text("{training: [")
    with pytest.raises(ValueError) as err:
        bu.all_items(str(not_json))
    _assert_names(err, not_json, phrase="not valid json")
    with pytest.raises(ValueError, match="item list is empty"):
        bu.make_slices([])


def test_make_slices_rejects_mixed_in_plane_sizes(corpus):
    items = [{"image": str(i), "label": str(lab)} for i, lab in (corpus[GOOD[0]], corpus[GOOD[1]])]
    with pytest.raises(ValueError) as err:
        bu.make_slices(items)
    msg = _assert_names(err, corpus[GOOD[0]][0], corpus[GOOD[1]][0], phrase="prepare the folder")
    assert "51 x 35" in msg and "52 x 38" in msg, msg
    one = bu.make_slices(items[:1])  # a single volume slices fine
    assert len(one) == 35 and one[0]["image"].shape == (1, 51, 35)


@pytest.mark.parametrize("case", ["nan", "affine", "label3", "truncated", "4d"])
def test_prepare_data_names_the_file(corpus, case, tmp_path):
    msd = tmp_path / "msd"
    for sub in ("imagesTr", "labelsTr"):
        (msd / sub).mkdir(parents=True)
    for name in (GOOD[0], GOOD[2], case):
        ip, lp = corpus[name]
        shutil.copyfile(ip, msd / "imagesTr" / f"{name}.nii.gz")
        shutil.copyfile(lp, msd / "labelsTr" / f"{name}.nii.gz")
    with pytest.raises(ValueError) as err:
        bu.prepare_data(msd, tmp_path / "prep", num_folds=2)
    bad = "imagesTr" if PAIR_CASES[case][0] == "image" else "labelsTr"
    _assert_names(err, msd / bad / f"{case}.nii.gz", phrase=PAIR_CASES[case][1])
    assert not (tmp_path / "prep" / "datalist.json").exists()


# ------------------------------------------------------------------------------------------------ inference
def _inference_items(source):
    """The input list of the bundle's inference.json (the same call, the same check)."""
    load_image = hippo.load_image
    from monai_snn.bundle import input_items

    return input_items(source, (".nii", ".nii.gz"), check=lambda p: load_image(p, "inference input"))


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_inference_inputs_validated_before_anything_runs(corpus, case, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copyfile(corpus[GOOD[0]][0], src / "a_good.nii.gz")  # sorted first: it must not be processed either
    shutil.copyfile(_bad_file(corpus, case), src / f"b_{case}.nii.gz")
    with pytest.raises(ValueError) as err:
        _inference_items(src)
    msg = _assert_names(err, src / f"b_{case}.nii.gz", phrase=PAIR_CASES[case][1])
    assert "inference input" in msg, msg


def test_inference_inputs_file_folder_datalist_and_errors(corpus, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copyfile(corpus[GOOD[1]][0], src / "a_good.nii.gz")
    (src / "notes.txt").write_text("not an image")
    assert _inference_items(src) == [{"image": str(src / "a_good.nii.gz")}]
    assert _inference_items(src / "a_good.nii.gz") == [{"image": str(src / "a_good.nii.gz")}]
    (tmp_path / "list.json").write_text(json.dumps({"testing": [{"image": "in/a_good.nii.gz", "id": 7}]}))
    assert _inference_items(tmp_path / "list.json") == [{"image": str(src / "a_good.nii.gz"), "id": 7}]
    (tmp_path / "missing.json").write_text(json.dumps({"testing": ["in/nope.nii.gz"]}))
    with pytest.raises(FileNotFoundError, match="nope.nii.gz"):
        _inference_items(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _inference_items(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no .nii / .nii.gz file found in .*empty"):
        _inference_items(tmp_path / "empty")
    with pytest.raises(ValueError, match="notes.txt is not a .nii / .nii.gz file"):
        _inference_items(src / "notes.txt")


# ------------------------------------------------------------------------------------------------ API
@pytest.fixture(scope="module")
def real_slices(corpus) -> torch.Tensor:
    """Four real slices (scaled to [0, 1], cropped to 48 x 32) of the base volume: [4, 1, 48, 32]."""
    img = np.asarray(nib.load(str(corpus[BASE][0])).dataobj, dtype=np.float32)[14:22:2, :48, :32]
    img = (img - img.min()) / (img.max() - img.min())
    return torch.as_tensor(img)[:, None]


@pytest.fixture(scope="module")
def tiny_snn(real_slices):
    from monai_snn.conversion import convert_to_snn
    from monai_snn.networks import ConvertibleUNet

    torch.manual_seed(0)
    ann = ConvertibleUNet(2, 1, 1, channels=(2, 4)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an untrained ANN may have a dead layer: not tested here
        return ann, convert_to_snn(ann, [real_slices], num_steps=2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(thresholds=(math.inf,)), r"thresholds must all be positive and finite, got \(inf,\)"),
        (dict(thresholds=(math.nan,)), r"thresholds must all be positive and finite, got \(nan,\)"),
        (dict(thresholds=(math.inf, 1.0)), r"thresholds .*\(inf, 1.0\)"),
        (dict(v_threshold=math.inf), "v_threshold must be positive and finite, got inf"),
        (dict(v_threshold=math.nan), "v_threshold must be positive and finite, got nan"),
    ],
)
def test_neuron_rejects_non_finite_thresholds(kwargs, match):
    from monai_snn.neurons import SpikingNeuron

    with pytest.raises(ValueError, match=match):
        SpikingNeuron(**kwargs)


def test_convert_to_snn_rejects_bad_thresholds_and_calibration(tiny_snn, real_slices):
    from monai_snn.conversion import convert_to_snn

    ann, _ = tiny_snn
    with pytest.raises(ValueError, match=r"thresholds must all be positive and finite, got \(inf,\)"):
        convert_to_snn(ann, [real_slices], thresholds=(math.inf,))
    with pytest.raises(ValueError, match="thresholds must all be positive"):
        convert_to_snn(ann, [real_slices], thresholds=(1.0, -1.0))
    nan = real_slices.clone()
    nan[2, 0, 10, 10] = math.nan
    for normalization in ("connection", "threshold_balancing"):
        with pytest.raises(ValueError, match=r"calibration batch 1 holds 1 NaN/infinite value\(s\), first in sample 2"):
            convert_to_snn(ann, [real_slices, nan], normalization=normalization, num_steps=2)
    names = [f"slice_{i}.nii.gz" for i in range(len(nan))]
    with pytest.raises(ValueError, match=r"calibration batch 0 .*sample 2 \(from slice_2.nii.gz\)"):
        convert_to_snn(ann, [{"image": nan, "image_path": names}])
    with pytest.raises(ValueError, match=r"calibration batch 0 has dtype torch.int64.*x.float\(\)"):
        convert_to_snn(ann, [(real_slices * 255).long()])


def test_simulator_rejects_integer_and_non_finite_input(tiny_snn, real_slices):
    _, snn = tiny_snn
    with pytest.raises(TypeError, match=r"floating-point input tensor, got dtype torch.int64.*x.float\(\)"):
        snn((real_slices * 255).long())
    for bad in (math.nan, math.inf):
        x = real_slices.clone()
        x[0, 0, 3, 3] = bad
        with pytest.raises(ValueError, match=r"input holds 1 NaN/infinite value"):
            snn(x)
        with pytest.raises(ValueError, match=r"input holds 1 NaN/infinite value"):
            snn.forward_flow(x)
    assert torch.isfinite(snn(real_slices)).all()


# ------------------------------------------------------------------------------------------------ bundle CLI
def test_cli_inference_nan_voxel_fails_naming_the_file(corpus, tmp_path):
    from tests.test_bundle_hippocampus import _bundle, _require_models

    _require_models()
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copyfile(corpus["nan"][0], src / "hippocampus_nan.nii.gz")
    proc = _bundle(["common", "inference"], check=False, input_dir=src, output_dir=out)
    assert proc.returncode != 0
    assert str(src / "hippocampus_nan.nii.gz") in proc.stderr and "NaN/infinite voxel" in proc.stderr
    assert not out.exists() or not list(out.rglob("*.nii.gz"))


def test_cli_evaluate_datalist_affine_mismatch_fails_naming_the_file(corpus, tmp_path):
    from tests.test_bundle_hippocampus import _bundle, _require_models

    _require_models()
    datalist = _datalist(tmp_path / "my.json", [corpus[GOOD[0]], corpus["affine"]], [0, 1])
    proc = _bundle(["common", "evaluate"], check=False, datalist=datalist, output_dir=tmp_path / "out")
    assert proc.returncode != 0
    assert str(corpus["affine"][1]) in proc.stderr and "affine mismatch" in proc.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()
