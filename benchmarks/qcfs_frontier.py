"""Dice / energy frontier of short-T hippocampus SNNs (issue 13), from the bundle's own stage outputs.

Reads, never recomputes: every number comes from a ``metrics.json`` written by the bundle's stages on real MSD
Task04 volumes (the test volumes of the fold), so the table is as reproducible as the runs. Two tables:

1. **Activity sweep**: for each cross-validation run given (``--runs``), the quantization-aware (QCFS) ANN, its
   converted SNN at the design ``T`` and at ``T = 1`` (``convert/metrics.json``), with the estimated energy SNN / ANN
   (compute; memory included; the Spiking-UNet paper's counting, one accumulate per spike) and the mean firing rate
   from ``evaluate/metrics.json`` when that stage ran. The row label is the run's ``activity_weight``.
2. **Five folds** (``--five_fold``: run folders holding ``fold{k}/evaluate/metrics.json``; the first one holding a
   fold is used): per fold and mean, the penalized QCFS ANN and its converted SNN at ``T = 2`` and ``T = 1`` with
   their energies; the float pipeline's five-fold means beside it from ``--reference`` (the bundle's
   ``docs/results/summary.csv``, written by ``apps.summary`` from the reference run).
3. **Shipped models on the same volumes** (``--evaluation``: an evaluate ``metrics.json`` of the shipped models on
   the fold's test volumes): float ANN, converted (T = 16), fine-tuned (T = 4) and ``finetuned_t2``, each at its
   own and extra ``T``.

Usage::

    python benchmarks/qcfs_frontier.py --runs runs/hippo_act_w0.01 runs/hippo_act_w0.1 --fold 0 \
        --evaluation runs/hippo_shipped_fold0/metrics.json --save benchmarks/qcfs_frontier_results.txt
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import platform
import re
import statistics
from pathlib import Path
from typing import Any


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _fmt(v: Any, digits: int = 3) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def _energy_cells(e: dict[str, Any]) -> list[str]:
    """Compute, with-memory and paper-counting energy ratios of a metrics entry."""
    return [_fmt(e.get("energy_ratio")), _fmt(e.get("energy_ratio_mem")), _fmt(e.get("energy_ratio_spikes"), 4)]


def sweep_rows(run: Path, fold: int) -> list[list[str]]:
    """Rows ``weight, model, T, 3D Dice, energy compute / mem / spike counting, firing rate`` of one run."""
    fd = run / f"fold{fold}"
    conv, ev = _read(fd / "convert" / "metrics.json"), _read(fd / "evaluate" / "metrics.json")
    if conv is None:
        return []
    done = _read(fd / "train_ann" / "done.json") or {}
    named = re.search(r"_w([0-9.]+)$", run.name)  # runs named <name>_w<weight>, as the docs' result folders
    weight = (done.get("overrides") or {}).get(
        "activity_weight", conv["settings"].get("activity_weight", named.group(1) if named else 0)
    )
    design = int(conv["settings"]["num_steps"])
    rows = [[str(weight), "QCFS ANN", "", _fmt(conv["ann"]["dice_3d_mean"]), "", "", "", ""]]
    snn = (ev or {}).get("converted") or {}
    at_t = snn.get("at_T", {})
    for t, m in sorted(conv["metrics_vs_T"].items(), key=lambda kv: int(kv[0])):
        e = snn if int(t) == design and snn else at_t.get(t, {})
        rows.append([str(weight), "converted", t, _fmt(m["dice_3d_mean"]), *_energy_cells(e),
                     _fmt(e.get("firing_rate_mean"), 2) if e is snn else ""])  # fmt: skip
    fine = (ev or {}).get("finetuned")
    if fine:
        rows.append([str(weight), "fine-tuned", str(fine["num_steps"]), _fmt(fine["dice_3d_mean"]),
                     *_energy_cells(fine), _fmt(fine.get("firing_rate_mean"), 2)])  # fmt: skip
    return rows


def evaluation_rows(metrics: dict[str, Any]) -> list[list[str]]:
    """Rows of an evaluate ``metrics.json``: each model at its ``T`` and at its extra ``T``."""
    rows = []
    for name, m in metrics.items():
        if name == "info" or not m:
            continue
        entries = [(m.get("num_steps"), m)] + [(int(t), v) for t, v in sorted(m.get("at_T", {}).items())]
        for t, e in entries:
            rows.append([name, "" if t is None else str(t), _fmt(e["dice_3d_mean"]), *_energy_cells(e),
                         _fmt(e.get("firing_rate_mean"), 2)])  # fmt: skip
    return rows


def five_fold_rows(runs: list[Path], reference: Path | None) -> list[list[str]]:
    """Per fold and mean: QCFS ANN, converted T = design and T = 1 (3D Dice, energies), from evaluate metrics."""
    rows, cols = [], {}
    for fold in range(10):
        ev = next((m for m in (_read(r / f"fold{fold}" / "evaluate" / "metrics.json") for r in runs) if m), None)
        if ev is None or not ev.get("converted"):
            continue
        c = ev["converted"]
        one = c.get("at_T", {}).get("1", {})
        vals = [ev["ann"]["dice_3d_mean"], c["dice_3d_mean"], c.get("energy_ratio"), c.get("energy_ratio_mem"),
                c.get("energy_ratio_spikes"), c.get("firing_rate_mean"), one.get("dice_3d_mean"),
                one.get("energy_ratio")]  # fmt: skip
        for i, v in enumerate(vals):
            cols.setdefault(i, []).append(v)
        rows.append([str(fold), *(_fmt(v, 4 if i == 4 else 3) for i, v in enumerate(vals))])
    if rows:
        means = [statistics.fmean(v) if None not in v else None for _, v in sorted(cols.items())]
        rows.append([f"mean ({len(rows)} folds)", *(_fmt(v, 4 if i == 4 else 3) for i, v in enumerate(means))])
    if reference is not None and reference.is_file():
        with reference.open() as f:
            for r in csv.DictReader(f):
                if r["run"] == "hippo_ref2":
                    label = f"float pipeline, {r['network']}" + (f" T = {r['T']}" if r["T"] else "")
                    rows.append([label + f" ({r['n']} folds)", _fmt(float(r["dice_3d_mean"])), "", "", "", "", "",
                                 "", ""])  # fmt: skip
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="*", default=[], help="cross-validation output folders (one activity weight each)")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--five_fold", nargs="*", default=[], help="run folders with fold{k}/evaluate/metrics.json")
    p.add_argument("--reference", default=None, help="summary.csv of the float reference run (five-fold means)")
    p.add_argument("--evaluation", default=None, help="evaluate metrics.json of the shipped models on the fold")
    p.add_argument("--save", default=None, help="also write the tables to this file")
    args = p.parse_args(argv)
    energy = ["energy SNN / ANN (compute)", "(with memory)", "(paper's counting)"]
    parts = []
    rows = [r for run in args.runs for r in sweep_rows(Path(run), args.fold)]
    if rows:
        parts.append(f"Activity sweep, fold {args.fold} test volumes (3D Dice):\n\n"
                     + table(["activity weight", "model", "T", "3D Dice", *energy, "spikes / neuron / step"], rows))
    if args.five_fold:
        header = ["fold", "QCFS ANN", "SNN T = 2", *energy, "spikes / neuron / step", "SNN T = 1", "energy T = 1"]
        ref = Path(args.reference) if args.reference else None
        parts.append("Five folds, test volumes of each fold (3D Dice):\n\n"
                     + table(header, five_fold_rows([Path(r) for r in args.five_fold], ref)))
    if args.evaluation:
        ev = json.loads(Path(args.evaluation).read_text())
        parts.append(f"Shipped models, same volumes ({ev.get('info', {}).get('num_volumes')} volumes):\n\n"
                     + table(["model", "T", "3D Dice", *energy, "spikes / neuron / step"], evaluation_rows(ev)))
    head = (f"MSD Task04 hippocampus (real volumes), numbers read from the bundle's stage outputs; tables written "
            f"{datetime.date.today()} on {platform.machine()} {platform.system()}; the runs: a 2-core CPU, one "
            "thread each")
    text = "\n\n".join([head, *parts])
    print(text)
    if args.save:
        Path(args.save).write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
