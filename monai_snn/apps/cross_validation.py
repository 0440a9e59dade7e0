# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Resumable k-fold cross-validation of the ``hippocampus_snn`` bundle: every fold x stage in one command.

Each fold / stage runs the bundle's own CLI (``python -m monai.bundle run``) in a subprocess, with
``--output_dir <output_dir> --fold k`` and the ``--set key=value`` overrides; its output goes to
``<output_dir>/fold{k}/{stage}/`` (one TensorBoard run per fold and stage, plus ``stage.log``). After a stage
succeeds a ``done.json`` marker is written next to it; finished stages are skipped on the next call, and a
killed stage resumes from its ``latest`` checkpoint (``train_ann`` and ``finetune`` load it when present).

Example::

    python -m monai_snn.apps.cross_validation --bundle_root bundles/hippocampus_snn --output_dir runs/hippo \\
        --folds 0 1 2 3 4 --stages train_ann convert finetune evaluate --set loss_name=bce_dice
    python -m monai_snn.apps.summary --output_dir runs/hippo
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["STAGES", "stage_command", "run_cross_validation", "main"]

STAGES = ("train_ann", "convert", "finetune", "evaluate")
"""Stages in pipeline order; each has ``configs/<stage>.json`` merged over ``configs/common.json``."""


def _parse_sets(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for it in items or ():
        if "=" not in it:
            raise ValueError(f"--set expects key=value, got {it!r}.")
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def stage_command(
    bundle_root: str | os.PathLike, stage: str, output_dir: str | os.PathLike, fold: int, overrides: dict | None = None
) -> list[str]:
    """The ``python -m monai.bundle run`` command line of one fold / stage."""
    root = Path(bundle_root).resolve()
    cfg = root / "configs"
    files = [str(cfg / "common.json"), str(cfg / f"{stage}.json")]
    cmd = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", repr(files),
        "--meta_file", str(cfg / "metadata.json"),
        "--logging_file", str(cfg / "logging.conf"),
        "--bundle_root", str(root),
        "--output_dir", str(Path(output_dir).resolve()),
        "--fold", str(int(fold)),
    ]  # fmt: skip
    for k, v in (overrides or {}).items():
        cmd += [f"--{k}", str(v)]
    return cmd


def run_cross_validation(
    bundle_root: str | os.PathLike,
    output_dir: str | os.PathLike,
    folds: Sequence[int] = (0, 1, 2, 3, 4),
    stages: Sequence[str] = STAGES,
    overrides: dict | None = None,
    force: bool = False,
    quiet: bool = False,
) -> dict[str, str]:
    """Run ``stages`` for every fold in ``folds``; returns ``{"fold{k}/{stage}": "done" | "skipped"}``.

    Raises:
        ValueError: unknown stage.
        subprocess.CalledProcessError: a stage failed (its log is ``<output_dir>/fold{k}/{stage}/stage.log``).
    """
    for s in stages:
        if s not in STAGES:
            raise ValueError(f"unknown stage {s!r}; choose from {STAGES}.")
    if not (Path(bundle_root) / "configs" / "common.json").is_file():
        raise FileNotFoundError(f"{bundle_root} is not the hippocampus_snn bundle (no configs/common.json).")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    status: dict[str, str] = {}
    order = [s for s in STAGES if s in stages]
    jobs = [(k, s) for k in folds for s in order]
    try:
        from tqdm import tqdm

        bar = tqdm(jobs, desc="cross-validation", unit="stage", disable=quiet)
    except ImportError:  # pragma: no cover
        bar = jobs
    for fold, stage in bar:
        stage_dir = out / f"fold{fold}" / stage
        marker = stage_dir / "done.json"
        key = f"fold{fold}/{stage}"
        if marker.is_file() and not force:
            status[key] = "skipped"
            if hasattr(bar, "write"):
                bar.write(f"{key}: already done ({marker}), skipped")
            continue
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(key)
        stage_dir.mkdir(parents=True, exist_ok=True)
        cmd = stage_command(bundle_root, stage, out, fold, overrides)
        t0 = time.time()
        with open(stage_dir / "stage.log", "a") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
            log.flush()
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            tail = (stage_dir / "stage.log").read_text(errors="replace")[-3000:]
            raise subprocess.CalledProcessError(
                proc.returncode, cmd, output=f"{key} failed; last lines of {stage_dir / 'stage.log'}:\n{tail}"
            )
        marker.write_text(
            json.dumps({"fold": fold, "stage": stage, "seconds": round(time.time() - t0, 1), "command": cmd,
                        "overrides": overrides or {}, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=2)
        )  # fmt: skip
        status[key] = "done"
        if hasattr(bar, "write"):
            bar.write(f"{key}: done in {time.time() - t0:.0f} s")
    (out / "cv_status.json").write_text(json.dumps(status, indent=2))
    return status


def main(argv: Sequence[str] | None = None) -> dict[str, str]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle_root", default="bundles/hippocampus_snn")
    p.add_argument("--output_dir", default="runs/hippocampus_snn")
    p.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="bundle overrides, passed as --KEY VALUE to every stage (e.g. loss_name=dice)")
    p.add_argument("--force", action="store_true", help="rerun stages that have a done.json marker")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        status = run_cross_validation(
            args.bundle_root, args.output_dir, args.folds, args.stages, _parse_sets(args.set), args.force, args.quiet
        )
    except subprocess.CalledProcessError as e:
        print(e.output, file=sys.stderr)
        raise SystemExit(e.returncode) from None
    print(json.dumps(status, indent=1))
    return status


if __name__ == "__main__":
    main()
