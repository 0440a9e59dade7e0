# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Activity regularization: a task loss plus a penalty on the spikes a network will fire."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["ActivityRegularizedLoss", "activity_layers"]


def activity_layers(network: nn.Module) -> list[nn.Module]:
    """The layers of ``network`` that report their activity: spiking neurons and QCFS activations."""
    return [m for m in network.modules() if hasattr(m, "track_activity") and hasattr(m, "activity")]


class ActivityRegularizedLoss(nn.Module):
    """``loss(input, target) + weight * activity``: the task loss plus the mean activity of ``network``.

    The activity is the output of every spiking layer per neuron and time step in units of its smallest level,
    averaged over all neurons of the network (all layers pooled, batch included): for an IF neuron, its firing
    rate; for a multi-threshold neuron, an upper bound of its spikes that weighs the large levels more (an L1
    penalty on the quantized output). It is measured where the network computes it and is differentiable there:

    * a QCFS ANN (quantization-aware training): each activation's quantized output (straight-through), which is
      what the converted neuron emits at the design ``T`` (exact at ``T = 1``);
    * spiking-flow fine-tuning: each neuron's measured rate (straight-through gradient at its input current);
    * BPTT: each neuron's output at every step (surrogate gradients).

    Energy is spikes x fan-out, so penalizing spikes is the lever the field uses to make an SNN cheap without a
    shorter simulation (Kim et al.; Esser et al. 2016). The last measured activity is kept in ``last_activity``
    (a float) for logging.

    Args:
        loss: the task loss on the network's output and the labels (any MONAI / torch loss).
        network: the network whose layers are measured: a ``ConvertibleUNet`` with QCFS activations or a
            :class:`~monai_snn.networks.SpikingSimulator`; the loss turns their measurement on.
        weight: penalty weight (>= 0; ``0`` measures without penalizing).

    Raises:
        ValueError: ``weight`` negative or not finite, or ``network`` has no layer that reports activity (a ReLU
            ANN: train it with ``act=("qcfs", {...})``, or regularize the converted SNN).
        RuntimeError: in ``forward``, no activity was recorded since the last call (the loss must follow a forward
            pass of ``network`` with gradients enabled).

    Example::

        net = ConvertibleUNet(2, 1, 1, act=("qcfs", {"design_steps": 2}))
        loss = ActivityRegularizedLoss(monai.losses.DiceLoss(sigmoid=True), net, weight=0.05)
        loss(net(images), labels).backward()
    """

    def __init__(self, loss: Callable, network: nn.Module, weight: float = 0.0) -> None:
        super().__init__()
        if isinstance(weight, bool) or not (math.isfinite(float(weight)) and float(weight) >= 0):
            raise ValueError(f"activity weight must be a finite number >= 0, got {weight!r}.")
        layers = activity_layers(network)
        if not layers:
            raise ValueError(
                f"{type(network).__name__} has no layer that reports its activity (spiking neurons or QCFS "
                "activations); a ReLU ANN has no spikes to penalize: train it with act=('qcfs', {...}) or "
                "regularize the converted SNN in fine-tuning."
            )
        self.loss = loss
        self.weight = float(weight)
        self._layers = layers  # a plain list: the network is not a submodule of the loss
        for m in layers:
            m.track_activity = True
        self.last_activity: float | None = None

    def activity(self) -> torch.Tensor:
        """Mean activity over all neurons of the last forward pass (consumes the recorded values)."""
        acts = [m.activity for m in self._layers if m.activity is not None]
        for m in self._layers:
            m.activity = None
        if not acts:
            raise RuntimeError(
                "ActivityRegularizedLoss: no activity was recorded; call the loss after a forward pass of the "
                "network it was built with (flow, BPTT or a QCFS ANN, gradients enabled)."
            )
        total = torch.stack([a.sum() for a in acts]).sum()
        return total / sum(a.numel() for a in acts)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        base = self.loss(input, target)
        activity = self.activity()
        self.last_activity = float(activity.detach())
        return base + self.weight * activity if self.weight > 0 else base

    def extra_repr(self) -> str:
        return f"weight={self.weight}, layers={len(self._layers)}"
