"""Smoke tests of the ``bundles/denoise_snn`` MONAI bundle on real images, through the real CLI.

Tiny settings: a data root of symlinks with 6 Train400 images (2 held out for validation) and 2 BSD68 images,
channels (4, 8, 16, 32), 2 patches of 32 x 32 per image, 1 epoch, T = 2. Without the data the tests skip, under CI
they fail.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.bundle_cli import assert_inference_rejects, run_bundle, run_ddp, stage_environment
from tests.conftest import DATA, REPO, require_data

BUNDLE = REPO / "bundles" / "denoise_snn"
SETS = {"Train400": 6, "BSD68": 2, "CBSD_train": 4, "CBSD68": 2}
TINY = {
    "channels": "[4,8,16,32]",
    "num_val": 2,
    "max_epochs": 1,
    "val_interval": 1,
    "patches_per_image": 2,
    "patch_size": "[32,32]",
    "convert_steps": 2,
    "finetune_steps": 2,
    "steps_sweep": "[1,2]",
    "num_calibration": 4,
    "percentile_candidates": "[99.9]",
    "eval_extra_steps": "{'finetuned': [1]}",
}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    """A data root with the first images of each denoising set (symlinks to the real files)."""
    root = tmp_path_factory.mktemp("denoise_data")
    for name, n in SETS.items():
        src = require_data(DATA / name)
        (root / name).mkdir()
        for f in sorted(src.iterdir())[:n]:
            os.symlink(f, root / name / f.name)
    return root


@pytest.fixture(scope="module")
def pipeline(tiny_root, tmp_path_factory) -> Path:
    from monai_snn.apps.cross_validation import run_cross_validation

    out = tmp_path_factory.mktemp("denoise_run")
    with stage_environment():
        status = run_cross_validation(BUNDLE, out, folds=[0], overrides=dict(TINY, data_root=str(tiny_root)),
                                      quiet=True)  # fmt: skip
    assert set(status.values()) == {"done"}
    return out / "fold0"


def _for_direct(tiny: dict, **extra) -> dict:
    """The tiny settings that the direct-training and evaluate stages define (no conversion options)."""
    drop = {"convert_steps", "steps_sweep", "num_calibration", "percentile_candidates"}
    return {**{k: v for k, v in tiny.items() if k not in drop}, **extra}


def test_directly_trained_spiking_unet_beside_the_pipeline(pipeline, tiny_root):
    """An optional DT stage (real-spike neurons, BPTT through the residual readout), then the evaluate stage again:
    the directly trained U-Net is scored at every sigma beside the converted and fine-tuned ones."""
    from monai_snn.apps.cross_validation import run_cross_validation

    with stage_environment():
        status = run_cross_validation(BUNDLE, pipeline.parent, folds=[0], stages=["train_unet_rs", "evaluate"],
                                      overrides=_for_direct(TINY, data_root=str(tiny_root)), quiet=True)  # fmt: skip
    assert status == {"fold0/train_unet_rs": "done", "fold0/evaluate": "done"}
    settings = json.loads((pipeline / "train_unet_rs" / "direct.json").read_text())
    assert settings["kwargs"]["neuron"] == "real_spike" and settings["num_steps"] == 2  # finetune_steps
    ev = json.loads((pipeline / "evaluate" / "metrics.json").read_text())
    assert ev["unet_rs"]["num_steps"] == 2 and ev["unet_rs"]["psnr"] > 0 and "psnr_15" in ev["unet_rs"]


def test_stages_write_models_and_metrics(pipeline):
    conv = json.loads((pipeline / "convert" / "metrics.json").read_text())
    assert set(conv["metrics_vs_T"]) == {"1", "2"} and conv["converted"]["num_steps"] == 2
    for net in ("ann", "converted"):
        assert 5.0 < conv[net]["psnr"] < 60.0 and 0.0 < conv[net]["ssim"] <= 1.0
    ev = json.loads((pipeline / "evaluate" / "metrics.json").read_text())
    assert ev["info"]["models_from"] == "run" and ev["info"]["num_images"] == 2 and ev["info"]["sigmas"] == [15, 25, 50]
    fine = ev["finetuned"]
    assert fine["num_steps"] == 2 and fine["key_metric"] == "psnr" and fine["energy_snn_over_ann"] > 0
    assert fine["psnr"] == fine["psnr_25"] and fine["psnr_15"] > fine["psnr_50"]
    assert set(fine["at_T"]) == {"1"} and (pipeline / "evaluate" / "sigma50" / "metrics.json").is_file()
    assert (pipeline / "evaluate" / "examples.png").stat().st_size > 10_000  # noisy | ann | converted | ... | clean
    assert ev["ann"]["psnr_25"] == pytest.approx(conv["ann"]["psnr"], abs=1e-4)  # the same fixed-seed noise
    fine_s = json.loads((pipeline / "finetune" / "snn_finetuned.json").read_text())
    assert fine_s["num_steps"] == 2 and fine_s["channels"] == [4, 8, 16, 32]


def test_tables_script_next_to_the_paper(pipeline, tmp_path):
    from monai_snn.bundle import load_scripts

    text = load_scripts(BUNDLE).tables.main(["--grey", str(pipeline), "--output_dir", str(tmp_path)])
    assert "| BSD68 | PSNR | 25 | 28.61 | 28.72 |" in text and "| 10 | - | - | - | - | - | 28.72 | 0.802 |" in text
    ev = json.loads((pipeline / "evaluate" / "metrics.json").read_text())
    assert "| 1 | " in text and f"{ev['finetuned']['at_T']['1']['psnr']:.2f}" in text
    assert (tmp_path / "psnr_vs_T_BSD68.png").stat().st_size > 1000 and (tmp_path / "tables.md").read_text() == text


def test_ship_models_per_variant_and_ann_only(pipeline, tmp_path):
    import shutil

    from monai_snn.apps.ship_models import ship_models

    bundle = tmp_path / "bundle"
    for sub in ("configs", "scripts"):
        shutil.copytree(BUNDLE / sub, bundle / sub)
    run = pipeline.parent
    grey = ship_models(run, 0, bundle, label="grey_psnr", models_dir=bundle / "models" / "grey",
                       keep_other_metrics=True)  # fmt: skip
    color = ship_models(run, 0, bundle, label="color_psnr", models_dir=bundle / "models" / "color",
                        keep_other_metrics=True)  # fmt: skip
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())["eval_metrics"]
    assert meta == {**grey, **color} and "grey_psnr_finetuned_T2_fold0" in meta and "color_psnr_ann_fold0" in meta
    for variant in ("grey", "color"):
        names = sorted(p.name for p in (bundle / "models" / variant).iterdir())
        assert names == ["ann.json", "ann.pt", "converted.json", "converted.pt", "model.json", "model.pt"]
    assert ship_models(run, 0, bundle, models_dir=tmp_path / "only", ann_only=True) == {}
    assert sorted(p.name for p in (tmp_path / "only").iterdir()) == ["ann.json", "ann.pt"]
    assert json.loads((tmp_path / "only" / "ann.json").read_text())["args"]["channels"] == [4, 8, 16, 32]


def _models(pipeline: Path, dst: Path) -> Path:
    dst.mkdir()
    for src, name in ((pipeline / "train_ann" / "ckpt" / "best_model.pt", "ann.pt"),
                      (pipeline / "convert" / "snn_converted.pt", "converted.pt"),
                      (pipeline / "convert" / "snn_converted.json", "converted.json"),
                      (pipeline / "finetune" / "snn_finetuned.pt", "model.pt"),
                      (pipeline / "finetune" / "snn_finetuned.json", "model.json")):  # fmt: skip
        os.symlink(src, dst / name)
    return dst


def test_inference_contract_png_and_npy(pipeline, tiny_root, tmp_path):
    models = _models(pipeline, tmp_path / "models")
    src = tmp_path / "in"
    src.mkdir()
    clean = np.asarray(Image.open(sorted((tiny_root / "BSD68").iterdir())[0]), dtype=np.float32)
    noisy = clean + np.random.default_rng(0).normal(0, 25, clean.shape).astype(np.float32)  # not clipped
    np.save(src / "a.npy", noisy)
    Image.fromarray(np.clip(noisy, 0, 255).round().astype(np.uint8)).save(src / "b.png")
    for network in ("finetuned", "ann"):
        out = tmp_path / f"out_{network}"
        proc = run_bundle(BUNDLE, ["common", "inference"], input_dir=src, output_dir=out, models_dir=models,
                          network=network, channels=TINY["channels"])  # fmt: skip
        assert "inference: [2/2] 100%" in proc.stderr
        for stem in ("a", "b"):
            arr, png = np.load(out / f"{stem}.npy"), np.asarray(Image.open(out / f"{stem}.png"))
            assert arr.shape == png.shape == clean.shape and arr.dtype == np.float32 and png.dtype == np.uint8
            assert 0.0 <= arr.min() and arr.max() <= 255.0 and np.abs(np.rint(arr) - png).max() <= 1


def test_colour_inference_and_the_colour_profile(tmp_path, tiny_root):
    from monai_snn.networks import ConvertibleUNet

    models = tmp_path / "models"
    models.mkdir()
    torch.save(ConvertibleUNet(2, 3, 3, channels=(4, 8, 16, 32)).state_dict(), models / "ann.pt")
    src = sorted((tiny_root / "CBSD68").iterdir())[0]
    proc = run_bundle(BUNDLE, ["common", "inference"], input_dir=src, output_dir=tmp_path / "out", models_dir=models,
                      network="ann", color="true", channels=TINY["channels"])  # fmt: skip
    assert proc.returncode == 0
    assert np.load(tmp_path / "out" / f"{src.stem}.npy").shape == np.asarray(Image.open(src)).shape
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / f) for f in ("common.json", "evaluate.json")])
    parser["color"], parser["bundle_root"] = True, str(BUNDLE)
    assert parser.get_parsed_content("finetune_steps") == 20 and parser.get_parsed_content("test_set") == "CBSD68"
    assert parser.get_parsed_content("models_dir").endswith(os.path.join("models", "color"))


@pytest.mark.parametrize("case", ["grey_to_colour", "colour_to_grey", "nan", "unreadable", "empty"])
def test_inference_bad_input_names_the_file(tiny_root, tmp_path, case):
    src = tmp_path / "in"
    src.mkdir()
    color = "false"
    if case == "grey_to_colour":
        os.symlink(sorted((tiny_root / "BSD68").iterdir())[0], src / "g.png")
        color, expected = "true", ["g.png has 1 channel (grey) but the colour model expects 3 channels"]
    elif case == "colour_to_grey":
        os.symlink(sorted((tiny_root / "CBSD68").iterdir())[0], src / "c.png")
        expected = ["c.png has 3 channels (colour) but the grey model expects 1 channel"]
    elif case == "nan":
        np.save(src / "n.npy", np.full((8, 8), np.nan, np.float32))
        expected = ["n.npy holds 64 NaN or infinite values"]
    elif case == "unreadable":
        (src / "x.png").write_bytes(b"\x89PNG broken")
        expected = ["x.png is not a readable image file"]
    else:
        expected = ["no .png / .npy file found in", str(src)]
    assert_inference_rejects(BUNDLE, src, tmp_path / "out", expected, models_dir=tmp_path, color=color)


def test_noise_level_outside_range_names_the_option(tiny_root, tmp_path):
    proc = run_bundle(BUNDLE, ["common", "evaluate"], check=False, output_dir=tmp_path, data_root=tiny_root,
                      test_sigmas="[15,300]", channels=TINY["channels"])  # fmt: skip
    assert proc.returncode != 0 and "test_sigmas must be a noise level in [0, 255]" in proc.stderr, proc.stderr[-2000:]


def test_train_ann_from_init_weights(pipeline, tiny_root, tmp_path):
    """--init_weights starts training from a trained ANN (lr 0: the best model is exactly the given weights)."""
    init = pipeline / "train_ann" / "ckpt" / "best_model.pt"
    run_bundle(BUNDLE, ["common", "train_ann"], output_dir=tmp_path, data_root=tiny_root, init_weights=init,
               learning_rate=0.0, **{k: v for k, v in TINY.items() if k in ("channels", "num_val", "max_epochs",
               "val_interval", "patches_per_image", "patch_size")})  # fmt: skip
    got = torch.load(tmp_path / "fold0" / "train_ann" / "ckpt" / "best_model.pt", weights_only=True)
    want = torch.load(init, weights_only=True)
    got, want = got.get("network", got), want.get("network", want)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)


def test_ddp_two_processes_gloo(tiny_root, tmp_path):
    proc = run_ddp(BUNDLE, ["common", "train_ann", "multi_gpu_train"], output_dir=tmp_path,
                   data_root=tiny_root, **TINY)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert (tmp_path / "fold0" / "train_ann" / "ckpt" / "best_model.pt").is_file()


@pytest.mark.parametrize("stage", ["train_ann", "convert", "finetune", "evaluate", "inference"])
def test_full_profile_merges_over_every_stage(stage):
    """The GPU profile (not run here) parses over each stage: the reference code's 64-1024 U-Net."""
    from monai.bundle import ConfigParser

    cfg = BUNDLE / "configs"
    parser = ConfigParser()
    parser.read_config([str(cfg / "common.json"), str(cfg / f"{stage}.json"), str(cfg / "full.json")])
    parser["bundle_root"] = str(BUNDLE)
    assert tuple(parser.get_parsed_content("network_def").channels) == (64, 128, 256, 512, 1024)
    assert parser.get_parsed_content("inferer").divisor == 16 and parser.get_parsed_content("finetune_steps") == 10


