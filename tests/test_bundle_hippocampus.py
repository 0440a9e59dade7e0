"""Smoke tests of the ``bundles/hippocampus_snn`` MONAI bundle on real MSD Task04 volumes, through the real CLI.

Tiny settings (8 real volumes in 2 folds, channels (4, 8, 16, 32), 1-2 epochs, T <= 2) keep the whole module at
a few minutes on 2 CPU cores. Without the data the tests skip, under CI they fail.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.bundle_cli import bundle_env as _env
from tests.bundle_cli import run_bundle, run_ddp
from tests.conftest import HIPPO, REPO, require_data

BUNDLE = REPO / "bundles" / "hippocampus_snn"
CFG = BUNDLE / "configs"
MODELS = BUNDLE / "models"
TINY = {
    "channels": "[4,8,16,32]",
    "num_folds": 2,
    "max_epochs": 1,
    "convert_steps": 2,
    "finetune_steps": 2,
    "steps_sweep": "[1,2]",
    "num_calibration": 16,
    "percentile_candidates": "[99.9,95]",
}
NAMES = [f"hippocampus_{i:03d}.nii.gz" for i in (1, 4, 6, 7, 8, 11, 14, 15)]


def _bundle(configs: list[str], *args: str, check: bool = True, timeout: int = 300, **overrides):
    return run_bundle(BUNDLE, configs, *args, check=check, timeout=timeout, **overrides)


@pytest.fixture(scope="module")
def tiny_msd(tmp_path_factory) -> Path:
    """An MSD-layout folder with 8 real volumes (symlinks)."""
    require_data(HIPPO)
    root = tmp_path_factory.mktemp("msd") / "Task04_Hippocampus"
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir(parents=True)
        for n in NAMES:
            os.symlink(HIPPO / sub / n, root / sub / n)
    return root


def test_verify_metadata_offline():
    schema = CFG / "schema" / "meta_schema.json"
    assert schema.is_file()
    meta = json.loads((CFG / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"] and meta["monai_version"] == "1.6.1"
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file", str(CFG / "metadata.json"),
         "--filepath", str(schema)], capture_output=True, text=True, env=_env(), cwd=str(BUNDLE), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "metadata is verified with no error" in proc.stdout + proc.stderr


def test_cross_validation_stages_skip_and_resume(tiny_msd, tmp_path):
    out = tmp_path / "cv"
    # 1. start train_ann (2 epochs) and kill it after the first epoch's checkpoint
    files = repr([str(CFG / "common.json"), str(CFG / "train_ann.json")])
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", files, "--logging_file",
           str(CFG / "logging.conf"), "--bundle_root", str(BUNDLE), "--output_dir", str(out), "--fold", "0",
           "--data_dir", str(tiny_msd)]  # fmt: skip
    for k, v in dict(TINY, max_epochs=50).items():
        cmd += [f"--{k}", str(v)]
    ckpt_dir = out / "fold0" / "train_ann" / "ckpt"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=str(REPO))
    t0 = time.time()
    try:
        while not list(ckpt_dir.glob("latest*epoch=*.pt")):
            assert proc.poll() is None, "train_ann ended before its first checkpoint"
            assert time.time() - t0 < 180, "no checkpoint after 180 s"
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    # the saver removes the previous file only after the next one is written: never none, two if the kill fell between
    killed = sorted(int(p.stem.split("=")[-1]) for p in ckpt_dir.glob("latest*epoch=*.pt"))
    assert 1 <= len(killed) <= 2 and killed[-1] < 50, killed
    killed_at = killed[-1]

    # 2. cross-validation: resumes train_ann, then runs the other stages
    from monai_snn.apps.cross_validation import run_cross_validation

    overrides = dict(TINY, max_epochs=killed_at + 1, data_dir=str(tiny_msd))
    status = run_cross_validation(BUNDLE, out, folds=[0], overrides=overrides, quiet=True)
    assert status == {f"fold0/{s}": "done" for s in ("train_ann", "convert", "finetune", "evaluate")}
    log = (out / "fold0" / "train_ann" / "stage.log").read_text()
    assert "Restored all variables from" in log and f"epoch={killed_at}" in log  # resumed from the killed run
    assert f"Epoch[{killed_at + 1}] Complete" in log and f"Epoch[{killed_at}] Complete" not in log
    assert list(ckpt_dir.glob(f"latest*epoch={killed_at + 1}.pt")) and (ckpt_dir / "best_model.pt").is_file()
    for stage in ("train_ann", "convert", "finetune", "evaluate"):
        assert (out / "fold0" / stage / "done.json").is_file()
        events = list((out / "fold0" / stage).glob("events.out.tfevents.*"))
        # one writer per stage (train_ann: the killed run's file and the resumed run's)
        assert len(events) == (2 if stage == "train_ann" else 1), (stage, events)
    conv = json.loads((out / "fold0" / "convert" / "metrics.json").read_text())
    assert set(conv["metrics_vs_T"]) == {"1", "2"}
    for m in conv["metrics_vs_T"].values():
        assert set(m) >= {"dice_3d_mean", "dice_3d_std", "dice_2d_mean", "dice_2d_std"}
    assert conv["metrics_vs_T"]["2"]["dice_3d_mean"] == conv["converted"]["dice_3d_mean"]  # T = convert_steps
    assert conv["converted"]["energy_snn_over_ann"] > 0 and conv["converted"]["firing_rates"]
    assert conv["ann"]["key_metric"] == "dice_3d_mean" and 0.0 <= conv["ann"]["dice_3d_mean"] <= 1.0
    # the percentile is chosen on the validation volumes and stored with the converted SNN
    search = conv["percentile_search"]
    assert set(search["val_metric"]) == {"99.9", "95"} and search["chosen"] in (99.9, 95.0)
    assert search["metric"] == "dice_3d_mean"
    assert search["val_metric"][f"{search['chosen']:g}"] == max(search["val_metric"].values())
    saved = json.loads((out / "fold0" / "convert" / "snn_converted.json").read_text())
    assert saved["percentile"] == search["chosen"] == conv["settings"]["percentile"]
    assert (out / "fold0" / "finetune" / "snn_finetuned.pt").is_file()
    fine = json.loads((out / "fold0" / "finetune" / "snn_finetuned.json").read_text())
    assert fine["percentile"] == search["chosen"] and fine["num_steps"] == 2 and fine["method"] == "flow"
    ev = json.loads((out / "fold0" / "evaluate" / "metrics.json").read_text())
    assert ev["ann"]["num_steps"] is None and ev["converted"]["num_steps"] == 2 and ev["finetuned"]["num_steps"] == 2
    for k in ("ann", "converted", "finetuned"):
        assert 0.0 <= ev[k]["dice_3d_mean"] <= 1.0 and "dice_3d_std" in ev[k] and "dice_2d_mean" in ev[k]
    assert ev["converted"]["energy_snn_over_ann"] > 0 and ev["finetuned"]["energy_snn_over_ann"] > 0
    assert ev["info"]["models_from"] == "run" and ev["info"]["num_volumes"] >= 1
    # the converted SNN on the same test volumes at the same T: the conversion stage's numbers
    assert ev["converted"]["dice_3d_mean"] == conv["converted"]["dice_3d_mean"]
    assert ev["ann"]["dice_3d_mean"] == conv["ann"]["dice_3d_mean"]
    # energy reaches TensorBoard once, through the engine metrics (TensorBoardStatsHandler), not from EnergyHandler
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (ft_events,) = (out / "fold0" / "finetune").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(ft_events))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"energy_ratio", "val_mean_dice", "train_loss"} <= set(tags)
    assert not any(t.startswith("energy/") for t in tags)
    assert any(t.startswith("firing_rate_val/") for t in tags)

    # 3. finished stages are skipped
    status = run_cross_validation(BUNDLE, out, folds=[0], overrides=overrides, quiet=True)
    assert set(status.values()) == {"skipped"}

    # 4. summary
    from monai_snn.apps.summary import summarize

    rows = summarize([out], out / "summary", ["dice_3d_mean", "dice_2d_mean"])
    assert {r["network"] for r in rows} >= {"ann", "converted", "finetuned"}
    ann_row = next(r for r in rows if r["network"] == "ann")
    assert ann_row["dice_3d_mean"] == ev["ann"]["dice_3d_mean"] and ann_row["dice_2d_mean"] == ev["ann"]["dice_2d_mean"]
    assert (out / "summary" / "summary.md").read_text().count("|") > 10 and (out / "summary" / "summary.csv").is_file()
    assert (out / "summary" / "metric_vs_T.png").stat().st_size > 1000
    per_fold = (out / "summary" / "summary.md").read_text().split("## Per fold")[1].splitlines()
    assert per_fold[4].startswith(f"| cv | 0 | {search['chosen']} | {ev['ann']['dice_3d_mean']:.3f} |")

    # 5. shipping the fold's models into a (copied) bundle: weights load, metadata numbers come from the run
    from monai_snn.apps.ship_models import ship_models
    from monai_snn.conversion import build_snn
    from monai_snn.networks import ConvertibleUNet

    bundle = out / "bundle"
    shutil.copytree(CFG, bundle / "configs")
    metrics = ship_models(out, 0, bundle)  # the evaluation's key metric
    assert metrics["dice_3d_mean_ann_fold0"] == round(ev["ann"]["dice_3d_mean"], 4)
    assert metrics["dice_3d_mean_finetuned_T2_fold0"] == round(ev["finetuned"]["dice_3d_mean"], 4)
    assert json.loads((bundle / "configs" / "metadata.json").read_text())["eval_metrics"] == metrics
    assert ship_models(out, 0, bundle, "dice_2d_mean", "mean_dice_2d")["mean_dice_2d_converted_T2_fold0"] == round(
        ev["converted"]["dice_2d_mean"], 4)  # fmt: skip
    # the architecture comes from the bundle's network_def with the run's overrides (channels 4-32 here)
    shipped = json.loads((bundle / "models" / "ann.json").read_text())
    assert shipped["network"] == "monai_snn.networks.ConvertibleUNet" and shipped["args"]["channels"] == [4, 8, 16, 32]
    assert shipped["args"]["spatial_dims"] == 2 and shipped["args"]["in_channels"] == 1
    ann = ConvertibleUNet(**shipped["args"])
    ann.load_state_dict(torch.load(bundle / "models" / "ann.pt", weights_only=True))
    snn = build_snn(ann, bundle / "models" / "model.pt")
    assert snn.num_steps == 2 and snn(torch.rand(2, 1, 48, 40)).shape == (2, 1, 48, 40)


def test_direct_training_stage(tiny_msd, tmp_path):
    """The optional direct-training baseline (a Spiking-UNet with multi-threshold neurons trained by BPTT from
    scratch), as the runner runs it: its settings rebuild it through load_model at its T."""
    from monai_snn.apps.cross_validation import run_cross_validation
    from monai_snn.bundle import load_model

    overrides = {k: TINY[k] for k in ("channels", "num_folds", "max_epochs", "finetune_steps")}
    status = run_cross_validation(BUNDLE, tmp_path, folds=[0], stages=["train_unet_mt"], quiet=True,
                                  overrides=dict(overrides, data_dir=str(tiny_msd)))  # fmt: skip
    assert status == {"fold0/train_unet_mt": "done"}
    weights = tmp_path / "fold0" / "train_unet_mt" / "direct.pt"
    settings = json.loads(weights.with_suffix(".json").read_text())
    assert settings["architecture"] == "spiking_unet" and settings["method"] == "bptt" and settings["num_steps"] == 2
    snn = load_model("unet_mt", {"unet_mt": str(weights)}, torch.nn.Identity())
    assert snn.num_steps == 2 and snn(torch.rand(2, 1, 48, 40)).shape == (2, 1, 48, 40)


@pytest.mark.parametrize("bundle", ["hippocampus_snn", "drive_snn"])
def test_qcfs_ann_from_scratch_starts_from_he_weights(bundle):
    """ann_weight_init defaults to He-normal for a QCFS ANN trained from scratch (PyTorch's default weights silence
    its deep layers: tests/test_qcfs.py), and keeps the default init for float ANNs and for ann_init starts."""
    from monai.bundle import ConfigParser

    cfg = BUNDLE.parent / bundle / "configs"
    for activation, ann_init, want in (("relu", "", None), ("qcfs", "", "kaiming"), ("qcfs", "ann.pt", None)):
        parser = ConfigParser()
        parser.read_config([str(cfg / "common.json"), str(cfg / "train_ann.json")])
        parser.update({"activation": activation, "ann_init": ann_init})
        assert parser.get_parsed_content("ann_weight_init") == want
    parser.update({"activation": "qcfs", "ann_init": ""})
    net = parser.get_parsed_content("network")
    assert all(float(m.bias.abs().max()) == 0.0 for m in net.modules() if isinstance(m, torch.nn.Conv2d))


def test_quantization_aware_ann_converts_without_loss(tiny_msd, tmp_path):
    """activation=qcfs: the ANN trains with the multi-threshold neuron's transfer at design_steps = 1, convert reads
    its clipping levels (no percentile search) and the converted SNN at T = 1 scores what the ANN scores."""
    from monai_snn.apps.cross_validation import run_cross_validation

    overrides = {k: TINY[k] for k in ("channels", "num_folds", "max_epochs", "steps_sweep", "num_calibration")}
    overrides.update(activation="qcfs", design_steps=1, data_dir=str(tiny_msd))
    status = run_cross_validation(BUNDLE, tmp_path, folds=[0], stages=["train_ann", "convert"], quiet=True,
                                  overrides=overrides)  # fmt: skip
    assert status == {"fold0/train_ann": "done", "fold0/convert": "done"}
    m = json.loads((tmp_path / "fold0" / "convert" / "metrics.json").read_text())
    assert m["settings"]["normalization"] == "clip" and m["settings"]["num_steps"] == 1
    assert m["settings"]["activation"] == "qcfs" and not m.get("percentile_search")
    assert m["converted"]["dice_3d_mean"] == pytest.approx(m["ann"]["dice_3d_mean"], abs=1e-3)

    # the activity penalty, started from that ANN (ann_init), through convert and fine-tuning; the settings record it
    second = tmp_path / "penalized"
    ann = tmp_path / "fold0" / "train_ann" / "ckpt" / "best_model.pt"
    overrides.update(activity_weight=0.5, ann_init=str(ann), finetune_steps=1)
    status = run_cross_validation(BUNDLE, second, folds=[0], stages=["train_ann", "convert", "finetune"], quiet=True,
                                  overrides=overrides)  # fmt: skip
    assert set(status.values()) == {"done"}
    settings = json.loads((second / "fold0" / "finetune" / "snn_finetuned.json").read_text())
    assert settings["activity_weight"] == 0.5 and settings["num_steps"] == 1

    # shipped beside a model set as finetuned_t2 (test_evaluate_shipped_models_on_msd_folder evaluates the real one)
    from monai_snn.apps.ship_models import ship_snn

    models = tmp_path / "models"
    with pytest.raises(ValueError, match="main model set"):
        ship_snn(second, 0, "finetune", "model", models)
    ship_snn(second, 0, "finetune", "finetuned_t2", models)
    assert json.loads((models / "finetuned_t2.json").read_text())["source"].endswith("(fold 0)")
    assert (models / "finetuned_t2.pt").is_file() and not (models / "ann.pt").exists()


def _fake_fold(fold_dir: Path, evaluate: dict, convert: dict) -> None:
    for stage, data in (("evaluate", evaluate), ("convert", convert)):
        (fold_dir / stage).mkdir(parents=True)
        (fold_dir / stage / "metrics.json").write_text(json.dumps(data))


def test_summary_reads_both_layouts_and_takes_the_metrics(tmp_path):
    """Runs written before the toolkit (dice_vs_T, dice_3d_at_T) and after it (metrics_vs_T, at_T) summarise alike;
    the metrics are an argument (here F1 / AUC of a run of another task)."""
    from monai_snn.apps.summary import main, summarize

    old, new = tmp_path / "old", tmp_path / "new"
    model = lambda d3, d2, t=None: {"dice_3d_mean": d3, "dice_2d_mean": d2, "num_steps": t}  # noqa: E731
    _fake_fold(old / "fold0",
               {"ann": model(0.8, 0.7), "converted": model(0.79, 0.69, 16),
                "finetuned": dict(model(0.78, 0.68, 4), dice_3d_at_T={"2": 0.7, "4": 0.78})},
               {"dice_vs_T": {"1": {"dice_3d_mean": 0.3}, "16": {"dice_3d_mean": 0.79}},
                "settings": {"percentile": 95}})  # fmt: skip
    _fake_fold(new / "fold0",
               {"ann": model(0.9, 0.8), "converted": model(0.88, 0.79, 16),
                "finetuned": dict(model(0.86, 0.77, 4), at_T={"2": model(0.6, 0.5)})},
               {"metrics_vs_T": {"1": {"dice_3d_mean": 0.4}, "16": {"dice_3d_mean": 0.88}}, "settings": {}})
    _fake_fold(new / "fold1",
               {"ann": model(0.7, 0.6), "converted": model(0.68, 0.59, 16),
                "finetuned": dict(model(0.66, 0.57, 4), at_T={"2": model(0.4, 0.3)})},
               {"metrics_vs_T": {"1": {"dice_3d_mean": 0.2}, "16": {"dice_3d_mean": 0.68}}, "settings": {}})
    rows = summarize([old, new], tmp_path / "s", ["dice_3d_mean", "dice_2d_mean"])
    get = {(r["run"], r["network"], r["T"]): r for r in rows}
    assert get[("old", "finetuned", 2)]["dice_3d_mean"] == 0.7
    assert math.isnan(get[("old", "finetuned", 2)]["dice_2d_mean"])  # the old files hold only the 3D Dice at T
    assert get[("new", "finetuned", 2)]["dice_3d_mean"] == pytest.approx(0.5)
    assert get[("new", "finetuned", 2)]["dice_2d_mean"] == pytest.approx(0.4)
    assert get[("new", "ann", "")]["dice_3d_mean_fold_std"] == pytest.approx(0.1414, abs=1e-4)
    assert get[("new", "ann", "")]["n"] == 2
    md = (tmp_path / "s" / "summary.md").read_text()
    assert "| old | 0.300 ± 0.000 | 0.790 ± 0.000 |" in md and "| new | 0.300 ± 0.141 | 0.780 ± 0.141 |" in md
    assert "| old | 0 | 95 | 0.800 | 0.790 (T=16) | -0.010 | 0.780 (T=4) | -0.020 | 0.700 (T=2) |" in md
    # another task's metrics: nothing of the hippocampus is assumed
    drive = tmp_path / "drive"
    f1 = lambda f, t=None: {"f1": f, "auc": 0.9, "num_steps": t}  # noqa: E731
    _fake_fold(drive / "fold0",
               {"ann": f1(0.8), "converted": f1(0.79, 10), "finetuned": dict(f1(0.8, 10), at_T={"4": f1(0.7)})},
               {"metrics_vs_T": {"10": f1(0.79)}, "settings": {}})
    rows = main(["--runs", str(drive), "--metrics", "f1", "auc", "--output_dir", str(tmp_path / "d")])
    assert [(r["network"], r["T"], r["f1"]) for r in rows] == [("ann", "", 0.8), ("converted", 10, 0.79),
                                                               ("finetuned", 10, 0.8), ("finetuned", 4, 0.7)]
    assert "| f1 | auc |" in (tmp_path / "d" / "summary.md").read_text()
    with pytest.raises(SystemExit):
        main(["--runs", str(drive)])  # --metrics is required


def test_eval_metrics_names_both_layouts():
    """ship_models' eval_metrics from an evaluation of 0.4.0 (dice_3d_at_T) and of 0.5.0 (at_T, key_metric): the
    metadata's names come back with --metric dice_3d_mean --label mean_dice_3d."""
    from monai_snn.apps.ship_models import eval_metrics

    meta = json.loads((CFG / "metadata.json").read_text())["eval_metrics"]
    meta = {k: v for k, v in meta.items() if "finetuned_t2" not in k}  # the main set's (finetuned_t2: ship_snn)
    d = {"ann": 0.86577, "converted": 0.86528, "finetuned": 0.86334, "T2": 0.78961}
    old = {"ann": {"dice_3d_mean": d["ann"], "num_steps": None},
           "converted": {"dice_3d_mean": d["converted"], "num_steps": 16},
           "finetuned": {"dice_3d_mean": d["finetuned"], "num_steps": 4,
                         "dice_3d_at_T": {"2": d["T2"], "4": d["finetuned"]}}, "info": {}}  # fmt: skip
    new = {"ann": {"dice_3d_mean": d["ann"], "key_metric": "dice_3d_mean", "num_steps": None},
           "converted": {"dice_3d_mean": d["converted"], "key_metric": "dice_3d_mean", "num_steps": 16},
           "finetuned": {"dice_3d_mean": d["finetuned"], "key_metric": "dice_3d_mean", "num_steps": 4,
                         "at_T": {"2": {"dice_3d_mean": d["T2"]}}}, "info": {}}  # fmt: skip
    assert eval_metrics(old, 0, "dice_3d_mean", "mean_dice_3d") == meta
    assert eval_metrics(new, 0, label="mean_dice_3d") == meta  # the key metric by default
    assert set(eval_metrics(new, 1)) == {"dice_3d_mean_ann_fold1", "dice_3d_mean_converted_T16_fold1",
                                         "dice_3d_mean_finetuned_T4_fold1", "dice_3d_mean_finetuned_T2_fold1"}
    with pytest.raises(ValueError, match="pass --metric"):
        eval_metrics(old, 0)
    with pytest.raises(ValueError, match="has no metric 'f1'"):
        eval_metrics(new, 0, "f1")


