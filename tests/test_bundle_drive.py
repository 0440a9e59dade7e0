"""Smoke tests of the ``bundles/drive_snn`` MONAI bundle on real DRIVE images, through the real CLI.

Tiny settings (3 training images of which 1 validates, 2 test images, channels (4, 8, 16, 32), 4 patches per image,
1 epoch, T <= 2). Without the data the tests skip, under CI they fail.
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

BUNDLE = REPO / "bundles" / "drive_snn"
CFG = BUNDLE / "configs"
MODELS = BUNDLE / "models"
DRIVE = DATA / "DRIVE"
TINY = {
    "channels": "[4,8,16,32]",
    "num_val": 1,
    "max_epochs": 1,
    "val_interval": 1,
    "image_repeats": 1,
    "finetune_image_repeats": 1,
    "patches_per_image": 4,
    "convert_steps": 2,
    "finetune_steps": 2,
    "steps_sweep": "[1,2]",
    "num_calibration": 8,
    "percentile_candidates": "[99.9,99]",
    "eval_extra_steps": "{'finetuned':[1]}",
}


def _bundle(configs: list[str], *args: str, check: bool = True, **overrides):
    return run_bundle(BUNDLE, configs, *args, check=check, **overrides)


@pytest.fixture(scope="module")
def tiny_drive(tmp_path_factory) -> Path:
    """A DRIVE-layout folder with 3 training and 2 test images (symlinks to the real files)."""
    require_data(DRIVE)
    root = tmp_path_factory.mktemp("drive") / "DRIVE"
    picks = {"training": ("21", "22", "23"), "test": ("01", "02")}
    for split, numbers in picks.items():
        for sub in ("images", "1st_manual", "mask"):
            (root / split / sub).mkdir(parents=True)
            for p in sorted((DRIVE / split / sub).iterdir()):
                if p.name[:2] in numbers:
                    os.symlink(p, root / split / sub / p.name)
    return root


@pytest.fixture(scope="module")
def pipeline(tiny_drive, tmp_path_factory) -> Path:
    """The four stages of one fold through the resumable runner, tiny settings."""
    from monai_snn.apps.cross_validation import run_cross_validation

    out = tmp_path_factory.mktemp("drive_run")
    overrides = dict(TINY, data_dir=str(tiny_drive))
    with stage_environment():
        status = run_cross_validation(BUNDLE, out, folds=[0], overrides=overrides, quiet=True)
    assert set(status.values()) == {"done"}
    return out / "fold0"


def test_stages_write_models_and_fov_metrics(pipeline):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert (pipeline / "train_ann" / "ckpt" / "best_model.pt").is_file()
    conv = json.loads((pipeline / "convert" / "metrics.json").read_text())
    assert set(conv["metrics_vs_T"]) == {"1", "2"} and conv["converted"]["num_steps"] == 2
    search = conv["percentile_search"]
    assert search["metric"] == "f1" and set(search["val_metric"]) == {"99.9", "99"}
    for net in ("ann", "converted"):
        for key in ("f1", "jaccard", "accuracy", "auc"):
            assert 0.0 <= conv[net][key] <= 1.0
    assert conv["converted"]["energy_snn_over_ann"] > 0 and conv["converted"]["firing_rates"]
    settings = json.loads((pipeline / "convert" / "snn_converted.json").read_text())
    assert settings["percentile"] == conv["percentile_search"]["chosen"] and settings["num_steps"] == 2
    assert (pipeline / "finetune" / "snn_finetuned.pt").is_file()
    ev = json.loads((pipeline / "evaluate" / "metrics.json").read_text())
    assert ev["info"]["models_from"] == "run" and ev["info"]["num_images"] == 2
    assert ev["ann"]["num_steps"] is None and ev["finetuned"]["num_steps"] == 2
    assert ev["finetuned"]["key_metric"] == "f1" and set(ev["finetuned"]["at_T"]) == {"1"}
    assert ev["converted"]["energy_snn_over_ann"] > 0
    # one TensorBoard event file per training stage (all handlers share the stage's writer), energy logged once
    for stage in ("train_ann", "finetune"):
        (events,) = (pipeline / stage).glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "energy_ratio" in tags and not any(t.startswith("energy/") for t in tags)
    assert "f1" in tags and any(t.startswith("firing_rate") for t in tags)


def test_rerun_skips_finished_stages(pipeline, tiny_drive):
    from monai_snn.apps.cross_validation import run_cross_validation

    status = run_cross_validation(BUNDLE, pipeline.parent, folds=[0], overrides=dict(TINY, data_dir=str(tiny_drive)),
                                  quiet=True)  # fmt: skip
    assert set(status.values()) == {"skipped"}


def test_quantization_aware_ann_from_the_float_ann(pipeline, tiny_drive, tmp_path):
    """activation=qcfs with ann_init = the float ANN of the pipeline (clipping levels from its activations) and the
    activity penalty: the converted SNN at the design T = 1 scores what the quantized ANN scores."""
    from monai_snn.apps.cross_validation import run_cross_validation

    overrides = dict(TINY, data_dir=str(tiny_drive), activation="qcfs", design_steps=1, activity_weight=0.3,
                     ann_init=str(pipeline / "train_ann" / "ckpt" / "best_model.pt"), steps_sweep="[1]")  # fmt: skip
    for key in ("percentile_candidates", "convert_steps", "finetune_image_repeats", "finetune_steps"):
        overrides.pop(key)  # set by activation=qcfs, or not options of train_ann / convert
    overrides.pop("eval_extra_steps")
    with stage_environment():
        status = run_cross_validation(BUNDLE, tmp_path, folds=[0], stages=["train_ann", "convert"], quiet=True,
                                      overrides=overrides)  # fmt: skip
    assert set(status.values()) == {"done"}
    m = json.loads((tmp_path / "fold0" / "convert" / "metrics.json").read_text())
    assert m["settings"]["normalization"] == "clip" and m["settings"]["activity_weight"] == 0.3
    assert m["converted"]["num_steps"] == 1 and not m.get("percentile_search")
    assert m["converted"]["f1"] == pytest.approx(m["ann"]["f1"], abs=2e-3)


def test_variants_convert_a_given_ann_file(pipeline, tiny_drive, tmp_path):
    """apps.variants on an ANN checkpoint file (--ann, as for the shipped models/ann.pt): one converted SNN per
    variant from that file, a table with a row per variant and the metrics vs T of the conversions' T sweeps."""
    from monai_snn.apps.variants import main

    variants = tmp_path / "v.json"
    variants.write_text(json.dumps({"title": "levels", "variants": {"IF 1.0": {"neuron": "if", "thresholds": [1.0]},
                                                                     "MT 2": {"thresholds": [1.0, 0.5]}}}))
    ann = pipeline / "train_ann" / "ckpt" / "best_model.pt"
    convert_keys = ("channels", "num_val", "convert_steps", "steps_sweep", "num_calibration")
    sets = [f"{k}={TINY[k]}" for k in convert_keys] + [f"data_dir={tiny_drive}", "percentile_candidates=[]"]
    with stage_environment():
        rows = main(["--bundle_root", str(BUNDLE), "--ann", str(ann), "--variants", str(variants), "--output_dir",
                     str(tmp_path / "out"), "--stages", "convert", "--metrics", "f1", "auc", "--quiet", "--set", *sets])
    assert [r["variant"] for r in rows] == ["IF 1.0", "MT 2"]
    for r in rows:
        assert 0.0 <= r["converted_f1"] <= 1.0 and r["converted_T"] == 2
    assert rows[0]["ann_f1"] == rows[1]["ann_f1"]  # one ANN for both
    levels = [json.loads((tmp_path / "out" / v / "fold0" / "convert" / "snn_converted.json").read_text())["thresholds"]
              for v in ("IF_1.0", "MT_2")]  # fmt: skip
    assert levels == [[1.0], [1.0, 0.5]]
    assert (tmp_path / "out" / "table.md").is_file() and (tmp_path / "out" / "plot.png").is_file()
    # the T sweep of each conversion (steps_sweep [1, 2]) as a metric-vs-T table with the stage's own figures
    table = (tmp_path / "out" / "table.md").read_text()
    sweep = json.loads((tmp_path / "out" / "MT_2" / "fold0" / "convert" / "metrics.json").read_text())["metrics_vs_T"]
    assert "| T=1 | T=2 |" in table and f"| MT 2 | auc | {sweep['1']['auc']:.4f} | {sweep['2']['auc']:.4f} |" in table
    assert (tmp_path / "out" / "metric_vs_T.png").is_file()


