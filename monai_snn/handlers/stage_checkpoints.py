# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""``StageCheckpoints``: every checkpoint of a resumable training stage (latest state, resume, best model),
attached to the trainer and its validator in one call."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from monai.handlers import CheckpointLoader

from monai_snn.handlers.checkpoint import AtomicCheckpointSaver, BestMetricState, latest_checkpoint, restore_best

__all__ = ["StageCheckpoints"]


class StageCheckpoints:
    """The checkpoints of a training stage that a kill never costs more than one epoch of.

    One object does what a bundle config otherwise spells out in five components (a ``CheckpointLoader``, two
    savers, the best-metric record and the resume calls), identically in every training stage of every bundle:

    - **resume**: when ``ckpt_dir`` holds a complete ``{prefix}*.pt`` (:func:`latest_checkpoint`), a MONAI
      ``CheckpointLoader`` restores ``state`` from it when the trainer starts, and the best-model record of the
      interrupted run is restored (:func:`restore_best`), so a resumed run continues exactly and keeps its best model;
    - **latest**: ``state`` is saved every ``save_interval`` epochs to ``{prefix}_*.pt`` (atomically, the previous
      file removed only after the new one is complete: :class:`AtomicCheckpointSaver`);
    - **best**: ``best`` (and the record of the best metric, :class:`BestMetricState`) is saved to ``best_filename``
      each time the validator's key metric improves.

    Args:
        ckpt_dir: folder of the checkpoints (created if missing).
        state: the objects a resumed run needs, saved every ``save_interval`` epochs and loaded back on restart,
            e.g. ``{"network": net, "optimizer": opt, "trainer": trainer, "lr_scheduler": sched, "rng_state":
            RandomState(...)}``. The keys are the checkpoint's keys: keep them stable so older runs still resume.
        best: what the best-model file holds (typically ``{"network": net}``); ``None`` saves no best model.
        best_filename: file name of the best model in ``ckpt_dir`` (what the next stage loads).
        save_interval: epochs between two latest checkpoints.
        prefix: file-name prefix of the latest checkpoints.
        save: ``False`` to only resume, never write (ranks > 0 of a distributed run: :meth:`attach` must still be
            called on every rank).

    Raises:
        ValueError: ``state`` is empty or ``save_interval`` is not positive.

    Example::

        checkpoints = StageCheckpoints("runs/x/ckpt", state={"network": net, "optimizer": opt, "trainer": trainer},
                                       best={"network": net})
        checkpoints.attach(trainer, evaluator)
        trainer.run()
    """

    def __init__(
        self,
        ckpt_dir: str | os.PathLike,
        state: Mapping[str, Any],
        best: Mapping[str, Any] | None = None,
        best_filename: str = "best_model.pt",
        save_interval: int = 1,
        prefix: str = "latest",
        save: bool = True,
    ) -> None:
        if not state:
            raise ValueError("StageCheckpoints needs a non-empty state= (the objects a resumed run loads back).")
        if int(save_interval) < 1:
            raise ValueError(f"save_interval must be a positive number of epochs, got {save_interval}.")
        self.ckpt_dir = str(ckpt_dir)
        self.state = dict(state)
        self.best = dict(best) if best else None
        self.best_filename = best_filename
        self.save_interval = int(save_interval)
        self.prefix = prefix
        self.save = bool(save)
        os.makedirs(self.ckpt_dir, exist_ok=True)
        self.resume_path = latest_checkpoint(self.ckpt_dir, prefix)
        self.best_metric_state: BestMetricState | None = None
        self.best_saver: AtomicCheckpointSaver | None = None
        self.latest_saver: AtomicCheckpointSaver | None = None

    @property
    def best_path(self) -> str:
        """Path of the best-model file."""
        return os.path.join(self.ckpt_dir, self.best_filename)

    def attach(self, trainer: Any, validator: Any = None) -> None:
        """Attach the resume loader and the latest saver to ``trainer``, the best-model saver to ``validator``.

        Call it once, before ``trainer.run()``. Without a ``validator`` (or without ``best``) no best model is saved.
        """
        if self.resume_path:
            CheckpointLoader(load_path=self.resume_path, load_dict=self.state, map_location="cpu").attach(trainer)
        # built on every rank, attached on the saving one only: ignite's Checkpoint sets up its distributed
        # context (a collective call) when it is built, so a rank that skipped it would leave the others waiting
        if validator is not None and self.best is not None:
            self.best_metric_state = BestMetricState(validator)
            self.best_saver = AtomicCheckpointSaver(
                save_dir=self.ckpt_dir,
                save_dict={**self.best, "best_metric_state": self.best_metric_state},
                save_key_metric=True,
                key_metric_filename=self.best_filename,
                key_metric_save_state=True,
            )
        self.latest_saver = AtomicCheckpointSaver(
            save_dir=self.ckpt_dir,
            save_dict=self.state,
            save_interval=self.save_interval,
            n_saved=1,
            file_prefix=self.prefix,
        )
        if not self.save:
            return
        if self.best_saver is not None:
            self.best_saver.attach(validator)
            if self.resume_path:
                restore_best(self.best_saver, self.best_metric_state)  # type: ignore[arg-type]
        self.latest_saver.attach(trainer)
