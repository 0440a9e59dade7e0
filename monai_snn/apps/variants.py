# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Ablations of a bundle in one command: the conversion (and optionally fine-tuning and evaluation) of one trained
ANN under several named sets of overrides, then a table and a plot.

Each variant runs through the resumable runner (:mod:`monai_snn.apps.cross_validation`) in its own folder
``<output_dir>/<variant>/fold{k}/...``, so a rerun skips the variants that finished. All variants reuse one trained
ANN: ``ann_checkpoint`` points at ``<run_dir>/fold{k}/train_ann/ckpt/best_model.pt``, or at the file given with
``--ann`` (e.g. the bundle's shipped ``models/ann.pt``: an ablation of the shipped model needs no earlier run).
``--only NAME ...`` runs some of the variants (e.g. one per core, in two commands on the same ``--output_dir``); the
table always covers every variant that finished. The variants come from a JSON file::

    {"title": "Table 1: thresholds of the neuron",
     "variants": {"IF 1.0": {"neuron": "if", "thresholds": [1.0]},
                  "MT 2, 1, 0.5, 0.25": {"thresholds": [2.0, 1.0, 0.5, 0.25]}}}

The table (``table.md``, ``table.csv``) gives the metrics of the converted SNN (``convert/metrics.json``) and, when
the evaluate stage ran, of the fine-tuned SNN (``evaluate/metrics.json``); ``plot.png`` shows the first metric. When
the conversion swept T (``steps_sweep``), ``table.md`` also gives every metric vs T (paper Table 5), plotted in
``metric_vs_T.png``.

Example::

    python -m monai_snn.apps.variants --bundle_root bundles/drive_snn --run_dir runs/drive_ref \\
        --variants bundles/drive_snn/docs/ablations/thresholds.json --output_dir runs/drive_thresholds \\
        --stages convert --metrics f1 jaccard accuracy
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["load_variants", "select_variants", "run_variants", "variants_table", "main"]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "variant"


def load_variants(path: str | os.PathLike) -> tuple[str, dict[str, dict[str, Any]]]:
    """``(title, {name: overrides})`` of a variants file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not a JSON object with a non-empty ``"variants"`` object of override objects, or two names that
            map to one folder.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"variants file {p} does not exist.")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"variants file {p} is not valid JSON: {e}") from None
    variants = data.get("variants") if isinstance(data, dict) else None
    if not isinstance(variants, dict) or not variants:
        raise ValueError(f"variants file {p}: expected {{\"variants\": {{name: {{key: value}}}}}} with at least one "
                         "variant.")  # fmt: skip
    for name, overrides in variants.items():
        if not isinstance(overrides, dict):
            raise ValueError(f"variants file {p}: variant {name!r} must be an object of overrides, got {overrides!r}.")
    slugs = [_slug(n) for n in variants]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f"variants file {p}: names {list(variants)} map to the same folder names {slugs}.")
    return str(data.get("title", p.stem)), variants


def select_variants(
    variants: Mapping[str, Mapping[str, Any]], only: Sequence[str] | None
) -> dict[str, Mapping[str, Any]]:
    """The variants named in ``only`` (all of them for ``None`` or an empty list), in the file's order.

    Raises:
        ValueError: a name that is not one of the variants (the message lists them).
    """
    unknown = [n for n in only or [] if n not in variants]
    if unknown:
        raise ValueError(f"--only: no variant named {unknown}; the variants are {list(variants)}.")
    return {n: o for n, o in variants.items() if not only or n in only}


def run_variants(
    bundle_root: str | os.PathLike,
    run_dir: str | os.PathLike | None,
    variants: Mapping[str, Mapping[str, Any]],
    output_dir: str | os.PathLike,
    fold: int = 0,
    stages: Sequence[str] = ("convert",),
    common: Mapping[str, Any] | None = None,
    quiet: bool = False,
    ann: str | os.PathLike | None = None,
) -> dict[str, dict[str, str]]:
    """Run ``stages`` of ``bundle_root`` for every variant on the trained ANN of ``run_dir`` (fold ``fold``) or ``ann``.

    Args:
        bundle_root: the bundle.
        run_dir: the run whose ANN is reused (``fold{k}/train_ann/ckpt/best_model.pt``); ``None`` with ``ann``.
        variants: name -> overrides (as ``--set`` takes them: ``key`` or ``stage:key``).
        output_dir: one folder per variant is made in it.
        fold: the fold.
        stages: stages after ``train_ann`` to run.
        common: overrides for every variant (a variant's own win).
        quiet: no progress bars.
        ann: an ANN checkpoint file to use instead of ``run_dir``'s (a state dict or a checkpoint with a
            ``"network"`` entry, e.g. ``models/ann.pt`` of the bundle).

    Raises:
        FileNotFoundError: the run has no trained ANN for ``fold``, or ``ann`` does not exist.
        ValueError: ``train_ann`` among ``stages``; neither or both of ``run_dir`` and ``ann``.

    Returns:
        ``{variant: runner status}``.
    """
    from monai_snn.apps.cross_validation import run_cross_validation

    if "train_ann" in stages:
        raise ValueError("variants reuse the run's trained ANN: leave train_ann out of --stages.")
    if (run_dir is None) == (ann is None):
        raise ValueError("give the ANN to convert either as a run (--run_dir) or as a checkpoint file (--ann).")
    if ann is not None:
        ann = Path(ann).resolve()
        if not ann.is_file():
            raise FileNotFoundError(f"ANN checkpoint {ann} does not exist.")
    else:
        ann = Path(run_dir).resolve() / f"fold{int(fold)}" / "train_ann" / "ckpt" / "best_model.pt"
        if not ann.is_file():
            raise FileNotFoundError(f"no trained ANN at {ann}: run the train_ann stage of fold {fold} first.")
    status = {}
    for name, overrides in variants.items():
        sets = {**dict(common or {}), **{k: v if isinstance(v, str) else json.dumps(v) for k, v in overrides.items()}}
        sets["ann_checkpoint"] = str(ann)
        if not quiet:
            print(f"variant {name!r}: {sets}", file=sys.stderr)
        status[name] = run_cross_validation(bundle_root, Path(output_dir) / _slug(name), folds=[int(fold)],
                                            stages=list(stages), overrides=sets, quiet=quiet)  # fmt: skip
    return status


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def variants_table(
    variants: Mapping[str, Mapping[str, Any]],
    output_dir: str | os.PathLike,
    metrics: Sequence[str],
    fold: int = 0,
    title: str = "variants",
) -> list[dict[str, Any]]:
    """Write ``table.md``, ``table.csv`` and ``plot.png`` of the variants' results to ``output_dir``; return the rows.

    Raises:
        ValueError: ``metrics`` is empty.
    """
    if not metrics:
        raise ValueError("give at least one metric name (--metrics).")
    out = Path(output_dir)
    rows: list[dict[str, Any]] = []
    sweeps: dict[str, dict] = {}
    for name, overrides in variants.items():
        fold_dir = out / _slug(name) / f"fold{int(fold)}"
        conv, ev = _read(fold_dir / "convert" / "metrics.json"), _read(fold_dir / "evaluate" / "metrics.json")
        row: dict[str, Any] = {"variant": name, "overrides": json.dumps(overrides)}
        for net, source in (("ann", conv.get("ann")), ("converted", conv.get("converted")),
                            ("finetuned", ev.get("finetuned"))):  # fmt: skip
            for m in metrics:
                row[f"{net}_{m}"] = (source or {}).get(m)
            row[f"{net}_T"] = (source or {}).get("num_steps")
        for net, source in (("converted", conv.get("converted")), ("finetuned", ev.get("finetuned"))):
            row[f"{net}_energy_snn_over_ann"] = (source or {}).get("energy_snn_over_ann")
        row["percentile"] = (conv.get("settings") or {}).get("percentile")
        if conv.get("metrics_vs_T"):
            sweeps[name] = {int(t): v for t, v in conv["metrics_vs_T"].items()}
        rows.append(row)
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    def cell(v: Any) -> str:
        return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)

    nets = [n for n in ("ann", "converted", "finetuned") if any(r[f"{n}_{metrics[0]}"] is not None for r in rows)]
    steps = {n: next((r[f"{n}_T"] for r in rows if r[f"{n}_T"] is not None), None) for n in nets}  # finished rows
    head = ["variant", "percentile"] + [f"{n} {m}" + (f" (T={steps[n]})" if n != "ann" and m == metrics[0] else "")
                                        for n in nets for m in metrics]  # fmt: skip
    spiking = [n for n in nets if n != "ann"]
    head += [f"energy SNN / ANN ({n})" for n in spiking]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["variant"], cell(r["percentile"])] + [cell(r[f"{n}_{m}"]) for n in nets for m in metrics]
        cells += [cell(r[f"{n}_energy_snn_over_ann"]) for n in spiking]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Overrides of each variant:", ""] + [f"- {r['variant']}: `{r['overrides']}`" for r in rows]
    if _plot(rows, nets, metrics[0], title, out / "plot.png"):
        lines += ["", "![plot](plot.png)"]
    lines += _vs_t_section(sweeps, out, metrics, rows)
    (out / "table.md").write_text("\n".join(lines) + "\n")
    return rows


def _vs_t_section(
    sweeps: Mapping[str, Mapping[int, Mapping[str, float]]], out: Path, metrics: Sequence[str],
    rows: list[dict[str, Any]],
) -> list[str]:
    """Markdown lines of every metric vs T of the converted SNNs (``sweeps``: variant -> ``metrics_vs_T`` of its
    conversion) and a plot of the first metric; no lines when no variant swept T."""
    from monai_snn.apps.summary import vs_t_plot

    steps = sorted({t for sweep in sweeps.values() for t in sweep})
    if len(steps) < 2:  # no sweep (steps_sweep=[]): the one T is in the table above
        return []
    lines = ["", "## Converted SNN vs T", "", "| variant | metric | " + " | ".join(f"T={t}" for t in steps) + " |",
             "|" + "---|" * (len(steps) + 2)]  # fmt: skip
    for name, sweep in sweeps.items():
        for m in metrics:
            cells = [f"{sweep[t][m]:.4f}" if t in sweep and m in sweep[t] else "-" for t in steps]
            lines.append(f"| {name} | {m} | " + " | ".join(cells) + " |")
    ann = {r["variant"]: r[f"ann_{metrics[0]}"] for r in rows}
    curves = {
        name: (ts, [sweep[t].get(metrics[0], float("nan")) for t in ts], [0.0] * len(ts),
               float("nan") if ann.get(name) is None else ann[name])
        for name, sweep in sweeps.items() for ts in [sorted(sweep)]
    }  # fmt: skip
    if vs_t_plot(curves, metrics[0], out / "metric_vs_T.png"):
        lines += ["", f"![converted SNN: {metrics[0]} vs T](metric_vs_T.png)"]
    return lines


def _plot(rows: list[dict[str, Any]], nets: list[str], metric: str, title: str, path: Path) -> bool:
    """Bars of ``metric`` per variant and network (one dashed line for an ANN shared by all variants) and, on a
    second axis, the converted SNN's energy over the ANN's."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return False
    import textwrap

    anns = {r["ann_" + metric] for r in rows if r["ann_" + metric] is not None}
    shared_ann = "ann" in nets and len(anns) == 1
    bars = [n for n in nets if not (shared_ann and n == "ann")]
    fig_width = max(5.5, 0.9 * len(rows) + 2)
    fig, ax = plt.subplots(figsize=(fig_width, 4.2), dpi=100)
    width = 0.8 / max(1, len(bars))
    for i, net in enumerate(bars):
        vals = [r[f"{net}_{metric}"] if r[f"{net}_{metric}"] is not None else float("nan") for r in rows]
        ax.bar([j + i * width for j in range(len(rows))], vals, width, label=net, color=f"C{i + 1}")
    if shared_ann:
        ax.axhline(anns.pop(), color="C0", ls="--", lw=1, label="ann")
    centre = [j + width * (len(bars) - 1) / 2 for j in range(len(rows))]
    ax.set_xticks(centre)
    ax.set_xticklabels([r["variant"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(textwrap.fill(title, int(13 * fig_width)), fontsize=8)
    energy = [r["converted_energy_snn_over_ann"] for r in rows]
    handles, labels = ax.get_legend_handles_labels()
    if any(e is not None for e in energy):
        ax2 = ax.twinx()
        line = ax2.plot(centre, [float("nan") if e is None else e for e in energy], "k^", ms=6)
        ax2.set_ylabel("energy SNN / ANN (converted)")
        ax2.set_ylim(bottom=0)
        handles, labels = handles + line, labels + ["energy (right)"]
    ax.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=len(labels),
              frameon=False)
    fig.tight_layout()
    fig.savefig(str(path))
    plt.close(fig)
    return True


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle_root", required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run_dir", help="the run whose trained ANN the variants convert")
    src.add_argument("--ann", help="or an ANN checkpoint file, e.g. <bundle>/models/ann.pt (the shipped ANN)")
    p.add_argument("--variants", required=True, help="JSON file: {'title': ..., 'variants': {name: {key: value}}}")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--stages", nargs="+", default=["convert"], choices=["convert", "finetune", "evaluate"])
    p.add_argument("--metrics", nargs="+", required=True, help="metric names of the bundle, the first is plotted")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every variant")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME", help="run only these variants (by name)")
    p.add_argument("--table_only", action="store_true", help="only (re)write the table from finished variants")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        title, variants = load_variants(args.variants)
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        if not args.table_only:
            common = dict(s.split("=", 1) for s in args.set)
            chosen = select_variants(variants, args.only)
            run_variants(args.bundle_root, args.run_dir, chosen, args.output_dir, args.fold, args.stages, common,
                         args.quiet, ann=args.ann)  # fmt: skip
        rows = variants_table(variants, args.output_dir, args.metrics, args.fold, title)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print((Path(args.output_dir) / "table.md").read_text())
    return rows


if __name__ == "__main__":
    main()
