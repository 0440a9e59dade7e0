# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""One TensorBoard writer per stage, written by rank 0 only."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["NullWriter", "stage_writer"]


class NullWriter:
    """A ``SummaryWriter`` stand-in that writes nothing (every ``add_*`` / ``flush`` / ``close`` is a no-op)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("add_") or name in ("flush", "close"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


def stage_writer(log_dir: str | os.PathLike) -> Any:
    """The stage's one TensorBoard writer: a ``SummaryWriter`` on ``log_dir`` on rank 0 (or without
    ``torch.distributed``), a :class:`NullWriter` on the other ranks, which so write no event files.

    Give it to every TensorBoard handler of the stage (``summary_writer``): one event file per stage, and a
    handler given a writer never opens its own.

    Example (a bundle config)::

        "writer": "$monai_snn.handlers.stage_writer(@stage_dir)",
        "handlers": [{"_target_": "monai.handlers.TensorBoardStatsHandler", "summary_writer": "@writer"}]
    """
    import torch.distributed as dist
    from torch.utils.tensorboard import SummaryWriter

    if dist.is_available() and dist.is_initialized() and dist.get_rank() > 0:
        return NullWriter()
    return SummaryWriter(log_dir=str(log_dir))
