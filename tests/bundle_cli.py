"""Running a bundle's stages through the real CLIs in tests: ``python -m monai.bundle run`` and the runner."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO


def bundle_env() -> dict:
    """The environment of a stage subprocess: one thread, no warnings, the repository importable."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@contextlib.contextmanager
def stage_environment() -> Iterator[None]:
    """:func:`bundle_env` in ``os.environ`` for the runner's stage subprocesses, restored afterwards."""
    env, keys = bundle_env(), ("OMP_NUM_THREADS", "PYTHONWARNINGS", "PYTHONPATH")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: env[k] for k in keys})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_bundle(bundle: Path, configs: list[str], *args: str, check: bool = True, timeout: int = 600, **overrides):
    """``python -m monai.bundle run`` with ``configs/<name>.json`` of ``bundle`` merged in order, and overrides."""
    cfg = bundle / "configs"
    files = repr([str(cfg / f"{c}.json") for c in configs])
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", files, "--meta_file",
           str(cfg / "metadata.json"), "--logging_file", str(cfg / "logging.conf"), "--bundle_root", str(bundle),
           *args]  # fmt: skip
    for k, v in overrides.items():
        cmd += [f"--{k}", str(v)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=bundle_env(), timeout=timeout, cwd=str(REPO))
    if check and proc.returncode != 0:
        pytest.fail(f"bundle run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def assert_inference_rejects(bundle: Path, src: Path, out: Path, expected: list[str], **overrides) -> None:
    """Bundle inference of the ANN on the bad input ``src`` fails, its error names every text of ``expected`` and
    nothing is written to ``out`` (``overrides``: e.g. ``models_dir``, task options)."""
    proc = run_bundle(bundle, ["common", "inference"], check=False, input_dir=src, output_dir=out, network="ann",
                      **overrides)  # fmt: skip
    assert proc.returncode != 0
    for text in expected:
        assert text in proc.stderr, proc.stderr[-2000:]
    assert not out.exists()


def run_ddp(bundle: Path, configs: list[str], timeout: int = 300, **overrides):
    """The same through ``torch.distributed.run`` with two CPU processes (gloo); ``--standalone`` lets the
    rendezvous pick a free port, so parallel or repeated runs cannot collide on a fixed one."""
    cfg = bundle / "configs"
    files = repr([str(cfg / f"{c}.json") for c in configs])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "monai.bundle", "run", "--config_file", files, "--logging_file", str(cfg / "logging.conf"),
           "--bundle_root", str(bundle)]  # fmt: skip
    for k, v in overrides.items():
        cmd += [f"--{k}", str(v)]
    return subprocess.run(cmd, capture_output=True, text=True, env=bundle_env(), timeout=timeout, cwd=str(REPO))
