"""Ignite / MONAI handlers for spiking networks: firing rates and energy, logged to TensorBoard; atomic checkpoints,
the resume helpers (latest checkpoint, best-model record) and random-number-generator state for exact resumes, and all of them for one training stage (``StageCheckpoints``)."""

from __future__ import annotations

from monai_snn.handlers.checkpoint import (
    AtomicCheckpointSaver,
    BestMetricState,
    latest_checkpoint,
    load_weights,
    read_state_dict,
    restore_best,
)
from monai_snn.handlers.energy import EnergyHandler, batch_images
from monai_snn.handlers.firing_rate import FiringRateHandler, firing_rate_figure
from monai_snn.handlers.random_state import RandomState
from monai_snn.handlers.stage_checkpoints import StageCheckpoints
from monai_snn.handlers.writer import NullWriter, stage_writer

__all__ = [
    "AtomicCheckpointSaver",
    "BestMetricState",
    "EnergyHandler",
    "FiringRateHandler",
    "NullWriter",
    "RandomState",
    "StageCheckpoints",
    "batch_images",
    "firing_rate_figure",
    "latest_checkpoint",
    "load_weights",
    "read_state_dict",
    "restore_best",
    "stage_writer",
]
