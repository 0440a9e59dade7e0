# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Initial weights by name, for networks trained from scratch whose activations quantize or spike.

PyTorch's default initialization of convolutions (Kaiming-uniform with ``a = sqrt(5)``, weight variance
``1 / (3 fan_in)``) shrinks the activity of every ReLU layer by a constant factor. A float ANN recovers from that;
a network whose activation has a dead zone does not: a spiking U-Net trained from scratch barely fires past its
first layers (``benchmarks/direct_init.py``), and a quantization-aware ANN (``QCFS``) rounds the small activations
of its deep layers to zero, so they pass nothing forward and their weights get no gradient from the data. He-normal
weights (fan-in, ReLU gain) keep the activity of every layer at the input's scale.
"""

from __future__ import annotations

from collections.abc import Callable

from monai.utils import look_up_option
from torch import nn

__all__ = ["WEIGHT_INITS", "init_weights"]

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


def _kaiming_init(network: nn.Module) -> None:
    """He-normal weights (fan-in, ReLU gain) and zero biases for every convolution and linear layer."""
    for module in network.modules():
        if isinstance(module, _WEIGHTED):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


WEIGHT_INITS: dict[str, Callable[[nn.Module], None]] = {"kaiming": _kaiming_init}
"""Weight initializations by name: a function that re-initializes a module in place. Registering one is one line."""


def init_weights(network: nn.Module, weight_init: str | None) -> nn.Module:
    """Re-initialize the weights of ``network`` in place by name and return it.

    Args:
        network: any module; its convolutions and linear layers are re-initialized.
        weight_init: a :data:`WEIGHT_INITS` name (``"kaiming"``: He-normal, fan-in, ReLU gain, zero biases), or
            ``None`` / ``""`` to keep the weights (PyTorch's default initialization for a fresh network).

    Returns:
        ``network``.

    Raises:
        ValueError: an unknown ``weight_init`` (the valid ones named).

    Example::

        ann = init_weights(ConvertibleUNet(2, 1, 1, act=("qcfs", {"design_steps": 2})), "kaiming")
    """
    if not weight_init:
        return network
    try:
        init = look_up_option(weight_init, WEIGHT_INITS)
    except ValueError as err:
        raise ValueError(f"weight_init={weight_init!r}: {err} (or None to keep the weights).") from None
    init(network)
    return network
