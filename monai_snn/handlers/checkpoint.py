# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""``AtomicCheckpointSaver``: MONAI's ``CheckpointSaver`` with atomic writes, so resuming after a kill is safe."""

from __future__ import annotations

from typing import Any

from monai.handlers import CheckpointSaver

__all__ = ["AtomicCheckpointSaver"]


class AtomicCheckpointSaver(CheckpointSaver):
    """``monai.handlers.CheckpointSaver`` whose files are written to a temporary file and renamed when complete.

    MONAI writes checkpoints in place (``atomic=False``), so a run killed while saving leaves a truncated
    ``latest_*.pt`` or ``best_model.pt`` and the resumed run fails to load it. With ignite's atomic write a file
    either exists complete or not at all (ignite keeps group / others read permission). Same arguments as
    ``CheckpointSaver``.

    Example::

        saver = AtomicCheckpointSaver(save_dir="ckpt", save_dict={"network": net}, save_interval=1, n_saved=1,
                                      file_prefix="latest")
        saver.attach(trainer)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler._atomic = True  # ignite.handlers.DiskSaver's switch
