# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Checkpoints that survive kills and resumes that continue exactly: ``AtomicCheckpointSaver`` (MONAI's
``CheckpointSaver`` made safe to kill), :func:`latest_checkpoint` (what a killed stage resumes from),
:func:`load_weights`, and the best-model record of a resumed run (:class:`BestMetricState`, :func:`restore_best`)."""

from __future__ import annotations

import glob
import logging
import os
import zipfile
from collections.abc import Mapping
from typing import Any

import torch
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver

logger = logging.getLogger(__name__)

__all__ = [
    "AtomicCheckpointSaver", "BestMetricState", "latest_checkpoint", "load_weights", "read_state_dict", "restore_best"
]


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
      two ``latest_*.pt``; the newer one is complete and :func:`latest_checkpoint`
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

        :func:`restore_best` reads the interrupted run's best-model record from it, so
        the file a resumed run restores from is always the file this saver writes.
        """
        if self.key_metric_filename is None:
            return None
        return os.path.join(str(self.save_dir), self.key_metric_filename)


def latest_checkpoint(folder: str | os.PathLike, prefix: str = "latest") -> str:
    """Newest complete ``{prefix}*.pt`` in ``folder`` (``""`` when there is none): used to resume a killed stage.

    A file that is not a complete torch archive (a save cut off by a kill, with a non-atomic saver) is skipped with
    a warning, so the resume falls back to the previous checkpoint instead of failing.
    """
    files = sorted(glob.glob(os.path.join(str(folder), f"{prefix}*.pt")), key=os.path.getmtime, reverse=True)
    for f in files:
        if os.path.getsize(f) > 0 and zipfile.is_zipfile(f):
            return f
        logger.warning("skipping incomplete checkpoint %s (its save was interrupted)", f)
    return ""


def read_state_dict(path: str | os.PathLike, key: str = "network") -> dict[str, torch.Tensor]:
    """A state dict from ``path``: a plain one, or the one a CheckpointSaver dict holds under ``key``.

    Raises:
        FileNotFoundError: no file at ``path``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path} (run the previous stage first).")
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and key in state and isinstance(state[key], dict):
        state = state[key]
    return state


def load_weights(network: torch.nn.Module, path: str | os.PathLike, key: str = "network") -> torch.nn.Module:
    """Load a state dict (plain or a CheckpointSaver dict under ``key``) into ``network``; returns it in eval mode."""
    network.load_state_dict(read_state_dict(path, key))
    return network.eval()


class BestMetricState:
    """The best validation metric of an engine (``state.best_metric`` / ``best_metric_epoch``) as a checkpointable
    object: put it in the best-model ``CheckpointSaver``'s ``save_dict`` so :func:`restore_best` can give it back.

    Attach it to the evaluator like a handler (a bundle lists it in the evaluator's handlers, which also avoids a
    circular reference evaluator -> saver -> state -> evaluator), or pass the engine directly.

    Args:
        engine: the evaluator whose key metric selects the best model (or ``None``, then :meth:`attach`).
    """

    def __init__(self, engine: Any = None) -> None:
        self.engine = engine

    def attach(self, engine: Any) -> None:
        """Bind to ``engine`` (called by MONAI when the object is in an engine's handler list)."""
        self.engine = engine

    def state_dict(self) -> dict[str, Any]:
        if self.engine is None:
            raise RuntimeError("BestMetricState is not attached to an engine.")
        return {"best_metric": float(self.engine.state.best_metric),
                "best_metric_epoch": int(self.engine.state.best_metric_epoch)}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.engine.state.best_metric = float(state["best_metric"])
        self.engine.state.best_metric_epoch = int(state["best_metric_epoch"])


def restore_best(saver: Any, best_metric_state: BestMetricState, path: str | os.PathLike | None = None) -> bool:
    """Before a resumed run: load the interrupted run's best-model tracking from its best-model file.

    Without it a resumed ``CheckpointSaver(save_key_metric=True)`` starts with an empty record, so the first
    resumed epoch would overwrite the best model even when it is worse. The saver must be built with
    ``key_metric_save_state=True`` and ``best_metric_state`` be in its ``save_dict`` (both are in the bundle's
    configs).

    Args:
        saver: the best-model saver of the resumed run.
        best_metric_state: the :class:`BestMetricState` in the saver's ``save_dict``.
        path: the best-model file; by default the one ``saver`` writes (``AtomicCheckpointSaver.key_metric_path``),
            so the file restored from cannot differ from the file saved to.

    Returns:
        ``True`` when a previous best was restored, ``False`` when there is none yet (e.g. killed before the first
        validation).

    Raises:
        ValueError: when ``path`` is not given and ``saver`` has no fixed best-model file name.
    """
    if path is None:
        path = getattr(saver, "key_metric_path", None)
        if path is None:
            raise ValueError("restore_best needs path= or an AtomicCheckpointSaver with key_metric_filename set.")
    if not os.path.isfile(path):
        return False
    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "checkpointer" not in ckpt or "best_metric_state" not in ckpt:
        logger.warning("%s has no best-model tracking (older checkpoint): the best model restarts from scratch.", path)
        return False
    saver.load_state_dict(ckpt["checkpointer"])
    best_metric_state.load_state_dict(ckpt["best_metric_state"])
    logger.info("restored the best model record from %s: %.4f at epoch %d", path,
                ckpt["best_metric_state"]["best_metric"], ckpt["best_metric_state"]["best_metric_epoch"])  # fmt: skip
    return True