def test_ship_models_from_a_variant_folder(pipeline, tmp_path):
    """ship_models on a folder of apps.variants (no train_ann: the ANN is the file its conversion recorded): the SNNs
    and eval_metrics come from the variant; an ANN that is the bundle's own models/ann.pt is left as it is."""
    import shutil

    import torch

    from monai_snn.apps.ship_models import ship_models

    variant = tmp_path / "variant" / "fold0"
    for stage in ("convert", "finetune", "evaluate"):
        shutil.copytree(pipeline / stage, variant / stage)
    bundle = tmp_path / "bundle"
    shutil.copytree(CFG, bundle / "configs")
    (bundle / "models").mkdir()
    shutil.copyfile(pipeline / "train_ann" / "ckpt" / "best_model.pt", bundle / "models" / "ann.pt")
    (bundle / "models" / "ann.json").write_text(json.dumps({"source": "the earlier run"}))
    conv = json.loads((variant / "convert" / "metrics.json").read_text())
    ann_path = str(bundle / "models" / "ann.pt")
    (variant / "convert" / "metrics.json").write_text(json.dumps(dict(conv, ann_checkpoint=ann_path)))
    before = (bundle / "models" / "ann.pt").read_bytes()
    metrics = ship_models(tmp_path / "variant", 0, bundle)
    ev = json.loads((pipeline / "evaluate" / "metrics.json").read_text())
    assert metrics["f1_finetuned_T2_fold0"] == round(ev["finetuned"]["f1"], 4)
    assert (bundle / "models" / "model.pt").read_bytes() == (pipeline / "finetune" / "snn_finetuned.pt").read_bytes()
    assert (bundle / "models" / "ann.pt").read_bytes() == before
    assert json.loads((bundle / "models" / "ann.json").read_text()) == {"source": "the earlier run"}
    # an ANN file elsewhere is copied in, with the architecture of the bundle's configs
    shutil.rmtree(bundle / "models")
    (variant / "convert" / "metrics.json").write_text(json.dumps(
        dict(conv, ann_checkpoint=str(pipeline / "train_ann" / "ckpt" / "best_model.pt"))))  # fmt: skip
    ship_models(tmp_path / "variant", 0, bundle)
    assert json.loads((bundle / "models" / "ann.json").read_text())["args"]["channels"] == [4, 8, 16, 32]
    assert torch.load(bundle / "models" / "ann.pt", weights_only=True).keys() == torch.load(
        pipeline / "train_ann" / "ckpt" / "best_model.pt", weights_only=True)["network"].keys()  # fmt: skip


