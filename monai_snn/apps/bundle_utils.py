# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Helpers called from the ``bundles/hippocampus_snn`` MONAI bundle configs.

The bundle configs wire MONAI engines and handlers; the pieces that are plain Python (data preparation,
fold / validation split, loss selection, conversion, Dice-vs-T sweeps, metrics files) live here so they can be
tested and reused. Every function is referenced from the configs by its full dotted path.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from monai_snn.apps.hippocampus import load_datalist_folds, prepare_msd_folder, split_validation
from monai_snn.apps.slices import SLICE_INTENSITY, dice_2d_3d, volume_slices
from monai_snn.conversion.io import build_snn, convert_with_settings, load_settings, save_snn
from monai_snn.handlers.checkpoint import load_weights

__all__ = [
    "LOSSES",
    "ENCODINGS",
    "prepare_data",
    "fold_split",
    "all_items",
    "export_snn",
    "encoding_range",
    "make_slices",
    "make_loss",
    "select_percentile",
    "calibration_batches",
    "predict",
    "evaluate_slices",
    "run_conversion",
    "run_evaluation",
    "machine_info",
    "write_json",
]

logger = logging.getLogger(__name__)

LOSSES = ("bce", "dice", "bce_dice")
ENCODINGS = ("static", "poisson_binary", "poisson_ternary")


