# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Saving and rebuilding converted SNNs with their settings.

An SNN is saved as its ``state_dict`` (``name.pt``) next to a settings file (``name.json``: neuron, levels,
encoding, initial potential, normalization and percentile actually used, ``num_steps``, and anything else the
caller adds). :func:`build_snn` rebuilds the SNN from the ANN architecture and the two files without calibration
data: it converts with ``normalization="none"`` (the saved weights already hold the scales) and loads the weights.

Example::

    settings = snn_settings(neuron="multi_threshold", percentile=99.0, num_steps=16)
    snn = convert_with_settings(ann, calibration_batches, settings)
    save_snn(snn, "models/snn_converted.pt", settings)            # + models/snn_converted.json
    snn = build_snn(ConvertibleUNet(2, 1, 1), "models/snn_converted.pt")
    snn.num_steps                                                 # 16
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["snn_settings", "convert_with_settings", "load_settings", "build_snn", "derived_settings", "save_snn"]


def snn_settings(
    neuron: str = "multi_threshold",
    thresholds: Sequence[float] = (2.0, 1.0, 0.5, 0.25),
    encoding: str = "static",
    initial_potential: float = 0.5,
    normalization: str = "connection",
    percentile: float = 99.9,
    num_steps: int = 16,
    leak: float = 1.0,
    **extra: Any,
) -> dict[str, Any]:
    """The conversion settings stored next to SNN weights (JSON-serialisable), plus any ``extra`` keys.

    Args:
        neuron, thresholds, encoding, initial_potential, normalization, percentile, num_steps, leak: as in
            :func:`monai_snn.conversion.convert_to_snn`.
        extra: further keys to store (network arguments, the fold, the loss, ...).
    """
    out = {
        "neuron": neuron,
        "thresholds": [float(t) for t in thresholds],
        "encoding": encoding,
        "initial_potential": float(initial_potential),
        "normalization": normalization,
        "percentile": float(percentile),
        "num_steps": int(num_steps),
        "leak": float(leak),
    }
    out.update(extra)
    return out


def convert_with_settings(ann: torch.nn.Module, calibration: Any, settings: dict[str, Any]) -> torch.nn.Module:
    """:func:`monai_snn.conversion.convert_to_snn` of ``ann`` (put in eval mode) with a settings dict."""
    from monai_snn.conversion.convert import convert_to_snn

    return convert_to_snn(
        ann.eval(),
        calibration,
        normalization=settings["normalization"],
        percentile=settings["percentile"],
        neuron=settings["neuron"],
        thresholds=tuple(settings["thresholds"]),
        num_steps=int(settings["num_steps"]),
        encoding=settings["encoding"],
        initial_potential=settings["initial_potential"],
        leak=float(settings.get("leak", 1.0)),  # settings written before leak existed are non-leaky
    )


def load_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The settings file of an SNN.

    Raises:
        FileNotFoundError: naming the file and that the stage writing it must run first.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SNN settings file not found: {path} (run the stage that writes it first).")
    return json.loads(path.read_text())


def build_snn(
    ann: torch.nn.Module, weights: str | os.PathLike, settings: dict[str, Any] | str | os.PathLike | None = None
) -> torch.nn.Module:
    """Rebuild a saved SNN: convert ``ann`` (its architecture) without normalization, then load ``weights``.

    Args:
        ann: an ANN of the same architecture (its weights are not used).
        weights: the SNN ``state_dict`` file.
        settings: a settings dict or JSON path; by default ``<weights stem>.json`` next to the weights.

    Raises:
        FileNotFoundError: the weights or the settings file does not exist.
    """
    from monai_snn.handlers.checkpoint import load_weights

    if settings is None or isinstance(settings, (str, os.PathLike)):
        settings = load_settings(Path(settings) if settings else Path(weights).with_suffix(".json"))
    snn = convert_with_settings(ann, None, dict(settings, normalization="none"))
    return load_weights(snn, weights)


def derived_settings(source_weights: str | os.PathLike, **changes: Any) -> dict[str, Any]:
    """Settings of an SNN derived from a saved one (e.g. fine-tuned from the converted SNN): those stored with
    ``source_weights`` (the conversion actually used, such as the percentile chosen on validation) updated with
    ``changes`` (``num_steps``, ``method``, ...)."""
    return dict(load_settings(Path(source_weights).with_suffix(".json")), **changes)


def save_snn(snn: torch.nn.Module, path: str | os.PathLike, settings: dict[str, Any]) -> str:
    """Save the SNN weights to ``path`` and ``settings`` to ``<path stem>.json`` (both written atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(snn.state_dict(), str(tmp))
    os.replace(tmp, path)
    js = path.with_suffix(".json")
    tmp_js = js.with_suffix(".json.tmp")
    tmp_js.write_text(json.dumps(settings, indent=2, default=str))
    os.replace(tmp_js, js)
    return str(path)
