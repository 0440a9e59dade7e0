"""Ignite / MONAI handlers for spiking networks: firing rates and energy, logged to TensorBoard; atomic checkpoints."""

from __future__ import annotations

from monai_snn.handlers.checkpoint import AtomicCheckpointSaver
from monai_snn.handlers.energy import EnergyHandler, batch_images
from monai_snn.handlers.firing_rate import FiringRateHandler, firing_rate_figure

__all__ = ["AtomicCheckpointSaver", "EnergyHandler", "FiringRateHandler", "batch_images", "firing_rate_figure"]
