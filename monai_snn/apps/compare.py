# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Direct training vs conversion + fine-tuning: accuracy, energy and training cost of one fold of a bundle run.

Reads what the stages of a fold already wrote (no model is run again):

* ``evaluate/metrics.json``: the test score of every model (key metric), its ``T`` and estimated energy over the ANN;
* each training stage's TensorBoard run: the validation key metric after every epoch with its wall-clock time, and
  the training iterations (the ``train_loss`` steps);
* each stage's ``done.json``: its wall-clock seconds;
* or, instead of the last two, the ``scalars.json`` that ``python -m monai_snn.apps.keep_results`` kept of them, so
  a comparison can be made again from a bundle's kept result files;
* ``robustness/robustness.json`` when the optional robustness stage ran: each model's score under input noise.

The conversion pipeline's cost is the sum of its stages (``train_ann`` + ``convert`` + ``finetune``); a directly
trained network's (and an ANN twin's, ``train_<name>_ann``) is its own stage (``train_<name>``). The curves put
every validation point at the cumulative iterations and wall-clock of its pipeline (fine-tuning starts where the ANN
training and the conversion ended), as
the hippocampus paper's Table 3 / Fig. 6B compare them. Wall-clock times are only comparable within one run on one
machine; they are printed as measured, with the machine of the evaluate stage.

Example::

    python -m monai_snn.apps.compare --fold_dir runs/camseq/fold0 --output_dir bundles/camseq_snn/docs/results/compare
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai_snn.apps.keep_results import stage_scalars, stage_seconds
from monai_snn.bundle.results import read_result

__all__ = ["stage_curve", "training_cost", "neuron_rows", "robustness_table", "write_comparison", "main"]

PIPELINE = ("train_ann", "convert", "finetune")


def stage_curve(stage_dir: str | Path, metric: str) -> dict[str, Any]:
    """Validation curve and cost of one training stage, from its TensorBoard run and ``done.json`` or from the
    ``scalars.json`` that :func:`monai_snn.apps.keep_results.keep_results` kept of them.

    Args:
        stage_dir: e.g. ``runs/camseq/fold0/train_ann``.
        metric: the validation metric's TensorBoard tag (the bundle's key metric, e.g. ``"miou"``).

    Returns:
        ``{"epochs": [...], "values": [...], "elapsed_s": [...], "iterations": int, "seconds": float}``: the
        validation value after each epoch, seconds since the first event of the run, the training iterations of
        the stage (0 without a ``train_loss`` tag) and the stage's wall-clock seconds (``done.json``).

    Raises:
        FileNotFoundError: neither ``done.json`` nor a kept ``scalars.json`` in ``stage_dir``.
        ValueError: the stage never logged ``metric``, or logged nothing (the error lists the tags it has).
    """
    kept = stage_scalars(stage_dir)
    scalars = kept["scalars"]
    if metric not in scalars:
        raise ValueError(
            f"{stage_dir} logged no validation metric {metric!r} (its scalars: {sorted(scalars)}); "
            "pass the tag the stage validates with, e.g. --val_metric val_mean_dice."
        )
    loss, val = scalars.get("train_loss", []), scalars[metric]
    t0 = min(t for _, t, _ in loss + val)
    return {
        "epochs": [int(step) for step, _, _ in val],
        "values": [v for _, _, v in val],
        "elapsed_s": [t - t0 for _, t, _ in val],
        "iterations": int(max([0] + [step for step, _, _ in loss])),
        "seconds": float(kept.get("seconds", 0.0)),
    }


