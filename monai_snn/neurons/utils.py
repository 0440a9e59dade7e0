"""Whole-network helpers for spiking neurons: reset, find, build by name."""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from monai_snn.neurons.neuron import IFNeuron, LIFNeuron, MultiThresholdNeuron, SpikingNeuron

__all__ = ["reset_states", "spiking_neurons", "make_neuron", "NEURON_TYPES"]

NEURON_TYPES: dict[str, type[SpikingNeuron]] = {
    "if": IFNeuron,
    "multi_threshold": MultiThresholdNeuron,
    "lif": LIFNeuron,
}


def reset_states(network: nn.Module) -> None:
    """Reset the state of every spiking neuron in ``network`` (one call before each new sample).

    Example::

        reset_states(snn)
    """
    for m in network.modules():
        if isinstance(m, SpikingNeuron):
            m.reset()


def spiking_neurons(network: nn.Module) -> Iterator[tuple[str, SpikingNeuron]]:
    """Yield ``(name, neuron)`` for every spiking neuron layer of ``network``."""
    for name, m in network.named_modules():
        if isinstance(m, SpikingNeuron):
            yield name, m


def make_neuron(name: str, **kwargs) -> SpikingNeuron:
    """Build a neuron layer by name: ``"if"``, ``"multi_threshold"`` or ``"lif"``.

    Args:
        name: neuron type.
        kwargs: forwarded to the neuron class.

    Raises:
        ValueError: unknown name.

    Example::

        make_neuron("multi_threshold", thresholds=(2.0, 1.0, 0.5, 0.25), initial_potential=0.5)
    """
    if name not in NEURON_TYPES:
        raise ValueError(f"neuron must be one of {sorted(NEURON_TYPES)}, got {name!r}.")
    if name == "if":
        kwargs.pop("thresholds", None)
    return NEURON_TYPES[name](**kwargs)