def test_ddp_two_processes_gloo(tiny_msd, tmp_path):
    proc = run_ddp(BUNDLE, ["common", "train_ann", "multi_gpu_train"], output_dir=tmp_path, data_dir=tiny_msd,
                   **TINY)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    ckpt = tmp_path / "fold0" / "train_ann" / "ckpt"
    assert (ckpt / "best_model.pt").is_file() and list(ckpt.glob("latest*.pt"))
    # only rank 0 writes a TensorBoard run (rank 1's stage writer writes nothing)
    assert len(list((tmp_path / "fold0" / "train_ann").glob("events.out.tfevents.*"))) == 1


def _require_models():
    for f in ("ann.pt", "ann.json", "converted.pt", "converted.json", "model.pt", "model.json"):
        assert (MODELS / f).is_file(), f"shipped model missing: {MODELS / f}"


def test_evaluate_shipped_models_on_msd_folder(tiny_msd, tmp_path):
    _require_models()
    _bundle(["common", "evaluate"], data_dir=tiny_msd, output_dir=tmp_path)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["info"]["models_from"] == "shipped" and m["info"]["num_volumes"] == len(NAMES)
    assert m["ann"]["num_steps"] is None and m["converted"]["num_steps"] == 16 and m["finetuned"]["num_steps"] == 4
    for k in ("ann", "converted", "finetuned"):
        for key in ("dice_3d_mean", "dice_3d_std", "dice_2d_mean", "dice_2d_std", "num_steps"):
            assert key in m[k]
        assert m[k]["dice_3d_mean"] > 0.5  # real trained weights on real volumes
    assert set(m["finetuned"]["at_T"]) == {"2"} and 0.0 < m["finetuned"]["at_T"]["2"]["dice_3d_mean"] <= 1.0
    assert m["converted"]["energy_snn_over_ann"] > m["finetuned"]["energy_snn_over_ann"] > 0  # T = 16 vs T = 4
    # the shipped short-T SNN of the activity-penalized quantization-aware ANN (issue 13), reported like the others
    t2 = m["finetuned_t2"]
    assert t2["num_steps"] == 2 and t2["dice_3d_mean"] > 0.5 and set(t2["at_T"]) == {"1"}
    assert 0 < t2["energy_snn_over_ann"] < m["finetuned"]["energy_snn_over_ann"] / 2
    assert 0 < t2["energy_snn_over_ann_spikes"] < t2["energy_snn_over_ann"]
    prep = json.loads((tmp_path / "prep" / "datalist.json").read_text())
    assert prep["num_folds"] is None and all("fold" not in it for it in prep["training"])  # no folds needed

    # the volume evaluator gives the numbers of the slice pipeline the models were selected with (slices cut by
    # scripts.slices, re-stacked per subject, MONAI DiceMetric), for the ANN and the fine-tuned SNN
    from monai_snn.bundle import load_model, load_scripts
    from monai_snn.networks import ConvertibleUNet

    scripts = load_scripts(BUNDLE)
    slices = scripts.task.make_slices(scripts.task.all_items(str(tmp_path / "prep" / "datalist.json")))
    x, y = torch.stack([s["image"] for s in slices]), torch.stack([s["label"] for s in slices])
    subjects, positions = [s["subject"] for s in slices], [s["slice"] for s in slices]
    models = {"ann": MODELS / "ann.pt", "finetuned": MODELS / "model.pt"}
    arch = ConvertibleUNet(**json.loads((MODELS / "ann.json").read_text())["args"])
    for name in models:
        with torch.no_grad():
            logits = load_model(name, models, arch)(x)
        ref = scripts.slices.dice_2d_3d(logits > 0, y, subjects, positions)
        for key in ("dice_3d_mean", "dice_3d_std", "dice_2d_mean", "dice_2d_std"):
            assert abs(m[name][key] - ref[key]) < 1e-4, (name, key, m[name][key], ref[key])

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = tmp_path.glob("events.out.tfevents.*")  # one writer for the stage
    acc = EventAccumulator(str(events))
    acc.Reload()
    # one panel per review: input | label | ANN | converted | fine-tuned | finetuned_t2
    panel = acc.Images("test/input_label_ann_converted_finetuned_finetuned_t2")[0]
    assert panel.width % 6 == 0 and panel.width > 0
    assert "test/finetuned/dice_3d_mean" in acc.Tags()["scalars"]


