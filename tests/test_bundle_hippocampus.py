"""Smoke tests of the ``bundles/hippocampus_snn`` MONAI bundle on real MSD Task04 volumes, through the real CLI.

Tiny settings (8 real volumes in 2 folds, channels (4, 8, 16, 32), 1-2 epochs, T <= 2) keep the whole module at
a few minutes on 2 CPU cores. Without the data the tests skip, under CI they fail.
"""

from __future__ import annotations

import json
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


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _bundle(configs: list[str], *args: str, check: bool = True, timeout: int = 300, **overrides):
    files = repr([str(CFG / f"{c}.json") for c in configs])
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", files, "--meta_file",
           str(CFG / "metadata.json"), "--logging_file", str(CFG / "logging.conf"), "--bundle_root", str(BUNDLE),
           *args]  # fmt: skip
    for k, v in overrides.items():
        cmd += [f"--{k}", str(v)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout, cwd=str(REPO))
    if check and proc.returncode != 0:
        pytest.fail(f"bundle run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


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
        assert list((out / "fold0" / stage).glob("events.out.tfevents.*")), stage
    conv = json.loads((out / "fold0" / "convert" / "metrics.json").read_text())
    assert set(conv["dice_vs_T"]) == {"1", "2"} and len(conv["threshold_sweep"]) == 6
    assert conv["energy"]["energy_ratio"] > 0 and conv["firing_rates"]
    # the percentile is chosen on the validation slices and stored with the converted SNN
    search = conv["percentile_search"]
    assert set(search["val_dice_3d"]) == {"99.9", "95"} and search["chosen"] in (99.9, 95.0)
    assert search["val_dice_3d"][f"{search['chosen']:g}"] == max(search["val_dice_3d"].values())
    saved = json.loads((out / "fold0" / "convert" / "snn_converted.json").read_text())
    assert saved["percentile"] == search["chosen"] == conv["settings"]["percentile"]
    assert (out / "fold0" / "finetune" / "snn_finetuned.pt").is_file()
    fine = json.loads((out / "fold0" / "finetune" / "snn_finetuned.json").read_text())
    assert fine["percentile"] == search["chosen"] and fine["num_steps"] == 2 and fine["method"] == "flow"
    ev = json.loads((out / "fold0" / "evaluate" / "metrics.json").read_text())
    assert ev["ann"]["num_steps"] is None and ev["converted"]["num_steps"] == 2 and ev["finetuned"]["num_steps"] == 2
    for k in ("ann", "converted", "finetuned"):
        assert 0.0 <= ev[k]["dice_3d_mean"] <= 1.0 and "dice_3d_std" in ev[k] and "dice_2d_mean" in ev[k]

    # 3. finished stages are skipped
    status = run_cross_validation(BUNDLE, out, folds=[0], overrides=overrides, quiet=True)
    assert set(status.values()) == {"skipped"}

    # 4. summary
    from monai_snn.apps.summary import summarize

    rows = summarize([out], out / "summary")
    assert {r["network"] for r in rows} >= {"ann", "converted", "finetuned"}
    assert (out / "summary" / "summary.md").read_text().count("|") > 10 and (out / "summary" / "summary.csv").is_file()
    assert (out / "summary" / "dice_vs_T.png").stat().st_size > 1000
    per_fold = (out / "summary" / "summary.md").read_text().split("## Per fold")[1].splitlines()
    assert per_fold[4].startswith(f"| cv | 0 | {search['chosen']} | {ev['ann']['dice_3d_mean']:.3f} |")

    # 5. shipping the fold's models into a (copied) bundle: weights load, metadata numbers come from the run
    from monai_snn.conversion import build_snn
    from monai_snn.apps.ship_models import ship_models
    from monai_snn.networks import ConvertibleUNet

    bundle = out / "bundle"
    shutil.copytree(CFG, bundle / "configs")
    metrics = ship_models(out, 0, bundle)
    assert metrics["mean_dice_3d_ann_fold0"] == round(ev["ann"]["dice_3d_mean"], 4)
    assert metrics["mean_dice_3d_finetuned_T2_fold0"] == round(ev["finetuned"]["dice_3d_mean"], 4)
    assert json.loads((bundle / "configs" / "metadata.json").read_text())["eval_metrics"] == metrics
    ann = ConvertibleUNet(**json.loads((bundle / "models" / "ann.json").read_text())["args"])
    ann.load_state_dict(torch.load(bundle / "models" / "ann.pt", weights_only=True))
    snn = build_snn(ann, bundle / "models" / "model.pt")
    assert snn.num_steps == 2 and snn(torch.rand(2, 1, 48, 40)).shape == (2, 1, 48, 40)


def test_ddp_two_processes_gloo(tiny_msd, tmp_path):
    files = repr([str(CFG / f"{c}.json") for c in ("common", "train_ann", "multi_gpu_train")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517", "-m",
           "monai.bundle", "run", "--config_file", files, "--logging_file", str(CFG / "logging.conf"),
           "--bundle_root", str(BUNDLE), "--output_dir", str(tmp_path), "--data_dir", str(tiny_msd)]  # fmt: skip
    for k, v in TINY.items():
        cmd += [f"--{k}", str(v)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300, cwd=str(REPO))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    ckpt = tmp_path / "fold0" / "train_ann" / "ckpt"
    assert (ckpt / "best_model.pt").is_file() and list(ckpt.glob("latest*.pt"))
    assert len(list((tmp_path / "fold0" / "train_ann").glob("events.out.tfevents.*"))) >= 1


def _require_models():
    for f in ("ann.pt", "ann.json", "converted.pt", "converted.json", "model.pt", "model.json"):
        assert (MODELS / f).is_file(), f"shipped model missing: {MODELS / f}"


def test_evaluate_shipped_models_on_msd_folder(tiny_msd, tmp_path):
    _require_models()
    _bundle(["common", "evaluate"], data_dir=tiny_msd, output_dir=tmp_path)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["info"]["models_from"] == "shipped" and m["info"]["num_volumes"] == len(NAMES)
    assert m["ann"]["num_steps"] is None and isinstance(m["converted"]["num_steps"], int)
    for k in ("ann", "converted", "finetuned"):
        for key in ("dice_3d_mean", "dice_3d_std", "dice_2d_mean", "num_steps"):
            assert key in m[k]
        assert m[k]["dice_3d_mean"] > 0.5  # real trained weights on real volumes
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = tmp_path.glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    # one panel per review: input | label | ANN | converted | fine-tuned
    panel = acc.Images("test/input_label_ann_converted_finetuned")[0]
    assert panel.width % 5 == 0 and panel.width > 0


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
    from monai_snn.apps.bundle_utils import prepare_data

    datalist = Path(prepare_data(tmp_path / "msd", prep, num_folds=2))
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
