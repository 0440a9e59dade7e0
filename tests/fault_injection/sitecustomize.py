"""Test-only fault injection for bundle stages (on ``PYTHONPATH`` only in tests/test_faults.py): ``kill -9`` of this
process at a chosen point, set by ``MONAI_SNN_KILL``:

* ``<config>:start``: at start-up, when ``<config>`` (e.g. ``convert.json``) is on the command line;
* ``<config>:<epoch>:<i>``: after iteration ``i`` of epoch ``e`` of the stage's trainer (MONAI ``Trainer``).
"""

import os
import signal
import sys

_SPEC = os.environ.get("MONAI_SNN_KILL", "")


def _kill(*_args):
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


if _SPEC and any(_SPEC.split(":")[0] in a for a in sys.argv):
    _config, *_where = _SPEC.split(":")
    if _where == ["start"]:
        _kill()
    else:
        _epoch, _iteration = (int(v) for v in _where)
        import ignite.engine as _ie

        _run = _ie.Engine.run

        def _run_with_fault(self, *args, **kwargs):
            from monai.engines import Trainer

            if isinstance(self, Trainer):
                self.add_event_handler(
                    _ie.Events.ITERATION_COMPLETED(
                        event_filter=lambda e, it: e.state.epoch == _epoch
                        and (it - 1) % e.state.epoch_length + 1 == _iteration
                    ),
                    _kill,
                )
            return _run(self, *args, **kwargs)

        _ie.Engine.run = _run_with_fault
