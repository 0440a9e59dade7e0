# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Select a bundle's shipped model by name: ``--network ann|converted|finetuned``.

A bundle lists its models in a config mapping, name -> weights file; each file has its settings next to it
(``<stem>.json``). Settings with ``architecture`` (a directly trained network such as Spiking-FCN) rebuild it with
:func:`monai_snn.networks.make_network`; SNN settings (they hold ``neuron``, written by
:func:`monai_snn.conversion.save_snn`) rebuild the converted spiking network with
:func:`monai_snn.conversion.build_snn`; other files are ANN state dicts for ``network_def``.

Example (a bundle config)::

    "models": {"ann": "$os.path.join(@models_dir, 'ann.pt')",
               "converted": "$os.path.join(@models_dir, 'converted.pt')",
               "finetuned": "$os.path.join(@models_dir, 'model.pt')"},
    "network": "finetuned",
    "model": "$monai_snn.bundle.load_model(@network, @models, @network_def)"
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from monai.utils import look_up_option

__all__ = ["load_model", "model_kind"]


def _settings(path: Path) -> dict:
    js = path.with_suffix(".json")
    return json.loads(js.read_text()) if js.is_file() else {}


def model_kind(path: str | os.PathLike) -> str:
    """``"snn"`` when the settings next to ``path`` describe a spiking network (they hold ``neuron``), else ``"ann"``."""
    return "snn" if "neuron" in _settings(Path(path)) else "ann"


def load_model(
    name: str,
    models: Mapping[str, str | os.PathLike],
    network_def: torch.nn.Module,
    num_steps: int | None = None,
) -> torch.nn.Module:
    """The model ``name`` of ``models`` in eval mode: the ANN with its weights, or the rebuilt SNN.

    Args:
        name: one of ``models``' names (e.g. ``"ann"``, ``"converted"``, ``"finetuned"``).
        models: name -> weights file (settings in ``<stem>.json`` next to it).
        network_def: the ANN architecture (copied, never modified).
        num_steps: simulation length ``T`` of an SNN (``None``: the ``num_steps`` stored in its settings).

    Raises:
        ValueError: an unknown ``name`` (the message lists the valid names and a close match), or ``num_steps``
            given for an ANN.
        FileNotFoundError: the weights file does not exist.

    Example::

        snn = load_model("finetuned", {"ann": "models/ann.pt", "finetuned": "models/model.pt"}, ConvertibleUNet(...))
        snn.num_steps  # the T it was shipped with
    """
    from monai_snn.conversion.io import build_snn
    from monai_snn.handlers.checkpoint import load_weights

    path = Path(look_up_option(name, dict(models)))
    if not path.is_file():
        raise FileNotFoundError(f"weights of the {name!r} model not found: {path} (ship or train it first).")
    settings = _settings(path)
    if "architecture" in settings:  # a directly trained network (e.g. Spiking-FCN): rebuilt from its settings
        from monai_snn.networks.segmentation import make_network

        net = load_weights(make_network(settings["architecture"], **settings.get("kwargs", {})), path)
        if num_steps is not None:
            net.num_steps = int(num_steps)
        return net.eval()
    net = copy.deepcopy(network_def)
    if model_kind(path) == "snn":
        snn = build_snn(net, path)
        if num_steps is not None:
            snn.num_steps = int(num_steps)
        return snn.eval()
    if num_steps is not None:
        raise ValueError(f"num_steps={num_steps} was given for the {name!r} model, which is an ANN (no time steps).")
    return load_weights(net, path)