def training_cost(fold_dir: str | Path, val_metric: str | None = None) -> dict[str, Any]:
    """Test score, T, energy and training cost of every model of a fold, with the validation curves per pipeline.

    Args:
        fold_dir: a fold of a runner output (``<output_dir>/fold{k}``) with an ``evaluate`` stage.
        val_metric: the TensorBoard tag of the training stages' validation metric, where it differs from the test
            key metric (hippocampus: ``"val_mean_dice"``, the 2D slice Dice, against the test ``dice_3d_mean``);
            default: the test key metric.

    Returns:
        ``{"metric", "rows": [{"pipeline", "model", "T", "test", "energy_vs_ann", "iterations", "seconds"}, ...],
        "curves": {pipeline: {"iterations": [...], "seconds": [...], "values": [...]}}, "val_metric", "info"}``,
        and ``"robustness"`` (the fold's ``robustness/robustness.json``) when the robustness stage ran.

    Raises:
        FileNotFoundError: no ``evaluate/metrics.json``, or a stage without its TensorBoard run / ``done.json``.
        ValueError: a training stage that never logged the validation metric.
    """
    fold = Path(fold_dir)
    ev = read_result(fold / "evaluate" / "metrics.json")
    models = {k: v for k, v in ev.items() if isinstance(v, dict) and "key_metric" in v}
    if not models:
        raise FileNotFoundError(f"{fold / 'evaluate' / 'metrics.json'} holds no evaluated model.")
    metric = next(iter(models.values()))["key_metric"]
    val_metric = val_metric or metric
    rows, curves = [], {}

    def row(pipeline: str, model: str, iterations: int, seconds: float) -> None:
        m = models.get(model)
        if m is None:
            return
        rows.append({"pipeline": pipeline, "model": model, "T": m.get("num_steps"), "test": m[metric],
                     "energy_vs_ann": m.get("energy_snn_over_ann"),
                     "energy_vs_ann_mem": m.get("energy_snn_over_ann_mem"), "sops": m.get("energy_sops"),
                     "firing_rate_mean": m.get("firing_rate_mean"), "firing_rates": m.get("firing_rates"),
                     "iterations": iterations, "seconds": seconds})  # fmt: skip

    if stage_seconds(fold / "train_ann") is not None:
        ann = stage_curve(fold / "train_ann", val_metric)
        row("conversion + fine-tuning", "ann", ann["iterations"], ann["seconds"])
        its, secs = _cumulative(ann, 0, 0.0)
        vals = list(ann["values"])
        convert_s = stage_seconds(fold / "convert") or 0.0
        row("conversion + fine-tuning", "converted", ann["iterations"], ann["seconds"] + convert_s)
        if stage_seconds(fold / "finetune") is not None:
            ft = stage_curve(fold / "finetune", val_metric)
            total_it, total_s = ann["iterations"] + ft["iterations"], ann["seconds"] + convert_s + ft["seconds"]
            row("conversion + fine-tuning", "finetuned", total_it, total_s)
            f_it, f_s = _cumulative(ft, ann["iterations"], ann["seconds"] + convert_s)
            its += f_it
            secs += f_s
            vals += ft["values"]
        curves["conversion + fine-tuning"] = {"iterations": its, "seconds": secs, "values": vals}
    else:  # the pipeline's models were trained elsewhere (e.g. the shipped ones, evaluated beside a new run)
        for model in ("ann", "converted", "finetuned"):
            row("conversion + fine-tuning (trained outside this fold)", model, None, None)
    for stage in sorted(p.name for p in fold.glob("train_*") if p.name != "train_ann"):
        if stage_seconds(fold / stage) is None:
            continue
        name = stage[len("train_"):]
        label = f"ANN twin: {name[: -len('_ann')]}" if name.endswith("_ann") else f"direct: {name}"
        c = stage_curve(fold / stage, val_metric)
        row(label, name, c["iterations"], c["seconds"])
        it, s = _cumulative(c, 0, 0.0)
        curves[label] = {"iterations": it, "seconds": s, "values": c["values"]}
    res = {"metric": metric, "rows": rows, "curves": curves, "val_metric": val_metric, "info": ev.get("info", {})}
    if (fold / "robustness" / "robustness.json").is_file():  # the optional robustness stage (Kim et al. Fig. 10)
        res["robustness"] = read_result(fold / "robustness" / "robustness.json")
    return res


def _cumulative(curve: dict[str, Any], it0: int, s0: float) -> tuple[list[float], list[float]]:
    """Iterations and seconds of each validation point, offset by what the pipeline spent before the stage."""
    n = max(curve["epochs"][-1], 1) if curve["epochs"] else 1
    per_epoch = curve["iterations"] / n
    return [it0 + per_epoch * e for e in curve["epochs"]], [s0 + t for t in curve["elapsed_s"]]


NEURON_ROWS = {
    "ML": ("unet_ml", "ML + FT", "multi_level"),
    "ML rate": (None, "ML rate + FT", "multi_level_rate"),
    "RS": ("unet_rs", "RS + FT", "real_spike"),
    "MT": ("unet_mt", "MT + FT", "multi_threshold"),
}
"""Spiking-UNet paper, Tables 2 / 3: row -> (DT stage name or ``None``, FT variant of
``configs/ablations/neurons.json``, neuron name). "ML rate" is Feng et al.'s unit as a rate code for conversion
(``multi_level_rate``); it has no directly trained counterpart."""


