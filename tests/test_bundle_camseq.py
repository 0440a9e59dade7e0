"""Smoke and unit tests of the ``bundles/camseq_snn`` MONAI bundle on real CamSeq01 frames, through the real CLI.

Tiny settings: 6 real frames (the first 4 and the last 2 by name: 3 train, 1 validation, 2 test), channels
(4, 8, 16, 32), 2 patches of 64 x 64 per frame, 1 epoch, T <= 2; the directly trained Spiking-FCN / Spiking-DeepLab
with widths (4, 4, 8) / 8. Without the data the tests skip, under CI they fail.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.bundle_cli import run_bundle, stage_environment
from tests.conftest import DATA, REPO, require_data

BUNDLE = REPO / "bundles" / "camseq_snn"
CAMSEQ = DATA / "CamSeq01_SegNet480"
TINY = {
    "channels": "[4,8,16,32]",
    "num_val": 1,
    "num_test": 2,
    "max_epochs": 1,
    "val_interval": 1,
    "image_repeats": 1,
    "finetune_image_repeats": 1,
    "patches_per_image": 2,
    "patch_size": "[64,64]",
    "convert_steps": 2,
    "finetune_steps": 2,
    "steps_sweep": "[1,2]",
    "num_calibration": 4,
    "percentile_candidates": "[99.9]",
    "eval_extra_steps": "{}",
    "direct_steps": 2,
    "direct_channels": "[4,4,8]",
    "direct_head_channels": 8,
    "twin_channels": "[4,4,8]",
    "twin_head_channels": 8,
}


@pytest.fixture(scope="module")
def camseq():
    sys.path.insert(0, str(BUNDLE))
    try:
        yield importlib.import_module("scripts.camseq")
    finally:
        sys.path.remove(str(BUNDLE))
        for name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def tiny_camseq(tmp_path_factory) -> Path:
    """A CamSeq01_SegNet480-layout folder with 6 real frames (symlinks)."""
    require_data(CAMSEQ)
    root = tmp_path_factory.mktemp("camseq") / "CamSeq01_SegNet480"
    names = sorted(p.name for p in (CAMSEQ / "images").glob("*.png"))
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
        for name in names[:4] + names[-2:]:
            os.symlink(CAMSEQ / sub / name, root / sub / name)
    return root


@pytest.fixture(scope="module")
def pipeline(tiny_camseq, tmp_path_factory) -> Path:
    from monai_snn.apps.cross_validation import run_cross_validation

    out = tmp_path_factory.mktemp("camseq_run")
    with stage_environment():
        status = run_cross_validation(
            BUNDLE, out, folds=[0], overrides=dict(TINY, data_dir=str(tiny_camseq)), quiet=True
        )
    assert set(status.values()) == {"done"}
    return out / "fold0"


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


def test_stages_write_models_and_metrics(pipeline):
    conv = json.loads((pipeline / "convert" / "metrics.json").read_text())
    assert set(conv["metrics_vs_T"]) == {"1", "2"} and conv["converted"]["num_steps"] == 2
    for net in ("ann", "converted"):
        for key in ("miou", "miou_mean", "pixel_accuracy"):
            assert 0.0 <= conv[net][key] <= 1.0
    ev = json.loads((pipeline / "evaluate" / "metrics.json").read_text())
    assert ev["info"]["models_from"] == "run" and ev["info"]["num_images"] == 2
    assert ev["finetuned"]["num_steps"] == 2 and ev["finetuned"]["key_metric"] == "miou"
    assert ev["finetuned"]["energy_snn_over_ann"] > 0
    # the directly trained baselines, evaluated beside the U-Net pipeline (their T and architecture from settings)
    for name in ("spiking_fcn", "spiking_deeplab"):
        settings = json.loads((pipeline / f"train_{name}" / "direct.json").read_text())
        assert settings["architecture"] == name and settings["num_steps"] == 2
        assert settings["kwargs"]["leak"] == 0.99 and settings["method"] == "bptt"
        assert ev[name]["num_steps"] == 2 and 0.0 <= ev[name]["miou"] <= 1.0 and ev[name]["energy_snn_over_ann"] > 0
    # and their batch-norm ANN twins (the papers' ANN rows), rebuilt from their settings
    for name in ("fcn", "deeplab"):
        settings = json.loads((pipeline / f"train_{name}_ann" / "direct.json").read_text())
        assert settings["architecture"] == name and settings["kwargs"]["head_channels"] == 8
        assert ev[f"{name}_ann"]["num_steps"] is None and 0.0 <= ev[f"{name}_ann"]["miou"] <= 1.0


def test_training_cost_comparison(pipeline, tmp_path):
    from monai_snn.apps.compare import main

    res = main(["--fold_dir", str(pipeline), "--output_dir", str(tmp_path / "cmp"), "--title", "tiny"])
    rows = {r["model"]: r for r in res["rows"]}
    assert {"ann", "converted", "finetuned", "spiking_fcn", "spiking_deeplab", "fcn_ann", "deeplab_ann"} <= set(rows)
    assert rows["finetuned"]["iterations"] > rows["ann"]["iterations"] > 0  # the pipeline's stages add up
    assert rows["finetuned"]["seconds"] > rows["converted"]["seconds"] > rows["ann"]["seconds"] > 0
    assert rows["spiking_fcn"]["T"] == 2 and rows["ann"]["T"] is None
    assert set(res["curves"]) >= {"conversion + fine-tuning", "direct: spiking_fcn", "direct: spiking_deeplab",
                                  "ANN twin: fcn"}  # fmt: skip
    ft = res["curves"]["conversion + fine-tuning"]
    assert ft["seconds"] == sorted(ft["seconds"]) and len(ft["values"]) == 3  # ANN epoch, converted, FT epoch
    table = (tmp_path / "cmp" / "training_cost.md").read_text()
    assert "| direct: spiking_deeplab | spiking_deeplab | 2 |" in table
    assert (tmp_path / "cmp" / "training_curves.png").stat().st_size > 1000
    assert (tmp_path / "cmp" / "spike_rates.png").is_file() and rows["spiking_fcn"]["firing_rates"]
    assert rows["finetuned"]["energy_vs_ann_mem"] > rows["finetuned"]["energy_vs_ann"] > 0
    # the neuron rows (DT / FT) come from the optional stages and the neurons variants: here, a fake FT variant
    ft = tmp_path / "neurons" / "ML_FT" / "fold0" / "evaluate"
    ft.mkdir(parents=True)
    (ft / "metrics.json").write_text(json.dumps({"finetuned": {"miou": 0.5, "num_steps": 20, "key_metric": "miou"}}))
    res = main(["--fold_dir", str(pipeline), "--output_dir", str(tmp_path / "cmp2"), "--variants_dir",
                str(tmp_path / "neurons")])  # fmt: skip
    ml = next(r for r in res["neurons"] if r["neuron"] == "ML")
    assert ml["ft"] == 0.5 and ml["ft_T"] == 20
    assert "| ML |" in (tmp_path / "cmp2" / "training_cost.md").read_text()
    # a validation tag the stages never logged (hippocampus validates on 2D Dice, tests on 3D): the error names both
    with pytest.raises(SystemExit, match="logged no validation metric 'dice_3d'.*'miou'.*--val_metric"):
        main(["--fold_dir", str(pipeline), "--output_dir", str(tmp_path / "cmp3"), "--val_metric", "dice_3d"])


def test_continue_ann_control_benchmark(pipeline, tiny_camseq):
    """benchmarks/continue_ann.py (the ANN under fine-tuning's optimizer restart) on the tiny run: it cannot rot."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from continue_ann import main
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    keys = ("channels", "num_val", "num_test", "image_repeats", "patches_per_image", "patch_size")
    best = pipeline / "train_ann" / "ckpt" / "best_model.pt"
    before = best.read_bytes()
    rows = main(["--bundle_root", str(BUNDLE), "--run_dir", str(pipeline.parent), "--epochs", "1",
                 "--set", f"data_dir={tiny_camseq}", *(f"{k}={TINY[k]}" for k in keys)])  # fmt: skip
    assert [r["epoch"] for r in rows] == [0, 1] and all(0.0 <= r["val"] <= 1.0 for r in rows)
    assert best.read_bytes() == before  # the run itself is untouched


def test_directly_trained_spiking_unet_stage(pipeline, tiny_camseq):
    """The optional DT stage of the Spiking-UNet paper's tables: a Spiking-UNet with multi-level neurons, by BPTT."""
    from monai_snn.apps.cross_validation import run_cross_validation
    from monai_snn.bundle import load_model
    from monai_snn.neurons import MultiLevelNeuron

    keys = ("channels", "num_val", "num_test", "max_epochs", "val_interval", "image_repeats", "patches_per_image",
            "patch_size", "direct_steps")  # fmt: skip
    with stage_environment():
        status = run_cross_validation(BUNDLE, pipeline.parent, folds=[0], stages=["train_unet_ml"], quiet=True,
                                      overrides={**{k: TINY[k] for k in keys}, "data_dir": str(tiny_camseq)})
    assert status == {"fold0/train_unet_ml": "done"}
    weights = pipeline / "train_unet_ml" / "direct.pt"
    settings = json.loads(weights.with_suffix(".json").read_text())
    assert settings["architecture"] == "spiking_unet" and settings["kwargs"]["neuron"] == "multi_level"
    snn = load_model("unet_ml", {"unet_ml": str(weights)}, torch.nn.Identity())
    assert snn.num_steps == 2 and any(isinstance(m, MultiLevelNeuron) for m in snn.modules())
    assert snn(torch.rand(1, 3, 64, 64)).shape == (1, 11, 64, 64)


def test_optional_robustness_stage(pipeline, tiny_camseq):
    from monai_snn.apps.cross_validation import run_cross_validation

    keys = ("channels", "num_val", "num_test")
    with stage_environment():
        status = run_cross_validation(BUNDLE, pipeline.parent, folds=[0], stages=["robustness"], quiet=True,
                                      overrides={**{k: TINY[k] for k in keys}, "data_dir": str(tiny_camseq),
                                                 "noise_sigmas": "[0.2]"})  # fmt: skip
    assert status == {"fold0/robustness": "done"}
    r = json.loads((pipeline / "robustness" / "robustness.json").read_text())
    assert set(r) >= {"ann", "converted", "finetuned", "spiking_fcn", "spiking_deeplab"} and r["sigmas"] == ["0", "0.2"]
    # the comparison command puts it in its table
    from monai_snn.apps.compare import main

    res = main(["--fold_dir", str(pipeline), "--output_dir", str(pipeline.parent / "cmp_robust")])
    table = (pipeline.parent / "cmp_robust" / "training_cost.md").read_text()
    assert "## Robustness: test miou under Gaussian input noise" in table and res["robustness"]["sigmas"] == r["sigmas"]
    drop = r["spiking_fcn"]["relative_drop_percent"]["0.2"]
    assert f"| spiking_fcn | 2 | {r['spiking_fcn']['score']['0']:.4f} | " in table and f"({drop:+.1f} %)" in table
    assert (pipeline.parent / "cmp_robust" / "robustness.png").is_file()
    ev = json.loads((pipeline / "evaluate" / "metrics.json").read_text())
    for name in ("ann", "spiking_deeplab"):  # the clean score is the evaluate stage's (Poisson seeds aside for SNNs)
        assert r[name]["score"]["0"] == pytest.approx(ev[name]["miou"], abs=0.05 if name != "ann" else 1e-6)
    assert (pipeline / "robustness" / "robustness.png").is_file()


def test_inference_contract(pipeline, tiny_camseq, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for src, dst in ((pipeline / "train_ann" / "ckpt" / "best_model.pt", "ann.pt"),
                     (pipeline / "finetune" / "snn_finetuned.pt", "model.pt"),
                     (pipeline / "finetune" / "snn_finetuned.json", "model.json")):  # fmt: skip
        os.symlink(src, models / dst)
    src = tiny_camseq / "images"
    proc = run_bundle(BUNDLE, ["common", "inference"], input_dir=src, output_dir=tmp_path / "out", models_dir=models,
                      channels=TINY["channels"])  # fmt: skip
    assert "inference: [6/6] 100%" in proc.stderr
    for image in sorted(src.glob("*.png")):
        seg = Image.open(tmp_path / "out" / f"{image.stem}_seg.png")
        assert seg.mode == "L" and seg.size == Image.open(image).size == (480, 360)
        assert set(np.unique(np.asarray(seg))) <= set(range(11))


def test_inference_with_a_directly_trained_network(pipeline, tiny_camseq, tmp_path):
    from monai_snn.apps.ship_models import main as ship

    models = tmp_path / "models"
    ship(["--bundle_root", str(BUNDLE), "--run_dir", str(pipeline.parent), "--models_dir", str(models),
          "--snn", "train_spiking_deeplab:spiking_deeplab"])  # fmt: skip
    shipped = json.loads((models / "spiking_deeplab.json").read_text())
    assert shipped["architecture"] == "spiking_deeplab" and "train_spiking_deeplab" in shipped["source"]
    from monai_snn.apps.ship_models import ship_snn

    with pytest.raises(ValueError, match=r"or a direct-training stage train_<name>, got 'evaluate'"):
        ship_snn(pipeline.parent, 0, "evaluate", "x", models)
    src = tmp_path / "in"
    src.mkdir()
    frame = sorted((tiny_camseq / "images").glob("*.png"))[-1]
    os.symlink(frame, src / frame.name)
    run_bundle(BUNDLE, ["common", "inference"], input_dir=src, output_dir=tmp_path / "out", models_dir=models,
               network="spiking_deeplab")  # fmt: skip
    seg = Image.open(tmp_path / "out" / f"{frame.stem}_seg.png")
    assert seg.size == (480, 360) and set(np.unique(np.asarray(seg))) <= set(range(11))
    proc = run_bundle(BUNDLE, ["common", "inference"], check=False, input_dir=src, output_dir=tmp_path / "o2",
                      models_dir=models, network="spiking_deeplap")  # fmt: skip
    assert proc.returncode != 0 and "spiking_deeplab" in proc.stderr  # the valid names, with the close match


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
    proc = run_bundle(BUNDLE, ["common", "inference"], check=False, input_dir=src, output_dir=tmp_path / "out",
                      network="ann", models_dir=tmp_path)  # fmt: skip
    assert proc.returncode != 0
    for text in expected:
        assert text in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "out").exists()


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
