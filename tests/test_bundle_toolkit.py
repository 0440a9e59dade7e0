"""Unit tests of the generic bundle toolkit (``monai_snn.bundle``, ``stage_writer``, ``apps.variants``) on tiny
synthetic data: evaluation through an evaluator factory, the conversion stage, the evaluate stage, task-code loading."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest
import torch
from monai.handlers import MeanDice, from_engine
from monai.transforms import Activationsd, AsDiscreted, Compose

from monai_snn.bundle import (
    calibration_batch,
    evaluate_models,
    load_scripts,
    portable_path,
    resolve_path,
    run_conversion,
    run_evaluator,
    select_percentile,
)
from monai_snn.conversion import snn_settings
from monai_snn.engines import SpikingEvaluator
from monai_snn.handlers import NullWriter, stage_writer
from monai_snn.networks import ConvertibleUNet
from tests.conftest import REPO


def _data(n: int = 6, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.rand(1, 16, 16, generator=g)
        out.append({"image": x, "label": (x > 0.5).float()})
    return out


def _factory():
    post = Compose([Activationsd("pred", sigmoid=True), AsDiscreted("pred", threshold=0.5)])
    return functools.partial(
        SpikingEvaluator, device="cpu", postprocessing=post,
        key_val_metric={"dice": MeanDice(include_background=True, output_transform=from_engine(["pred", "label"]))},
    )  # fmt: skip


def _loader(data):
    from monai.data import DataLoader

    return DataLoader(data, batch_size=3)


def _ann() -> ConvertibleUNet:
    torch.manual_seed(0)
    return ConvertibleUNet(2, 1, 1, channels=(4, 8)).eval()


def test_calibration_batch_spreads_and_flattens_patch_lists():
    data = [{"image": torch.full((1, 4, 4), float(i))} for i in range(10)]
    (batch,) = calibration_batch(data, 5)
    assert batch.shape == (5, 1, 4, 4) and batch[:, 0, 0, 0].tolist() == [0, 2, 4, 6, 8]
    patches = [[{"image": torch.full((1, 4, 4), 10.0 * i + j)} for j in range(3)] for i in range(4)]
    (batch,) = calibration_batch(patches, 5)  # items are lists of patches (RandSpatialCropSamplesd)
    assert batch[:, 0, 0, 0].tolist() == [0, 1, 2, 10, 11]
    with pytest.raises(ValueError, match="training set is empty"):
        calibration_batch([], 4)
    with pytest.raises(ValueError, match="num_calibration"):
        calibration_batch(data, 0)


def test_run_evaluator_ann_and_snn_restores_t():
    ann, data = _ann(), _data()
    m = run_evaluator(_factory(), ann, _loader(data), progress=False)
    assert m["key_metric"] == "dice" and 0.0 <= m["dice"] <= 1.0
    settings = snn_settings(num_steps=4, percentile=99.0)
    from monai_snn.conversion import convert_with_settings

    snn = convert_with_settings(ann, calibration_batch(data, 6), settings)
    m2 = run_evaluator(_factory(), snn, _loader(data), num_steps=2, progress=False)
    assert 0.0 <= m2["dice"] <= 1.0 and snn.num_steps == 4  # the evaluator's T is restored afterwards
    with pytest.raises(ValueError, match="positive integer"):
        run_evaluator(_factory(), snn, _loader(data), num_steps=0, progress=False)


def test_select_percentile_picks_the_best_validation_value(monkeypatch):
    import monai_snn.bundle.conversion as conv

    scores = {99.9: 0.5, 99.0: 0.8, 95.0: 0.8}  # ties go to the higher percentile (fewer spikes)
    calls = []

    def fake_eval(make, net, loader, num_steps=None, desc=None, **kw):
        p = float(desc.split()[1].rstrip(","))
        calls.append((p, num_steps))
        return {"dice": scores[p], "key_metric": "dice"}

    monkeypatch.setattr(conv, "run_evaluator", fake_eval)
    data = _data()
    out = select_percentile(_ann(), calibration_batch(data, 6), snn_settings(num_steps=3), (95.0, 99.0, 99.9), None,
                            None)  # fmt: skip
    assert out["chosen"] == 99.0 and out["metric"] == "dice" and out["val_metric"] == {"99.9": 0.5, "99": 0.8,
                                                                                        "95": 0.8}  # fmt: skip
    assert {t for _, t in calls} == {3}
    with pytest.raises(ValueError, match=r"\(0, 100\]"):
        select_percentile(_ann(), None, snn_settings(), (101.0,), None, None)


def test_conversion_and_evaluate_stages(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # result files store paths relative to the working folder (the repository root)
    ann, data = _ann(), _data()
    ckpt = tmp_path / "ann.pt"
    torch.save({"network": ann.state_dict()}, ckpt)
    settings = snn_settings(num_steps=2, percentile=99.0)
    m = run_conversion(ConvertibleUNet(2, 1, 1, channels=(4, 8)), ckpt, calibration_batch(data, 6), settings,
                       _factory(), _loader(data), tmp_path / "convert", (1, 2), _loader(data[:3]), (99.0, 99.9))
    assert set(m["metrics_vs_T"]) == {"1", "2"} and m["converted"]["num_steps"] == 2
    assert m["converted"]["energy_snn_over_ann"] > 0 and m["converted"]["firing_rates"]
    saved = json.loads((tmp_path / "convert" / "snn_converted.json").read_text())
    assert saved["percentile"] == m["percentile_search"]["chosen"]
    assert m["metrics_vs_T"]["2"]["dice"] == m["converted"]["dice"]
    models = {"ann": str(ckpt), "converted": str(tmp_path / "convert" / "snn_converted.pt"),
              "finetuned": str(tmp_path / "missing.pt")}  # fmt: skip
    ev = evaluate_models(_factory(), _loader(data), models, ConvertibleUNet(2, 1, 1, channels=(4, 8)),
                         tmp_path / "eval", extra_steps={"converted": [1]})  # fmt: skip
    assert ev["finetuned"] is None  # missing weights are reported, not fatal
    assert ev["ann"]["dice"] == pytest.approx(m["ann"]["dice"])
    assert ev["converted"]["dice"] == pytest.approx(m["converted"]["dice"]) and ev["converted"]["num_steps"] == 2
    assert ev["converted"]["at_T"]["1"]["dice"] == pytest.approx(m["metrics_vs_T"]["1"]["dice"])
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["info"]["cpu_count"] >= 1
    assert m["ann_checkpoint"] == "ann.pt" and ev["converted"]["weights"] == "convert/snn_converted.pt"
    with pytest.raises(ValueError, match="models is empty"):
        evaluate_models(_factory(), _loader(data), {}, ann, tmp_path)
    # resume: a model whose weights, T, extra T and info are unchanged is not evaluated again
    assert not (tmp_path / "eval" / "metrics.partial.json").exists()  # removed once every model finished
    counted = []
    factory = _factory()

    def counting(**kw):
        counted.append(kw["network"])
        return factory(**kw)

    net_def = ConvertibleUNet(2, 1, 1, channels=(4, 8))
    again = evaluate_models(counting, _loader(data), models, net_def, tmp_path / "eval", extra_steps={"converted": [1]},
                            resume=True)  # fmt: skip
    assert not counted and again["converted"]["dice"] == ev["converted"]["dice"]
    evaluate_models(counting, _loader(data), models, net_def, tmp_path / "eval", num_steps={"converted": 1},
                    resume=True)  # fmt: skip
    assert len(counted) == 1  # a new T: the converted SNN again, the ANN reused
    evaluate_models(counting, _loader(data), models, net_def, tmp_path / "eval", info={"sigma": 5}, resume=True)
    assert len(counted) == 3  # other info: both again
    os.utime(ckpt, (ckpt.stat().st_atime, ckpt.stat().st_mtime + 10))
    evaluate_models(counting, _loader(data), models, net_def, tmp_path / "eval", info={"sigma": 5}, resume=True)
    assert len(counted) == 4  # newer ANN weights: the ANN again, the SNN reused


def test_portable_paths(tmp_path, monkeypatch):
    data, work = tmp_path / "data", tmp_path / "repo"
    work.mkdir()
    monkeypatch.setenv("MONAI_SNN_DATA", str(data))
    monkeypatch.chdir(work)
    assert portable_path(data / "DRIVE") == "$MONAI_SNN_DATA/DRIVE"
    assert portable_path(work / "runs" / "a.pt") == portable_path("runs/a.pt") == "runs/a.pt"
    assert portable_path(tmp_path / "elsewhere.pt") == str((tmp_path / "elsewhere.pt").resolve())
    assert resolve_path(portable_path(data / "DRIVE")) == data / "DRIVE"
    assert resolve_path("runs/a.pt") == Path("runs/a.pt")


def test_load_scripts_unique_names_and_errors(tmp_path):
    from tests.conftest import REPO

    drive = load_scripts(REPO / "bundles" / "drive_snn")
    em = load_scripts(REPO / "bundles" / "em_snn")
    assert drive.__name__ == "drive_snn_scripts" and em.__name__ == "em_snn_scripts"
    assert hasattr(drive, "drive") and hasattr(drive, "metrics") and hasattr(em, "em")
    assert load_scripts(REPO / "bundles" / "drive_snn") is drive
    with pytest.raises(FileNotFoundError, match="no task code"):
        load_scripts(tmp_path)


def test_stage_writer_and_null_writer(tmp_path):
    w = stage_writer(tmp_path)
    w.add_scalar("x", 1.0, 0)
    w.close()
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    n = NullWriter()
    n.add_scalar("x", 1.0, 0), n.add_image("y", None), n.flush(), n.close()
    with pytest.raises(AttributeError):
        n.log_dir  # noqa: B018


def test_variants_file_errors(tmp_path):
    from monai_snn.apps.variants import load_variants, run_variants, select_variants

    good = tmp_path / "v.json"
    good.write_text(json.dumps({"title": "t", "variants": {"a b": {"neuron": "if"}, "c": {}}}))
    assert load_variants(good) == ("t", {"a b": {"neuron": "if"}, "c": {}})
    _, variants = load_variants(good)
    assert select_variants(variants, ["c"]) == {"c": {}} and select_variants(variants, None) == variants
    with pytest.raises(ValueError, match=r"no variant named \['a'\]; the variants are \['a b', 'c'\]"):
        select_variants(variants, ["a"])
    for bad, msg in (({"variants": {}}, "at least one"), ({"variants": {"a": 1}}, "object of overrides"),
                     ({"variants": {"a b": {}, "a_b": {}}}, "same folder")):  # fmt: skip
        good.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=msg):
            load_variants(good)
    with pytest.raises(FileNotFoundError, match="no trained ANN"):
        run_variants("bundles/drive_snn", tmp_path, {"a": {}}, tmp_path / "out")
    with pytest.raises(ValueError, match="leave train_ann out"):
        run_variants("bundles/drive_snn", tmp_path, {"a": {}}, tmp_path / "out", stages=["train_ann"])
    with pytest.raises(ValueError, match="either as a run"):
        run_variants("bundles/drive_snn", tmp_path, {"a": {}}, tmp_path / "out", ann=tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_variants("bundles/drive_snn", None, {"a": {}}, tmp_path / "out", ann=tmp_path / "x.pt")


def test_every_shipped_variants_file_names_existing_options():
    """The ablation files of every bundle load and only override options its stage configs define."""
    from monai_snn.apps.variants import load_variants
    from tests.conftest import REPO

    files = sorted(REPO.glob("bundles/*/configs/ablations/*.json"))
    assert files
    for f in files:
        cfg = f.parents[1]
        known: set[str] = set()
        for stage in ("common", "convert", "finetune", "evaluate"):
            known |= set(json.loads((cfg / f"{stage}.json").read_text()))
        _, variants = load_variants(f)
        for name, overrides in variants.items():
            assert set(overrides) <= known, f"{f}: variant {name!r} sets unknown {set(overrides) - known}"


def test_keep_results_copies_result_jsons_only(tmp_path):
    from monai_snn.apps.keep_results import keep_results

    run = tmp_path / "run"
    for rel in ("fold1/convert/metrics.json", "fold1/convert/snn_converted.json", "fold1/convert/done.json",
                "fold1/evaluate/sigma25/metrics.json", "fold1/finetune/ckpt/best.json", "fold2/evaluate/started.json"):
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_text(json.dumps({"file": rel}))
    (run / "fold1" / "convert" / "snn_converted.pt").write_bytes(b"weights")
    written = keep_results(run, tmp_path / "kept", folds=[1])
    got = sorted(str(p.relative_to(tmp_path / "kept")) for p in written)
    assert got == ["fold1/convert/metrics.json", "fold1/convert/scalars.json", "fold1/convert/snn_converted.json",
                   "fold1/evaluate/sigma25/metrics.json"]  # fmt: skip
    assert json.loads((tmp_path / "kept" / got[0]).read_text()) == {"file": "fold1/convert/metrics.json"}
    # a finished stage keeps its seconds (done.json is a marker) and its TensorBoard scalars (none logged here)
    assert json.loads((tmp_path / "kept" / got[1]).read_text()) == {"seconds": 0.0, "scalars": {}}
    with pytest.raises(FileNotFoundError, match="no result files in .*fold2"):
        keep_results(run, tmp_path / "kept")  # fold 2 has only a marker


def test_bundle_stages_default_listed_and_errors(tmp_path):
    from monai_snn.apps.cross_validation import STAGES, bundle_stages, run_cross_validation, split_overrides

    em = bundle_stages(REPO / "bundles" / "em_snn")
    assert [s for s, spec in em.items() if not spec.get("optional")] == list(STAGES)  # the default run
    camseq = bundle_stages(REPO / "bundles" / "camseq_snn")
    assert list(camseq) == ["train_ann", "convert", "finetune", "train_spiking_fcn", "train_spiking_deeplab",
                            "train_fcn_ann", "train_deeplab_ann", "train_unet_mt", "train_unet_ml", "train_unet_rs",
                            "evaluate", "robustness"]  # fmt: skip
    assert [s for s, spec in camseq.items() if spec.get("optional")] == ["train_unet_mt", "train_unet_ml",
                                                                           "train_unet_rs", "robustness"]  # fmt: skip
    assert camseq["robustness"] == {"config": ["evaluate.json", "robustness.json"], "set": {}, "optional": True}
    assert camseq["train_spiking_fcn"] == {"config": "train_direct.json", "set": {"direct_network": "spiking_fcn"}}
    # a stage's own settings reach only that stage, and --set stage:key still wins
    per = split_overrides(REPO / "bundles" / "camseq_snn", ["train_spiking_fcn", "train_spiking_deeplab"],
                          {"train_spiking_fcn:direct_steps": "4", "max_epochs": "2"})  # fmt: skip
    assert per["train_spiking_fcn"] == {"direct_network": "spiking_fcn", "direct_steps": "4", "max_epochs": "2"}
    assert per["train_spiking_deeplab"] == {"direct_network": "spiking_deeplab", "max_epochs": "2"}
    with pytest.raises(ValueError, match="unknown stage 'train_fcn'.*'train_spiking_fcn'"):
        run_cross_validation(REPO / "bundles" / "camseq_snn", tmp_path / "run", folds=[0], stages=["train_fcn"])
    bundle = tmp_path / "b"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "common.json").write_text("{}")
    assert list(bundle_stages(bundle)) == list(STAGES)  # no stages.json: the four stages
    (bundle / "configs" / "stages.json").write_text('{"stages": [{"config": "x.json"}]}')
    with pytest.raises(ValueError, match="stages.json: expected"):
        bundle_stages(bundle)
    (bundle / "configs" / "stages.json").write_text('{"stages": [{"name": "a"}]}')
    with pytest.raises(ValueError, match="stage 'a' names a.json, which is not in"):
        bundle_stages(bundle)


def test_noisy_input_inferer_is_reproducible_and_clips():
    from monai_snn.inferers import NoisyInputInferer

    x = torch.full((2, 1, 8, 8), 0.5)
    a, b = NoisyInputInferer(sigma=0.3, seed=1), NoisyInputInferer(sigma=0.3, seed=1)
    first = a(x, lambda t: t)
    assert torch.equal(first, b(x, lambda t: t))  # same seed, same call number: same noise
    assert not torch.equal(first, a(x, lambda t: t))  # the next call (next batch) draws new noise
    assert (first - x).std().item() == pytest.approx(0.3, rel=0.25)
    clipped = NoisyInputInferer(sigma=2.0, clip=(0.0, 1.0))(x, lambda t: t)
    assert clipped.min() >= 0 and clipped.max() <= 1 and clipped.unique().numel() > 2
    assert torch.equal(NoisyInputInferer(sigma=0.0)(x, lambda t: t), x)
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        NoisyInputInferer(sigma=-1.0)
    with pytest.raises(ValueError, match="clip must be \\(low, high\\)"):
        NoisyInputInferer(clip=(1.0, 0.0))


def test_evaluate_robustness_drops_with_noise(tmp_path):
    from monai_snn.bundle import evaluate_robustness

    net = torch.nn.Conv2d(1, 1, 1)  # sigmoid(100 x - 50) > 0.5 <=> x > 0.5: a perfect model on clean inputs
    with torch.no_grad():
        net.weight.fill_(100.0)
        net.bias.fill_(-50.0)
    torch.save(net.state_dict(), tmp_path / "ann.pt")
    r = evaluate_robustness(_factory(), _loader(_data()), {"ann": str(tmp_path / "ann.pt"), "gone": "missing.pt"},
                            torch.nn.Conv2d(1, 1, 1), tmp_path / "rob", sigmas=[0.3, 0.1], clip=(0, 1))  # fmt: skip
    assert r["sigmas"] == ["0", "0.1", "0.3"] and "gone" not in r
    score, drop = r["ann"]["score"], r["ann"]["relative_drop_percent"]
    assert score["0"] == pytest.approx(1.0) and drop["0"] == 0.0
    assert 0 < drop["0.1"] < drop["0.3"] and drop["0.3"] == pytest.approx(100 * (1 - score["0.3"]))
    assert (tmp_path / "rob" / "robustness.png").is_file()
    assert json.loads((tmp_path / "rob" / "robustness.json").read_text())["info"]["clip"] == [0, 1]


@pytest.mark.parametrize("bundle", ["camseq_snn", "drive_snn", "em_snn", "denoise_snn", "hippocampus_snn"])
def test_every_direct_training_stage_builds_its_network(bundle, tmp_path):
    """Each bundle's DT stages resolve to the intended network and stage folder (nothing is trained here)."""
    from monai_snn.apps.cross_validation import bundle_stages, stage_config
    from monai_snn.networks import SpikingSimulator

    root = REPO / "bundles" / bundle
    direct = {s: spec for s, spec in bundle_stages(root).items() if spec["config"] == "train_direct.json"}
    assert {"train_unet_mt", "train_unet_ml", "train_unet_rs"} <= set(direct)
    for stage, spec in direct.items():
        parser = stage_config(root, stage, tmp_path, 0, spec["set"])
        parser.get_parsed_content("imports")
        assert parser.get_parsed_content("stage_dir") == str(tmp_path / "fold0" / stage)
        net = parser.get_parsed_content("network")
        assert isinstance(net, SpikingSimulator) and net.settings["architecture"] == spec["set"]["direct_network"]
        ann = parser.get_parsed_content("network_def")
        assert net.settings["kwargs"]["in_channels"] == ann.in_channels
        saved = parser.get_parsed_content("direct_settings")  # what the exported direct.json says
        if spec["set"]["direct_network"] == "spiking_unet":
            assert net.settings["kwargs"]["neuron"] == spec["set"]["direct_neuron"] == saved["neuron"]
        else:
            assert saved["neuron"] == "lif"


