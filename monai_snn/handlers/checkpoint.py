# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""``AtomicCheckpointSaver``: MONAI's ``CheckpointSaver`` made safe to kill; resuming never loses a finished epoch."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver

__all__ = ["AtomicCheckpointSaver"]


class _SaveBeforeRemove(DiskSaver):
    """Wraps a ``DiskSaver``: atomic writes, and a file due for removal goes only after the next save is complete.

    ignite's ``Checkpoint`` removes the old file (``n_saved`` reached, or a fixed file name such as
    ``best_model.pt``) *before* it writes the new one; a kill in between leaves no checkpoint at all.

    Args:
        inner: the saver to wrap (MONAI's fixed-file-name ``DiskSaver``); it is switched to atomic writes.
    """

    def __init__(self, inner: DiskSaver) -> None:  # no super().__init__: the directory was set up by ``inner``
        inner._atomic = True  # ignite writes a temporary file and renames it when complete
        self.inner = inner
        self.dirname = inner.dirname
        self.save_on_rank = inner.save_on_rank
        self.kwargs = inner.kwargs
        self._pending: list[str] = []

    @property
    def _atomic(self) -> bool:  # type: ignore[override]
        """Whether the wrapped saver writes atomically (it always does once wrapped)."""
        return self.inner._atomic

    def _target(self, filename: str) -> str:
        return getattr(self.inner, "filename", None) or filename  # MONAI's saver may map every name to one file

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        self.inner(checkpoint, filename, metadata)
        written = self._target(filename)
        pending, self._pending = self._pending, []
        for name in pending:
            if self._target(name) != written and os.path.exists(self.dirname / self._target(name)):
                self.inner.remove(name)

    def remove(self, filename: str) -> None:
        self._pending.append(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """``monai.handlers.CheckpointSaver`` that a kill at any moment leaves with a complete, loadable checkpoint.

    Two changes to MONAI's saver, which a resumed run relies on:

    - files are written to a temporary file and renamed when complete (MONAI writes in place, ``atomic=False``, so
      a kill while saving left a truncated ``latest_*.pt`` or ``best_model.pt``);
    - the previous file is removed only after the new one is complete (ignite removes it first, so a kill between
      the two left no ``latest_*.pt`` and the run restarted from epoch 0). A kill in that short window can leave
      two ``latest_*.pt``; the newer one is complete and :func:`monai_snn.apps.bundle_utils.latest_checkpoint`
      picks it.

    Same arguments as ``CheckpointSaver``.

    Example::

        saver = AtomicCheckpointSaver(save_dir="ckpt", save_dict={"network": net}, save_interval=1, n_saved=1,
                                      file_prefix="latest")
        saver.attach(trainer)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_metric_filename: str | None = kwargs.get("key_metric_filename")
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler = _SaveBeforeRemove(checkpoint.save_handler)

    @property
    def key_metric_path(self) -> str | None:
        """Path of the best-model file (``save_dir/key_metric_filename``), ``None`` without a fixed file name.

        :func:`monai_snn.apps.bundle_utils.restore_best` reads the interrupted run's best-model record from it, so
        the file a resumed run restores from is always the file this saver writes.
        """
        if self.key_metric_filename is None:
            return None
        return os.path.join(str(self.save_dir), self.key_metric_filename)
