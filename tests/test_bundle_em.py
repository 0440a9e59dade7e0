"""Smoke tests of the ``bundles/em_snn`` MONAI bundle on real ISBI 2012 EM slices, through the real CLI.

Tiny settings: 6 real slices in a three-fold split (``split_mode=cv``: 3 train, 1 validation, 2 test), channels
(4, 8, 16, 32), 2 patches of 64 x 64 per slice, 1 epoch, T <= 2. Without the data the tests skip, under CI they fail.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.bundle_cli import assert_inference_rejects, run_bundle, run_ddp, stage_environment
from tests.conftest import DATA, REPO, require_data

BUNDLE = REPO / "bundles" / "em_snn"
EM = DATA / "ISBI2012_EM"
TINY = {
    "channels": "[4,8,16,32]",
    "split_mode": "cv",
    "num_folds": 3,
    "num_val": 1,
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
}


@pytest.fixture(scope="module")
def tiny_em(tmp_path_factory) -> Path:
    """An ISBI2012_EM-layout folder with slices 0-5 (symlinks to the real files)."""
    require_data(EM)
    root = tmp_path_factory.mktemp("em") / "ISBI2012_EM"
    for sub in ("image", "label"):
        (root / "train" / sub).mkdir(parents=True)
        for k in range(6):
            os.symlink(EM / "train" / sub / f"{k}.png", root / "train" / sub / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def pipeline(tiny_em, tmp_path_factory) -> Path:
    from monai_snn.apps.cross_validation import run_cross_validation

    out = tmp_path_factory.mktemp("em_run")
    with stage_environment():
        status = run_cross_validation(BUNDLE, out, folds=[0], overrides=dict(TINY, data_dir=str(tiny_em)), quiet=True)
    assert set(status.values()) == {"done"}
    return out / "fold0"


def test_stages_write_models_and_metrics(pipeline):
    conv = json.loads((pipeline / "convert" / "metrics.json").read_text())
    assert set(conv["metrics_vs_T"]) == {"1", "2"} and conv["converted"]["num_steps"] == 2
    for net in ("ann", "converted"):
        for key in ("f1", "jaccard", "accuracy", "membrane_f1", "f1_mean"):
            assert 0.0 <= conv[net][key] <= 1.0
    ev = json.loads((pipeline / "evaluate" / "metrics.json").read_text())
    assert ev["info"]["models_from"] == "run" and ev["info"]["num_images"] == 2  # fold 0 of 3 over 6 slices
    assert ev["finetuned"]["num_steps"] == 2 and ev["finetuned"]["key_metric"] == "f1"
    assert ev["finetuned"]["energy_snn_over_ann"] > 0
    # the fine-tuned model's settings come from the converted one (percentile actually used, T of fine-tuning)
    conv_s = json.loads((pipeline / "convert" / "snn_converted.json").read_text())
    fine_s = json.loads((pipeline / "finetune" / "snn_finetuned.json").read_text())
    assert fine_s["percentile"] == conv_s["percentile"] and fine_s["num_steps"] == 2


def test_directly_trained_spiking_unet_beside_the_pipeline(pipeline, tiny_em):
    """An optional DT stage (multi-level neurons, rectangular surrogate, BPTT), then the evaluate stage again."""
    from monai_snn.apps.cross_validation import run_cross_validation

    drop = {"convert_steps", "steps_sweep", "num_calibration", "percentile_candidates", "finetune_image_repeats"}
    overrides = {**{k: v for k, v in TINY.items() if k not in drop}, "data_dir": str(tiny_em), "direct_steps": 2}
    with stage_environment():
        status = run_cross_validation(BUNDLE, pipeline.parent, folds=[0], stages=["train_unet_ml", "evaluate"],
                                      overrides=overrides, quiet=True)  # fmt: skip
    assert status == {"fold0/train_unet_ml": "done", "fold0/evaluate": "done"}
    settings = json.loads((pipeline / "train_unet_ml" / "direct.json").read_text())
    assert settings["kwargs"]["neuron"] == "multi_level" and settings["kwargs"]["surrogate"] == "rectangle"
    ev = json.loads((pipeline / "evaluate" / "metrics.json").read_text())
    assert ev["unet_ml"]["num_steps"] == 2 and 0.0 <= ev["unet_ml"]["f1"] <= 1.0


def test_optional_robustness_stage(pipeline, tiny_em):
    from monai_snn.apps.cross_validation import run_cross_validation

    overrides = {"channels": TINY["channels"], "split_mode": "cv", "num_folds": 3, "num_val": 1,
                 "data_dir": str(tiny_em), "eval_extra_steps": "{}", "noise_sigmas": "[0.3]"}  # fmt: skip
    with stage_environment():
        status = run_cross_validation(BUNDLE, pipeline.parent, folds=[0], stages=["robustness"], overrides=overrides,
                                      quiet=True)  # fmt: skip
    assert status == {"fold0/robustness": "done"}
    r = json.loads((pipeline / "robustness" / "robustness.json").read_text())
    ev = json.loads((pipeline / "evaluate" / "metrics.json").read_text())
    assert r["ann"]["score"]["0"] == pytest.approx(ev["ann"]["f1"]) and r["info"]["clip"] == [0.0, 1.0]
    assert set(r["ann"]["relative_drop_percent"]) == {"0", "0.3"} and "finetuned" in r


def test_inference_contract(pipeline, tiny_em, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for src, dst in ((pipeline / "train_ann" / "ckpt" / "best_model.pt", "ann.pt"),
                     (pipeline / "finetune" / "snn_finetuned.pt", "model.pt"),
                     (pipeline / "finetune" / "snn_finetuned.json", "model.json")):  # fmt: skip
        os.symlink(src, models / dst)
    src = tiny_em / "train" / "image"
    proc = run_bundle(BUNDLE, ["common", "inference"], input_dir=src, output_dir=tmp_path / "out", models_dir=models,
                      channels=TINY["channels"])  # fmt: skip
    assert "inference: [6/6] 100%" in proc.stderr
    for k in range(6):
        seg = np.asarray(Image.open(tmp_path / "out" / f"{k}_seg.png"))
        prob = np.asarray(Image.open(tmp_path / "out" / f"{k}_prob.png"))
        assert seg.shape == prob.shape == (512, 512) and set(np.unique(seg)) <= {0, 255}
        assert ((prob >= 128) == (seg == 255)).mean() > 0.99


@pytest.mark.parametrize("case", ["colour", "empty"])
def test_inference_bad_input_names_the_file(tiny_em, tmp_path, case):
    src = tmp_path / "in"
    src.mkdir()
    if case == "colour":
        Image.open(tiny_em / "train" / "image" / "0.png").convert("RGB").save(src / "rgb.png")
        expected = ["rgb.png", "greyscale", "colour image with 3 channels"]
    else:
        expected = ["no .png file found in", str(src)]
    assert_inference_rejects(BUNDLE, src, tmp_path / "out", expected, models_dir=tmp_path)


def test_ddp_two_processes_gloo(tiny_em, tmp_path):
    proc = run_ddp(BUNDLE, ["common", "train_ann", "multi_gpu_train"], output_dir=tmp_path, data_dir=tiny_em,
                   **TINY)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    stage = tmp_path / "fold0" / "train_ann"
    assert (stage / "ckpt" / "best_model.pt").is_file()
    assert len(list(stage.glob("events.out.tfevents.*"))) == 1


@pytest.mark.parametrize("stage", ["train_ann", "convert", "finetune", "evaluate", "inference"])
def test_full_profile_merges_over_every_stage(stage):
    """The GPU profile (not run here) parses over each stage: the paper's T = 50, whole slices, a wider network."""
    from monai.bundle import ConfigParser

    cfg = BUNDLE / "configs"
    parser = ConfigParser()
    parser.read_config([str(cfg / "common.json"), str(cfg / f"{stage}.json"), str(cfg / "full.json")])
    assert parser["convert_steps"] == parser["finetune_steps"] == 50 and parser["patch_size"] == [512, 512]
    assert tuple(parser.get_parsed_content("network_def").channels) == (32, 64, 128, 256)


def test_shipped_model_on_held_out_slices(tmp_path):
    """The shipped fine-tuned SNN (default model, its shipped T) on two real test slices of the hold-out split."""
    require_data(EM)
    for f in ("ann.pt", "converted.pt", "converted.json", "model.pt", "model.json"):
        assert (BUNDLE / "models" / f).is_file(), f"shipped model missing: {f}"
    src = tmp_path / "in"
    src.mkdir()
    for k in (25, 29):
        os.symlink(EM / "train" / "image" / f"{k}.png", src / f"{k}.png")
    run_bundle(BUNDLE, ["common", "inference"], input_dir=src, output_dir=tmp_path / "out")
    for k in (25, 29):
        seg = np.asarray(Image.open(tmp_path / "out" / f"{k}_seg.png")) == 255
        lab = np.asarray(Image.open(EM / "train" / "label" / f"{k}.png")) == 255
        f1 = 2 * (seg & lab).sum() / (seg.sum() + lab.sum())
        assert f1 > 0.93, f"slice {k}: cell-interior F1 {f1:.3f}"
