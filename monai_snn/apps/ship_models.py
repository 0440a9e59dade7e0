# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Copy one fold's trained models from a cross-validation run into a bundle's ``models/`` folder.

Writes ``ann.pt`` (the best ANN's state dict, taken out of its ``CheckpointSaver`` file), ``converted.pt`` and
``model.pt`` (the fine-tuned SNN, the bundle's default model) with their settings ``.json`` (plus the source path),
and refreshes ``eval_metrics`` in ``configs/metadata.json`` from the fold's ``evaluate/metrics.json``, so the
shipped weights and the numbers in the metadata always come from the same run.

Example::

    python -m monai_snn.apps.ship_models --run_dir runs/hippo_ref2 --fold 0 --bundle_root bundles/hippocampus_snn
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from monai_snn.apps.bundle_utils import write_json
from monai_snn.apps.summary import fold_settings

__all__ = ["ship_models", "main"]


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the fold's stages first (monai_snn.apps.cross_validation).")
    return json.loads(path.read_text())


def ship_models(run_dir: str | Path, fold: int, bundle_root: str | Path) -> dict[str, float]:
    """Copy fold ``fold`` of ``run_dir`` into ``bundle_root/models`` and update the metadata's ``eval_metrics``.

    Args:
        run_dir: cross-validation output folder (``fold{k}/train_ann|convert|finetune|evaluate``).
        fold: the fold to ship.
        bundle_root: the bundle folder (``models/`` and ``configs/metadata.json``).

    Returns:
        the new ``eval_metrics``.
    """
    run, root = Path(run_dir), Path(bundle_root)
    fold_dir = run / f"fold{int(fold)}"
    models = root / "models"
    models.mkdir(parents=True, exist_ok=True)
    evaluation = _read_json(fold_dir / "evaluate" / "metrics.json")
    converted = _read_json(fold_dir / "convert" / "snn_converted.json")

    ckpt = fold_dir / "train_ann" / "ckpt" / "best_model.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt} not found: run train_ann for fold {fold} first.")
    state = torch.load(str(ckpt), map_location="cpu", weights_only=True)
    state = state.get("network", state) if isinstance(state, dict) else state
    torch.save(state, str(models / "ann.pt"))
    args = {"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "channels": converted["channels"],
            "bias": converted["bias"], "dropout": converted["dropout"]}  # fmt: skip
    write_json(models / "ann.json",
                {"network": "monai_snn.networks.ConvertibleUNet", "args": args, "source": str(ckpt)})  # fmt: skip
    for stage, name, target in (("convert", "snn_converted", "converted"), ("finetune", "snn_finetuned", "model")):
        src = fold_dir / stage / f"{name}.pt"
        if not src.is_file():
            raise FileNotFoundError(f"{src} not found: run the {stage} stage for fold {fold} first.")
        shutil.copyfile(src, models / f"{target}.pt")
        settings = fold_settings(fold_dir) if stage == "finetune" else converted
        write_json(models / f"{target}.json", dict(settings, source=f"{src} (fold {fold})"))

    metrics = {f"mean_dice_3d_ann_fold{fold}": round(evaluation["ann"]["dice_3d_mean"], 4)}
    conv_t, fine_t = evaluation["converted"]["num_steps"], evaluation["finetuned"]["num_steps"]
    metrics[f"mean_dice_3d_converted_T{conv_t}_fold{fold}"] = round(evaluation["converted"]["dice_3d_mean"], 4)
    metrics[f"mean_dice_3d_finetuned_T{fine_t}_fold{fold}"] = round(evaluation["finetuned"]["dice_3d_mean"], 4)
    for t, d in sorted(evaluation["finetuned"].get("dice_3d_at_T", {}).items()):
        metrics[f"mean_dice_3d_finetuned_T{t}_fold{fold}"] = round(float(d), 4)
    meta_path = root / "configs" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["eval_metrics"] = metrics
    meta_path.write_text(json.dumps(meta, indent=4) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run_dir", required=True, help="cross-validation output folder")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--bundle_root", default="bundles/hippocampus_snn")
    args = p.parse_args(argv)
    print(json.dumps(ship_models(args.run_dir, args.fold, args.bundle_root), indent=1))


if __name__ == "__main__":
    main()
