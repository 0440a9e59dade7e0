"""One look-up for every name registry of the package (neurons, surrogates, encoders, normalizations).

Each registry is a public ``dict`` from a name to a factory (a class or a function), looked up with MONAI's
:func:`monai.utils.look_up_option`, so an unknown name raises its ``ValueError`` ("did you mean ...?", the valid
names), prefixed by what was looked up. The registries:

* :data:`monai_snn.neurons.NEURONS` (``"if"``, ``"multi_threshold"``, ``"lif"``, ``"multi_level"``,
  ``"multi_level_rate"``, ``"real_spike"``), built by :func:`~monai_snn.neurons.make_neuron`;
* :data:`monai_snn.neurons.SURROGATES` (``"triangle"``, ``"relative_triangle"``, ``"sigmoid"``, ``"rectangle"``),
  built by :func:`~monai_snn.neurons.make_surrogate`;
* :data:`monai_snn.encoding.ENCODERS` (``"static"``, ``"poisson_binary"``, ``"poisson_ternary"``), built by
  :func:`~monai_snn.encoding.make_encoder`;
* :data:`monai_snn.conversion.NORMALIZATIONS` (``"connection"``, ``"layer"``, ``"threshold_balancing"``,
  ``"none"``), dispatched on by :func:`~monai_snn.conversion.convert_to_snn`.

Registering a new entry is one line; the name is then accepted everywhere the registry is read (e.g.
``convert_to_snn(..., surrogate="steep_sigmoid")``).

Example::

    from monai_snn.neurons import SURROGATES, SigmoidSurrogate

    SURROGATES["steep_sigmoid"] = functools.partial(SigmoidSurrogate, alpha=10.0)
    look_up("surrogate", "steep_sigmoid", SURROGATES)()  # SigmoidSurrogate(alpha=10.0)
    look_up("surrogate", "sigmiod", SURROGATES)  # ValueError: surrogate: By 'sigmiod', did you mean 'sigmoid'? ...
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping
from typing import TypeVar

from monai.utils import look_up_option

__all__ = ["look_up"]

T = TypeVar("T")


def look_up(kind: str, name: Hashable, registry: Mapping[str, T] | Collection[str]) -> T | str:
    """``registry[name]`` through :func:`monai.utils.look_up_option`.

    Args:
        kind: what is looked up (``"neuron"``, ``"encoding"``, ...); it starts the error message.
        name: the registered name.
        registry: name -> factory (or a collection of valid names: ``name`` itself is returned).

    Raises:
        ValueError: ``name`` is not registered; the message is MONAI's (closest name, all valid names) after
            ``"{kind}: "``.

    Example::

        cls = look_up("neuron", "lif", NEURONS)  # LIFNeuron
    """
    try:
        return look_up_option(name, registry)
    except ValueError as e:
        raise ValueError(f"{kind}: {str(e).strip()}") from None