def test_inference_contract(pipeline, tiny_drive, tmp_path):
    """--input_dir / --output_dir: <stem>_seg.png (0/255) and <stem>_prob.png, input height x width, per image."""
    models = tmp_path / "models"
    models.mkdir()
    run = pipeline
    for src, dst in ((run / "train_ann" / "ckpt" / "best_model.pt", "ann.pt"),
                     (run / "convert" / "snn_converted.pt", "converted.pt"),
                     (run / "convert" / "snn_converted.json", "converted.json"),
                     (run / "finetune" / "snn_finetuned.pt", "model.pt"),
                     (run / "finetune" / "snn_finetuned.json", "model.json")):  # fmt: skip
        os.symlink(src, models / dst)
    src = tiny_drive / "test" / "images"
    proc = _bundle(["common", "inference"], input_dir=src, output_dir=tmp_path / "out", models_dir=models,
                   channels=TINY["channels"])  # fmt: skip
    assert "inference: [2/2] 100%" in proc.stderr
    for img in sorted(src.iterdir()):
        h, w = np.asarray(Image.open(img)).shape[:2]
        seg = np.asarray(Image.open(tmp_path / "out" / f"{img.stem}_seg.png"))
        prob = np.asarray(Image.open(tmp_path / "out" / f"{img.stem}_prob.png"))
        assert seg.shape == (h, w) and prob.shape == (h, w) and seg.dtype == np.uint8 and prob.dtype == np.uint8
        assert set(np.unique(seg)) <= {0, 255}
        assert ((prob >= 128) == (seg == 255)).mean() > 0.99  # the mask is the thresholded probability
    assert len(list((tmp_path / "out").iterdir())) == 4
    # --network ann on a single file
    one = src / sorted(os.listdir(src))[0]
    _bundle(["common", "inference"], input_dir=one, output_dir=tmp_path / "ann", models_dir=models, network="ann",
            channels=TINY["channels"])  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "ann").iterdir()) == [f"{one.stem}_prob.png", f"{one.stem}_seg.png"]


@pytest.mark.parametrize("case", ["grey", "empty", "unreadable"])
def test_inference_bad_input_names_the_file(tiny_drive, tmp_path, case):
    src = tmp_path / "in"
    src.mkdir()
    if case == "grey":
        bad = src / "grey.png"
        Image.open(next((tiny_drive / "test" / "images").iterdir())).convert("L").save(bad)
        expected = ["grey.png", "3 channels", "got 1 channel"]
    elif case == "unreadable":
        bad = src / "broken.tif"
        bad.write_bytes(b"not an image")
        expected = ["broken.tif", "not a readable image"]
    else:
        expected = ["no ", str(src)]
    assert_inference_rejects(BUNDLE, src, tmp_path / "out", expected, models_dir=tmp_path)


