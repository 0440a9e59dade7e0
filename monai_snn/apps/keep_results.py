# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Keep the result files of a run's folds (no weights) in a folder of the same layout, e.g. a bundle's docs.

A run folder (``runs/...``) holds weights and TensorBoard events that do not belong in a repository, and it may not
outlive the machine it ran on. Its JSON results do: this tool copies every ``*.json`` of ``fold{k}/<stage>/``
(metrics, SNN settings, the evaluate stage's per-level files) except the runner's markers (``done.json``,
``started.json``) and anything under ``ckpt/``, keeping the ``fold{k}/<stage>/...`` layout, so
``python -m monai_snn.apps.summary --runs <kept folder>`` makes the same tables as on the run itself. The stages
write portable paths (:func:`monai_snn.bundle.portable_path`), so the copies need no editing.

Each finished stage also gets a ``scalars.json``: its wall-clock seconds and, for the stages that logged to
TensorBoard (the training stages), their scalar series (:func:`stage_scalars`). That is what
``python -m monai_snn.apps.compare`` reads for the training curves and costs, so the comparison can be made again
from the kept folder.

Example::

    python -m monai_snn.apps.keep_results --run_dir runs/em_cv --folds 1 2 \\
        --output_dir bundles/em_snn/docs/results/cv
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai_snn.bundle.results import read_result

__all__ = ["MARKERS", "SCALARS", "result_files", "stage_seconds", "stage_scalars", "keep_results", "main"]

MARKERS = ("done.json", "started.json")
SCALARS = "scalars.json"
"""The kept TensorBoard scalars of a stage (:func:`stage_scalars`), beside its other result files."""


def stage_seconds(stage_dir: str | Path) -> float | None:
    """Wall-clock seconds of a finished stage, from a run's ``done.json`` or a kept ``scalars.json``.

    Returns:
        The seconds (0.0 where the file does not record them), or ``None`` where the stage has neither file (it has
        not finished, or was not kept).
    """
    for name in ("done.json", SCALARS):
        if (Path(stage_dir) / name).is_file():
            return float(read_result(Path(stage_dir) / name).get("seconds", 0.0))
    return None


def stage_scalars(stage_dir: str | Path) -> dict[str, Any]:
    """The scalar series and wall-clock cost of one stage: from its TensorBoard run, or from a kept ``scalars.json``.

    Args:
        stage_dir: a finished stage folder of a run (``done.json``, ``events.out.tfevents.*`` where it logged) or
            of kept results (``scalars.json``).

    Returns:
        ``{"seconds": float, "scalars": {tag: [[step, wall_time, value], ...]}}``: every scalar the stage logged
        (a resumed run's rewritten steps: the last value counts; none without a TensorBoard run), and the
        stage's seconds from ``done.json``.

    Raises:
        FileNotFoundError: neither ``done.json`` nor a kept ``scalars.json`` in ``stage_dir``.

    Example::

        curve = stage_scalars("runs/em_dt/fold0/train_unet_mt")["scalars"]["f1_interior"]
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    stage_dir = Path(stage_dir)
    if not (stage_dir / "done.json").is_file() and (stage_dir / SCALARS).is_file():
        return read_result(stage_dir / SCALARS)
    seconds = float(read_result(stage_dir / "done.json").get("seconds", 0.0))
    series: dict[str, dict[int, tuple[float, float]]] = {}
    for f in sorted(stage_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            for e in acc.Scalars(tag):
                series.setdefault(tag, {})[int(e.step)] = (float(e.wall_time), float(e.value))
    scalars = {tag: [[s, *v[s]] for s in sorted(v)] for tag, v in sorted(series.items())}
    return {"seconds": seconds, "scalars": scalars}


def result_files(fold_dir: str | Path) -> list[Path]:
    """The result JSONs of one fold folder, relative to it (sorted)."""
    root = Path(fold_dir)
    return sorted(p.relative_to(root) for p in root.rglob("*.json")
                  if p.is_file() and p.name not in MARKERS and "ckpt" not in p.relative_to(root).parts)  # fmt: skip


def keep_results(run_dir: str | Path, output_dir: str | Path, folds: Sequence[int] | None = None) -> list[Path]:
    """Copy the result JSONs of ``folds`` (default: every ``fold{k}`` of ``run_dir``) to ``output_dir``.

    Args:
        run_dir: the run folder (holding ``fold{k}/``).
        output_dir: where ``fold{k}/<stage>/...json`` go (created; existing files of those folds are replaced).
        folds: fold numbers.

    Returns:
        The written files.

    Raises:
        FileNotFoundError: a fold folder is missing or has no result file.

    Example::

        keep_results("runs/em_cv", "bundles/em_snn/docs/results/cv", folds=[1])
    """
    run, out = Path(run_dir), Path(output_dir)
    if folds is None:
        folds = sorted(int(m.group(1)) for p in run.glob("fold*") if (m := re.fullmatch(r"fold(\d+)", p.name)))
    written: list[Path] = []
    for k in folds:
        fold = run / f"fold{int(k)}"
        files = result_files(fold) if fold.is_dir() else []
        if not files:
            raise FileNotFoundError(f"no result files in {fold}: run the fold's stages first.")
        for rel in files:
            dst = out / f"fold{int(k)}" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fold / rel, dst)
            written.append(dst)
        for stage in sorted(p for p in fold.iterdir() if p.is_dir()):
            if (stage / "done.json").is_file():
                dst = out / f"fold{int(k)}" / stage.name / SCALARS
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_text(json.dumps(stage_scalars(stage)) + "\n")
                written.append(dst)
    return written


def main(argv: Sequence[str] | None = None) -> list[Path]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run_dir", required=True, type=Path)
    p.add_argument("--output_dir", required=True, type=Path)
    p.add_argument("--folds", type=int, nargs="+")
    args = p.parse_args(argv)
    written = keep_results(args.run_dir, args.output_dir, args.folds)
    for f in written:
        print(f)
    return written


if __name__ == "__main__":
    main()
