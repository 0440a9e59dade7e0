# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""A bundle's conversion stage: calibration data, percentile search on validation, conversion, metric vs ``T``.

Every evaluation goes through the bundle's evaluator factory (see :mod:`monai_snn.bundle.evaluation`), so the
metrics, the inferer and the post-processing are the ones the bundle's config names.

Example (a bundle config)::

    "calibration": "$monai_snn.bundle.calibration_batch(@train#dataset, @num_calibration)",
    "run": ["$monai_snn.bundle.run_conversion(@network, @ann_checkpoint, @calibration, @snn_settings, @evaluator,
             @test#dataloader, @stage_dir, @steps_sweep, @validate#dataloader, @percentile_candidates)"]
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from monai_snn.bundle.evaluation import metric_vs_steps_figure, run_evaluator
from monai_snn.bundle.results import portable_path, write_json

__all__ = ["calibration_batch", "select_percentile", "run_conversion"]

logger = logging.getLogger(__name__)


def _images(item: Any, key: str) -> list[torch.Tensor]:
    if isinstance(item, (list, tuple)):  # a transform that samples several patches per item
        return [img for it in item for img in _images(it, key)]
    if isinstance(item, dict):
        return [torch.as_tensor(item[key])]
    return [torch.as_tensor(item)]


def calibration_batch(data: Sequence[Any], num: int = 64, key: str = "image") -> list[torch.Tensor]:
    """About ``num`` images spread evenly over ``data``, stacked as one calibration batch.

    Args:
        data: a dataset or list of items (dicts with ``key``, tensors, or lists of them when a transform samples
            several patches per item); items ``0, s, 2s, ...`` with ``s = len(data) // num`` are taken.
        num: number of calibration images.
        key: the image key of dict items.

    Returns:
        ``[batch]`` with ``batch`` of shape ``[num, C, *spatial]`` (a list of batches, as
        :func:`monai_snn.conversion.convert_to_snn` takes).

    Raises:
        ValueError: ``data`` is empty or ``num < 1``.

    Example::

        calibration = calibration_batch(train_dataset, 64)
        snn = convert_with_settings(ann, calibration, settings)
    """
    if num < 1:
        raise ValueError(f"num_calibration must be at least 1, got {num}.")
    if len(data) == 0:
        raise ValueError("no calibration data: the training set is empty (check the datalist and the split).")
    step = max(1, len(data) // num)
    images: list[torch.Tensor] = []
    for i in range(0, len(data), step):
        images.extend(_images(data[i], key))
        if len(images) >= num:
            break
    return [torch.stack([img.as_tensor() if hasattr(img, "as_tensor") else img for img in images[:num]])]


def select_percentile(
    ann: torch.nn.Module,
    calibration: Any,
    settings: dict[str, Any],
    candidates: Sequence[float],
    make_evaluator: Callable[..., Any],
    val_loader: Any,
) -> dict[str, Any]:
    """Choose the normalization percentile that gives the converted SNN the best validation key metric at its ``T``.

    A lower percentile maps more of each layer's activation range onto the neuron's levels (finer rates at short
    ``T``, more spikes) and clips more of the tail; which wins depends on the network, so each candidate is
    converted and evaluated for ``settings["num_steps"]`` steps on the validation data. Ties go to the higher
    percentile (fewer spikes).

    Args:
        ann: the trained ANN.
        calibration: calibration batches (see :func:`calibration_batch`).
        settings: conversion settings (:func:`monai_snn.conversion.snn_settings`); ``percentile`` is replaced.
        candidates: percentiles in (0, 100].
        make_evaluator: the bundle's evaluator factory (its key metric decides).
        val_loader: validation batches (never the test set).

    Returns:
        ``{"chosen": p, "val_metric": {str(p): value}, "metric": key metric name, "num_steps": T}``.

    Raises:
        ValueError: a candidate outside (0, 100] or no candidate.

    Example::

        search = select_percentile(ann, calibration, settings, (97, 99, 99.9), evaluator, val_loader)
        settings = dict(settings, percentile=search["chosen"])
    """
    from monai_snn.conversion.io import convert_with_settings

    T = int(settings["num_steps"])
    cands = sorted({float(p) for p in candidates}, reverse=True)
    if not cands:
        raise ValueError("percentile_candidates is empty: give at least one percentile in (0, 100].")
    for p in cands:
        if not 0.0 < p <= 100.0:
            raise ValueError(f"percentile_candidates must be in (0, 100], got {p!r}.")
    scores: dict[str, float] = {}
    best, best_value, key = cands[0], -float("inf"), None
    for p in cands:
        snn = convert_with_settings(ann, calibration, dict(settings, percentile=p))
        m = run_evaluator(make_evaluator, snn, val_loader, num_steps=T, desc=f"percentile {p:g}, T={T}")
        key = m["key_metric"]
        scores[f"{p:g}"] = m[key]
        logger.info("percentile %g: validation %s %.4f at T=%d", p, key, m[key], T)
        if m[key] > best_value:
            best, best_value = p, m[key]
    logger.info("chosen percentile: %g (validation %s %.4f)", best, key, best_value)
    return {"chosen": best, "val_metric": scores, "metric": key, "num_steps": T}


def run_conversion(
    ann: torch.nn.Module,
    ann_checkpoint: str | os.PathLike,
    calibration: Any,
    settings: dict[str, Any],
    make_evaluator: Callable[..., Any],
    test_loader: Any,
    output_dir: str | os.PathLike,
    steps_sweep: Sequence[int] = (1, 2, 4, 8, 16),
    val_loader: Any = None,
    percentile_candidates: Sequence[float] = (),
) -> dict[str, Any]:
    """Conversion stage: load the best ANN, convert it (percentile chosen on validation), evaluate ANN and SNN.

    Writes to ``output_dir``: ``snn_converted.pt`` with its settings ``snn_converted.json``, ``metrics.json``
    (``ann``, ``converted`` with energy and firing rates, ``metrics_vs_T``, ``percentile_search``) and a
    TensorBoard run: the evaluator's metrics against ``T`` (the global step is ``T``), energy and per-layer firing
    rates at the conversion ``T`` (:class:`~monai_snn.handlers.EnergyHandler`,
    :class:`~monai_snn.handlers.FiringRateHandler`), the percentile search and a metric-vs-``T`` plot.

    Args:
        ann: the ANN architecture (its weights are loaded from ``ann_checkpoint``).
        ann_checkpoint: the best ANN checkpoint of the training stage.
        calibration: calibration batches (see :func:`calibration_batch`).
        settings: conversion settings; ``num_steps`` is the conversion ``T``.
        make_evaluator: the bundle's evaluator factory (see :func:`monai_snn.bundle.run_evaluator`).
        test_loader: the test batches.
        output_dir: the stage folder.
        steps_sweep: the ``T`` of the metric-vs-``T`` sweep (the conversion ``T`` is always included).
        val_loader: validation batches, for the percentile search.
        percentile_candidates: percentiles to choose from on ``val_loader`` (empty: ``settings["percentile"]``).

    Raises:
        ValueError: ``percentile_candidates`` without ``val_loader``.

    Example::

        run_conversion(ConvertibleUNet(2, 1, 1), "ckpt/best_model.pt", calibration, settings, evaluator,
                       test_loader, "runs/fold0/convert", (1, 2, 4, 8, 16), val_loader, (99.0, 99.9))
    """
    from monai_snn.conversion.io import convert_with_settings, save_snn
    from monai_snn.handlers import EnergyHandler, FiringRateHandler, stage_writer
    from monai_snn.handlers.checkpoint import load_weights

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    load_weights(ann, ann_checkpoint)
    ann.eval()
    T = int(settings["num_steps"])
    search = None
    if percentile_candidates:
        if val_loader is None:
            raise ValueError("percentile_candidates needs validation data (val_loader) to choose from.")
        search = select_percentile(ann, calibration, settings, percentile_candidates, make_evaluator, val_loader)
        settings = dict(settings, percentile=search["chosen"])
    snn = convert_with_settings(ann, calibration, settings)
    save_snn(snn, out / "snn_converted.pt", settings)

    w = stage_writer(out)
    try:
        ann_m = run_evaluator(make_evaluator, ann, test_loader, desc="ANN")
        key = ann_m["key_metric"]
        logger.info("ANN: %s %.4f", key, ann_m[key])
        energy = EnergyHandler(snn, summary_writer=w, metric_prefix="energy_", average=True)
        rates = FiringRateHandler(snn, summary_writer=w)
        conv_m = run_evaluator(make_evaluator, snn, test_loader, num_steps=T, desc=f"converted T={T}",
                               handlers=[energy, rates], global_epoch=T)  # fmt: skip
        conv_m.update(num_steps=T, energy_snn_over_ann=conv_m.get("energy_ratio"), firing_rates=dict(rates.rates))
        logger.info("converted SNN (T=%d): %s %.4f", T, key, conv_m[key])
        sweep: dict[int, dict[str, Any]] = {T: conv_m}
        for t in sorted({int(s) for s in steps_sweep} - {T}):
            sweep[t] = run_evaluator(make_evaluator, snn, test_loader, num_steps=t, desc=f"converted T={t}",
                                     global_epoch=t)  # fmt: skip
            logger.info("converted SNN T=%d: %s %.4f", t, key, sweep[t][key])
        metrics: dict[str, Any] = {
            "ann": {**ann_m, "num_steps": None},
            "converted": conv_m,
            "metrics_vs_T": {str(t): {k: v for k, v in m.items() if isinstance(v, (int, float))}
                             for t, m in sorted(sweep.items())},  # fmt: skip
            "settings": settings,
            "ann_checkpoint": portable_path(ann_checkpoint),
        }
        if search is not None:
            metrics["percentile_search"] = search
        write_json(out / "metrics.json", metrics)

        numeric = [k for k, v in ann_m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        for k in numeric:
            w.add_scalar(f"test/ann/{k}", ann_m[k], 0)
            for t, m in sorted(sweep.items()):
                if isinstance(m.get(k), (int, float)):
                    w.add_scalar(f"metric_vs_T/{k}", m[k], t)
        if search is not None:
            for p, v in search["val_metric"].items():
                w.add_scalar(f"percentile_search/val_{search['metric']}", v, int(round(float(p) * 100)))
        w.add_text("conversion", "```\n" + json.dumps({k: metrics[k] for k in ("ann", "converted", "settings")},
                                                    indent=1, default=str) + "\n```", 0)  # fmt: skip
        fig = metric_vs_steps_figure({"converted": {t: m[key] for t, m in sweep.items()}}, ann_m[key], key,
                                     "converted SNN, test set")  # fmt: skip
        w.add_figure("metric_vs_T/plot", fig, 0)
    finally:
        w.close()
    return metrics