def test_ddp_two_processes_gloo(tiny_drive, tmp_path):
    proc = run_ddp(BUNDLE, ["common", "train_ann", "multi_gpu_train"], output_dir=tmp_path,
                   data_dir=tiny_drive, **TINY)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    stage = tmp_path / "fold0" / "train_ann"
    assert (stage / "ckpt" / "best_model.pt").is_file() and list((stage / "ckpt").glob("latest*.pt"))
    assert len(list(stage.glob("events.out.tfevents.*"))) == 1  # rank 1 writes no event file


@pytest.mark.parametrize("stage", ["train_ann", "convert", "finetune", "evaluate", "inference"])
def test_full_profile_merges_over_every_stage(stage):
    """The GPU profile (not run here) parses over each stage and builds its wider network."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(CFG / "common.json"), str(CFG / f"{stage}.json"), str(CFG / "full.json")])
    assert parser["patches_per_image"] == 64 and parser["steps_sweep"][-1] == 64
    net = parser.get_parsed_content("network_def")
    assert tuple(net.channels) == (32, 64, 128, 256)


def test_killed_training_resumes_to_the_uninterrupted_weights(tiny_drive, tmp_path):
    """kill -9 mid-epoch 2 of train_ann, rerun: the resumed run draws the same patches (random crop / flip state in
    the checkpoint) and ends with the weights of an uninterrupted run."""
    import torch

    args = dict(TINY, data_dir=tiny_drive, max_epochs=2, image_repeats=2)
    run_bundle(BUNDLE, ["common", "train_ann"], output_dir=tmp_path / "once", **args)
    fault = str(REPO / "tests" / "fault_injection")
    env_kill = {"MONAI_SNN_KILL": "train_ann.json:2:1", "PYTHONPATH": fault + os.pathsep + str(REPO)}
    old = {k: os.environ.get(k) for k in env_kill}
    os.environ.update(env_kill)
    try:
        killed = run_bundle(BUNDLE, ["common", "train_ann"], check=False, output_dir=tmp_path / "twice", **args)
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert killed.returncode == -9
    assert (tmp_path / "twice" / "fold0" / "train_ann" / "ckpt" / "latest_checkpoint_epoch=1.pt").is_file()
    run_bundle(BUNDLE, ["common", "train_ann"], output_dir=tmp_path / "twice", **args)
    a, b = (torch.load(p / "fold0" / "train_ann" / "ckpt" / "latest_checkpoint_epoch=2.pt", weights_only=True)
            for p in (tmp_path / "once", tmp_path / "twice"))  # fmt: skip
    for k, v in a["network"].items():
        assert torch.equal(v, b["network"][k]), k


def _fov_f1(seg_png: Path, n: str) -> float:
    """Vessel F1 inside the FOV of DRIVE test image ``n`` of a ``*_seg.png`` output."""
    seg = np.asarray(Image.open(seg_png)) == 255
    lab = np.asarray(Image.open(DRIVE / "test" / "1st_manual" / f"{n}_manual1.gif")) > 0
    fov = np.asarray(Image.open(DRIVE / "test" / "mask" / f"{n}_test_mask.gif")) > 0
    seg, lab = seg[fov], lab[fov]
    return float(2 * (seg & lab).sum() / (seg.sum() + lab.sum()))


def test_shipped_model_on_test_images(tmp_path):
    """The shipped fine-tuned SNN (default model, its shipped T) on two real DRIVE test images: F1 inside the FOV;
    the directly trained baseline (``--network unet_mt``) on one of them: it segments, below the default model."""
    require_data(DRIVE)
    for f in ("ann.pt", "converted.pt", "converted.json", "model.pt", "model.json", "unet_mt.pt", "unet_mt.json"):
        assert (MODELS / f).is_file(), f"shipped model missing: {f}"
    src = tmp_path / "in"
    src.mkdir()
    for n in ("01", "02"):
        os.symlink(DRIVE / "test" / "images" / f"{n}_test.tif", src / f"{n}_test.tif")
    run_bundle(BUNDLE, ["common", "inference"], input_dir=src, output_dir=tmp_path / "out")
    f1 = {n: _fov_f1(tmp_path / "out" / f"{n}_test_seg.png", n) for n in ("01", "02")}
    assert all(v > 0.7 for v in f1.values()), f"vessel F1 inside the FOV {f1}"
    run_bundle(BUNDLE, ["common", "inference"], input_dir=src / "01_test.tif", output_dir=tmp_path / "dt",
               network="unet_mt")  # fmt: skip
    assert 0.6 < _fov_f1(tmp_path / "dt" / "01_test_seg.png", "01") < f1["01"]