@pytest.mark.parametrize("bundle", ["camseq_snn", "drive_snn", "em_snn"])
def test_every_robustness_stage_resolves(bundle, tmp_path):
    from monai_snn.apps.cross_validation import bundle_stages, stage_config

    root = REPO / "bundles" / bundle
    spec = bundle_stages(root)["robustness"]
    assert spec["optional"] and spec["config"] == ["evaluate.json", "robustness.json"]
    parser = stage_config(root, "robustness", tmp_path, 0, spec["set"])
    parser.get_parsed_content("imports")
    assert parser.get_parsed_content("noise_sigmas") and "evaluate_robustness" in parser["run"][0]
    assert parser.get_parsed_content("stage_dir") in (str(tmp_path / "fold0" / "robustness"), str(tmp_path))


def test_runner_clears_a_stale_stage_but_keeps_stage_keep(tmp_path):
    """A stale stage folder is emptied (its log kept) except the files matching the stage config's stage_keep."""
    from monai_snn.apps.cross_validation import _clear_stage

    stage = tmp_path / "evaluate"
    for rel in ("stage.log", "metrics.json", "done.json", "sigma15/metrics.json", "sigma15/events.out.tfevents.1",
                "sigma50/metrics.partial.json", "ckpt/latest.pt"):
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / rel).write_text(rel)
    (stage / "linked").symlink_to(tmp_path, target_is_directory=True)
    _clear_stage(stage, "stale: the configuration changed", ["sigma*/metrics.json", "sigma*/metrics.partial.json"])
    left = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
    assert left == ["sigma15/metrics.json", "sigma50/metrics.partial.json", "stage.log"]
    assert not (stage / "ckpt").exists() and not (stage / "linked").exists() and tmp_path.exists()
    assert "kept 2 file(s) matching stage_keep" in (stage / "stage.log").read_text()
    _clear_stage(stage, "forced rerun")
    assert sorted(p.name for p in stage.iterdir()) == ["stage.log"]
