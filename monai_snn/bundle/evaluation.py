# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Evaluation through MONAI evaluators: one run of a network at a chosen ``T``, and a bundle's evaluate stage.

A bundle config defines *how* to evaluate once, as an evaluator factory (``"_mode_": "callable"``): the inferer
(``SlidingWindowInferer`` for whole images, ``SliceInferer`` for volumes of slices), the post-processing and the
MONAI metrics by name. The functions here build one :class:`~monai_snn.engines.SpikingEvaluator` from it per
network and ``T`` (with a progress bar, and firing-rate / energy handlers for spiking networks) and return the
metrics, so the same config drives validation, the conversion stage's sweeps and the evaluate stage.

Example (a bundle config)::

    "evaluator": {"_target_": "monai_snn.engines.SpikingEvaluator", "_mode_": "callable",
                  "device": "@device", "inferer": "@inferer", "postprocessing": "@postprocessing",
                  "key_val_metric": {"f1": ...}, "additional_metrics": {"auc": ...}},
    "run": ["$monai_snn.bundle.evaluate_models(@evaluator, @test_loader, @models, @network_def, @output_dir)"]
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from monai_snn.bundle.results import as_number, machine_info, portable_path, write_json

__all__ = ["run_evaluator", "evaluate_models", "evaluate_robustness", "metric_vs_steps_figure"]

logger = logging.getLogger(__name__)


def _is_spiking(network: torch.nn.Module) -> bool:
    from monai_snn.networks.simulator import SpikingSimulator

    return isinstance(network, SpikingSimulator)


