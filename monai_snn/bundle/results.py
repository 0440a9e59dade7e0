# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Result files of a bundle stage: atomic JSON, the machine a result was measured on, the exported SNN."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

__all__ = ["write_json", "read_result", "machine_info", "export_snn", "as_number", "portable_path", "resolve_path"]


def write_json(path: str | os.PathLike, data: Any) -> str:
    """Write ``data`` as indented JSON, atomically (a kill leaves the old file or the new one), creating folders.

    Example::

        write_json("runs/x/metrics.json", {"ann": {"dice": 0.87}})
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
    return str(path)


def read_result(path: str | os.PathLike) -> dict[str, Any]:
    """A stage's result JSON (``metrics.json``, ``done.json``, settings), for the tools that read finished runs.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message says to run the fold's stages first).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the fold's stages first (monai_snn.apps.cross_validation).")
    return json.loads(path.read_text())


def portable_path(path: str | os.PathLike) -> str:
    """A path as result files store it: ``$MONAI_SNN_DATA/...`` under the data folder, else relative to the working
    folder (the repository root when run as documented), else absolute.

    Result JSONs (``metrics.json``) are kept in the repository as documentation: paths of this machine in them would
    mean nothing elsewhere. :func:`resolve_path` turns the stored form back into a usable path.

    Example::

        portable_path(Path.cwd() / "runs/em/fold0/convert/snn_converted.pt")  # -> "runs/em/fold0/convert/..."
    """
    from monai_snn.bundle.inputs import default_data_dir

    p = Path(path).expanduser().resolve()
    for base, prefix in ((default_data_dir().resolve(), "$MONAI_SNN_DATA"), (Path.cwd().resolve(), None)):
        try:
            rel = p.relative_to(base).as_posix()
        except ValueError:
            continue
        return f"{prefix}/{rel}" if prefix else rel
    return str(p)


def resolve_path(stored: str | os.PathLike) -> Path:
    """The usable path of a :func:`portable_path` (``$MONAI_SNN_DATA`` expanded, default ``../shared/data``).

    Example::

        resolve_path("$MONAI_SNN_DATA/DRIVE")  # -> ../shared/data/DRIVE unless MONAI_SNN_DATA is set
    """
    from monai_snn.bundle.inputs import default_data_dir

    text = str(stored)
    if text.startswith("$MONAI_SNN_DATA"):
        return Path(str(default_data_dir()) + text[len("$MONAI_SNN_DATA"):])
    return Path(os.path.expandvars(text))


def machine_info() -> dict[str, Any]:
    """Platform, processor, CPU count, torch threads, torch / MONAI versions and CUDA availability."""
    import monai

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "cuda": torch.cuda.is_available(),
    }


def as_number(value: Any) -> Any:
    """A metric value as a plain float (one-element tensors / arrays) or a list of floats; other values unchanged."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else [float(v) for v in value.flatten()]
    if hasattr(value, "item") and getattr(value, "size", 2) == 1:
        return float(value.item())
    return value


def export_snn(
    snn: torch.nn.Module,
    best_checkpoint: str | os.PathLike,
    path: str | os.PathLike,
    settings: dict[str, Any],
    best_metric: float | None = None,
    best_epoch: int | None = None,
) -> str:
    """Save the best fine-tuned weights as plain weights + settings JSON, with a ``metrics.json`` beside them.

    The weights come from ``best_checkpoint`` (the best-model file of the fine-tuning stage) when it exists, else
    from ``snn`` as it is. The settings get ``best_val_metric`` and ``best_epoch``.

    Args:
        snn: the fine-tuned spiking network.
        best_checkpoint: the best-model checkpoint (``{"network": state_dict, ...}``).
        path: the ``.pt`` file to write (settings go to the ``.json`` next to it).
        settings: the SNN settings (see :func:`monai_snn.conversion.snn_settings`).
        best_metric: the best validation value of the key metric.
        best_epoch: the epoch it was reached.

    Example::

        export_snn(snn, "ckpt/best_snn.pt", "finetune/snn_finetuned.pt", settings, 0.87, 3)
    """
    from monai_snn.conversion.io import save_snn
    from monai_snn.handlers.checkpoint import load_weights

    if os.path.isfile(best_checkpoint):
        load_weights(snn, best_checkpoint)
    settings = dict(settings, best_val_metric=best_metric, best_epoch=best_epoch)
    save_snn(snn.cpu(), path, settings)
    write_json(Path(path).parent / "metrics.json",
               {"best_val_metric": best_metric, "best_epoch": best_epoch, "settings": settings})  # fmt: skip
    return str(path)