def test_robustness_stage_on_shipped_models(tiny_msd, tmp_path):
    """Kim et al. Fig. 10: every model's 3D Dice under Gaussian input noise, the same noise for each model."""
    _require_models()
    _bundle(["common", "evaluate", "robustness"], data_dir=tiny_msd, output_dir=tmp_path, noise_sigmas="[0.5]")
    r = json.loads((tmp_path / "robustness.json").read_text())
    assert r["sigmas"] == ["0", "0.5"] and r["info"]["clip"] == [0.0, 1.0] and r["info"]["num_volumes"] == len(NAMES)
    assert {"ann", "converted", "finetuned", "finetuned_t2"} <= set(r)
    for name in ("ann", "finetuned"):
        assert r[name]["key_metric"] == "dice_3d_mean" and r[name]["score"]["0"] > 0.5  # clean: trained weights
        assert r[name]["score"]["0.5"] < r[name]["score"]["0"]  # heavy noise hurts
        drop = 100 * (r[name]["score"]["0"] - r[name]["score"]["0.5"]) / r[name]["score"]["0"]
        assert r[name]["relative_drop_percent"]["0.5"] == pytest.approx(drop)
    assert r["finetuned"]["num_steps"] == 4 and r["ann"]["num_steps"] is None
    assert (tmp_path / "robustness.png").stat().st_size > 1000