def run_evaluator(
    make_evaluator: Callable[..., Any],
    network: torch.nn.Module,
    data_loader: Any,
    num_steps: int | None = None,
    desc: str | None = None,
    handlers: Sequence[Any] = (),
    global_epoch: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``network`` (at ``num_steps`` for a spiking network) with a new evaluator; return its metrics.

    Args:
        make_evaluator: builds the evaluator from keyword arguments ``val_data_loader``, ``network``,
            ``val_handlers`` and, for a spiking network, ``num_steps`` (e.g. ``functools.partial`` of
            :class:`~monai_snn.engines.SpikingEvaluator`: a config item with ``"_mode_": "callable"``).
        network: the ANN or the spiking network.
        data_loader: the batches to evaluate.
        num_steps: simulation length ``T`` (``None``: the network's own; ignored for an ANN).
        desc: the progress bar's label.
        handlers: more handlers for this run (e.g. :class:`~monai_snn.handlers.EnergyHandler`).
        global_epoch: the epoch the run is logged at (handlers log at ``engine.state.epoch``): the stages pass
            ``T``, so TensorBoard shows metrics against ``T``.
        progress: show ignite's progress bar.

    Returns:
        ``engine.state.metrics`` as plain numbers, plus ``key_metric`` (the name of the evaluator's key metric).

    Raises:
        ValueError: ``num_steps`` is not a positive integer.

    Example::

        metrics = run_evaluator(evaluator_factory, snn, test_loader, num_steps=4, desc="converted T=4")
        metrics["f1"]
    """
    from ignite.contrib.handlers import ProgressBar

    spiking = _is_spiking(network)
    if spiking and num_steps is not None and (int(num_steps) != num_steps or num_steps < 1):
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}.")
    val_handlers = list(handlers)
    if progress:
        val_handlers.append(ProgressBar(persist=True, desc=desc or ("SNN" if spiking else "ANN")))
    kwargs: dict[str, Any] = {"val_data_loader": data_loader, "network": network, "val_handlers": val_handlers}
    if spiking:
        kwargs["num_steps"] = None if num_steps is None else int(num_steps)
    network.eval()
    evaluator = make_evaluator(**kwargs)
    evaluator.run(global_epoch=int(global_epoch))
    metrics = {k: as_number(v) for k, v in evaluator.state.metrics.items()}
    metrics["key_metric"] = evaluator.state.key_metric_name
    return metrics


def metric_vs_steps_figure(curves: Mapping[str, Mapping[int, float]], reference: float | None, metric: str, title: str):
    """A matplotlib figure of ``metric`` against ``T`` (log2 axis), one line per curve, the ANN as a dashed line.

    Example::

        fig = metric_vs_steps_figure({"converted": {1: 0.5, 4: 0.8, 16: 0.86}}, 0.87, "dice", "fold 0")
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=80)
    for name, rows in curves.items():
        ts = sorted(rows)
        ax.plot(ts, [rows[t] for t in ts], "o-", label=name)
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", label="ANN")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time steps T")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def _earlier_results(out: Path, partial: Path, info: Mapping[str, Any]) -> dict[str, Any]:
    """The newest earlier results in ``out`` (partial first) whose ``info`` agrees with ``info`` on every key of
    ``info``; ``{}`` if none. ``_file`` / ``_mtime`` say where they came from and when."""
    for path in (partial, out / "metrics.json"):
        if not path.is_file():
            continue
        try:
            earlier = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            logger.warning("%s is not readable JSON (%s): evaluating again.", path, e)
            continue
        old_info = earlier.get("info") or {}
        if all(old_info.get(k) == v for k, v in info.items()):
            return {**earlier, "_file": str(path), "_mtime": path.stat().st_mtime}
    return {}


def _reusable(
    earlier: Mapping[str, Any] | None, weights: str | os.PathLike, T: int | None, extra: Sequence[int], mtime: float
) -> dict[str, Any] | None:
    """``earlier`` (one model's scores) if they came from ``weights`` (not modified after ``mtime``) at ``T`` and
    cover every extra ``T``; else ``None``."""
    if not earlier or earlier.get("weights") != portable_path(weights) or os.path.getmtime(weights) > mtime:
        return None
    if earlier.get("num_steps") != T:
        return None
    have = {int(t) for t in earlier.get("at_T", {})}
    if T is not None and not {int(t) for t in extra} - {T} <= have:
        return None
    return dict(earlier)


def _name_energy(metrics: dict[str, Any]) -> dict[str, Any]:
    """Store the energy handler's ratios under the names ``metrics.json`` gives them (``energy_snn_over_ann...``)."""
    for suffix in ("", "_mem", "_spikes"):
        metrics[f"energy_snn_over_ann{suffix}"] = metrics.get(f"energy_ratio{suffix}")
    return metrics


def evaluate_models(
    make_evaluator: Callable[..., Any],
    data_loader: Any,
    models: Mapping[str, str | os.PathLike],
    network_def: torch.nn.Module,
    output_dir: str | os.PathLike,
    num_steps: Mapping[str, int | None] | None = None,
    extra_steps: Mapping[str, Sequence[int]] | None = None,
    info: Mapping[str, Any] | None = None,
    metrics_file: str | os.PathLike | None = None,
    log: bool = True,
    summary_writer: Any = None,
    resume: bool = False,
) -> dict[str, Any]:
    """A bundle's evaluate stage: every model of ``models`` on ``data_loader`` -> ``metrics.json`` + TensorBoard.

    Spiking networks run at their stored ``T`` (or ``num_steps[name]``), with an
    :class:`~monai_snn.handlers.EnergyHandler` (pooled over every batch) whose ratio is stored as
    ``energy_snn_over_ann`` (estimated compute energy of the SNN over its ANN's, same inputs),
    ``energy_snn_over_ann_mem`` (memory accesses included, see :mod:`monai_snn.energy.estimate`) and
    ``energy_snn_over_ann_spikes`` (the Spiking-UNet paper's counting: one accumulate per spike, fan-out ignored),
    and the mean firing rate; ``extra_steps[name]`` adds the metrics at other ``T`` under ``at_T``. A missing
    weights file gives ``null`` (with a warning), so a partly trained fold can be evaluated. Each finished model is
    saved at once in ``metrics.partial.json`` (removed when all are done), so that with ``resume`` a killed run
    goes on where it stopped.

    Args:
        make_evaluator: the evaluator factory (see :func:`run_evaluator`).
        data_loader: the evaluation batches.
        models: name -> weights file (SNN settings in ``<stem>.json`` beside it, see
            :func:`monai_snn.bundle.load_model`).
        network_def: the ANN architecture.
        output_dir: where ``metrics.json`` and the TensorBoard run go.
        num_steps: name -> ``T`` (``None`` or absent: the stored one).
        extra_steps: name -> more ``T`` to evaluate that model at.
        info: more facts for ``metrics["info"]`` (the machine is always added); give paths as
            :func:`~monai_snn.bundle.results.portable_path` so that the file can be kept in a repository.
        metrics_file: another path for ``metrics.json`` (a copy still goes to ``output_dir``).
        log: write a TensorBoard run to ``output_dir``.
        summary_writer: the TensorBoard writer to log to (e.g. the stage's
            :func:`monai_snn.handlers.stage_writer`, left open); ``None``: a new one on ``output_dir``, closed here.
        resume: reuse a model's scores from ``output_dir``'s ``metrics.partial.json`` or ``metrics.json`` where
            they were made from the same weights file (not modified since), at the same ``T`` (and every extra
            ``T``), with the same ``info``; the others are evaluated.

    Returns:
        ``{name: {metric: value, "num_steps": T, "weights": path, ...} | None, ..., "info": {...}}``, the weights
        paths as :func:`~monai_snn.bundle.results.portable_path` stores them.

    Raises:
        ValueError: ``models`` is empty.

    Example::

        evaluate_models(factory, test_loader, {"ann": "models/ann.pt", "finetuned": "models/model.pt"},
                        ConvertibleUNet(2, 1, 1), "runs/eval", extra_steps={"finetuned": [2]})
    """
    from monai_snn.bundle.models import load_model
    from monai_snn.handlers import EnergyHandler, FiringRateHandler, stage_writer

    if not models:
        raise ValueError("models is empty: give at least one name -> weights file (e.g. {'ann': 'models/ann.pt'}).")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    num_steps, extra_steps = dict(num_steps or {}), dict(extra_steps or {})
    partial = out / "metrics.partial.json"
    earlier = _earlier_results(out, partial, dict(info or {})) if resume else {}
    results: dict[str, Any] = {}
    for name, weights in models.items():
        if not weights or not os.path.isfile(weights):
            logger.warning("%s weights not found (%s): skipped.", name, weights)
            results[name] = None
            continue
        net = load_model(name, models, network_def)
        T = int(num_steps.get(name) or net.num_steps) if _is_spiking(net) else None
        kept = _reusable(earlier.get(name), weights, T, extra_steps.get(name, ()), earlier.get("_mtime", 0.0))
        if kept is not None:
            logger.info("%s: reusing the scores in %s (same weights, T and info).", name, earlier["_file"])
            results[name] = kept
            continue
        if T is None:
            results[name] = {**run_evaluator(make_evaluator, net, data_loader, desc=name), "num_steps": None,
                             "weights": portable_path(weights)}  # fmt: skip
            write_json(partial, {**results, "info": dict(info or {})})
            continue
        energy = EnergyHandler(net, metric_prefix="energy_", average=True)
        rates = FiringRateHandler(net, log_image=False)
        m = run_evaluator(make_evaluator, net, data_loader, num_steps=T, desc=f"{name} T={T}",
                          handlers=[energy, rates])  # fmt: skip
        _name_energy(m)
        m.update(num_steps=T, weights=portable_path(weights), firing_rates=dict(rates.rates))
        at_t = {}
        for t in sorted({int(s) for s in extra_steps.get(name, ())} - {T}):
            e = EnergyHandler(net, metric_prefix="energy_", average=True)
            mt = run_evaluator(make_evaluator, net, data_loader, num_steps=t, desc=f"{name} T={t}", handlers=[e])
            at_t[str(t)] = _name_energy(mt)
        if at_t:
            m["at_T"] = at_t
        results[name] = m
        write_json(partial, {**results, "info": dict(info or {})})
    results["info"] = {**dict(info or {}), **machine_info()}
    target = Path(metrics_file) if metrics_file else out / "metrics.json"
    write_json(target, results)
    if target.resolve() != (out / "metrics.json").resolve():
        write_json(out / "metrics.json", results)
    partial.unlink(missing_ok=True)
    for name in models:
        if results.get(name):
            key = results[name]["key_metric"]
            logger.info("%s: %s %.4f (T=%s)", name, key, results[name][key], results[name]["num_steps"])
    if log:
        w = summary_writer if summary_writer is not None else stage_writer(out)
        try:
            w.add_text("evaluate", "```\n" + json.dumps(results, indent=1, default=str) + "\n```", 0)
            for name in models:
                r = results.get(name)
                if not r:
                    continue
                for k, v in r.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("num_steps",):
                        w.add_scalar(f"test/{name}/{k}", v, 0)
        finally:
            if summary_writer is None:
                w.close()
            else:
                w.flush()
    return results


def evaluate_robustness(
    make_evaluator: Callable[..., Any],
    data_loader: Any,
    models: Mapping[str, str | os.PathLike],
    network_def: torch.nn.Module,
    output_dir: str | os.PathLike,
    sigmas: Sequence[float],
    inferer: Callable[..., Any] | None = None,
    seed: int = 0,
    info: Mapping[str, Any] | None = None,
    clip: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Robustness to input noise (Kim et al. 2022, Fig. 10): each model's key metric on inputs with Gaussian noise.

    Every model of ``models`` (ANN, converted, fine-tuned, directly trained; missing files are skipped) runs on
    ``data_loader`` through :class:`~monai_snn.inferers.NoisyInputInferer` around the bundle's ``inferer`` at each
    ``sigma`` (0 is always included: the clean score), with the same noise for every model (fixed ``seed``). The
    relative drop is ``(clean - noisy) / clean * 100``, in percent. Spiking networks run at their stored ``T``.

    Args:
        make_evaluator: the bundle's evaluator factory (see :func:`run_evaluator`); its ``inferer`` is replaced.
        data_loader: the evaluation batches.
        models: name -> weights file (see :func:`monai_snn.bundle.load_model`).
        network_def: the ANN architecture.
        output_dir: where ``robustness.json`` and ``robustness.png`` go.
        sigmas: noise standard deviations in input units (e.g. ``[0.05, 0.1, 0.2]`` on [0, 1] images).
        inferer: the bundle's inferer (``None``: ``SimpleInferer``).
        seed: noise seed.
        info: more facts for ``["info"]`` (the machine is always added).
        clip: ``(low, high)`` the noisy inputs are clipped to (e.g. ``(0, 1)`` for images that rate-coded networks
            read as probabilities), or ``None``.

    Returns:
        ``{name: {"key_metric", "num_steps", "score": {sigma: value}, "relative_drop_percent": {sigma: value}},
        ..., "sigmas": [...], "info": {...}}`` (sigmas as strings in the JSON).

    Raises:
        ValueError: ``models`` is empty or a sigma is negative.

    Example::

        evaluate_robustness(factory, test_loader, {"ann": "models/ann.pt", "finetuned": "models/model.pt"},
                            ConvertibleUNet(2, 3, 11), "runs/robustness", sigmas=[0.05, 0.1, 0.2])
    """
    import functools

    from monai_snn.bundle.models import load_model
    from monai_snn.inferers import NoisyInputInferer

    if not models:
        raise ValueError("models is empty: give at least one name -> weights file.")
    levels = sorted({0.0, *(float(x) for x in sigmas)})
    if levels[0] < 0:
        raise ValueError(f"sigmas must be >= 0, got {list(sigmas)}.")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for name, weights in models.items():
        if not weights or not os.path.isfile(weights):
            logger.warning("%s weights not found (%s): skipped.", name, weights)
            continue
        net = load_model(name, models, network_def)
        T = int(net.num_steps) if _is_spiking(net) else None
        scores: dict[str, float] = {}
        key = None
        for sigma in levels:
            noisy = NoisyInputInferer(inferer, sigma, seed, None if clip is None else tuple(clip))
            factory = functools.partial(make_evaluator, inferer=noisy)
            m = run_evaluator(factory, net, data_loader, num_steps=T, desc=f"{name} sigma={sigma:g}")
            key = m["key_metric"]
            scores[f"{sigma:g}"] = float(m[key])
        clean = scores["0"]
        drop = {s: (100.0 * (clean - v) / clean if clean else float("nan")) for s, v in scores.items()}
        results[name] = {"key_metric": key, "num_steps": T, "score": scores, "relative_drop_percent": drop}
    results["sigmas"] = [f"{s:g}" for s in levels]
    results["info"] = {**dict(info or {}), "seed": seed, "clip": None if clip is None else list(clip),
                       **machine_info()}  # fmt: skip
    write_json(out / "robustness.json", results)
    curves = {n: r for n, r in results.items() if isinstance(r, dict) and "score" in r}
    if curves:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5), dpi=80)
        for name, r in curves.items():
            xs = [float(s) for s in results["sigmas"]]
            label = name if r["num_steps"] is None else f"{name} (T={r['num_steps']})"
            ax.plot(xs, [r["relative_drop_percent"][s] for s in results["sigmas"]], "o-", label=label)
        ax.set_xlabel("input noise sigma")
        ax.set_ylabel(f"relative {next(iter(curves.values()))['key_metric']} drop (%)")
        ax.set_title("robustness to Gaussian input noise")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "robustness.png")
        plt.close(fig)
    return results
