# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Resumable k-fold cross-validation of a bundle: every fold x stage in one command, safe to kill at any moment.

Each fold / stage runs the bundle's own CLI (``python -m monai.bundle run``) in a subprocess, with
``--output_dir <output_dir> --fold k`` and the overrides that the stage's configs define; its output goes to
``<output_dir>/fold{k}/{stage}/`` (one TensorBoard run per fold and stage, plus ``stage.log``).

What makes a rerun safe:

* **Markers record what a stage was made from.** After a stage succeeds, ``done.json`` stores a hash of the part
  of the configuration the stage uses (every config item its ``initialize`` / ``run`` reach through ``@``
  references, after the overrides), and hashes of its declared inputs and outputs (the stage config's
  ``stage_inputs`` / ``stage_outputs`` lists). A stage is skipped only while all three still match, so
  retraining the ANN (new ``best_model.pt``) reruns conversion, fine-tuning and evaluation; editing a config value
  that a stage does not use reruns nothing.
* **Killed stages resume, stale ones restart.** Before a stage starts, ``started.json`` records the same
  fingerprint. A stage without ``done.json`` whose ``started.json`` matches resumes from its ``latest``
  checkpoint; one whose fingerprint changed (or whose marker went stale) is cleared first, so it never resumes
  from a checkpoint of other inputs. A stage config's ``stage_keep`` (glob patterns under the stage folder) names
  the files that survive the clearing because the stage itself checks whether they still apply (e.g. an evaluate
  stage's per-level scores, reused by :func:`monai_snn.bundle.evaluate_models` with ``resume`` only where the
  weights, ``T`` and settings match). A session stopped by a signal (or failing) adds its wall-clock to
  ``started.json``, so ``done.json``'s ``seconds`` is the stage's time over all its sessions (``sessions``;
  ``last_session_seconds`` the one that finished); a runner killed outright records nothing of its session.
* **The runner owns its stages.** A lock file stops a second runner on the same output folder (the stage
  process inherits the lock, so a stage left by a killed runner also blocks it); each stage runs in its own
  process group and dies with the runner (``SIGTERM`` / ``SIGINT`` are forwarded, and on Linux the kernel kills
  the stage when the runner is killed with ``SIGKILL``).
* **Data preparation runs first, in the runner**, so input hashes describe the data as it is now.

Example::

    python -m monai_snn.apps.cross_validation --bundle_root bundles/hippocampus_snn --output_dir runs/hippo \\
        --folds 0 1 2 3 4 --stages train_ann convert finetune evaluate --set loss_name=bce_dice finetune:max_epochs=3
    python -m monai_snn.apps.summary --runs runs/hippo --metrics dice_3d_mean dice_2d_mean --output_dir runs/hippo/summary
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from monai_snn.apps.overrides import UnknownOverrideError, check_overrides

__all__ = [
    "STAGES",
    "bundle_stages",
    "RunnerLockedError",
    "runner_lock",
    "stage_command",
    "stage_config",
    "stage_fingerprint",
    "split_overrides",
    "run_cross_validation",
    "main",
]

logger = logging.getLogger(__name__)

STAGES = ("train_ann", "convert", "finetune", "evaluate")
"""Stages in pipeline order; each has ``configs/<stage>.json`` merged over ``configs/common.json``."""

_REF = re.compile(r"@(\w+(?:(?:#|::)\w+)*)")
_ROOTS = ("imports", "initialize", "run", "finalize", "stage_inputs", "stage_outputs")
LOCK_NAME = ".runner.lock"


class RunnerLockedError(RuntimeError):
    """Another runner (or a stage it started) is working on the same output folder."""


