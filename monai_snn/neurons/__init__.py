"""Spiking neurons and surrogate gradients."""

from __future__ import annotations

from monai_snn.neurons.fused import eager_updates, set_fused_update
from monai_snn.neurons.multi_level import MultiLevelNeuron, rate_matched_multi_level
from monai_snn.neurons.neuron import IFNeuron, LIFNeuron, MultiThresholdNeuron, SpikingNeuron
from monai_snn.neurons.real_spike import RealSpikeNeuron, fold_real_spikes
from monai_snn.neurons.registry import look_up
from monai_snn.neurons.surrogate import (
    SURROGATES,
    RectangleSurrogate,
    RelativeTriangleSurrogate,
    SigmoidSurrogate,
    Surrogate,
    TriangleSurrogate,
    make_surrogate,
    surrogate_from_name,
)
from monai_snn.neurons.temporal import BatchNormThroughTime, TimeStepped
from monai_snn.neurons.utils import NEURON_TYPES, NEURONS, make_neuron, reset_states, spiking_neurons
