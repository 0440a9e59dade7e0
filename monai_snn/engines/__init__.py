"""Engines for spike-based fine-tuning and evaluation of spiking networks (MONAI ``SupervisedTrainer`` /
``SupervisedEvaluator`` subclasses), and the direct-training baseline."""

from __future__ import annotations

from monai_snn.engines.direct import WEIGHT_INITS, spiking_from_scratch
from monai_snn.engines.evaluator import SpikingEvaluator
from monai_snn.engines.trainer import (
    SPIKING_TRAINING_METHODS,
    NonFiniteLossError,
    SpikingForwardInferer,
    SpikingTrainer,
    check_loss_readout,
    readout_channels,
)

__all__ = [
    "SPIKING_TRAINING_METHODS",
    "WEIGHT_INITS",
    "NonFiniteLossError",
    "SpikingEvaluator",
    "SpikingForwardInferer",
    "SpikingTrainer",
    "check_loss_readout",
    "readout_channels",
    "spiking_from_scratch",
]
