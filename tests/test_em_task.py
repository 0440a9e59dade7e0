"""ISBI 2012 EM task code of the ``em_snn`` bundle (``bundles/em_snn/scripts/em.py``): datalist and its validation,
hold-out and cross-validation splits, transforms (intensity, label mapping, patches, flips / rotations), the
sliding-window inferer, the metrics (functions and ``ConfusionMatrix`` handlers in a ``SupervisedEvaluator``).

The task code is loaded with ``monai_snn.bundle.load_scripts`` (a module name of its own per bundle), as the configs do.
Real-data cases read ``$MONAI_SNN_DATA/ISBI2012_EM`` (listing validates all 90 files, but only two slices are
transformed); bad inputs are built in ``tmp_path`` from copies of real files.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import DataLoader, partition_dataset
from monai.engines import SupervisedEvaluator
from monai.metrics import ConfusionMatrixMetric
from monai.transforms import Compose
from PIL import Image

from monai_snn.bundle import load_scripts
from tests.conftest import DATA, REPO, require_data

_SCRIPTS = load_scripts(REPO / "bundles" / "em_snn")
em = _SCRIPTS.em
EM_DIR = DATA / "ISBI2012_EM"


@pytest.fixture(scope="module")
def root() -> Path:
    return require_data(EM_DIR)


@pytest.fixture(scope="module")
def train_items(root):
    return em.em_datalist(root, "train")


# ------------------------------------------------------------------------------------------------------ metrics

# Two 4 x 4 images, 1 = cell interior (positive), 0 = membrane.
# A: tp 7, fp 2, tn 6, fn 1 (interior); membrane positive swaps fp / fn and tp / tn: tp 6, fp 1, fn 2.
PRED_A = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.float32)
LABEL_A = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 0, 1, 1], [0, 0, 0, 1]], dtype=torch.float32)
# B: all interior, the first row predicted membrane: tp 12, fp 0, tn 0, fn 4; membrane tp 0, fp 4, fn 0.
PRED_B = torch.tensor([[0, 0, 0, 0]] + [[1, 1, 1, 1]] * 3, dtype=torch.float32)
LABEL_B = torch.ones(4, 4)
EXPECTED_A = {"f1": 14 / 17, "jaccard": 7 / 10, "accuracy": 13 / 16, "membrane_f1": 12 / 15}
EXPECTED_B = {"f1": 24 / 28, "jaccard": 12 / 16, "accuracy": 12 / 16, "membrane_f1": 0 / 4}
# pooled: tp 19, fp 2, tn 6, fn 5; membrane tp 6, fp 5, fn 2
EXPECTED_POOLED = {"f1": 38 / 45, "jaccard": 19 / 26, "accuracy": 25 / 32, "membrane_f1": 12 / 19}
EXPECTED_MEAN = {f"{k}_mean": (EXPECTED_A[k] + EXPECTED_B[k]) / 2 for k in EXPECTED_A}


def test_scores_hand_computed():
    got = em.em_scores(PRED_A, LABEL_A)
    assert set(got) == set(em.METRIC_NAMES) | {f"{n}_mean" for n in em.METRIC_NAMES}
    for name, value in EXPECTED_A.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name
        assert got[f"{name}_mean"] == pytest.approx(value, abs=1e-6), name  # one image: mean == pooled
    # two images: batch-first tensor, list of channel-first tensors and numpy arrays give the same numbers
    batch_pred, batch_label = torch.stack([PRED_A, PRED_B])[:, None], torch.stack([LABEL_A, LABEL_B])[:, None]
    for pred, label in (
        (batch_pred, batch_label),
        ([PRED_A[None], PRED_B[None]], [LABEL_A[None], LABEL_B[None]]),
        (batch_pred.numpy(), batch_label.numpy().astype(np.uint8)),
    ):
        got = em.em_scores(pred, label)
        for name, value in (EXPECTED_POOLED | EXPECTED_MEAN).items():
            assert got[name] == pytest.approx(value, abs=1e-6), name
    per_image = em.em_per_image(batch_pred, batch_label)
    for name in em.METRIC_NAMES:
        assert per_image[name] == pytest.approx([EXPECTED_A[name], EXPECTED_B[name]], abs=1e-6), name


def test_scores_nan_and_monai_default_reduction():
    # a slice without membrane, predicted so: membrane F1 is 0 / 0 = NaN for it, and the mean skips it
    per_image = em.em_per_image([PRED_A, torch.ones(4, 4)], [LABEL_A, torch.ones(4, 4)])
    assert per_image["f1"] == pytest.approx([14 / 17, 1.0])
    assert per_image["membrane_f1"][0] == pytest.approx(4 / 5) and np.isnan(per_image["membrane_f1"][1])
    got = em.em_scores([PRED_A, torch.ones(4, 4)], [LABEL_A, torch.ones(4, 4)])
    assert got["membrane_f1_mean"] == pytest.approx(4 / 5) and got["membrane_f1"] == pytest.approx(12 / 15)
    assert np.isnan(em.em_scores(torch.ones(4, 4), torch.ones(4, 4))["membrane_f1"])
    # why not MONAI's default reduction="mean" on the one-hot: it averages the confusion matrices of both channels,
    # which for two complementary classes gives the accuracy, not the interior F1
    default = ConfusionMatrixMetric(include_background=True, metric_name="f1 score")
    batch_pred, batch_label = torch.stack([PRED_A, PRED_B])[:, None], torch.stack([LABEL_A, LABEL_B])[:, None]
    default(em.em_one_hot(batch_pred), em.em_one_hot(batch_label))
    assert float(default.aggregate()[0]) == pytest.approx(25 / 32)


def test_metric_input_errors():
    with pytest.raises(ValueError, match="pred must be binary.*sigmoid and threshold 0.5"):
        em.em_scores(PRED_A * 0.7, LABEL_A)
    with pytest.raises(ValueError, match=r"label must be binary \{0, 1\}.*\[255.0\]"):
        em.em_scores(PRED_A, LABEL_A * 255)
    with pytest.raises(ValueError, match="differ in shape"):
        em.em_scores(PRED_A, LABEL_A[:3])
    with pytest.raises(ValueError, match="2 predictions but 1 labels"):
        em.em_scores([PRED_A, PRED_B], [LABEL_A])
    with pytest.raises(ValueError, match="expected 2D binary maps"):
        em.em_scores(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="unknown metric name"):
        em.em_metric_handler("dice")
    with pytest.raises(ValueError, match="reduction"):
        em.em_metrics(reductions=["median"])
    with pytest.raises(ValueError, match="sigmoid"):
        em.SelectClass(em.INTERIOR, lambda o: o)((torch.rand(1, 1, 4, 4), LABEL_A[None, None]))


def test_metric_handlers_in_evaluator():
    """Logits -> eval_postprocessing (sigmoid, >= 0.5) -> ConfusionMatrix handlers == the hand-computed scores."""
    data = [{"image": 4.0 * p[None] - 2.0, "label": y[None]} for p, y in ((PRED_A, LABEL_A), (PRED_B, LABEL_B))]
    key = em.em_metrics("val_", names=["f1"])
    extra = em.em_metrics("val_", names=["jaccard", "accuracy", "membrane_f1"], reductions=["pooled", "mean"])
    extra |= em.em_metrics("val_", names=["f1"], reductions=["mean"])
    assert sorted(key) == ["val_f1"]
    assert sorted(extra) == sorted(
        [f"val_{n}{s}" for n in ("jaccard", "accuracy", "membrane_f1") for s in ("", "_mean")] + ["val_f1_mean"]
    )
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(data, batch_size=2),
        network=torch.nn.Identity(),
        postprocessing=em.eval_postprocessing(),
        key_val_metric=key,
        additional_metrics=extra,
    )
    evaluator.run()
    state = evaluator.state
    for name, value in (EXPECTED_POOLED | EXPECTED_MEAN).items():
        assert state.metrics[f"val_{name}"] == pytest.approx(value, abs=1e-6), name
    assert state.best_metric == pytest.approx(38 / 45, abs=1e-6)
    # per-image confusion matrices [tp, fp, tn, fn] of the interior and membrane channels
    assert state.metric_details["val_f1"][:, 0].tolist() == [[7, 2, 6, 1], [12, 0, 0, 4]]
    assert state.metric_details["val_membrane_f1"][:, 0].tolist() == [[6, 1, 7, 2], [0, 4, 12, 0]]


# -------------------------------------------------------------------------------------------------- datalist


def test_datalist_real(root, train_items):
    assert [d["slice"] for d in train_items] == list(range(30))
    for d in train_items:
        assert Path(d["image"]) == root.resolve() / "train" / "image" / f"{d['slice']}.png"
        assert Path(d["label"]) == root.resolve() / "train" / "label" / f"{d['slice']}.png"
    test_items = em.em_datalist(root, "test")
    assert [d["slice"] for d in test_items] == list(range(30))
    assert all(set(d) == {"image", "slice"} and "/test/image/" in d["image"] for d in test_items)
    with pytest.raises(ValueError, match="split must be one of"):
        em.em_datalist(root, "val")


def _mini_em(root: Path, tmp_path: Path) -> Path:
    """An ISBI2012_EM copy with training slices 0 and 1."""
    out = tmp_path / "ISBI2012_EM"
    for sub in ("image", "label"):
        (out / "train" / sub).mkdir(parents=True)
        for k in (0, 1):
            shutil.copy(root / "train" / sub / f"{k}.png", out / "train" / sub / f"{k}.png")
    return out


def _edit(path: Path, fn, **save) -> None:
    with Image.open(path) as im:
        im.load()
        new = fn(im)
    new.save(path, **save)


def _label128(im):
    arr = np.asarray(im).copy()
    arr[100:110, 100:110] = 128
    return Image.fromarray(arr, mode="L")


def _as_jpeg(path: Path) -> None:
    _edit(path, lambda im: im, format="JPEG")


def _as_16bit(path: Path) -> None:
    _edit(path, lambda im: Image.fromarray(np.asarray(im).astype(np.uint16) * 256))


# case -> (file to break, relative to train/; what is done; exception; phrase of the message; path named)
BAD_CASES = {
    "size_mismatch": (
        "label/1.png",
        lambda p: _edit(p, lambda im: im.crop((0, 0, 500, 512))),
        ValueError,
        r"is 512x500 \(H x W\) but its image .* is 512x512",
        "label/1.png",
    ),
    "label_128": ("label/1.png", lambda p: _edit(p, _label128), ValueError, r"values \[128\] outside", "label/1.png"),
    "missing_label": ("label/1.png", lambda p: p.unlink(), FileNotFoundError, "has no label", "image/1.png"),
    "label_without_image": ("image/1.png", lambda p: p.unlink(), FileNotFoundError, "has no image", "label/1.png"),
    "colour_image": (
        "image/1.png",
        lambda p: _edit(p, lambda im: im.convert("RGB")),
        ValueError,
        "8-bit greyscale PNG .* colour image with 3 channels",
        "image/1.png",
    ),
    "sixteen_bit": ("image/1.png", _as_16bit, ValueError, "not 8-bit grey", "image/1.png"),
    "jpeg_named_png": ("image/1.png", _as_jpeg, ValueError, "expected a PNG file, got JPEG", "image/1.png"),
    "unreadable": (
        "label/1.png",
        lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n not really"),
        ValueError,
        "not a readable image",
        "label/1.png",
    ),
    "zero_bytes": ("image/1.png", lambda p: p.write_bytes(b""), ValueError, "empty", "image/1.png"),
    "bad_name": (
        "image/1_predict.png",
        lambda p: shutil.copy(p.with_name("1.png"), p),
        ValueError,
        "cannot tell its slice number",
        "image/1_predict.png",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_datalist_bad_inputs(root, tmp_path, case):
    mini = _mini_em(root, tmp_path)
    assert [d["slice"] for d in em.em_datalist(mini)] == [0, 1]
    rel, breaker, error, phrase, named = BAD_CASES[case]
    breaker(mini / "train" / rel)
    with pytest.raises(error, match=phrase) as info:
        em.em_datalist(mini)
    assert str(mini.resolve() / "train" / named) in str(info.value)


def test_datalist_empty_and_missing_folders(root, tmp_path):
    mini = _mini_em(root, tmp_path)
    (mini / "train" / "image" / "notes.txt").write_text("not an image: ignored")
    assert len(em.em_datalist(mini)) == 2
    for p in (mini / "train" / "image").glob("*.png"):
        p.unlink()
    with pytest.raises(FileNotFoundError, match="no image files in") as info:
        em.em_datalist(mini)
    assert str(mini.resolve() / "train" / "image") in str(info.value)
    with pytest.raises(FileNotFoundError, match="folder not found") as info:
        em.em_datalist(mini, "test")
    assert str(mini.resolve() / "test" / "image") in str(info.value)


# ------------------------------------------------------------------------------------------------------ splits


def _slices(parts):
    return {k: [d["slice"] for d in v] for k, v in parts.items()}


def test_holdout_split(train_items, root):
    parts = em.holdout_split(train_items)
    assert _slices(parts) == {"train": list(range(22)), "val": [22, 23, 24], "test": [25, 26, 27, 28, 29]}
    assert parts["test"][0] == train_items[25]
    custom = em.holdout_split(train_items, test_slices=[0, 1], val_slices=[])
    assert _slices(custom)["val"] == [] and _slices(custom)["train"] == list(range(2, 30))
    with pytest.raises(ValueError, match=r"slices \[24\] are both validation and test"):
        em.holdout_split(train_items, test_slices=range(24, 30))
    with pytest.raises(ValueError, match=r"test slices \[30\] are not among the items"):
        em.holdout_split(train_items, test_slices=[29, 30])
    with pytest.raises(ValueError, match="has no label"):
        em.holdout_split(em.em_datalist(root, "test"))
    with pytest.raises(ValueError, match="slice 3 appears twice"):
        em.holdout_split(train_items + train_items[3:4])


def test_cv_split(train_items):
    folds = [_slices(em.cv_split(train_items, fold)) for fold in range(5)]
    tests = [f["test"] for f in folds]
    assert sorted(k for t in tests for k in t) == list(range(30))  # the 5 test folds partition the 30 slices
    assert all(len(t) == 6 for t in tests)
    # the folds are MONAI's partition_dataset(shuffle=True, seed=0) of the slices
    assert tests == [sorted(p) for p in partition_dataset(list(range(30)), num_partitions=5, shuffle=True, seed=0)]
    for f in folds:
        assert len(f["train"]) == 21 and len(f["val"]) == 3
        assert sorted(f["train"] + f["val"] + f["test"]) == list(range(30))  # disjoint, complete
    assert sorted(k for f in folds for k in f["val"]) == sorted({k for f in folds for k in f["val"]})  # val disjoint
    # seed-stable; another seed gives other folds
    assert [_slices(em.cv_split(train_items, fold, seed=0)) for fold in range(5)] == folds
    assert _slices(em.cv_split(train_items, 0, seed=1))["test"] != folds[0]["test"]
    assert len(em.cv_split(train_items, 2, num_val=0)["train"]) == 24
    with pytest.raises(ValueError, match="fold must be in"):
        em.cv_split(train_items, 5)
    with pytest.raises(ValueError, match="num_val must be in"):
        em.cv_split(train_items, 0, num_val=24)
    with pytest.raises(ValueError, match="num_folds"):
        em.cv_split(train_items, 0, num_folds=31)


# ------------------------------------------------------------------------------------------------- transforms


def _pixels(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def test_eval_transforms_real_slice(train_items, root):
    item = train_items[0]
    d = em.eval_transforms()(item)
    image, label = d["image"], d["label"]
    assert image.shape == label.shape == (1, 512, 512)
    assert image.dtype == label.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    # PILReader's reverse_indexing: (C, W, H), the PNG's pixels transposed; intensities / 255
    raw, lab = _pixels(item["image"]), _pixels(item["label"])
    assert torch.allclose(image[0].as_tensor(), torch.from_numpy(raw.T / 255.0).float(), atol=1e-6)
    # label 255 (cell interior) -> 1, 0 (membrane) -> 0
    assert torch.equal(label[0].as_tensor(), torch.from_numpy((lab.T == 255).astype(np.float32)))
    assert label.unique().tolist() == [0.0, 1.0] and 0.7 < float(label.mean()) < 0.85  # about 78 % interior
    plain = em.eval_transforms(reverse_indexing=False)(item)
    assert torch.allclose(plain["image"][0].as_tensor(), torch.from_numpy(raw / 255.0).float(), atol=1e-6)
    unlabelled = em.eval_transforms(with_label=False)(em.em_datalist(root, "test")[0])
    assert set(unlabelled) == {"image", "slice"} and unlabelled["image"].shape == (1, 512, 512)


def _raised(fn, data, phrase: str) -> str:
    """Run ``fn(data)``; MONAI's Compose wraps a transform's error in a RuntimeError: return the ValueError's text."""
    with pytest.raises(RuntimeError) as info:
        fn(data)
    cause = info.value
    while cause is not None and not isinstance(cause, ValueError):
        cause = cause.__cause__
    assert cause is not None, f"no ValueError in the chain of {info.value!r}"
    assert re.search(phrase, str(cause)), str(cause)
    return str(cause)


