"""DRIVE task code of the ``drive_snn`` bundle (``bundles/drive_snn/scripts``): datalist and its validation,
the reference preprocessing (grey, standardization, [0, 1], CLAHE, gamma), patch sampling, sliding-window
reassembly, FOV-masked metrics (functions, ``FOVMetric``, ``FOVMetricHandler`` in a ``SupervisedEvaluator``).

The modules are loaded with ``monai_snn.bundle.load_scripts`` (a module name of its own per bundle), as the configs
do. Real-data cases read ``$MONAI_SNN_DATA/DRIVE``; bad inputs are built in ``tmp_path`` from copies of real
files.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator
from monai.transforms import Compose
from PIL import Image

from monai_snn.bundle import load_scripts
from tests.conftest import DATA, REPO, require_data

_SCRIPTS = load_scripts(REPO / "bundles" / "drive_snn")
drive = _SCRIPTS.drive
metrics = _SCRIPTS.metrics
DRIVE_DIR = DATA / "DRIVE"


@pytest.fixture(scope="module")
def root() -> Path:
    return require_data(DRIVE_DIR)


@pytest.fixture(scope="module")
def train_items(root):
    return drive.drive_datalist(root, "training")


@pytest.fixture(scope="module")
def stages(train_items):
    """Image 21_training after each preprocessing step (grey + [0, 1], CLAHE, gamma), plus its FOV mask."""
    item = train_items[0]
    load = Compose(drive.load_transforms(["image", "mask"]))(item)
    steps = drive.preprocess_transforms("image")
    d = Compose(steps[:3])(load)
    scaled = d["image"].clone()
    d = steps[3](d)
    equalized = d["image"].clone()
    d = steps[4](d)
    return {"scaled": scaled, "clahe": equalized, "final": d["image"], "mask": load["mask"] > 0}


# ------------------------------------------------------------------------------------------------------ metrics

# 4 x 4 case; the last column lies outside the FOV. Inside (12 pixels), with prob >= 0.5 as vessel:
# tp 4 (0.9, 0.8, 0.5 tie, 0.95), fp 1 (0.6), tn 5, fn 2 (0.2, 0.4).
PROB = torch.tensor([[0.9, 0.8, 0.1, 0.7], [0.6, 0.2, 0.3, 0.9], [0.4, 0.5, 0.05, 0.1], [0.2, 0.3, 0.95, 0.3]])
LABEL = torch.tensor([[1, 1, 0, 0], [0, 1, 0, 1], [1, 1, 0, 0], [0, 0, 1, 1]], dtype=torch.float32)
MASK = torch.tensor([[1, 1, 1, 0]] * 4, dtype=torch.float32)
EXPECTED = {
    "f1": 8 / 11,  # 2 tp / (2 tp + fp + fn)
    "jaccard": 4 / 7,  # tp / (tp + fp + fn)
    "accuracy": 9 / 12,
    "sensitivity": 4 / 6,
    "specificity": 5 / 6,
    "precision": 4 / 5,
    # positives 0.9 0.8 0.2 0.4 0.5 0.95 vs negatives 0.1 0.6 0.3 0.05 0.2 0.3: 30.5 of 36 pairs (0.2 tie = 1/2)
    "auc": 30.5 / 36,
}


def test_fov_metrics_hand_computed():
    got = metrics.fov_metrics(PROB[None], LABEL[None], MASK[None])
    assert got.keys() == EXPECTED.keys()
    for name, value in EXPECTED.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name
    # pixels outside the FOV change nothing
    prob, label = PROB.clone(), LABEL.clone()
    prob[:, 3], label[:, 3] = torch.tensor([0.0, 1.0, 0.99, 0.01]), torch.tensor([1.0, 0.0, 0.0, 1.0])
    assert metrics.fov_metrics(prob, label, MASK.bool()) == pytest.approx(got)
    # scored over all 16 pixels the numbers differ (what the reference code does)
    assert metrics.fov_metrics(PROB, LABEL, torch.ones(4, 4))["accuracy"] != pytest.approx(got["accuracy"])
    # numpy inputs, threshold
    high = metrics.fov_metrics(PROB.numpy(), LABEL.numpy(), MASK.numpy(), threshold=0.55, metric_names=["sensitivity"])
    assert high == {"sensitivity": pytest.approx(3 / 6)}  # the 0.5 tie is negative now


def test_auc_known_case():
    # the classic example: scores 0.1 0.4 0.35 0.8, labels 0 0 1 1 -> AUC 0.75
    prob = torch.tensor([[0.1, 0.4, 0.35, 0.8, 0.99, 0.0]])
    label = torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0, 0.0]])
    assert metrics.fov_metrics(prob, label, mask, metric_names=["auc"])["auc"] == pytest.approx(0.75)
    assert metrics.fov_metrics(prob, label, torch.ones_like(mask), metric_names=["auc"])["auc"] != pytest.approx(0.75)
    # perfect and reversed ranking
    perfect = metrics.fov_metrics(label * 0.5 + 0.25, label, torch.ones_like(mask), metric_names=["auc"])
    reverse = metrics.fov_metrics(0.75 - label * 0.5, label, torch.ones_like(mask), metric_names=["auc"])
    assert (perfect["auc"], reverse["auc"]) == (1.0, 0.0)


def _two_images():
    prob2 = torch.tensor([[0.7, 0.1], [0.2, 0.6]])
    label2 = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    mask2 = torch.ones(2, 2)
    # image 1: tp 4 fp 1 fn 2 (tn 5); image 2: tp 1 fp 1 fn 1 (tn 1)
    return [PROB[None], prob2[None]], [LABEL[None], label2[None]], [MASK[None], mask2[None]]


def test_pooled_versus_per_image():
    probs, labels, masks = _two_images()
    pooled = metrics.pooled_fov_metrics(probs, labels, masks)
    assert pooled["f1"] == pytest.approx(10 / 15)  # summed: tp 5, fp 2, fn 3
    assert pooled["accuracy"] == pytest.approx(11 / 16)
    per_image = [metrics.fov_metrics(p, y, m)["f1"] for p, y, m in zip(probs, labels, masks)]
    assert per_image == pytest.approx([8 / 11, 2 / 4])
    # FOVMetric: batch-first tensors or lists, both reductions, every name
    for reduction, expected in (("pooled", pooled["f1"]), ("mean", np.mean(per_image))):
        m = metrics.FOVMetric("f1", reduction=reduction)
        for p, y, k in zip(probs, labels, masks):
            m(p[None], y[None], k[None])
        assert float(m.aggregate()) == pytest.approx(expected)
        assert m.per_image()[:, 0].tolist() == pytest.approx(per_image)
    m = metrics.FOVMetric(metrics.METRIC_NAMES)
    m(list(probs), list(labels), list(masks))
    assert [float(v) for v in m.aggregate()] == pytest.approx([pooled[n] for n in metrics.METRIC_NAMES])
    m.reset()
    with pytest.raises(ValueError, match="no data"):
        m.aggregate()


def test_metric_input_errors():
    with pytest.raises(ValueError, match="sigmoid"):
        metrics.fov_metrics(PROB * 3 - 1, LABEL, MASK)
    with pytest.raises(ValueError, match="label must be binary"):
        metrics.fov_metrics(PROB, LABEL * 255, MASK)
    with pytest.raises(ValueError, match="same shape"):
        metrics.fov_metrics(PROB, LABEL, MASK[:3])
    with pytest.raises(ValueError, match="empty"):
        metrics.fov_metrics(PROB, LABEL, torch.zeros(4, 4))
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.fov_metrics(PROB, LABEL, MASK, metric_names=["dice"])


def test_metric_handler_in_evaluator():
    probs, labels, masks = _two_images()
    # one image size per batch: pad image 2 into a 4 x 4 canvas outside its FOV
    canvas = [torch.zeros(1, 4, 4) for _ in range(3)]
    for c, x in zip(canvas, (probs[1], labels[1], masks[1])):
        c[:, :2, :2] = x
    data = [
        {"image": probs[0], "label": labels[0], "mask": masks[0]},
        {"image": canvas[0], "label": canvas[1], "mask": canvas[2]},
    ]
    handlers = {
        "val_f1": metrics.FOVMetricHandler("f1"),
        "val_auc": metrics.FOVMetricHandler("auc"),
        "val_f1_mean": metrics.FOVMetricHandler("f1", reduction="mean"),
    }
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(data, batch_size=2),
        network=torch.nn.Identity(),
        key_val_metric={"val_f1": handlers["val_f1"]},
        additional_metrics={k: v for k, v in handlers.items() if k != "val_f1"},
    )
    evaluator.run()
    pooled = metrics.pooled_fov_metrics(probs, labels, masks)
    state = evaluator.state
    assert state.metrics["val_f1"] == pytest.approx(pooled["f1"])
    assert state.metrics["val_auc"] == pytest.approx(pooled["auc"])
    assert state.metrics["val_f1_mean"] == pytest.approx((8 / 11 + 2 / 4) / 2)
    assert state.best_metric == pytest.approx(pooled["f1"])
    assert state.metric_details["val_f1"][:, 0].tolist() == pytest.approx([8 / 11, 2 / 4])


# -------------------------------------------------------------------------------------------------- datalist


def test_datalist_real(root, train_items):
    assert [d["name"] for d in train_items] == [f"{n}_training" for n in range(21, 41)]
    for d in train_items:
        number = d["name"].split("_")[0]
        assert Path(d["label"]).name == f"{number}_manual1.gif"
        assert Path(d["mask"]).name == f"{number}_training_mask.gif"
        for key in ("image", "label", "mask"):
            with Image.open(d[key]) as im:
                assert (im.height, im.width) == (584, 565)
    test_items = drive.drive_datalist(root, "test")
    assert [d["name"] for d in test_items] == [f"{n:02d}_test" for n in range(1, 21)]

    train, val = drive.split_train_val(train_items, num_val=4, seed=0)
    assert (len(train), len(val)) == (16, 4)
    assert {d["name"] for d in train} | {d["name"] for d in val} == {d["name"] for d in train_items}
    assert not {d["name"] for d in train} & {d["name"] for d in val}
    assert drive.split_train_val(train_items, num_val=4, seed=0) == (train, val)
    with pytest.raises(ValueError, match="training images only.*01_test"):
        drive.split_train_val(train_items + test_items[:1], num_val=4)
    with pytest.raises(ValueError, match="num_val"):
        drive.split_train_val(train_items, num_val=20)


def _mini_drive(root: Path, tmp_path: Path) -> Path:
    """A DRIVE copy with training images 21 and 22."""
    out = tmp_path / "DRIVE"
    layout = (("images", "{}_training.tif"), ("1st_manual", "{}_manual1.gif"), ("mask", "{}_training_mask.gif"))
    for sub, pattern in layout:
        (out / "training" / sub).mkdir(parents=True)
        for n in (21, 22):
            shutil.copy(root / "training" / sub / pattern.format(n), out / "training" / sub / pattern.format(n))
    return out


def _edit(path: Path, fn) -> None:
    with Image.open(path) as im:
        im.load()
        new = fn(im)
    new.save(path, **({"optimize": False} if path.suffix == ".gif" else {}))  # GIF stays in mode L


def _label128(im):
    arr = np.asarray(im).copy()
    arr[100:110, 100:110] = 128
    return Image.fromarray(arr, mode="L")


# case -> (file to break, relative to training/; what is done; exception; phrase of the message)
BAD_CASES = {
    "size_mismatch": (
        "1st_manual/22_manual1.gif",
        lambda p: _edit(p, lambda im: im.crop((0, 0, 500, 584))),
        ValueError,
        "is 584x500",
    ),
    "label_128": ("1st_manual/22_manual1.gif", lambda p: _edit(p, _label128), ValueError, r"values \[128\]"),
    "missing_mask": ("mask/22_training_mask.gif", lambda p: p.unlink(), FileNotFoundError, "missing mask"),
    "grey_image": (
        "images/22_training.tif",
        lambda p: _edit(p, lambda im: im.convert("L")),
        ValueError,
        "3 channels, got 1 channel",
    ),
    "unreadable": (
        "1st_manual/22_manual1.gif",
        lambda p: p.write_bytes(b"GIF89a not really"),
        ValueError,
        "not a readable image",
    ),
    "zero_bytes": ("mask/22_training_mask.gif", lambda p: p.write_bytes(b""), ValueError, "empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_datalist_bad_inputs(root, tmp_path, case):
    mini = _mini_drive(root, tmp_path)
    assert len(drive.drive_datalist(mini)) == 2
    rel, breaker, error, phrase = BAD_CASES[case]
    path = mini / "training" / rel
    breaker(path)
    with pytest.raises(error, match=phrase) as info:
        drive.drive_datalist(mini)
    named = path if case != "missing_mask" else mini / "training" / "mask"
    assert str(named) in str(info.value)


def test_datalist_empty_and_missing_folders(root, tmp_path):
    mini = _mini_drive(root, tmp_path)
    for p in (mini / "training" / "images").iterdir():
        p.unlink()
    with pytest.raises(FileNotFoundError, match="no images in") as info:
        drive.drive_datalist(mini)
    assert str(mini / "training" / "images") in str(info.value)
    with pytest.raises(FileNotFoundError, match="folder not found") as info:
        drive.drive_datalist(mini, "test")
    assert str(mini / "test" / "images") in str(info.value)


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


def test_transforms_reject_wrong_channels(root, tmp_path):
    mini = _mini_drive(root, tmp_path)
    items = drive.drive_datalist(mini)
    chain = drive.eval_transforms()
    grey = tmp_path / "grey.tif"
    Image.open(items[0]["image"]).convert("L").save(grey)
    message = _raised(chain, items[0] | {"image": str(grey)}, "3 channels.*grey image with 1 channel")
    assert str(grey) in message
    colour_label = tmp_path / "label_rgb.png"  # the reverse: a colour label where one channel is expected
    Image.open(items[0]["label"]).convert("RGB").save(colour_label)
    message = _raised(chain, items[0] | {"label": str(colour_label)}, r"expected 1 channel \(grey\), got 3 channels")
    assert str(colour_label) in message
    bad_label = tmp_path / "label128.gif"
    _label128(Image.open(items[0]["label"])).save(bad_label, optimize=False)
    assert str(bad_label) in _raised(chain, items[0] | {"label": str(bad_label)}, r"values \[128.0\] outside")
    # without file metadata the item's name is given
    with pytest.raises(ValueError, match="'image' of item 21_training: expected a colour image"):
        drive.RGBToGreyd("image")({"image": torch.zeros(1, 8, 8), "name": "21_training"})


# --------------------------------------------------------------------------------------------- preprocessing


def test_preprocessing_real_image(train_items, stages):
    d = drive.eval_transforms()(train_items[0])
    image = d["image"]
    assert image.shape == (1, 565, 584) and image.dtype == torch.float32  # grey, PILReader's (C, W, H)
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert torch.equal(image, stages["final"])
    assert d["label"].unique().tolist() == [0.0, 1.0] and d["mask"].unique().tolist() == [0.0, 1.0]
    assert d["label"].dtype == torch.float32 and d["label"].shape == (1, 565, 584)
    perfect = metrics.fov_metrics(d["label"], d["label"], d["mask"], metric_names=["f1", "accuracy"])
    assert perfect == {"f1": 1.0, "accuracy": 1.0}

    # gamma 1.2 of the reference: x ** (1 / 1.2) on [0, 1], monotone, brightening
    x, y = stages["clahe"].flatten(), stages["final"].flatten()
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.allclose(y, x ** (1 / 1.2), atol=1e-5)
    order = torch.argsort(x)
    assert float(torch.diff(y[order]).min()) > -1e-6  # monotone (equal inputs may differ by one float ulp)
    assert float(y.mean()) > float(x.mean())

    # CLAHE raises local contrast: 48 x 48 windows inside the FOV, the darkest one first, all get a larger spread
    scaled, clahe, fov = stages["scaled"][0], stages["clahe"][0], stages["mask"][0]
    windows = sorted(
        (float(scaled[i : i + 48, j : j + 48].mean()), i, j)
        for i in range(0, scaled.shape[0] - 47, 24)
        for j in range(0, scaled.shape[1] - 47, 24)
        if bool(fov[i : i + 48, j : j + 48].all())
    )
    ratios = [float(clahe[i : i + 48, j : j + 48].std() / scaled[i : i + 48, j : j + 48].std()) for _, i, j in windows]
    assert len(windows) > 200
    assert ratios[0] > 1.2  # the darkest window (1.30 measured)
    assert min(ratios) > 1.0 and float(np.median(ratios)) > 1.5  # 1.17 and 1.74 measured


def test_standardization_equals_reference(train_items):
    """Per-image z-score + min-max == the reference's dataset z-score + per-image min-max (before CLAHE)."""
    rgb = np.stack([np.asarray(Image.open(d["image"]), dtype=np.float64) for d in train_items[:2]])
    grey = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    z = (grey - grey.mean()) / grey.std()
    reference = [(g - g.min()) / (g.max() - g.min()) for g in z]
    chain = Compose(drive.load_transforms("image", reverse_indexing=False) + drive.preprocess_transforms("image")[:3])
    for d, ref in zip(train_items[:2], reference):
        ours = chain({"image": d["image"]})["image"][0].numpy()
        assert ours.shape == (584, 565)
        assert np.abs(ours - ref).max() < 1e-5


