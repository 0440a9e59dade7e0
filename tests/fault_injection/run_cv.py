"""Test-only driver: the cross-validation runner, killed with ``kill -9`` where ``MONAI_SNN_KILL_RUNNER`` says:

* ``launch:<stage>``: just before it starts ``<stage>`` (a kill at a stage boundary);
* ``marker:<stage>``: after ``<stage>`` exited successfully, before its ``done.json`` is written.
"""

import os
import signal
import sys

import monai_snn.apps.cross_validation as cv

spec = os.environ.get("MONAI_SNN_KILL_RUNNER", "")
what, _, stage = spec.partition(":")
_run_stage, _write_marker = cv._run_stage, cv._write_marker


def run_stage(cmd, log_path, lock_fd):
    if what == "launch" and any(a.endswith(f"{stage}.json']") or f"/{stage}.json" in a for a in cmd):
        os.kill(os.getpid(), signal.SIGKILL)
    return _run_stage(cmd, log_path, lock_fd)


def write_marker(path, data):
    if what == "marker" and path.name == "done.json" and path.parent.name == stage:
        os.kill(os.getpid(), signal.SIGKILL)
    return _write_marker(path, data)


cv._run_stage, cv._write_marker = run_stage, write_marker
cv.main(sys.argv[1:])