def test_transforms_reject_bad_files(train_items, tmp_path):
    item = train_items[1]
    colour = tmp_path / "colour.png"
    Image.open(item["image"]).convert("RGB").save(colour)
    chain = em.eval_transforms()
    message = _raised(chain, item | {"image": str(colour)}, r"expected 1 channel \(grey\), got 3 channels \(colour\)")
    assert str(colour) in message
    bad_label = tmp_path / "label128.png"
    _label128(Image.open(item["label"])).save(bad_label)
    assert str(bad_label) in _raised(chain, item | {"label": str(bad_label)}, r"values \[128.0\] outside")
    with pytest.raises(ValueError, match="'label' of slice 7: values"):  # without file metadata: the slice
        em.BinarizeLabeld("label")({"label": torch.full((1, 2, 2), 3.0), "slice": 7})
    with pytest.raises(ValueError, match="square patch"):
        em.train_transforms(patch_size=(128, 64))


def test_patch_sampling_real_slice(train_items):
    chain = em.train_transforms(num_samples=3)
    chain.set_random_state(seed=0)
    patches = chain(train_items[2])
    assert len(patches) == 3
    for p in patches:
        for key in ("image", "label"):
            assert p[key].shape == (1, 128, 128) and p[key].dtype == torch.float32
        assert 0.0 <= float(p["image"].min()) and float(p["image"].max()) <= 1.0
        assert set(p["label"].unique().tolist()) <= {0.0, 1.0}
    again = em.train_transforms(num_samples=3)
    again.set_random_state(seed=0)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(again(train_items[2]), patches))