def _parse_sets(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for it in items or ():
        if "=" not in it:
            raise ValueError(f"--set expects key=value or stage:key=value, got {it!r}.")
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def bundle_stages(bundle_root: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The stages of a bundle in pipeline order: ``{name: {"config": file in configs/, "set": {key: value}}}``.

    By default :data:`STAGES`, each with ``configs/<stage>.json``. A bundle with more stages lists all of them in
    ``configs/stages.json``: ``{"stages": [{"name": "train_ann"}, ..., {"name": "train_spiking_fcn", "config":
    "train_direct.json", "set": {"direct_network": "spiking_fcn"}}, ...]}``; a stage without ``config`` uses
    ``<name>.json``; ``config`` may also be a list of files merged in order over ``common.json`` (e.g.
    ``["evaluate.json", "robustness.json"]``); ``set`` gives overrides that define the stage (``--set
    stage:key=value`` still wins); ``"optional": true`` leaves the stage out of the default run (name it in
    ``stages``). A stage writes to ``<output_dir>/fold{k}/<name>``.

    Raises:
        ValueError: a malformed ``stages.json`` (named), a duplicate name or a missing config file.

    Example::

        list(bundle_stages("bundles/camseq_snn"))  # ['train_ann', 'convert', 'finetune', ..., 'evaluate']
    """
    cfg = Path(bundle_root).resolve() / "configs"
    listing = cfg / "stages.json"
    if not listing.is_file():
        return {s: {"config": f"{s}.json", "set": {}} for s in STAGES}
    try:
        entries = json.loads(listing.read_text())["stages"]
        specs = {}
        for e in entries:
            name = e["name"]
            if name in specs:
                raise ValueError(f"stage {name!r} is listed twice")
            specs[name] = {"config": e.get("config", f"{name}.json"), "set": dict(e.get("set", {}))}
            if e.get("optional"):
                specs[name]["optional"] = True
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(
            f"{listing}: expected {{'stages': [{{'name': ..., 'config': ..., 'set': {{...}}}}, ...]}} ({e!r})."
        ) from None
    except ValueError as e:
        raise ValueError(f"{listing}: {e}.") from None
    for name, spec in specs.items():
        files = [spec["config"]] if isinstance(spec["config"], str) else list(spec["config"])
        for f in files:
            if not (cfg / f).is_file():
                raise ValueError(f"{listing}: stage {name!r} names {f}, which is not in {cfg}.")
    return specs


def _config_files(bundle_root: str | os.PathLike, stage: str) -> list[Path]:
    cfg = Path(bundle_root).resolve() / "configs"
    spec = bundle_stages(bundle_root).get(stage)
    files = [f"{stage}.json"] if spec is None else spec["config"]
    return [cfg / "common.json"] + [cfg / f for f in ([files] if isinstance(files, str) else files)]


def split_overrides(
    bundle_root: str | os.PathLike, stages: Sequence[str], overrides: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """The overrides each stage receives: a plain ``key`` goes to every stage whose configs define it, a
    ``stage:key`` only to that stage.

    Raises:
        UnknownOverrideError: a key that none of ``stages`` defines (with close matches), or a ``stage:key`` whose
            stage does not define it.
        ValueError: a ``stage:`` prefix that names no stage.
    """
    from monai.bundle import ConfigParser

    specs = bundle_stages(bundle_root)
    configs = {s: ConfigParser.load_config_files([str(f) for f in _config_files(bundle_root, s)]) for s in stages}
    per_stage: dict[str, dict[str, Any]] = {s: dict(specs[s]["set"]) if s in specs else {} for s in stages}
    items = sorted((overrides or {}).items(), key=lambda kv: ":" in kv[0].split("#")[0])  # stage:key wins
    for key, value in items:
        if ":" in key.split("#")[0]:
            stage, sub = key.split(":", 1)
            if stage not in specs:
                raise ValueError(f"override {key!r}: unknown stage {stage!r}; choose from {tuple(specs)}.")
            if stage in configs:
                check_overrides([sub], configs[stage], where=f"common.json + {stage}.json")
                per_stage[stage][sub] = value
            continue
        takers = []
        for s, cfg in configs.items():
            try:
                check_overrides([key], cfg)
                takers.append(s)
            except UnknownOverrideError:
                pass
        if not takers:
            union: dict[str, Any] = {}
            for cfg in configs.values():
                union.update(cfg)
            check_overrides([key], union, where=f"the configs of the stages {list(stages)}")
        for s in takers:
            per_stage[s][key] = value
    return per_stage


def stage_command(
    bundle_root: str | os.PathLike, stage: str, output_dir: str | os.PathLike, fold: int, overrides: dict | None = None
) -> list[str]:
    """The ``python -m monai.bundle run`` command line of one fold / stage."""
    root = Path(bundle_root).resolve()
    cfg = root / "configs"
    cmd = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", repr([str(f) for f in _config_files(root, stage)]),
        "--meta_file", str(cfg / "metadata.json"),
        "--logging_file", str(cfg / "logging.conf"),
        "--bundle_root", str(root),
        "--output_dir", str(Path(output_dir).resolve()),
        "--fold", str(int(fold)),
    ]  # fmt: skip
    for k, v in (overrides or {}).items():
        cmd += [f"--{k}", str(v)]
    return cmd


def stage_config(
    bundle_root: str | os.PathLike, stage: str, output_dir: str | os.PathLike, fold: int, overrides: dict | None = None
):
    """A ``ConfigParser`` with the stage's configs and the same overrides as :func:`stage_command` (nothing run)."""
    from monai.bundle import ConfigParser

    from monai_snn.apps.overrides import _literal

    parser = ConfigParser()
    parser.read_config([str(f) for f in _config_files(bundle_root, stage)])
    pairs: dict[str, Any] = {"bundle_root": str(Path(bundle_root).resolve()),
                             "output_dir": str(Path(output_dir).resolve()), "fold": int(fold)}  # fmt: skip
    for k, v in (overrides or {}).items():
        pairs[k] = _literal(v) if isinstance(v, str) else v  # as fire parses the CLI values
    parser.update(pairs)
    return parser


def _used_config(parser) -> dict[str, Any]:
    """Every config item the stage reaches from its entry points through ``@`` references (raw content)."""
    seen: dict[str, Any] = {}
    todo = [r for r in _ROOTS if r in parser]
    while todo:
        ref = todo.pop().replace("::", "#")
        if ref in seen or ref not in parser:
            continue
        seen[ref] = content = parser[ref]
        todo.extend(_REF.findall(json.dumps(content, default=str)))
    return seen


def _sha256(path: str | os.PathLike) -> str | None:
    if not os.path.isfile(path):
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _paths(parser, key: str) -> list[str]:
    if key not in parser:
        return []
    return [str(p) for p in parser.get_parsed_content(key, instantiate=False)]


def stage_fingerprint(parser) -> dict[str, Any]:
    """``{"config_sha256", "inputs": {path: sha256}}`` of a stage: what its marker must match to be skipped."""
    used = json.dumps(_used_config(parser), sort_keys=True, default=str)
    return {
        "config_sha256": hashlib.sha256(used.encode()).hexdigest(),
        "inputs": {p: _sha256(p) for p in _paths(parser, "stage_inputs")},
    }


def _outputs(parser) -> dict[str, str | None]:
    return {p: _sha256(p) for p in _paths(parser, "stage_outputs")}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write_marker(path: Path, data: dict[str, Any]) -> None:
    """Write a marker atomically (a kill leaves the old marker or the new one, never half a file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _marker_status(marker: Path, fingerprint: dict[str, Any], parser) -> str:
    """``"done"``, ``"missing"`` or ``"stale: <why>"``."""
    done = _read_json(marker)
    if done is None:
        return "missing"
    if done.get("config_sha256") != fingerprint["config_sha256"]:
        return "stale: the configuration it used changed"
    if done.get("inputs") != fingerprint["inputs"]:
        changed = [p for p, h in fingerprint["inputs"].items() if done.get("inputs", {}).get(p) != h]
        return f"stale: inputs changed ({', '.join(changed) or 'input list'})"
    outputs = _outputs(parser)
    if any(h is None for h in outputs.values()):
        return "stale: outputs missing (" + ", ".join(p for p, h in outputs.items() if h is None) + ")"
    if done.get("outputs") != outputs:
        return "stale: outputs changed since the stage finished"
    return "done"


def _clear_stage(stage_dir: Path, why: str, keep: Sequence[str] = ()) -> None:
    """Remove everything of an earlier run of the stage except its log (which records why) and the files matching
    the glob patterns ``keep`` (relative to ``stage_dir``)."""
    kept = {q for pattern in keep for q in stage_dir.glob(pattern) if q.is_file()}
    for root, dirs, files in os.walk(stage_dir, topdown=False):
        here = Path(root)
        for name in files + [d for d in dirs if (here / d).is_symlink()]:
            p = here / name
            if not (p in kept or (here == stage_dir and name == "stage.log")):
                p.unlink()
        if here != stage_dir and not any(here.iterdir()):
            here.rmdir()
    note = f" (kept {len(kept)} file(s) matching stage_keep)" if kept else ""
    with open(stage_dir / "stage.log", "a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} cleared earlier results: {why}{note}\n")


@contextlib.contextmanager
def runner_lock(output_dir: str | os.PathLike) -> Iterator[int]:
    """Hold ``output_dir/.runner.lock`` (``fcntl.flock``) for the runner's lifetime; yields the lock's descriptor.

    Raises:
        RunnerLockedError: another runner, or a stage process it started, holds the lock.
    """
    path = Path(output_dir) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text().strip() or "unknown"
            raise RunnerLockedError(
                f"{output_dir} is in use by another cross-validation runner or a stage it started ({holder}); wait "
                "for it to finish or stop it, then rerun (finished stages are kept)."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"runner pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        yield fd
    finally:
        os.close(fd)  # releases the lock unless a stage process still holds the inherited descriptor


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    os.setsid()  # own process group: the runner can stop the stage and everything it started
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class _Terminated(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(f"runner stopped by signal {signum}")
        self.signum = signum


def _run_stage(cmd: list[str], log_path: Path, lock_fd: int) -> int:
    """Run one stage, forwarding SIGTERM / SIGINT to its process group; returns its exit code."""
    with open(log_path, "a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, pass_fds=(lock_fd,),
                                preexec_fn=_die_with_parent)  # fmt: skip
    try:
        return proc.wait()
    finally:
        if proc.poll() is None:  # the runner is being stopped: stop the stage with it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _prepare(bundle_root: str | os.PathLike, output_dir: Path, overrides: dict[str, Any]) -> None:
    """Resolve the bundle's ``datalist`` once in the runner (data preparation, or its cache check)."""
    parser = stage_config(bundle_root, next(iter(bundle_stages(bundle_root))), output_dir, 0, overrides)
    if "datalist" not in parser:
        return
    if "imports" in parser:
        parser.get_parsed_content("imports")
    parser.get_parsed_content("datalist")


def run_cross_validation(
    bundle_root: str | os.PathLike,
    output_dir: str | os.PathLike,
    folds: Sequence[int] = (0, 1, 2, 3, 4),
    stages: Sequence[str] | None = None,
    overrides: dict | None = None,
    force: bool = False,
    quiet: bool = False,
) -> dict[str, str]:
    """Run ``stages`` for every fold in ``folds``; returns ``{"fold{k}/{stage}": "done" | "skipped"}``.

    Args:
        bundle_root: the bundle folder (``configs/common.json`` and one ``configs/<stage>.json`` per stage).
        output_dir: where every fold / stage writes (``<output_dir>/fold{k}/{stage}``).
        folds: folds to run.
        stages: stages to run (run in the bundle's pipeline order); ``None``: the bundle's stages
            (:func:`bundle_stages`) except the optional ones.
        overrides: ``{key: value}`` passed as ``--key value`` to every stage whose configs define ``key``;
            ``{"stage:key": value}`` to that stage only.
        force: rerun stages whose marker is up to date (their earlier results are cleared first).
        quiet: no progress bar.

    Raises:
        ValueError: unknown stage.
        UnknownOverrideError: an override key that no stage defines (close matches named).
        RunnerLockedError: another runner works on ``output_dir``.
        subprocess.CalledProcessError: a stage failed (its log is ``<output_dir>/fold{k}/{stage}/stage.log``).
    """
    if not (Path(bundle_root) / "configs" / "common.json").is_file():
        raise FileNotFoundError(f"{bundle_root} is not a monai_snn bundle (no configs/common.json).")
    specs = bundle_stages(bundle_root)
    known = list(specs)
    stages = [s for s in known if not specs[s].get("optional")] if stages is None else list(stages)
    for s in stages:
        if s not in known:
            raise ValueError(f"unknown stage {s!r}; {bundle_root} has the stages {tuple(known)}.")
    order = [s for s in known if s in stages]
    per_stage = split_overrides(bundle_root, order, overrides)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    status: dict[str, str] = {}
    jobs = [(k, s) for k in folds for s in order]

    def _stop(signum, frame):  # noqa: ARG001
        raise _Terminated(signum)

    with runner_lock(out) as lock_fd:
        main_thread = threading.current_thread() is threading.main_thread()  # signal handlers only install there
        previous = signal.signal(signal.SIGTERM, _stop) if main_thread else None
        try:
            _prepare(bundle_root, out, {k: v for k, v in (overrides or {}).items() if ":" not in k.split("#")[0]})
            from tqdm import tqdm

            bar = tqdm(jobs, desc="cross-validation", unit="stage", disable=quiet, file=sys.stderr)
            for fold, stage in bar:
                status[f"fold{fold}/{stage}"] = _one_stage(bundle_root, out, fold, stage, per_stage[stage], force,
                                                           bar, lock_fd)  # fmt: skip
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)
    _write_marker(out / "cv_status.json", status)
    return status


def _one_stage(bundle_root, out: Path, fold: int, stage: str, overrides: dict, force: bool, bar, lock_fd: int) -> str:
    key = f"fold{fold}/{stage}"
    stage_dir = out / f"fold{fold}" / stage
    marker, started = stage_dir / "done.json", stage_dir / "started.json"
    parser = stage_config(bundle_root, stage, out, fold, overrides)
    fingerprint = stage_fingerprint(parser)
    state = _marker_status(marker, fingerprint, parser)
    if state == "done" and not force:
        bar.write(f"{key}: up to date ({marker}), skipped", file=sys.stderr)
        return "skipped"
    stage_dir.mkdir(parents=True, exist_ok=True)
    keep = _paths(parser, "stage_keep")
    if state != "missing" or force:
        _clear_stage(stage_dir, "forced rerun" if state == "done" else state, keep)
        bar.write(f"{key}: {'forced rerun' if state == 'done' else state}; earlier results cleared", file=sys.stderr)
    elif (earlier := _read_json(started)) is not None and earlier.get("fingerprint") != fingerprint:
        _clear_stage(stage_dir, "an interrupted run with other inputs or configuration", keep)
        bar.write(f"{key}: the interrupted run had other inputs or configuration; cleared", file=sys.stderr)
    bar.set_postfix_str(key)
    cmd = stage_command(bundle_root, stage, out, fold, overrides)
    # wall-clock of the earlier, interrupted sessions this one resumes (recorded when they were stopped)
    earlier = _read_json(started)
    before = float(earlier.get("seconds", 0.0)) if earlier and earlier.get("fingerprint") == fingerprint else 0.0
    sessions = int(earlier.get("sessions", 0)) if before else 0
    record = {"fingerprint": fingerprint, "command": cmd, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "seconds": before, "sessions": sessions}  # fmt: skip
    _write_marker(started, record)
    t0 = time.time()
    try:
        code = _run_stage(cmd, stage_dir / "stage.log", lock_fd)
    finally:  # stopped or failed: the next run resumes, and counts this session's time too
        _write_marker(started, record | {"seconds": round(before + time.time() - t0, 1), "sessions": sessions + 1})
    if code != 0:
        tail = (stage_dir / "stage.log").read_text(errors="replace")[-3000:]
        raise subprocess.CalledProcessError(
            code, cmd, output=f"{key} failed; last lines of {stage_dir / 'stage.log'}:\n{tail}"
        )
    elapsed = time.time() - t0
    _write_marker(marker, {
        "fold": fold, "stage": stage, **fingerprint, "outputs": _outputs(parser),
        "seconds": round(before + elapsed, 1), "sessions": sessions + 1, "last_session_seconds": round(elapsed, 1),
        "command": cmd, "overrides": overrides, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    })  # fmt: skip
    over = f" ({before + elapsed:.0f} s over {sessions + 1} sessions)" if sessions else ""
    bar.write(f"{key}: done in {elapsed:.0f} s{over}", file=sys.stderr)
    return "done"


def main(argv: Sequence[str] | None = None) -> dict[str, str]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle_root", required=True, help="bundle folder, e.g. bundles/hippocampus_snn")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--stages", nargs="+", default=None,
                   help="stages to run (default: all of the bundle's, e.g. train_ann convert finetune evaluate)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="bundle overrides, passed as --KEY VALUE to every stage that defines KEY (e.g. "
                        "loss_name=dice); STAGE:KEY=VALUE for one stage (e.g. finetune:max_epochs=3)")
    p.add_argument("--force", action="store_true", help="rerun stages whose done.json marker is up to date")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        status = run_cross_validation(
            args.bundle_root, args.output_dir, args.folds, args.stages, _parse_sets(args.set), args.force, args.quiet
        )
    except subprocess.CalledProcessError as e:
        print(e.output, file=sys.stderr)
        raise SystemExit(e.returncode) from None
    except (UnknownOverrideError, RunnerLockedError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except _Terminated as e:
        print(f"stopped: {e}; rerun the same command to resume", file=sys.stderr)
        raise SystemExit(128 + e.signum) from None
    print(json.dumps(status, indent=1))
    return status


if __name__ == "__main__":
    main()