# ------------------------------------------------------------------------------------ patches, sliding window


def test_patch_sampling(train_items):
    for fov_centred in (False, True):
        chain = drive.train_transforms(num_samples=6, fov_centred=fov_centred)
        chain.set_random_state(seed=0)
        patches = chain(train_items[0])
        assert len(patches) == 6
        for p in patches:
            for key in ("image", "label", "mask"):
                assert p[key].shape == (1, 48, 48) and p[key].dtype == torch.float32
            assert 0.0 <= float(p["image"].min()) and float(p["image"].max()) <= 1.0
            assert set(p["label"].unique().tolist()) <= {0.0, 1.0}
            if fov_centred:
                assert float(p["mask"].mean()) > 0
    again = drive.train_transforms(num_samples=6)
    again.set_random_state(seed=0)
    first = drive.train_transforms(num_samples=6)
    first.set_random_state(seed=0)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(again(train_items[1]), first(train_items[1])))


def test_sliding_window_identity(stages):
    image = stages["final"][None].as_tensor()  # [1, 1, 565, 584]
    out = drive.eval_inferer(roi_size=(48, 48), overlap=0.25)(image, torch.nn.Identity())
    assert out.shape == image.shape
    assert float((out - image).abs().max()) < 1e-5


class _Invert(torch.nn.Module):
    """A stand-in network: vessels are dark after preprocessing, so ``1 - image`` is a (poor) vessel probability."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 - x


def test_evaluation_flow_real_images(root):
    """Real test images -> eval_transforms -> SupervisedEvaluator with eval_inferer -> FOVMetricHandler, equal to
    pooled_fov_metrics of the same whole-image predictions."""
    from monai.data import Dataset

    items = drive.drive_datalist(root, "test")[:2]
    dataset = Dataset(items, transform=drive.eval_transforms())
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(dataset, batch_size=1),
        network=_Invert(),
        inferer=drive.eval_inferer(),
        key_val_metric={"val_f1": metrics.FOVMetricHandler("f1")},
        additional_metrics={"val_auc": metrics.FOVMetricHandler("auc", save_details=False)},
    )
    evaluator.run()
    data = [dataset[i] for i in range(2)]
    expected = metrics.pooled_fov_metrics(
        [1.0 - d["image"] for d in data],
        [d["label"] for d in data],
        [d["mask"] for d in data],
        metric_names=["f1", "auc"],
    )
    assert evaluator.state.metrics["val_f1"] == pytest.approx(expected["f1"], abs=1e-6)
    assert evaluator.state.metrics["val_auc"] == pytest.approx(expected["auc"], abs=1e-6)
    assert 0.7 < expected["auc"] < 0.9  # darkness alone ranks vessels above background (0.77 measured)
    assert evaluator.state.metric_details["val_f1"].shape == (2, 1)
