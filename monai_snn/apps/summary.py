"""Summarise cross-validation runs of a monai_snn bundle: CSV + markdown + TensorBoard text.

Reads ``<run>/fold*/evaluate/metrics.json`` (and ``convert/metrics.json`` for the metric vs T of the converted SNN)
of one or more run folders and reports mean +- std over folds of the metrics named by ``--metrics`` for the ANN,
the converted SNN and the fine-tuned SNN (and the fine-tuned SNN at its extra T), one row per run (e.g. one run
per loss or per input encoding), a per-fold table of the first metric with the differences to the ANN and the
normalization percentile each fold's conversion used, and the first metric against T. The settings of each run
(loss, encoding, T, channels...) are read from the stored SNN settings.

Both layouts of the stage outputs are read: ``metrics_vs_T`` / ``at_T`` (``monai_snn.bundle.run_conversion`` /
``evaluate_models``) and the older ``dice_vs_T`` / ``dice_3d_at_T``.

Example::

    python -m monai_snn.apps.summary --runs runs/hippo_ref --metrics dice_3d_mean dice_2d_mean \
        --output_dir runs/hippo_ref/summary
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["collect", "fold_settings", "at_steps", "summarize", "main"]

_NETS = ("ann", "converted", "finetuned")


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [float(v) for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, s


def fold_settings(fold_dir: str | os.PathLike) -> dict[str, Any]:
    """The fine-tuned SNN's settings, with the conversion keys taken from the converted SNN (the conversion that
    was actually used, e.g. a percentile chosen on validation; runs made before the fine-tuned settings were
    derived from the converted ones stored the default percentile)."""
    fold_dir = Path(fold_dir)
    conv_p, fine_p = fold_dir / "convert" / "snn_converted.json", fold_dir / "finetune" / "snn_finetuned.json"
    conv = json.loads(conv_p.read_text()) if conv_p.is_file() else {}
    fine = json.loads(fine_p.read_text()) if fine_p.is_file() else {}
    return {**fine, **{k: v for k, v in conv.items() if k != "num_steps" or not fine}}


def at_steps(model: dict[str, Any]) -> dict[str, dict[str, float]]:
    """A model's metrics at its extra T: ``{T: {metric: value}}`` from ``at_T``, or from the older
    ``dice_3d_at_T`` (``{T: 3D Dice}``, read as ``dice_3d_mean``)."""
    if isinstance(model.get("at_T"), dict):
        return {str(t): dict(v) for t, v in model["at_T"].items() if isinstance(v, dict)}
    return {str(t): {"dice_3d_mean": v} for t, v in model.get("dice_3d_at_T", {}).items()}


def collect(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Per-fold metrics of one run folder: ``{"folds": {k: metrics}, "settings": ..., "vs_T": {k: {T: metrics}},
    "percentile": {k: p}}``."""
    run = Path(run_dir)
    folds: dict[int, dict] = {}
    vs_t: dict[int, dict] = {}
    percentiles: dict[int, float] = {}
    settings: dict[str, Any] = {}
    for fd in sorted(run.glob("fold*")):
        try:
            k = int(fd.name[4:])
        except ValueError:
            continue
        ev = fd / "evaluate" / "metrics.json"
        if ev.is_file():
            folds[k] = json.loads(ev.read_text())
            settings = settings or fold_settings(fd)
        cv = fd / "convert" / "metrics.json"
        if cv.is_file():
            conv = json.loads(cv.read_text())
            vs_t[k] = conv.get("metrics_vs_T", conv.get("dice_vs_T", {}))
            if "percentile" in conv.get("settings", {}):
                percentiles[k] = conv["settings"]["percentile"]
    return {"run": str(run), "folds": folds, "settings": settings, "vs_T": vs_t, "percentile": percentiles}


