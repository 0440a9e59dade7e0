"""Tests of the shipped ``bundles/camseq_snn`` models on real CamSeq01 test frames through the real CLI, the task
module's split / score / loss on real frames, and the bundle's bad-input errors. The tiny pipeline run is in
``test_bundle_camseq.py`` (a separate file so that the two run on separate workers). Without the data the tests
skip, under CI they fail.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from tests.bundle_cli import assert_inference_rejects, run_bundle
from tests.conftest import CAMSEQ, require_data
from tests.conftest import CAMSEQ_BUNDLE as BUNDLE


def test_block_split_of_the_real_frames(camseq):
    require_data(CAMSEQ)
    items = camseq.camseq_datalist(CAMSEQ)
    split = camseq.block_split(items)
    assert [len(split[k]) for k in ("train", "val", "test")] == [72, 8, 21]
    assert split["test"][0]["name"] == "0016E5_08119" and split["test"][-1]["name"] == "0016E5_08159"
    names = [it["name"] for it in split["train"] + split["val"] + split["test"]]
    assert names == sorted(names) and len(set(names)) == 101  # contiguous blocks, nothing shared
    with pytest.raises(ValueError, match="cannot be split"):
        camseq.block_split(items[:10], num_val=8, num_test=21)


def test_pooled_miou_ignores_void_and_skips_absent_classes(camseq):
    label = torch.tensor([[[0, 0, 1, 1], [3, 3, 11, 11]]])  # [1, 2, 4]: two void pixels
    pred = torch.tensor([[[0, 1, 1, 1], [3, 3, 0, 5]]])  # errors only on one labelled pixel and on void pixels
    scores = camseq.camseq_scores([pred], [label])
    # class 0: tp 1, fn 1 -> 1/2; class 1: tp 2, fp 1 -> 2/3; class 3: 1; classes 5 (only on void) etc. absent
    assert scores["miou"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    assert scores["pixel_accuracy"] == pytest.approx(5 / 6)
    assert np.isnan(scores["iou_per_class"]["Tree"])  # predicted on void pixels only: not counted
    loss = camseq.VoidIgnoringCrossEntropy()
    logits = torch.zeros(1, 11, 2, 4, requires_grad=True)
    value = loss(logits, label[None])
    assert value.item() == pytest.approx(np.log(11))
    value.backward()
    assert logits.grad[0, :, 1, 2:].abs().sum() == 0  # no gradient from void pixels
    with pytest.raises(ValueError, match="label values \\[12\\] outside 0..10 and the void label 11"):
        loss(logits, torch.full((1, 1, 2, 4), 12))


def test_shipped_models_on_test_frames(tmp_path):
    """The shipped fine-tuned SNN (default model, at its shipped T) and ANN on two real test frames."""
    require_data(CAMSEQ)
    models = BUNDLE / "models"
    for f in ("ann.pt", "ann.json", "converted.pt", "converted.json", "model.pt", "model.json"):
        assert (models / f).is_file(), f"shipped model missing: {models / f}"
    assert json.loads((models / "model.json").read_text())["num_steps"] == 20
    src = tmp_path / "in"
    src.mkdir()
    names = ("0016E5_08119.png", "0016E5_08159.png")  # the first and the last test frame
    for n in names:
        os.symlink(CAMSEQ / "images" / n, src / n)
    run_bundle(BUNDLE, ["common", "inference"], input_dir=src, output_dir=tmp_path / "snn")
    run_bundle(BUNDLE, ["common", "inference"], input_dir=src, output_dir=tmp_path / "ann", network="ann")
    for n in names:
        label = np.asarray(Image.open(CAMSEQ / "labels" / n))
        known = label != 11
        snn, ann = (np.asarray(Image.open(tmp_path / d / n.replace(".png", "_seg.png"))) for d in ("snn", "ann"))
        for name, seg in (("snn", snn), ("ann", ann)):
            accuracy = (seg[known] == label[known]).mean()
            assert accuracy > 0.6, f"{n}: {name} pixel accuracy {accuracy:.3f}"
        assert (snn == ann).mean() > 0.8  # the SNN follows its ANN


def test_shipped_directly_trained_baselines_on_test_frames(tmp_path):
    """--network spiking_fcn / spiking_deeplab: the shipped Kim et al. baselines (12 epochs of BPTT at T = 20)."""
    require_data(CAMSEQ)
    src = tmp_path / "in"
    src.mkdir()
    name = "0016E5_08119.png"  # the first test frame (pixel accuracy 0.74 / 0.80 when shipped)
    os.symlink(CAMSEQ / "images" / name, src / name)
    label = np.asarray(Image.open(CAMSEQ / "labels" / name))
    for net in ("spiking_fcn", "spiking_deeplab"):
        settings = json.loads((BUNDLE / "models" / f"{net}.json").read_text())
        assert settings["architecture"] == net and settings["num_steps"] == 20
        run_bundle(BUNDLE, ["common", "inference"], input_dir=src, output_dir=tmp_path / net, network=net)
        seg = np.asarray(Image.open(tmp_path / net / name.replace(".png", "_seg.png")))
        accuracy = (seg[label != 11] == label[label != 11]).mean()
        assert seg.shape == label.shape and accuracy > 0.6, f"{net}: pixel accuracy {accuracy:.3f}"


@pytest.mark.parametrize("case", ["grey", "size", "empty"])
def test_inference_bad_input_names_the_file(tiny_camseq, tmp_path, case):
    src = tmp_path / "in"
    src.mkdir()
    frame = next((tiny_camseq / "images").glob("*.png"))
    if case == "grey":
        Image.open(frame).convert("L").save(src / "grey.png")
        expected = ["grey.png", "expected an 8-bit RGB PNG (3 channels)", "mode 'L'"]
    elif case == "size":
        Image.open(frame).crop((0, 0, 100, 60)).save(src / "small.png")
        expected = ["small.png", "100 x 60", "divisible by 8"]
    else:
        expected = ["no .png file found in", str(src)]
    assert_inference_rejects(BUNDLE, src, tmp_path / "out", expected, models_dir=tmp_path)


def test_datalist_rejects_labels_outside_the_class_range(camseq, tiny_camseq, tmp_path):
    root = tmp_path / "CamSeq01_SegNet480"
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    frame = next((tiny_camseq / "images").glob("*.png"))
    os.symlink(frame, root / "images" / frame.name)
    label = np.asarray(Image.open(tiny_camseq / "labels" / frame.name)).copy()
    label[0, 0] = 40
    Image.fromarray(label).save(root / "labels" / frame.name)
    with pytest.raises(ValueError, match=f"{frame.name}.*values \\[40\\] outside the class range 0..10"):
        camseq.camseq_datalist(root)
    (root / "labels" / frame.name).unlink()
    with pytest.raises(FileNotFoundError, match="has no label"):
        camseq.camseq_datalist(root)