def test_evaluate_shipped_models_on_one_volume(tmp_path):
    """A folder of one subject: the shipped models need no folds."""
    require_data(HIPPO)
    _require_models()
    one = tmp_path / "msd"
    for sub in ("imagesTr", "labelsTr"):
        (one / sub).mkdir(parents=True)
        os.symlink(HIPPO / sub / NAMES[0], one / sub / NAMES[0])
    _bundle(["common", "evaluate"], data_dir=one, output_dir=tmp_path / "out", eval_extra_steps="[]")
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["info"]["num_volumes"] == 1
    for k in ("ann", "converted", "finetuned"):
        assert m[k]["dice_3d_mean"] > 0.5 and m[k]["dice_3d_std"] == 0.0
    assert "at_T" not in m["finetuned"]


def test_inference_writes_masks_with_input_geometry(tmp_path):
    require_data(HIPPO)
    _require_models()
    src = tmp_path / "in"
    src.mkdir()
    for n in NAMES[:2]:
        os.symlink(HIPPO / "imagesTr" / n, src / n)
    proc = _bundle(["common", "inference"], input_dir=src, output_dir=tmp_path / "out")
    assert "inference: [2/2] 100%" in proc.stderr  # the progress bar (the config path also says "inference")
    masks = {}
    for n in NAMES[:2]:
        a = nib.load(src / n)
        b = nib.load(tmp_path / "out" / n.replace(".nii.gz", "_seg.nii.gz"))
        assert a.shape == b.shape and np.allclose(a.affine, b.affine) and b.get_data_dtype() == np.uint8
        lab = np.asarray(nib.load(HIPPO / "labelsTr" / n).dataobj) > 0
        masks[n] = pred = np.asarray(b.dataobj) > 0
        assert 2 * (lab & pred).sum() / (lab.sum() + pred.sum()) > 0.5
    # --network selects the shipped model; a single file is an input too; the SNN's masks are its own, not the ANN's
    _bundle(["common", "inference"], input_dir=src / NAMES[0], output_dir=tmp_path / "ann", network="ann")
    (only,) = (tmp_path / "ann").iterdir()
    ann_mask = np.asarray(nib.load(only).dataobj) > 0
    assert only.name == NAMES[0].replace(".nii.gz", "_seg.nii.gz") and ann_mask.shape == masks[NAMES[0]].shape
    assert (ann_mask != masks[NAMES[0]]).any()
    proc = _bundle(["common", "inference"], check=False, input_dir=src, output_dir=tmp_path / "x", network="finetund")
    assert proc.returncode != 0 and "did you mean 'finetuned'" in proc.stderr and not (tmp_path / "x").exists()


