# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""``RandomState``: every random-number generator a training run draws from, as a checkpointable object."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["RandomState"]


def _randomizables(transforms: Any) -> list[Any]:
    """Every MONAI ``Randomizable`` reachable from ``transforms`` (a transform, a ``Compose`` or a list), depth
    first, including those held inside other transforms (e.g. the cropper of ``RandSpatialCropd``)."""
    from monai.transforms import Randomizable, Transform

    out: list[Any] = []
    seen: set[int] = set()
    stack = [transforms]
    while stack:
        t = stack.pop()
        if t is None or id(t) in seen:
            continue
        seen.add(id(t))
        if isinstance(t, (list, tuple)):
            stack.extend(reversed(t))
            continue
        if isinstance(t, Randomizable):
            out.append(t)
        if isinstance(t, (Transform, Randomizable)):
            members = [v for v in vars(t).values() if isinstance(v, (Transform, Randomizable, list, tuple))]
            stack.extend(reversed(members))
    return out


def _np_state(state: tuple) -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = state
    return {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}  # fmt: skip


def _np_tuple(state: dict[str, Any]) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return state["name"], keys, state["pos"], state["has_gauss"], state["gauss"]


class RandomState:
    """The state of the random-number generators of a run, to save in a checkpoint and restore on resume.

    A resumed run equals the uninterrupted one only when it continues every random stream where the killed run
    left it: shuffling (the ``DataLoader`` sampler draws its seed from torch's global generator), dropout and
    Poisson input (torch), and whatever draws from numpy or Python's ``random``. MONAI's ``set_determinism`` only
    fixes the streams at the start. Put this object in the ``save_dict`` of the latest-checkpoint saver and in the
    ``load_dict`` of ``monai.handlers.CheckpointLoader``: the loader restores it at ``Events.STARTED``, after the
    network was built and before the first batch is drawn. Only tensors and numbers are stored, so the loader's
    ``torch.load(weights_only=True)`` reads it.

    Args:
        transforms: optional MONAI transforms (a ``Compose`` or a list) whose ``Randomizable`` members keep their own
            numpy generator (``self.R``) in the main process; their states are saved too. With ``num_workers > 0``
            MONAI reseeds them in every worker from torch's generator, which is already covered.

    Example::

        rng = RandomState()
        saver = AtomicCheckpointSaver("ckpt", {"network": net, "optimizer": opt, "trainer": trainer, "rng": rng},
                                      save_interval=1, n_saved=1, file_prefix="latest")
        loader = CheckpointLoader(path, {"network": net, "optimizer": opt, "trainer": trainer, "rng": rng})
    """

    def __init__(self, transforms: Any = None) -> None:
        self.transforms = transforms

    def _members(self) -> list[Any]:
        return _randomizables(self.transforms)

    def state_dict(self) -> dict[str, Any]:
        """The current state of torch (CPU and every CUDA device), numpy, Python ``random`` and the transforms."""
        version, internal, gauss = random.getstate()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": _np_state(np.random.get_state()),
            "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                       "gauss": gauss},  # fmt: skip
            "transforms": [_np_state(t.R.get_state()) for t in self._members()],
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generators saved by :meth:`state_dict`.

        Raises:
            ValueError: when the checkpoint holds a different number of random transforms than ``transforms``
                (the transform chain changed since the checkpoint was written).
        """
        torch.set_rng_state(state["torch"])
        np.random.set_state(_np_tuple(state["numpy"]))
        py = state["python"]
        random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
        members = self._members()
        if len(members) != len(state["transforms"]):
            raise ValueError(
                f"the checkpoint holds the random state of {len(state['transforms'])} random transforms but the "
                f"transform chain has {len(members)}: the chain changed since the checkpoint was written; resume "
                "with the same configuration or start the stage afresh."
            )
        for t, s in zip(members, state["transforms"]):
            t.R.set_state(_np_tuple(s))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

