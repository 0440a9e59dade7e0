"""Whole-network helpers for spiking neurons: reset, find, build by name.

:data:`NEURONS` maps names to neuron factories (a :class:`~monai_snn.neurons.SpikingNeuron` subclass or a function
returning one, called with the keyword arguments of :func:`make_neuron`); ``convert_to_snn(neuron=...)`` and
``spiking_from_scratch(neuron=...)`` look names up there. Registering one is one line::

    NEURONS["signed_if"] = functools.partial(IFNeuron, signed=True)
    snn = convert_to_snn(ann, None, normalization="none", neuron="signed_if")
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

from torch import nn

from monai_snn.neurons.multi_level import MultiLevelNeuron, rate_matched_multi_level
from monai_snn.neurons.neuron import IFNeuron, LIFNeuron, MultiThresholdNeuron, SpikingNeuron
from monai_snn.neurons.real_spike import RealSpikeNeuron
from monai_snn.neurons.registry import look_up
from monai_snn.neurons.temporal import TimeStepped

__all__ = ["reset_states", "spiking_neurons", "make_neuron", "NEURONS", "NEURON_TYPES"]

NEURONS: dict[str, Callable[..., SpikingNeuron]] = {
    "if": IFNeuron,
    "multi_threshold": MultiThresholdNeuron,
    "lif": LIFNeuron,
    "multi_level": MultiLevelNeuron,
    "multi_level_rate": rate_matched_multi_level,
    "real_spike": RealSpikeNeuron,
}
NEURON_TYPES = NEURONS  # former name, same dict


def reset_states(network: nn.Module) -> None:
    """Reset the state of every spiking neuron and other time-stepped layer in ``network`` (before each sample).

    Example::

        reset_states(snn)
    """
    for m in network.modules():
        if isinstance(m, TimeStepped):
            m.reset()


def spiking_neurons(network: nn.Module) -> Iterator[tuple[str, SpikingNeuron]]:
    """Yield ``(name, neuron)`` for every spiking neuron layer of ``network``."""
    for name, m in network.named_modules():
        if isinstance(m, SpikingNeuron):
            yield name, m


def make_neuron(name: str, **kwargs) -> SpikingNeuron:
    """Build a neuron layer by its :data:`NEURONS` name (``"if"``, ``"multi_threshold"``, ``"lif"``,
    ``"multi_level"``, ``"multi_level_rate"``, ``"real_spike"``) or any registered one.

    Args:
        name: neuron type.
        kwargs: forwarded to the factory; ``thresholds`` is dropped for IF neurons (one threshold by definition).

    Raises:
        ValueError: unknown name (MONAI's ``look_up_option`` message: the closest name and all valid ones).

    Example::

        make_neuron("multi_threshold", thresholds=(2.0, 1.0, 0.5, 0.25), initial_potential=0.5)
        make_neuron("lif", leak=0.9)
    """
    factory = look_up("neuron", name, NEURONS)
    cls = factory.func if isinstance(factory, functools.partial) else factory
    if isinstance(cls, type) and issubclass(cls, IFNeuron):
        kwargs.pop("thresholds", None)
    return factory(**kwargs)