def test_verify_net_in_out_spiking_network():
    _require_models()
    files = repr([str(CFG / "common.json"), str(CFG / "inference.json")])
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "verify_net_in_out", "--net_id", "model", "--meta_file",
         str(CFG / "metadata.json"), "--config_file", files, "--bundle_root", str(BUNDLE), "--device", "cpu"],
        capture_output=True, text=True, env=_env(), cwd=str(REPO), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "data shape of network is verified with no error" in proc.stdout + proc.stderr


def test_missing_file_in_datalist_fails_before_training(tiny_msd, tmp_path):
    prep = tmp_path / "prep"
    shutil.copytree(tiny_msd, tmp_path / "msd", symlinks=True)
    from monai_snn.bundle import load_scripts

    datalist = Path(load_scripts(BUNDLE).task.prepare_data(tmp_path / "msd", prep, num_folds=2))
    d = json.loads(datalist.read_text())
    missing = "imagesTr/does_not_exist.nii.gz"
    d["training"][0]["image"] = missing
    bad = tmp_path / "bad_datalist.json"
    bad.write_text(json.dumps(d))
    shutil.copytree(prep / "imagesTr", tmp_path / "imagesTr")
    shutil.copytree(prep / "labelsTr", tmp_path / "labelsTr")
    proc = _bundle(["common", "train_ann"], check=False, datalist=bad, output_dir=tmp_path / "out", **TINY)
    assert proc.returncode != 0
    assert "does_not_exist.nii.gz" in proc.stdout + proc.stderr
    assert not list((tmp_path / "out").rglob("*.pt")) and not list((tmp_path / "out").rglob("events.out.*"))


