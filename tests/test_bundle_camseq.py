"""Smoke and unit tests of the ``bundles/camseq_snn`` MONAI bundle on real CamSeq01 frames, through the real CLI.

Tiny settings: 6 real frames (the first 4 and the last 2 by name: 3 train, 1 validation, 2 test), channels
(4, 8, 16, 32), 2 patches of 64 x 64 per frame, 1 epoch, T <= 2; the directly trained Spiking-FCN / Spiking-DeepLab
with widths (4, 4, 8) / 8. The shipped models, unit tests and bad input are in ``test_bundle_camseq_models.py``.
Without the data the tests skip, under CI they fail.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.bundle_cli import run_bundle, stage_environment
from tests.conftest import CAMSEQ_BUNDLE as BUNDLE
from tests.conftest import load_benchmark

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
def pipeline(tiny_camseq, tmp_path_factory) -> Path:
    from monai_snn.apps.cross_validation import run_cross_validation

    out = tmp_path_factory.mktemp("camseq_run")
    with stage_environment():
        status = run_cross_validation(
            BUNDLE, out, folds=[0], overrides=dict(TINY, data_dir=str(tiny_camseq)), quiet=True
        )
    assert set(status.values()) == {"done"}
    return out / "fold0"


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
    # no "MT + FT" variant: the MT row's FT is this fold's own fine-tuned model (the pipeline is MT + FT)
    mt = next(r for r in res["neurons"] if r["neuron"] == "MT")
    ev = json.loads((pipeline / "evaluate" / "metrics.json").read_text())
    assert mt["ft"] == ev["finetuned"]["miou"] and mt["ft_source"] == "this fold's finetune stage"
    assert next(r for r in res["neurons"] if r["neuron"] == "ML rate")["ft"] is None
    # a validation tag the stages never logged (hippocampus validates on 2D Dice, tests on 3D): the error names both
    with pytest.raises(SystemExit, match="logged no validation metric 'dice_3d'.*'miou'.*--val_metric"):
        main(["--fold_dir", str(pipeline), "--output_dir", str(tmp_path / "cmp3"), "--val_metric", "dice_3d"])


def test_comparison_of_models_trained_elsewhere(pipeline, tmp_path):
    """A fold that evaluated models trained outside it (e.g. the shipped ones beside a new direct-training run):
    their scores are listed, their training cost is unknown ("-"), not zero."""
    from monai_snn.apps.compare import main

    fold = tmp_path / "run" / "fold0"
    shutil.copytree(pipeline / "evaluate", fold / "evaluate")
    res = main(["--fold_dir", str(fold), "--output_dir", str(tmp_path / "cmp"), "--title", "elsewhere"])
    rows = {r["model"]: r for r in res["rows"]}
    assert {"ann", "converted", "finetuned"} <= set(rows) and "conversion + fine-tuning" not in res["curves"]
    assert rows["finetuned"]["iterations"] is None and rows["finetuned"]["seconds"] is None
    table = (tmp_path / "cmp" / "training_cost.md").read_text()
    assert "| conversion + fine-tuning (trained outside this fold) | finetuned | 2 |" in table
    assert table.split("| finetuned |")[1].split("\n")[0].rstrip().endswith("| - | - |")


def test_comparison_from_kept_results(pipeline, tmp_path):
    """keep_results keeps each stage's scalars and seconds: the comparison made again from the kept files (no weights,
    no TensorBoard run) has the run's rows and curves."""
    from monai_snn.apps.compare import main
    from monai_snn.apps.keep_results import keep_results

    run = main(["--fold_dir", str(pipeline), "--output_dir", str(tmp_path / "from_run")])
    keep_results(pipeline.parent, tmp_path / "kept", folds=[0])
    kept_fold = tmp_path / "kept" / "fold0"
    assert not list(kept_fold.rglob("events.out.tfevents.*")) and not list(kept_fold.rglob("*.pt"))
    kept = main(["--fold_dir", str(kept_fold), "--output_dir", str(tmp_path / "from_kept")])
    assert kept["rows"] == run["rows"] and kept["curves"] == run["curves"]
    assert kept["curves"]["conversion + fine-tuning"]["values"]  # not an empty curve matching an empty one
    table = (tmp_path / "from_kept" / "training_cost.md").read_text()
    assert table.split("| test miou |")[1] == (tmp_path / "from_run" / "training_cost.md").read_text().split(
        "| test miou |")[1]  # the same table below its source line


def test_continue_ann_control_benchmark(pipeline, tiny_camseq):
    """benchmarks/continue_ann.py (the ANN under fine-tuning's optimizer restart) on the tiny run: it cannot rot."""
    main = load_benchmark("continue_ann").main
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