def neuron_rows(fold_dir: str | Path, variants_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """The Spiking-UNet paper's Table 2 / 3 rows: each neuron directly trained (``DT``, the fold's ``unet_<n>``
    models in ``evaluate/metrics.json``) and converted + fine-tuned (``FT``, the fine-tuned model of the variant
    ``<n> + FT`` of ``apps.variants`` with the bundle's ``configs/ablations/neurons.json``, fold of the same number;
    without that variant, the fold's own fine-tuned model when its settings file names that neuron: the bundles'
    default pipeline is MT + FT).

    Returns:
        ``[{"neuron", "dt", "dt_T", "dt_energy", "ft", "ft_T", "ft_energy", "ft_source"}, ...]`` (``None`` where
        not run).
    """
    from monai_snn.apps.variants import _slug

    fold = Path(fold_dir)
    ev = read_result(fold / "evaluate" / "metrics.json")
    metric = next(v["key_metric"] for v in ev.values() if isinstance(v, dict) and "key_metric" in v)
    settings = fold / "finetune" / "snn_finetuned.json"
    own_neuron = read_result(settings).get("neuron") if settings.is_file() else None
    rows = []
    for row, (dt_name, ft_name, neuron) in NEURON_ROWS.items():
        dt = ev.get(dt_name) or {}
        ft: dict[str, Any] = {}
        source = None
        variant = Path(variants_dir or ".") / _slug(ft_name) / fold.name / "evaluate" / "metrics.json"
        if variants_dir is not None and variant.is_file():
            ft, source = read_result(variant).get("finetuned") or {}, _slug(ft_name)
        elif own_neuron == neuron and isinstance(ev.get("finetuned"), dict):
            ft, source = ev["finetuned"], "this fold's finetune stage"
        rows.append({"neuron": row, "metric": metric,
                     "dt": dt.get(metric), "dt_T": dt.get("num_steps"), "dt_energy": dt.get("energy_snn_over_ann"),
                     "ft": ft.get(metric), "ft_T": ft.get("num_steps"),
                     "ft_energy": ft.get("energy_snn_over_ann"), "ft_source": source})  # fmt: skip
    return rows


def robustness_table(robustness: dict[str, Any]) -> list[str]:
    """Markdown lines of the robustness stage's results: each model's key metric at every input-noise sigma, and
    its relative drop from the clean score in percent (Kim et al. 2022, Fig. 10).

    Args:
        robustness: the content of a fold's ``robustness/robustness.json``
            (:func:`monai_snn.bundle.evaluate_robustness`).

    Returns:
        The section's lines (heading, note, table); none when the file holds no model.
    """
    models = {k: v for k, v in robustness.items() if isinstance(v, dict) and "score" in v}
    if not models:
        return []
    sigmas = [s for s in robustness.get("sigmas", []) if s != "0"]
    key = next(iter(models.values()))["key_metric"]
    info = robustness.get("info", {})
    clip = info.get("clip")
    lines = [
        "",
        f"## Robustness: test {key} under Gaussian input noise (relative drop in %)",
        "",
        f"Noise of std sigma added to the network input (seed {info.get('seed', '?')}, the same noise for every "
        f"model{', clipped to ' + str(clip) if clip else ', not clipped'}); `robustness.png`.",
        "",
        "| model | T | clean | " + " | ".join(f"sigma {s}" for s in sigmas) + " |",
        "|---|---|---|" + "---|" * len(sigmas),
    ]
    for name, r in models.items():
        cells = [f"{r['score'][s]:.4f} ({r['relative_drop_percent'][s]:+.1f} %)" for s in sigmas]
        lines.append(f"| {name} | {_fmt(r['num_steps'])} | {r['score']['0']:.4f} | " + " | ".join(cells) + " |")
    return lines


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def write_comparison(
    fold_dir: str | Path,
    output_dir: str | Path,
    title: str = "",
    variants_dir: str | Path | None = None,
    val_metric: str | None = None,
) -> dict[str, Any]:
    """Write ``training_cost.md`` (table; with the neuron rows DT / FT when those ran and the robustness table when
    the robustness stage ran), ``training_cost.json``, ``training_curves.png``, ``spike_rates.png`` (per-layer spike
    rates of every SNN) and ``robustness.png`` (when it exists) for one fold.

    Example::

        write_comparison("runs/camseq/fold0", "docs/results/compare", "CamSeq01, fold 0")
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = training_cost(fold_dir, val_metric)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric, info = res["metric"], res["info"]
    lines = [
        f"# Direct training vs conversion + fine-tuning{': ' + title if title else ''}",
        "",
        f"Test {metric} of each model (`evaluate` stage), its T, estimated energy over the ANN's, and the training",
        "cost of its whole pipeline (iterations and wall-clock seconds summed over its stages, as measured in this",
        f"run). Source: `{Path(fold_dir)}`; machine: {info.get('processor', '?')}, {info.get('cpu_count', '?')} CPU, "
        f"torch threads {info.get('torch_threads', '?')}, CUDA {info.get('cuda', '?')}.",
        "",
        "Energy vs ANN: the estimated energy of the SNN over its ANN's on the same test images, compute only",
        "(0.9 pJ per synaptic operation, 4.6 pJ per MAC) and with memory accesses (5 pJ per 32-bit SRAM access; see",
        "`monai_snn.energy.estimate`); a directly trained network is compared with its own ANN twin's MACs.",
        f"`training_curves.png`: validation {res['val_metric']} of each pipeline against its training cost.",
        "",
        f"| pipeline | model | T | test {metric} | energy vs ANN (compute) | (with memory) | spikes / neuron / step "
        "| training iterations | training time (min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['pipeline']} | {r['model']} | {_fmt(r['T'])} | {_fmt(r['test'])} | "
            f"{_fmt(r['energy_vs_ann'], 2)} | {_fmt(r['energy_vs_ann_mem'], 2)} | {_fmt(r['firing_rate_mean'], 3)} | "
            f"{_fmt(r['iterations'])} | {_fmt(None if r['seconds'] is None else r['seconds'] / 60, 1)} |"
        )
    rows = neuron_rows(fold_dir, variants_dir)
    res["neurons"] = rows
    if any(r["dt"] is not None or r["ft"] is not None for r in rows):
        lines += [
            "",
            f"## Neurons: directly trained (DT) vs converted + fine-tuned (FT), test {metric}",
            "",
            "The Spiking-UNet paper's Tables 2 / 3 rows: DT = the optional `train_unet_<neuron>` stages, FT = the",
            "variants of `configs/ablations/neurons.json` run with `apps.variants`"
            + (f" (`{Path(variants_dir)}`)" if variants_dir else "")
            + "; without a variant, the fold's own fine-tuned model stands for its neuron (`FT from`).",
            "",
            f"| neuron | DT {metric} | DT T | DT energy vs ANN | FT {metric} | FT T | FT energy vs ANN | FT from |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['neuron']} | {_fmt(r['dt'])} | {_fmt(r['dt_T'])} | {_fmt(r['dt_energy'], 2)} | "
                f"{_fmt(r['ft'])} | {_fmt(r['ft_T'])} | {_fmt(r['ft_energy'], 2)} | {r['ft_source'] or '-'} |"
            )
    if "robustness" in res:
        lines += robustness_table(res["robustness"])
        plot = Path(fold_dir) / "robustness" / "robustness.png"
        if plot.is_file():
            shutil.copyfile(plot, out / "robustness.png")
    (out / "training_cost.md").write_text("\n".join(lines) + "\n")
    (out / "training_cost.json").write_text(json.dumps(res, indent=1, default=str))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), dpi=80)
    for name, c in res["curves"].items():
        axes[0].plot(c["iterations"], c["values"], "o-", ms=3, label=name)
        axes[1].plot([s / 60 for s in c["seconds"]], c["values"], "o-", ms=3, label=name)
    axes[0].set_xlabel("training iterations (pipeline total)")
    axes[1].set_xlabel("wall-clock (min, pipeline total)")
    for ax in axes:
        ax.set_ylabel(f"validation {res['val_metric']}")
    if res["curves"]:
        axes[1].legend(fontsize=7)
    fig.suptitle(title or "validation metric against training cost")
    fig.tight_layout()
    fig.savefig(out / "training_curves.png")
    plt.close(fig)
    rated = [r for r in res["rows"] if r.get("firing_rates")]
    if rated:  # per-layer spike rates of every SNN (Kim et al. Fig. 11)
        fig, ax = plt.subplots(figsize=(9, 3.5), dpi=80)
        for r in rated:
            rates = list(r["firing_rates"].values())
            ax.plot(range(1, len(rates) + 1), rates, "o-", ms=3, label=f"{r['model']} (T={r['T']})")
        ax.set_xlabel("spiking layer (network order)")
        ax.set_ylabel("spikes / neuron / step")
        ax.set_title(title or "per-layer spike rates")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "spike_rates.png")
        plt.close(fig)
    return res


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fold_dir", required=True, help="a fold of a runner output, e.g. runs/camseq/fold0")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--title", default="")
    p.add_argument("--variants_dir", default=None,
                   help="output of apps.variants with the bundle's configs/ablations/neurons.json (the FT rows)")
    p.add_argument("--val_metric", default=None,
                   help="TensorBoard tag of the training stages' validation metric (default: the test key metric)")
    args = p.parse_args(argv)
    try:
        res = write_comparison(args.fold_dir, args.output_dir, args.title, args.variants_dir, args.val_metric)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    print((Path(args.output_dir) / "training_cost.md").read_text())
    return res


if __name__ == "__main__":
    main()