def vs_t_plot(curves: dict[str, tuple[list[int], list[float], list[float], float]], metric: str, path: Path) -> bool:
    """``metric`` vs T of the converted SNN per run (mean ± std over folds), each run's ANN as a dashed line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return False
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for i, (run, (ts, means, stds, ann)) in enumerate(curves.items()):
        color = f"C{i % 10}"
        ax.errorbar(ts, means, yerr=stds, marker="o", capsize=3, color=color, label=run)
        if not math.isnan(ann):
            ax.axhline(ann, color=color, ls="--", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time steps T")
    ax.set_ylabel(f"{metric} (test folds)")
    ax.set_title("converted SNN vs T (dashed: its ANN)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(str(path))
    plt.close(fig)
    return True


def summarize(
    runs: Sequence[str | os.PathLike], output_dir: str | os.PathLike, metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """Write ``summary.csv``, ``summary.md`` (with ``metric_vs_T.png``) and a TensorBoard text summary to
    ``output_dir``; return the rows.

    Args:
        runs: run folders (``fold*/evaluate/metrics.json``, ``fold*/convert/metrics.json``).
        output_dir: where the summary goes.
        metrics: the metrics to report, as the stages name them (e.g. ``["dice_3d_mean", "dice_2d_mean"]`` for the
            hippocampus bundle, ``["f1", "auc"]`` for DRIVE); the first one is used for the per-fold table and the
            metric-vs-T table and plot.

    Returns:
        one row per run, network and T: the run's settings, ``n`` (folds) and, per metric ``m``, ``m`` (mean over
        folds) and ``m_fold_std`` (standard deviation over folds).

    Raises:
        ValueError: no metric given.
    """
    metrics = list(metrics)
    if not metrics:
        raise ValueError("give at least one metric to summarise (--metrics, e.g. --metrics dice_3d_mean).")
    primary = metrics[0]
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    vs_t_rows: list[str] = []
    vs_t_header = ""
    fold_rows: list[str] = []
    curves: dict[str, tuple[list[int], list[float], list[float], float]] = {}  # run -> T, mean, std, ANN mean
    machine = None

    def stats(values: list[dict[str, Any]]) -> dict[str, float]:
        row: dict[str, float] = {}
        for m in metrics:
            row[m], row[f"{m}_fold_std"] = _mean_std([v.get(m) for v in values if isinstance(v.get(m), (int, float))])
        return row

    for r in runs:
        c = collect(r)
        if not c["folds"]:
            continue
        s = c["settings"]
        base = {
            "run": Path(c["run"]).name,
            "folds": " ".join(str(k) for k in sorted(c["folds"])),
            "loss": s.get("loss_name", ""),
            "encoding": s.get("encoding", ""),
            "neuron": s.get("neuron", ""),
            "normalization": s.get("normalization", ""),
            "v0": s.get("initial_potential", ""),
            "channels": "x".join(str(v) for v in s.get("channels", [])),
        }
        for net in _NETS:
            vals = [m[net] for m in c["folds"].values() if m.get(net)]
            if not vals:
                continue
            rows.append(dict(base, network=net, T=vals[0].get("num_steps") or "", n=len(vals), **stats(vals)))
            extra = sorted({t for v in vals for t in at_steps(v)}, key=int)
            for t in extra:
                if int(t) == vals[0].get("num_steps"):
                    continue
                at_t = [at_steps(v)[t] for v in vals if t in at_steps(v)]
                rows.append(dict(base, network=net, T=int(t), n=len(at_t), **stats(at_t)))
        for k, m in sorted(c["folds"].items()):
            if not all(m.get(net) and primary in m[net] for net in _NETS):
                continue
            ann, conv, fine = (m[net][primary] for net in _NETS)
            low = {t: v[primary] for t, v in at_steps(m["finetuned"]).items()
                   if int(t) != m["finetuned"].get("num_steps") and primary in v}  # fmt: skip
            fold_rows.append(
                f"| {base['run']} | {k} | {c['percentile'].get(k, '-')} | {ann:.3f} | "
                f"{conv:.3f} (T={m['converted'].get('num_steps')}) | {conv - ann:+.3f} | "
                f"{fine:.3f} (T={m['finetuned'].get('num_steps')}) | {fine - ann:+.3f} | "
                + (", ".join(f"{d:.3f} (T={t})" for t, d in sorted(low.items(), key=lambda x: int(x[0]))) or "-")
                + " |"
            )
        machine = machine or next(iter(c["folds"].values())).get("info")
        vs_t = {k: d for k, d in c["vs_T"].items() if any(primary in v for v in d.values())}
        ts = sorted({int(t) for d in vs_t.values() for t in d})
        if len(ts) > 1:  # a conversion without a T sweep has only its own T, already in the table above
            cells, means, stds = [], [], []
            for t in ts:
                m, sd = _mean_std([d[str(t)][primary] for d in vs_t.values() if primary in d.get(str(t), {})])
                cells.append(f"{m:.3f} ± {sd:.3f}")
                means.append(m)
                stds.append(sd)
            ann_mean = _mean_std([m["ann"].get(primary) for m in c["folds"].values() if m.get("ann")])[0]
            curves[base["run"]] = (ts, means, stds, ann_mean)
            vs_t_rows.append(f"| {base['run']} | " + " | ".join(cells) + " |")
            vs_t_header = "| run | " + " | ".join(f"T={t}" for t in ts) + " |\n|---|" + "---|" * len(ts)

    fields = ["run", "folds", "loss", "encoding", "neuron", "normalization", "v0", "channels", "network", "T", "n"]
    fields += [f for m in metrics for f in (m, f"{m}_fold_std")]
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)

    def fmt(m: float, s: float) -> str:
        return "-" if math.isnan(m) else f"{m:.3f} ± {s:.3f}"

    lines = ["| run | loss | encoding | network | T | folds | " + " | ".join(metrics) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(metrics)]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['run']} | {r['loss']} | {r['encoding']} | {r['network']} | {r['T'] or '-'} | {r['n']} | "
                     + " | ".join(fmt(r[m], r[f"{m}_fold_std"]) for m in metrics) + " |")  # fmt: skip
    md = ["# Cross-validation summary", "",
          "Test-fold metrics of each fold's models; mean ± std over folds.", ""] + lines  # fmt: skip
    losses = {r["loss"] for r in rows}
    encodings = {r["encoding"] for r in rows}
    if len(losses) > 1:
        md += ["", "## Per loss", ""] + [lines[0], lines[1]] + [
            line for r, line in sorted(zip(rows, lines[2:]), key=lambda x: str(x[0]["loss"]))
            if r["network"] != "converted"]  # fmt: skip
    if len(encodings) > 1:
        md += ["", "## Per input encoding", "", lines[0], lines[1]] + [
            line for r, line in sorted(zip(rows, lines[2:]), key=lambda x: str(x[0]["encoding"]))]  # fmt: skip
    if fold_rows:
        md += ["", f"## Per fold ({primary}; percentile: normalization percentile used by the conversion)", "",
               "| run | fold | percentile | ANN | converted | converted - ANN | fine-tuned | fine-tuned - ANN "
               "| fine-tuned, other T |", "|---|---|---|---|---|---|---|---|---|"] + fold_rows  # fmt: skip
    if vs_t_rows:
        md += ["", f"## Converted SNN: {primary} vs T", "", vs_t_header] + vs_t_rows
        if vs_t_plot(curves, primary, out / "metric_vs_T.png"):
            md += ["", f"![converted SNN: {primary} vs T](metric_vs_T.png)"]
    info = machine or {}
    md += ["", "## Settings and machine", ""]
    for r in runs:
        s = collect(r)["settings"]
        if s:
            md.append(f"- `{Path(r).name}`: " + ", ".join(f"{k}={v}" for k, v in s.items()))
    md.append(f"- machine: {info.get('platform', platform.platform())}, {info.get('cpu_count', os.cpu_count())} CPU "
              f"cores, torch {info.get('torch', '')}, monai {info.get('monai', '')}, "
              f"{info.get('torch_threads', '')} threads, CUDA {info.get('cuda', False)}")
    text = "\n".join(md) + "\n"
    (out / "summary.md").write_text(text)
    try:
        from torch.utils.tensorboard import SummaryWriter

        w = SummaryWriter(log_dir=str(out))
        w.add_text("summary", text, 0)
        w.close()
    except ImportError:  # pragma: no cover
        pass
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description="Summarise the cross-validation runs of a monai_snn bundle.")
    p.add_argument("--runs", nargs="+", required=True, help="run folders (each with fold*/evaluate/metrics.json)")
    p.add_argument("--metrics", nargs="+", required=True,
                   help="metrics to report as the stages name them, the first one for the per-fold and vs-T tables "
                        "(hippocampus_snn: dice_3d_mean dice_2d_mean; drive_snn: f1 auc)")  # fmt: skip
    p.add_argument("--output_dir", default=None, help="default: <first run>/summary")
    args = p.parse_args(argv)
    out = args.output_dir or os.path.join(args.runs[0], "summary")
    rows = summarize(args.runs, out, args.metrics)
    print((Path(out) / "summary.md").read_text())
    return rows


if __name__ == "__main__":
    main()