# ------------------------------------------------------------------------------------------------ data
def prepare_data(
    data_dir: str | os.PathLike,
    prep_dir: str | os.PathLike,
    box: Sequence[int] | None = None,
    num_folds: int = 5,
    seed: int = 0,
) -> str:
    """Validate and fit an MSD-layout folder to one box (``None``: from its labels) -> ``datalist.json`` path."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"data_dir {data_dir} does not exist: pass --data_dir <folder with imagesTr/ and labelsTr/> "
            "(MSD Task04_Hippocampus layout) or set MONAI_SNN_DATA."
        )
    return str(
        prepare_msd_folder(
            data_dir, prep_dir, box=None if box is None else tuple(box), num_folds=int(num_folds), seed=int(seed)
        )
    )


def all_items(datalist: str) -> list[dict]:
    """Every item of a datalist (paths resolved against its folder), each pair validated as in data preparation.

    Args:
        datalist: a datalist json with a ``"training"`` list of ``{"image", "label"}`` items.

    Raises:
        FileNotFoundError: when the datalist or a file it names does not exist.
        ValueError: when the datalist is empty or not a datalist, or a pair is invalid (see :func:`_check_items`).
    """
    from monai_snn.apps.hippocampus import read_datalist

    path = Path(datalist)
    items = read_datalist(path)["training"]
    for i, it in enumerate(items):
        if not isinstance(it, dict) or not all(isinstance(it.get(k), str) for k in ("image", "label")):
            raise ValueError(
                f"item {i} of datalist {datalist} is {it!r}; expected a dict with one 'image' and one 'label' path."
            )
    out = [dict(it, image=str(path.parent / it["image"]), label=str(path.parent / it["label"])) for it in items]
    _check_items(out, datalist)
    return out


def _check_items(items: Sequence[dict], datalist: str) -> None:
    """Validate every image / label pair of ``items`` with :func:`monai_snn.apps.hippocampus.load_pair`.

    What data preparation checks (readable 3D NIfTI files, same shape and affine, finite intensities, labels in
    {0, 1, 2}) holds for a user's datalist too; an empty label warns, naming the file.

    Args:
        items: data dicts with ``"image"`` and ``"label"`` paths.
        datalist: the datalist they come from (named in the messages).

    Raises:
        FileNotFoundError: when a file does not exist (the message names it and the datalist).
        ValueError: when ``items`` is empty or a pair is invalid (the message names the file and the datalist).
    """
    from monai_snn.apps.hippocampus import load_pair

    if not items:
        raise ValueError(
            f"datalist {datalist} holds no items; expected at least one image / label pair under "
            "'training' (leave --datalist unset to prepare --data_dir instead)."
        )
    for it in items:
        for key in ("image", "label"):
            if not isinstance(it.get(key), str):
                raise ValueError(f"an item of datalist {datalist} has {key}={it.get(key)!r}; expected one file path.")
            if not os.path.isfile(it[key]):
                raise FileNotFoundError(f"{key} file named in {datalist} does not exist: {it[key]}")
    for it in items:
        try:
            load_pair(it["image"], it["label"])
        except ValueError as e:
            raise ValueError(f"invalid pair in datalist {datalist}: {e}") from None  # the message says it all


def fold_split(
    datalist: str, fold: int, num_folds: int = 5, val_fraction: float = 0.125, seed: int = 0
) -> dict[str, list[dict]]:
    """Train / validation / test items of one fold; the validation split comes from the training folds only.

    Every pair is validated (see :func:`_check_items`) before anything else runs, so a datalist naming a missing,
    corrupt or mismatched file fails at once with a message naming it.

    Args:
        datalist: a datalist json whose items have ``"image"``, ``"label"`` and ``"fold"``.
        fold: the test fold.
        num_folds: number of folds (checked against the datalist's ``"num_folds"`` when it has one).
        val_fraction: fraction of the training subjects held out for validation.
        seed: seed of the validation split.

    Raises:
        FileNotFoundError: when the datalist or a file it names does not exist.
        ValueError: when the datalist is empty, the test fold or the training folds hold no item, or a pair is
            invalid. The message names the datalist (and the file).
    """
    train, test = load_datalist_folds(datalist, fold=int(fold), num_folds=int(num_folds))
    _check_items(train + test, datalist)
    for part, name in ((test, f"test volume in fold {fold}"), (train, f"training volume outside fold {fold}")):
        if not part:
            folds = sorted({int(it["fold"]) for it in train + test})
            raise ValueError(
                f"datalist {datalist} holds no {name} (its items are in folds {folds}, num_folds={num_folds}); "
                "give every fold at least one item, or choose --fold / --num_folds accordingly."
            )
    train, val = split_validation(train, fraction=float(val_fraction), seed=int(seed))
    if not val:
        val = train[:1]
    logger.info("fold %d: %d train, %d validation, %d test volumes", fold, len(train), len(val), len(test))
    return {"train": train, "val": val, "test": test, "all": train + val + test}


def encoding_range(encoding: str) -> tuple[float, float]:
    """Slice intensity range for an input encoding: ``[-1, 1]`` for ternary Poisson coding, else ``[0, 1]``."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}.")
    return SLICE_INTENSITY["ternary"] if encoding == "poisson_ternary" else SLICE_INTENSITY["binary"]


def make_slices(items: Sequence[dict], encoding: str = "static", foreground_only: bool = False) -> list[dict]:
    """2D slices (axis 0) of the volumes, scaled for ``encoding``.

    Args:
        items: data dicts with ``"image"`` and ``"label"`` paths of volumes that share one slice size.
        encoding: input encoding, which sets the intensity range (see :func:`encoding_range`).
        foreground_only: keep only slices that contain label.

    Raises:
        ValueError: when ``items`` is empty, a pair is invalid or the volumes differ in slice size (see
            :func:`monai_snn.apps.slices.volume_slices`).
    """
    if not items:
        raise ValueError("no volumes to cut into slices: the item list is empty (check the datalist and the fold).")
    return volume_slices(items, axis=0, value_range=encoding_range(encoding), foreground_only=foreground_only)


def make_loss(name: str) -> torch.nn.Module:
    """``bce`` -> ``BCEWithLogitsLoss``; ``dice`` -> ``DiceLoss(sigmoid)``; ``bce_dice`` -> 0.3 BCE + 0.7 Dice."""
    from monai.losses import DiceCELoss, DiceLoss

    if name == "bce":
        return torch.nn.BCEWithLogitsLoss()
    if name == "dice":
        return DiceLoss(sigmoid=True)
    if name == "bce_dice":
        return DiceCELoss(sigmoid=True, lambda_ce=0.3, lambda_dice=0.7)
    raise ValueError(f"loss_name must be one of {LOSSES}, got {name!r}.")


