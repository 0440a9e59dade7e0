# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Summarise cross-validation runs of the ``hippocampus_snn`` bundle: CSV + markdown + TensorBoard text.

Reads ``<run>/fold*/evaluate/metrics.json`` (and ``convert/metrics.json`` for Dice vs T) of one or more run
folders and reports mean +- std over folds of the 3D / 2D Dice of the ANN, the converted SNN and the fine-tuned
SNN, one row per run (e.g. one run per loss, like the paper's Table 1, or binary vs ternary coding, like its
Table 5), and a per-fold table with the differences to the ANN and the normalization percentile each fold's
conversion used. The settings of each run (loss, encoding, T, channels...) are read from the stored SNN settings.

Example::

    python -m monai_snn.apps.summary --runs runs/hippo_ref --output_dir runs/hippo_ref/summary
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

__all__ = ["collect", "fold_settings", "summarize", "main"]

_NETS = ("ann", "converted", "finetuned")


def _mean_std(values: list[float]) -> tuple[float, float]:
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


def collect(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Per-fold metrics of one run folder: ``{"folds": {k: metrics}, "settings": ..., "dice_vs_T": ...}``."""
    run = Path(run_dir)
    folds: dict[int, dict] = {}
    dice_t: dict[int, dict] = {}
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
            dice_t[k] = conv.get("dice_vs_T", {})
            if "percentile" in conv.get("settings", {}):
                percentiles[k] = conv["settings"]["percentile"]
    return {"run": str(run), "folds": folds, "settings": settings, "dice_vs_T": dice_t, "percentile": percentiles}


def _dice_vs_t_plot(curves: dict[str, tuple[list[int], list[float], list[float], float]], path: Path) -> bool:
    """Dice vs T of the converted SNN per run (mean ± std over folds), each run's ANN as a dashed line."""
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
    ax.set_ylabel("3D Dice (test folds)")
    ax.set_ylim(0.0, 1.0)
    ax.set_title("converted SNN vs T (dashed: its ANN)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(str(path))
    plt.close(fig)
    return True


def summarize(runs: Sequence[str | os.PathLike], output_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Write ``summary.csv``, ``summary.md`` (with ``dice_vs_T.png``) and a TensorBoard text summary to
    ``output_dir``; return the rows."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    dice_t_rows: list[str] = []
    fold_rows: list[str] = []
    curves: dict[str, tuple[list[int], list[float], list[float], float]] = {}  # run -> T, mean, std, ANN mean
    machine = None
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
            d3 = _mean_std([v["dice_3d_mean"] for v in vals])
            d2 = _mean_std([v["dice_2d_mean"] for v in vals])
            row = dict(base, network=net, T=vals[0].get("num_steps") or "", n=len(vals),
                       dice_3d_mean=d3[0], dice_3d_std=d3[1], dice_2d_mean=d2[0], dice_2d_std=d2[1])  # fmt: skip
            rows.append(row)
            if net == "finetuned":
                for t in sorted({t for v in vals for t in v.get("dice_3d_at_T", {})}, key=int):
                    if int(t) == vals[0].get("num_steps"):
                        continue
                    dt = _mean_std([v["dice_3d_at_T"][t] for v in vals if t in v.get("dice_3d_at_T", {})])
                    rows.append(dict(base, network="finetuned", T=int(t), n=len(vals), dice_3d_mean=dt[0],
                                     dice_3d_std=dt[1], dice_2d_mean=float("nan"), dice_2d_std=float("nan")))
        for k, m in sorted(c["folds"].items()):
            if not all(m.get(net) for net in _NETS):
                continue
            ann, conv, fine = (m[net]["dice_3d_mean"] for net in _NETS)
            low = {t: d for t, d in m["finetuned"].get("dice_3d_at_T", {}).items()
                   if int(t) != m["finetuned"].get("num_steps")}  # fmt: skip
            fold_rows.append(
                f"| {base['run']} | {k} | {c['percentile'].get(k, '-')} | {ann:.3f} | "
                f"{conv:.3f} (T={m['converted'].get('num_steps')}) | {conv - ann:+.3f} | "
                f"{fine:.3f} (T={m['finetuned'].get('num_steps')}) | {fine - ann:+.3f} | "
                + (", ".join(f"{d:.3f} (T={t})" for t, d in sorted(low.items(), key=lambda x: int(x[0]))) or "-")
                + " |"
            )
        machine = machine or next(iter(c["folds"].values())).get("info")
        if c["dice_vs_T"]:
            ts = sorted({int(t) for d in c["dice_vs_T"].values() for t in d})
            cells, means, stds = [], [], []
            for t in ts:
                m, sd = _mean_std([d[str(t)]["dice_3d_mean"] for d in c["dice_vs_T"].values() if str(t) in d])
                cells.append(f"{m:.3f} ± {sd:.3f}")
                means.append(m)
                stds.append(sd)
            ann_mean = _mean_std([m["ann"]["dice_3d_mean"] for m in c["folds"].values() if m.get("ann")])[0]
            curves[base["run"]] = (ts, means, stds, ann_mean)
            dice_t_rows.append(f"| {base['run']} | " + " | ".join(cells) + " |")
            dice_t_header = "| run | " + " | ".join(f"T={t}" for t in ts) + " |\n|---|" + "---|" * len(ts)

    fields = ["run", "folds", "loss", "encoding", "neuron", "normalization", "v0", "channels", "network", "T", "n",
              "dice_3d_mean", "dice_3d_std", "dice_2d_mean", "dice_2d_std"]  # fmt: skip
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)

    def fmt(m: float, s: float) -> str:
        return "-" if math.isnan(m) else f"{m:.3f} ± {s:.3f}"

    lines = ["| run | loss | encoding | network | T | folds | 3D Dice | 2D Dice |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['loss']} | {r['encoding']} | {r['network']} | {r['T'] or '-'} | {r['n']} "
                     f"| {fmt(r['dice_3d_mean'], r['dice_3d_std'])} | {fmt(r['dice_2d_mean'], r['dice_2d_std'])} |")
    md = ["# hippocampus_snn cross-validation summary", "",
          "3D Dice: per subject on the re-stacked slices of the test fold; mean ± std over folds.", ""] + lines
    losses = {r["loss"] for r in rows}
    encodings = {r["encoding"] for r in rows}
    if len(losses) > 1:
        md += ["", "## Per loss (paper Table 1)", ""] + [lines[0], lines[1]] + [
            line for r, line in zip(rows, lines[2:]) if r["network"] != "converted"]  # fmt: skip
    if {"poisson_binary", "poisson_ternary"} <= encodings:
        md += ["", "## Binary vs ternary input coding (paper Table 5)", "", lines[0], lines[1]] + [
            line for r, line in zip(rows, lines[2:]) if r["encoding"].startswith("poisson")]  # fmt: skip
    if fold_rows:
        md += ["", "## Per fold (3D Dice; percentile: normalization percentile used by the conversion)", "",
               "| run | fold | percentile | ANN | converted | converted - ANN | fine-tuned | fine-tuned - ANN "
               "| fine-tuned, other T |", "|---|---|---|---|---|---|---|---|---|"] + fold_rows  # fmt: skip
    if dice_t_rows:
        md += ["", "## Converted SNN: 3D Dice vs T (paper Fig. 6A)", "", dice_t_header] + dice_t_rows
        if _dice_vs_t_plot(curves, out / "dice_vs_T.png"):
            md += ["", "![converted SNN: 3D Dice vs T](dice_vs_T.png)"]
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
    p = argparse.ArgumentParser(description="Summarise hippocampus_snn cross-validation runs.")
    p.add_argument("--runs", nargs="+", required=True, help="run folders (each with fold*/evaluate/metrics.json)")
    p.add_argument("--output_dir", default=None, help="default: <first run>/summary")
    args = p.parse_args(argv)
    out = args.output_dir or os.path.join(args.runs[0], "summary")
    rows = summarize(args.runs, out)
    print((Path(out) / "summary.md").read_text())
    return rows


if __name__ == "__main__":
    main()
