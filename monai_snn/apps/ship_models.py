# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Copy one fold's trained models from a cross-validation run into a bundle's ``models/`` folder.

Writes ``ann.pt`` (the best ANN's state dict, taken out of its ``CheckpointSaver`` file) with ``ann.json`` (the
architecture: the bundle's ``network_def`` as the run configured it), ``converted.pt`` and ``model.pt`` (the
fine-tuned SNN, the bundle's default model) with their settings ``.json`` (plus the source path), and refreshes
``eval_metrics`` in ``configs/metadata.json`` from the fold's ``evaluate/metrics.json``, so the shipped weights and
the numbers in the metadata always come from the same run. Nothing here is specific to one bundle: the network
arguments come from the bundle's configs, the metric from the evaluation.

Example::

    python -m monai_snn.apps.ship_models --bundle_root bundles/hippocampus_snn --run_dir runs/hippo_ref2 --fold 0 \\
        --metric dice_3d_mean --label mean_dice_3d
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from monai_snn.apps.summary import fold_settings
from monai_snn.bundle.results import portable_path, read_result, resolve_path, write_json
from monai_snn.handlers.checkpoint import read_state_dict

__all__ = ["network_args", "eval_metrics", "ship_models", "ship_snn", "main"]

_SNN_FILES = {"convert": "snn_converted", "finetune": "snn_finetuned"}  # a stage -> the SNN it writes
_SPECIAL = ("_target_", "_disabled_", "_requires_", "_desc_", "_mode_")


def network_args(
    bundle_root: str | Path, settings: dict[str, Any], overrides: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """The ANN architecture a run used: ``(target, args)`` of the bundle's ``network_def``.

    The bundle's ``configs/common.json`` (+ ``train_ann.json``) is parsed with MONAI's ``ConfigParser``, updated
    with the run's ``overrides`` (the ``train_ann`` stage's, as its ``done.json`` records them) and with the keys of
    the stored SNN ``settings`` that the configs define (e.g. ``channels``, ``dropout``, ``bias``), then every
    argument of ``network_def`` is resolved.

    Raises:
        KeyError: the bundle's configs have no ``network_def``.
    """
    from monai.bundle import ConfigParser

    from monai_snn.apps.overrides import _literal

    cfg = Path(bundle_root) / "configs"
    parser = ConfigParser()
    parser.read_config([str(f) for f in (cfg / "common.json", cfg / "train_ann.json") if f.is_file()])
    if "network_def" not in parser:
        raise KeyError(f"{cfg} defines no network_def: cannot tell the shipped ANN's architecture.")
    updates: dict[str, Any] = {"bundle_root": str(Path(bundle_root).resolve())} if "bundle_root" in parser else {}
    updates.update({k: v for k, v in settings.items() if k in parser and k != "network_def"})
    updates.update({k: _literal(v) if isinstance(v, str) else v for k, v in (overrides or {}).items()})
    if updates:
        parser.update(updates)
    net = parser["network_def"]
    target = net["_target_"]
    args = {k: parser.get_parsed_content(f"network_def#{k}") for k in net if k not in _SPECIAL}
    return target, json.loads(json.dumps(args, default=list))  # plain JSON values (tuples -> lists)


def _metric_label(evaluation: dict[str, Any], metric: str | None, label: str | None) -> tuple[str, str]:
    """The metric (given, else the evaluation's key metric) and the name prefix (given, else the metric)."""
    models = (v for k, v in evaluation.items() if isinstance(v, dict) and k != "info")
    metric = metric or next((v["key_metric"] for v in models if v.get("key_metric")), None)
    if not metric:
        raise ValueError("the evaluation records no key metric: pass --metric (e.g. --metric dice_3d_mean).")
    return metric, label or metric


def eval_metrics(evaluation: dict[str, Any], fold: int, metric: str | None = None, label: str | None = None) -> dict:
    """``{"<label>_<model>[_T<t>]_fold<k>": value}`` of an evaluate stage's ``metrics.json`` (rounded to 4 digits).

    Args:
        evaluation: the evaluate stage's metrics (``{model: {metric: value, "num_steps": T, "at_T": ...}}``; older
            files with ``dice_3d_at_T`` are read too).
        fold: the fold (part of the names).
        metric: the metric to report (default: the evaluation's key metric).
        label: the name prefix (default: ``metric``).

    Raises:
        ValueError: no metric given and none recorded, or a model without it.
    """
    models = {k: v for k, v in evaluation.items() if isinstance(v, dict) and k != "info"}
    metric, label = _metric_label(evaluation, metric, label)
    out: dict[str, float] = {}
    for name, m in models.items():
        if metric not in m:
            raise ValueError(f"model {name!r} of the evaluation has no metric {metric!r} (it has {sorted(m)}).")
        t = m.get("num_steps")
        out[f"{label}_{name}{f'_T{t}' if t else ''}_fold{fold}"] = round(float(m[metric]), 4)
        at_t = {t2: v[metric] for t2, v in m.get("at_T", {}).items() if isinstance(v, dict) and metric in v}
        if not at_t and metric == "dice_3d_mean":  # evaluations written before at_T
            at_t = m.get("dice_3d_at_T", {})
        for t2, v in sorted(at_t.items(), key=lambda kv: int(kv[0])):
            out.setdefault(f"{label}_{name}_T{t2}_fold{fold}", round(float(v), 4))
    return out


def ship_models(
    run_dir: str | Path,
    fold: int,
    bundle_root: str | Path,
    metric: str | None = None,
    label: str | None = None,
    models_dir: str | Path | None = None,
    ann_only: bool = False,
    keep_other_metrics: bool = False,
) -> dict[str, float]:
    """Copy fold ``fold`` of ``run_dir`` into ``bundle_root/models`` and update the metadata's ``eval_metrics``.

    ``eval_metrics`` is replaced; with ``keep_other_metrics`` only its entries named ``<label>_...`` are (a bundle
    with several shipped model sets, e.g. grey and colour denoisers, ships each with its own label).

    Args:
        run_dir: cross-validation output folder (``fold{k}/train_ann|convert|finetune|evaluate``), or a variant
            folder of :mod:`monai_snn.apps.variants` (no ``train_ann``: the ANN is the file its conversion recorded,
            e.g. the shipped ``models/ann.pt``, which is then left as it is).
        fold: the fold to ship.
        bundle_root: the bundle folder (``configs/`` and ``models/``).
        metric: the metric of ``eval_metrics`` (default: the evaluation's key metric).
        label: its name prefix in ``eval_metrics`` (default: ``metric``).
        models_dir: where the models go (default ``bundle_root/models``), e.g. ``models/grey``.
        ann_only: ship only the trained ANN (``ann.pt`` + ``ann.json``; no SNNs, metadata unchanged), e.g. to convert
            it later with ``apps.variants --ann`` when the training ran in an earlier session.
        keep_other_metrics: keep the ``eval_metrics`` entries of other labels (see above).

    Returns:
        the new ``eval_metrics``.

    Raises:
        FileNotFoundError: a stage output of the fold is missing.
        RuntimeError: the ANN weights do not fit the architecture read from the bundle's configs.
    """
    from monai.utils import instantiate

    run, root = Path(run_dir), Path(bundle_root)
    fold_dir = run / f"fold{int(fold)}"
    evaluation = {} if ann_only else read_result(fold_dir / "evaluate" / "metrics.json")
    converted = {} if ann_only else read_result(fold_dir / "convert" / "snn_converted.json")
    ckpt = fold_dir / "train_ann" / "ckpt" / "best_model.pt"
    if not ckpt.is_file() and not ann_only:  # a run of apps.variants converts a given ANN file: the one it recorded
        recorded = read_result(fold_dir / "convert" / "metrics.json").get("ann_checkpoint")
        ckpt = resolve_path(recorded) if recorded and not (fold_dir / "train_ann").exists() else ckpt
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt} not found: run train_ann for fold {fold} first.")
    state = read_state_dict(ckpt)
    done = fold_dir / "train_ann" / "done.json"
    overrides = json.loads(done.read_text()).get("overrides") if done.is_file() else None
    target, args = network_args(root, converted, overrides)
    try:
        instantiate(target, "default", **args).load_state_dict(state)
    except RuntimeError as e:
        raise RuntimeError(f"the ANN weights of {ckpt} do not fit {target}({args}) read from {root / 'configs'}: {e}")

    models = Path(models_dir) if models_dir is not None else root / "models"
    models.mkdir(parents=True, exist_ok=True)
    if ckpt.resolve() != (models / "ann.pt").resolve():  # the shipped ANN itself keeps its file and its source
        torch.save(state, str(models / "ann.pt"))
        write_json(models / "ann.json", {"network": target, "args": args, "source": portable_path(ckpt)})
    if ann_only:
        return {}
    metrics = eval_metrics(evaluation, int(fold), metric, label)
    for stage, target_name in (("convert", "converted"), ("finetune", "model")):
        _copy_snn(fold_dir, int(fold), stage, models / target_name)

    meta_path = root / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    kept: dict[str, float] = {}
    if keep_other_metrics:
        prefix = _metric_label(evaluation, metric, label)[1] + "_"
        kept = {k: v for k, v in meta.get("eval_metrics", {}).items() if not k.startswith(prefix)}
    meta["eval_metrics"] = {**kept, **metrics}
    meta_path.write_text(json.dumps(meta, indent=4) + "\n")
    return metrics


def ship_snn(run_dir: str | Path, fold: int, stage: str, name: str, models_dir: str | Path) -> Path:
    """Ship one SNN of a run beside a bundle's model set as ``<name>.pt`` + ``<name>.json`` (its settings).

    For a second spiking model next to the shipped ones (e.g. hippocampus ``finetuned_t2``, the short-T SNN of a
    quantization-aware ANN, or a directly trained baseline such as CamSeq01's ``spiking_fcn``), which the bundle's
    evaluate and ``--network`` report under ``name``. The ANN and the metadata are left as they are.

    Args:
        run_dir: cross-validation output folder.
        fold: the fold.
        stage: ``"convert"`` (the converted SNN), ``"finetune"`` (the fine-tuned one) or a direct-training stage
            ``"train_<name>"`` (its ``direct.pt``; the settings carry the architecture).
        name: file stem in ``models_dir`` (not ``ann``, ``converted`` or ``model``: those are the main set's).
        models_dir: the bundle's models folder.

    Returns:
        the path of the shipped weights.

    Raises:
        ValueError: an unknown ``stage`` or a ``name`` of the main set.
        FileNotFoundError: the stage's SNN is missing.
    """
    if stage not in _SNN_FILES and not stage.startswith("train_"):
        raise ValueError(f"stage must be 'convert', 'finetune' or a direct-training stage train_<name>, got {stage!r}.")
    if name in ("ann", "converted", "model"):
        raise ValueError(f"name {name!r} is one of the main model set's files; choose another (e.g. finetuned_t2).")
    models = Path(models_dir)
    models.mkdir(parents=True, exist_ok=True)
    _copy_snn(Path(run_dir) / f"fold{int(fold)}", int(fold), stage, models / name)
    return models / f"{name}.pt"


def _copy_snn(fold_dir: Path, fold: int, stage: str, target: Path) -> None:
    """Copy a stage's SNN to ``target.pt`` with its settings (and where it came from) in ``target.json``."""
    src = fold_dir / stage / f"{_SNN_FILES.get(stage, 'direct')}.pt"
    if not src.is_file():
        raise FileNotFoundError(f"{src} not found: run the {stage} stage for fold {fold} first.")
    if stage == "finetune":
        settings = fold_settings(fold_dir)
    else:  # the converted SNN's settings, or a directly trained network's own (architecture, kwargs, num_steps)
        settings = read_result(src.with_suffix(".json"))
    shutil.copyfile(src, target.parent / f"{target.name}.pt")
    write_json(target.parent / f"{target.name}.json", dict(settings, source=f"{portable_path(src)} (fold {fold})"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle_root", required=True, help="the bundle folder (configs/, models/)")
    p.add_argument("--run_dir", required=True, help="cross-validation output folder")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--metric", default=None, help="metric of eval_metrics (default: the evaluation's key metric)")
    p.add_argument("--label", default=None, help="name prefix of the eval_metrics entries (default: the metric)")
    p.add_argument("--models_dir", default=None, help="where the models go (default: <bundle_root>/models)")
    p.add_argument("--ann_only", action="store_true", help="ship only the trained ANN (no SNNs, no metadata)")
    p.add_argument("--keep_other_metrics", action="store_true",
                   help="replace only the eval_metrics entries of --label (several shipped model sets)")
    p.add_argument("--snn", default=None, metavar="STAGE:NAME",
                   help="ship only one SNN as NAME.pt / NAME.json beside the model set (STAGE: convert, finetune or a "
                        "direct-training stage, e.g. train_spiking_fcn:spiking_fcn)")
    args = p.parse_args(argv)
    if args.snn:
        stage, _, name = args.snn.partition(":")
        models = args.models_dir or str(Path(args.bundle_root) / "models")
        print(ship_snn(args.run_dir, args.fold, stage, name, models))
        return
    print(json.dumps(ship_models(args.run_dir, args.fold, args.bundle_root, args.metric, args.label,
                                 args.models_dir, args.ann_only, args.keep_other_metrics), indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