def test_resumed_run_keeps_the_best_model(tmp_path):
    """A resumed run's first (worse) validation must not overwrite the interrupted run's best model."""
    from ignite.engine import Engine, Events
    from monai.handlers import CheckpointSaver

    from monai_snn.handlers import BestMetricState, restore_best

    def run(scores: list[float], weights: list[float], resume: bool) -> Engine:
        net = torch.nn.Linear(1, 1, bias=False)
        evaluator = Engine(lambda e, b: None)
        evaluator.state.best_metric, evaluator.state.best_metric_epoch = -1.0, -1
        state = BestMetricState(evaluator)
        saver = CheckpointSaver(str(tmp_path), {"network": net, "best_metric_state": state}, save_key_metric=True,
                                key_metric_name="dice", key_metric_filename="best_model.pt",
                                key_metric_save_state=True)  # fmt: skip
        if resume:
            assert restore_best(saver, state, tmp_path / "best_model.pt")

        @evaluator.on(Events.EPOCH_COMPLETED)
        def _score(e):  # what MONAI's evaluator does before its handlers: metric, then best-metric bookkeeping
            i = e.state.epoch - 1
            e.state.metrics["dice"] = scores[i]
            net.weight.data.fill_(weights[i])
            if scores[i] > e.state.best_metric:
                e.state.best_metric, e.state.best_metric_epoch = scores[i], e.state.epoch

        saver.attach(evaluator)
        evaluator.run([0], max_epochs=len(scores))
        return evaluator

    run([0.5, 0.8], [1.0, 2.0], resume=False)  # killed after epoch 2: best 0.8 (weight 2)
    best = lambda: torch.load(tmp_path / "best_model.pt", weights_only=True)  # noqa: E731
    assert float(best()["network"]["weight"]) == 2.0
    ev = run([0.6], [3.0], resume=True)  # resumed, worse: the best model stays
    assert float(best()["network"]["weight"]) == 2.0 and ev.state.best_metric == 0.8
    run([0.9], [4.0], resume=True)  # better: replaced
    assert float(best()["network"]["weight"]) == 4.0 and best()["best_metric_state"]["best_metric"] == 0.9
    assert not restore_best(None, None, tmp_path / "missing.pt")


@pytest.mark.parametrize("stage", ["train_ann", "convert", "finetune", "evaluate"])
def test_full_profile_merges_over_every_stage(stage):
    """The GPU profile (not run here) parses over each stage and builds its wider network."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(CFG / "common.json"), str(CFG / f"{stage}.json"), str(CFG / "full.json")])
    assert parser["batch_size"] == 26 and parser["convert_steps"] == 200 and parser["steps_sweep"][-1] == 200
    net = parser.get_parsed_content("network_def")
    assert tuple(net.channels) == (32, 64, 128, 256)
    assert net(torch.rand(1, 1, 48, 40)).shape == (1, 1, 48, 40)