def _find(patch: torch.Tensor, image: torch.Tensor) -> tuple[int, bool, int, int]:
    """(k, flipped, row, col): the dihedral transform and position that map a crop of ``image`` onto ``patch``."""
    size = patch.shape[-1]
    windows = image.unfold(0, size, 1).unfold(1, size, 1)  # [rows, cols, size, size]
    found = []
    for k in range(4):
        for flipped in (False, True):
            # undo: patch = rot90(flip(crop), k) -> crop = flip(rot90(patch, -k))
            crop = torch.rot90(patch, -k, (0, 1))
            crop = torch.flip(crop, (0,)) if flipped else crop
            hits = (windows == crop).flatten(2).all(-1).nonzero().tolist()
            found += [(k, flipped, r, c) for r, c in hits]
    assert len(found) >= 1, "patch is no rotated / flipped crop of the image"
    return found[0]


def test_flips_and_rotations_keep_alignment():
    """Random crops, flips and 90-degree rotations move image and label together (label = image > 0.5)."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 40, 40, generator=g)
    data = {"image": image, "label": (image > 0.5).float()}
    chain = Compose(em.augment_transforms(patch_size=(16, 16), num_samples=24, flip_prob=0.5, rotate_prob=0.5))
    chain.set_random_state(seed=0)
    ops = set()
    for p in chain(data):
        assert p["image"].shape == p["label"].shape == (1, 16, 16) and p["label"].dtype == torch.float32
        assert torch.equal(p["label"].as_tensor(), (p["image"].as_tensor() > 0.5).float())
        k, flipped, r, c = _find(p["image"][0].as_tensor(), image[0])
        crop = data["label"][0, r : r + 16, c : c + 16]
        crop = torch.flip(crop, (0,)) if flipped else crop
        assert torch.equal(p["label"][0].as_tensor(), torch.rot90(crop, k, (0, 1)))
        # a flip on both axes is a 180-degree rotation: count the dihedral element, not the way it was reached
        ops.add((k, flipped))
    assert len(ops) >= 4 and (0, False) in ops  # identity and several non-trivial transforms were drawn


def test_sliding_window_identity(train_items):
    image = em.eval_transforms(with_label=False)({"image": train_items[0]["image"]})["image"][None].as_tensor()
    inferer = em.eval_inferer()
    assert tuple(inferer.roi_size) == (128, 128) and inferer.overlap == 0.25 and inferer.sw_batch_size == 16
    out = inferer(image, torch.nn.Identity())
    assert out.shape == image.shape == (1, 1, 512, 512)
    assert float((out - image).abs().max()) < 1e-6
