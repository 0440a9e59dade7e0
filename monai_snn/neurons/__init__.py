"""Spiking neurons and surrogate gradients."""

from __future__ import annotations

from monai_snn.neurons.neuron import IFNeuron, LIFNeuron, MultiThresholdNeuron, SpikingNeuron
from monai_snn.neurons.surrogate import (
    RelativeTriangleSurrogate,
    SigmoidSurrogate,
    Surrogate,
    TriangleSurrogate,
    surrogate_from_name,
)
from monai_snn.neurons.utils import NEURON_TYPES, make_neuron, reset_states, spiking_neurons
