"""Losses: activity regularization of spiking networks and quantization-aware ANNs."""

from __future__ import annotations

from monai_snn.losses.activity import ActivityRegularizedLoss, activity_layers

__all__ = ["ActivityRegularizedLoss", "activity_layers"]