# ------------------------------------------------------------------------------------------------ conversion
def calibration_batches(slices: Sequence[dict], num: int = 64) -> list[torch.Tensor]:
    """``num`` training slices spread evenly over the training set, as one batch."""
    step = max(1, len(slices) // max(1, num))
    return [torch.stack([s["image"] for s in slices[::step][:num]])]


# ------------------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def predict(net: torch.nn.Module, slices: Sequence[dict], num_steps: int | None = None, batch: int = 256):
    """Logits of ``net`` (at ``num_steps`` for an SNN) on all slices; returns ``(logits, labels, subjects, pos)``."""
    net.eval()
    if num_steps is not None:
        net.num_steps = int(num_steps)
    x = torch.stack([s["image"] for s in slices])
    y = torch.cat([net(x[i : i + batch]) for i in range(0, len(x), batch)])
    return y, torch.stack([s["label"] for s in slices]), [s["subject"] for s in slices], [s["slice"] for s in slices]


def evaluate_slices(logits, labels, subjects, positions, threshold: float = 0.5) -> dict[str, float]:
    """2D / 3D Dice of ``sigmoid(logits) > threshold``."""
    return dice_2d_3d(torch.sigmoid(logits) > threshold, labels, subjects, positions)


def _dice_vs_t_figure(rows: dict[int, float], ann: float, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=80)
    ts = sorted(rows)
    ax.plot(ts, [rows[t] for t in ts], "o-", label="SNN")
    ax.axhline(ann, color="k", ls="--", label="ANN")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time steps T")
    ax.set_ylabel("3D Dice")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def _panel(x: torch.Tensor, y: torch.Tensor, *preds: torch.Tensor, n: int = 4) -> torch.Tensor:
    """Image | label | prediction(s) panel ``[3, n*H, (2 + len(preds))*W]`` (for TensorBoard)."""
    rows = []
    for i in range(min(n, len(x))):
        xi = (x[i, 0] - x[i, 0].min()) / (x[i, 0].max() - x[i, 0].min() + 1e-8)
        rows.append(torch.cat([xi, y[i, 0].float(), *(p[i, 0].float() for p in preds)], dim=1))
    img = torch.cat(rows, dim=0)
    return img[None].repeat(3, 1, 1)


def _writer(log_dir: str | os.PathLike):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))