@pytest.mark.parametrize("color,network", [(False, "ann"), (True, "ann"), (False, "finetuned")])
def test_shipped_model_denoises_a_test_image(tmp_path, color, network):
    """The shipped grey / colour ANN and the grey fine-tuned SNN (T = 10) through the inference contract on a real
    BSD68 / CBSD68 image with fixed-seed sigma-25 noise: at least 5 dB better than the noisy input (validation: grey
    27.3 dB, colour 29.3 dB, 20.2 noisy)."""
    src = require_data(DATA / ("CBSD68" if color else "BSD68")) / ("101085.png" if color else "test002.png")
    clean = np.asarray(Image.open(src), dtype=np.float32)
    noisy = clean + np.random.default_rng(0).normal(0, 25, clean.shape).astype(np.float32)
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / f"{src.stem}.npy", noisy)
    run_bundle(BUNDLE, ["common", "inference"], input_dir=tmp_path / "in", output_dir=tmp_path / "out",
               network=network, color=str(color).lower())  # fmt: skip
    out = np.load(tmp_path / "out" / f"{src.stem}.npy")

    def psnr(x):
        return 10 * np.log10(255.0**2 / np.mean((np.clip(x, 0, 255) - clean) ** 2))

    assert out.shape == clean.shape and psnr(out) > psnr(noisy) + 5.0, (psnr(noisy), psnr(out))