def run_conversion(
    ann: torch.nn.Module,
    ann_checkpoint: str,
    train_slices: Sequence[dict],
    test_slices: Sequence[dict],
    settings: dict[str, Any],
    output_dir: str | os.PathLike,
    steps_sweep: Sequence[int] = (1, 2, 4, 8, 16, 32),
    output_thresholds: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6),
    num_calibration: int = 64,
    energy_batch: int = 32,
    val_slices: Sequence[dict] | None = None,
    percentile_candidates: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Stage 2: load the best ANN, convert it, evaluate ANN and SNN on the test fold, write metrics + TensorBoard.

    Writes ``output_dir/snn_converted.pt`` (+ ``.json`` settings), ``metrics.json`` and a TensorBoard run with
    scalars (Dice vs T, threshold sweep, energy, firing rates), a text summary, an image panel and a Dice-vs-T plot.

    With ``percentile_candidates`` and ``val_slices``, the normalization percentile is chosen by
    :func:`select_percentile` on the validation slices (never the test fold) before the final conversion; the
    search is stored under ``percentile_search`` in the metrics and the chosen value in the SNN settings.
    """
    from monai_snn.energy import estimate_energy

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    load_weights(ann, ann_checkpoint)
    T = int(settings["num_steps"])
    calibration = calibration_batches(train_slices, num_calibration)
    search = None
    if percentile_candidates:
        if not val_slices:
            raise ValueError("percentile_candidates needs validation slices (val_slices) to choose from.")
        search = select_percentile(ann, calibration, val_slices, settings, percentile_candidates)
        settings = dict(settings, percentile=search["chosen"])
    snn = convert_with_settings(ann, calibration, settings)
    save_snn(snn, out / "snn_converted.pt", settings)

    y_ann, lab, subj, pos = predict(ann, test_slices)
    ann_d = evaluate_slices(y_ann, lab, subj, pos)
    logger.info("ANN: 3D Dice %.4f, 2D Dice %.4f", ann_d["dice_3d_mean"], ann_d["dice_2d_mean"])
    y_snn, *_ = predict(snn, test_slices, num_steps=T)
    snn_d = evaluate_slices(y_snn, lab, subj, pos)
    logger.info("converted SNN (T=%d): 3D Dice %.4f, 2D Dice %.4f", T, snn_d["dice_3d_mean"], snn_d["dice_2d_mean"])
    sweep_thr = {
        f"{t:.1f}": {"ann": evaluate_slices(y_ann, lab, subj, pos, t)["dice_3d_mean"],
                     "snn": evaluate_slices(y_snn, lab, subj, pos, t)["dice_3d_mean"]}
        for t in output_thresholds
    }  # fmt: skip
    dice_vs_t: dict[int, dict[str, float]] = {}
    for t in sorted(set(int(s) for s in steps_sweep)):
        y_t = y_snn if t == T else predict(snn, test_slices, num_steps=t)[0]
        d = evaluate_slices(y_t, lab, subj, pos)
        dice_vs_t[t] = {"dice_3d_mean": d["dice_3d_mean"], "dice_2d_mean": d["dice_2d_mean"]}
        logger.info("converted SNN T=%d: 3D Dice %.4f", t, d["dice_3d_mean"])
    snn.num_steps = T
    x_e = torch.stack([s["image"] for s in test_slices[:: max(1, len(test_slices) // energy_batch)][:energy_batch]])
    energy = estimate_energy(snn, x_e)
    energy_small = {k: v for k, v in energy.items() if isinstance(v, (int, float))}
    metrics = {
        "ann": {**ann_d, "num_steps": None},
        "converted": {**snn_d, "num_steps": T},
        "threshold_sweep": sweep_thr,
        "dice_vs_T": {str(k): v for k, v in dice_vs_t.items()},
        "energy": energy_small,
        "firing_rates": energy.get("firing_rates", {}),
        "settings": settings,
        "ann_checkpoint": str(ann_checkpoint),
        "num_test_slices": len(test_slices),
    }
    if search is not None:
        metrics["percentile_search"] = search
    write_json(out / "metrics.json", metrics)

    w = _writer(out)
    try:
        w.add_scalar("test/ann_dice_3d", ann_d["dice_3d_mean"], 0)
        w.add_scalar("test/converted_dice_3d", snn_d["dice_3d_mean"], T)
        for t, d in dice_vs_t.items():
            w.add_scalar("dice_vs_T/dice_3d", d["dice_3d_mean"], t)
            w.add_scalar("dice_vs_T/dice_2d", d["dice_2d_mean"], t)
        for i, (thr, d) in enumerate(sweep_thr.items()):
            w.add_scalar("threshold_sweep/ann", d["ann"], int(round(float(thr) * 10)))
            w.add_scalar("threshold_sweep/snn", d["snn"], int(round(float(thr) * 10)))
        for k, v in energy_small.items():
            w.add_scalar(f"energy/{k}", v, T)
        for k, v in metrics["firing_rates"].items():
            w.add_scalar(f"firing_rate/{k}", v, T)
        if search is not None:
            for p, d in search["val_dice_3d"].items():
                w.add_scalar("percentile_search/val_dice_3d", d, int(round(float(p) * 100)))
        w.add_text("conversion", "```\n" + json.dumps({k: metrics[k] for k in ("ann", "converted", "settings")},
                                                    indent=1) + "\n```", 0)
        p = torch.sigmoid(y_snn) > 0.5
        fg = [i for i, s in enumerate(test_slices) if s["label"].any()][:: 7][:4] or [0]
        xs = torch.stack([test_slices[i]["image"] for i in fg])
        w.add_image("test/image_label_snnpred", _panel(xs, lab[fg], p[fg]), 0)
        fig = _dice_vs_t_figure({t: d["dice_3d_mean"] for t, d in dice_vs_t.items()}, ann_d["dice_3d_mean"],
                                "converted SNN, test fold")
        w.add_figure("dice_vs_T/plot", fig, 0)
    finally:
        w.close()
    return metrics


def select_percentile(
    ann: torch.nn.Module,
    calibration: Any,
    val_slices: Sequence[dict],
    settings: dict[str, Any],
    candidates: Sequence[float],
) -> dict[str, Any]:
    """Choose the normalization percentile that gives the converted SNN the best validation 3D Dice at its T.

    A lower percentile maps more of each layer's activation range onto the neuron's levels (finer rate
    resolution at short T, more spikes) and clips more of the tail; which trade-off wins depends on the network,
    so each candidate is converted and simulated for ``settings["num_steps"]`` steps on the validation slices.
    Ties go to the higher percentile (fewer spikes).

    Args:
        ann: the trained ANN (eval mode).
        calibration: calibration batches for :func:`convert_ann`.
        val_slices: validation slices (from the training folds).
        settings: conversion settings; ``percentile`` is replaced by each candidate.
        candidates: percentiles in (0, 100] to try.

    Returns:
        ``{"chosen": p, "val_dice_3d": {str(p): dice}, "num_steps": T, "num_val_slices": n}``.

    Example::

        search = select_percentile(ann, calibration, val_slices, settings, (95.0, 98.0, 99.0, 99.9))
        settings = dict(settings, percentile=search["chosen"])
    """
    T = int(settings["num_steps"])
    cands = sorted({float(p) for p in candidates}, reverse=True)
    for p in cands:
        if not 0.0 < p <= 100.0:
            raise ValueError(f"percentile_candidates must be in (0, 100], got {p!r}.")
    scores: dict[str, float] = {}
    best, best_dice = cands[0], -1.0
    for p in cands:
        snn = convert_with_settings(ann, calibration, dict(settings, percentile=p))
        y, lab, subj, pos = predict(snn, val_slices, num_steps=T)
        d = evaluate_slices(y, lab, subj, pos)["dice_3d_mean"]
        scores[f"{p:g}"] = d
        logger.info("percentile %g: validation 3D Dice %.4f at T=%d", p, d, T)
        if d > best_dice:
            best, best_dice = p, d
    logger.info("chosen percentile: %g (validation 3D Dice %.4f)", best, best_dice)
    return {"chosen": best, "val_dice_3d": scores, "num_steps": T, "num_val_slices": len(val_slices)}


def run_evaluation(
    ann: torch.nn.Module,
    test_slices: Sequence[dict],
    ann_weights: str,
    converted_weights: str,
    finetuned_weights: str,
    output_dir: str | os.PathLike,
    converted_steps: int | None = None,
    finetuned_steps: int | None = None,
    extra_finetuned_steps: Sequence[int] = (2,),
    info: dict[str, Any] | None = None,
    metrics_file: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Stage 4: ANN, converted SNN and fine-tuned SNN on ``test_slices`` -> ``metrics.json`` + TensorBoard text.

    Missing SNN weights are skipped (their entry is ``null``); ``*_steps=None`` uses the T stored with the weights.

    Raises:
        ValueError: when ``test_slices`` is empty.
    """
    import copy

    if not test_slices:
        raise ValueError("no test slices to evaluate: the evaluated datalist or fold holds no volume.")

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, Any] = {}
    load_weights(ann, ann_weights)
    y, lab, subj, pos = predict(ann, test_slices)
    masks = {"ann": y > 0}  # sigmoid > 0.5, for the image panel
    metrics["ann"] = {**evaluate_slices(y, lab, subj, pos), "num_steps": None, "weights": str(ann_weights)}
    for name, weights, steps in (("converted", converted_weights, converted_steps),
                                 ("finetuned", finetuned_weights, finetuned_steps)):  # fmt: skip
        if not weights or not os.path.isfile(weights):
            logger.warning("%s SNN weights not found (%s): skipped.", name, weights)
            metrics[name] = None
            continue
        settings = load_settings(Path(weights).with_suffix(".json"))
        snn = build_snn(copy.deepcopy(ann), weights, settings)
        T = int(steps if steps is not None else settings.get("eval_steps", settings["num_steps"]))
        y, *_ = predict(snn, test_slices, num_steps=T)
        masks[name] = y > 0
        metrics[name] = {**evaluate_slices(y, lab, subj, pos), "num_steps": T, "weights": str(weights)}
        if name == "finetuned":
            metrics[name]["dice_3d_at_T"] = {}
            for t in sorted(set(int(s) for s in extra_finetuned_steps) | {T}):
                yt = y if t == T else predict(snn, test_slices, num_steps=t)[0]
                metrics[name]["dice_3d_at_T"][str(t)] = evaluate_slices(yt, lab, subj, pos)["dice_3d_mean"]
    metrics["num_test_slices"] = len(test_slices)
    metrics["info"] = {**(info or {}), **machine_info()}
    target = Path(metrics_file) if metrics_file else out / "metrics.json"
    write_json(target, metrics)
    if target.parent != out:
        write_json(out / "metrics.json", metrics)
    for k in ("ann", "converted", "finetuned"):
        if metrics[k]:
            logger.info("%s: 3D Dice %.4f +- %.4f (T=%s)", k, metrics[k]["dice_3d_mean"], metrics[k]["dice_3d_std"],
                        metrics[k]["num_steps"])
    w = _writer(out)
    try:
        w.add_text("evaluate", "```\n" + json.dumps(metrics, indent=1) + "\n```", 0)
        for k in ("ann", "converted", "finetuned"):
            if metrics[k]:
                w.add_scalar(f"test/{k}_dice_3d", metrics[k]["dice_3d_mean"], 0)
        fg = (lab.flatten(1).sum(1) > 0).nonzero().flatten()  # slices with hippocampus: 4 spread over the fold
        fg = fg[:: max(1, len(fg) // 4)][:4]
        if len(fg):
            xs = torch.stack([test_slices[int(i)]["image"] for i in fg])
            names = [k for k in ("ann", "converted", "finetuned") if k in masks]
            w.add_image("test/input_label_" + "_".join(names), _panel(xs, lab[fg], *(masks[k][fg] for k in names)), 0)
    finally:
        w.close()
    return metrics


# ------------------------------------------------------------------------------------------------ misc
def machine_info() -> dict[str, Any]:
    """Platform, CPU count, torch / monai versions, threads."""
    import monai

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "cuda": torch.cuda.is_available(),
    }


def write_json(path: str | os.PathLike, data: Any) -> str:
    """Write ``data`` as indented json (atomically), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
    return str(path)


def export_snn(
    snn: torch.nn.Module,
    best_checkpoint: str | os.PathLike,
    path: str | os.PathLike,
    settings: dict[str, Any],
    best_metric: float | None = None,
    best_epoch: int | None = None,
) -> str:
    """Save the best fine-tuned weights (from ``best_checkpoint``, else ``snn``'s current ones) as plain weights
    + settings json, and a ``metrics.json`` with the best validation Dice next to them."""
    if os.path.isfile(best_checkpoint):
        load_weights(snn, best_checkpoint)
    settings = dict(settings, best_val_dice=best_metric, best_epoch=best_epoch)
    save_snn(snn.cpu(), path, settings)
    write_json(Path(path).parent / "metrics.json", {"best_val_dice": best_metric, "best_epoch": best_epoch,
                                                    "settings": settings})  # fmt: skip
    return str(path)
