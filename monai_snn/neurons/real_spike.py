"""Real-spike (RS) neuron of Guo et al. (ECCV 2022), a directly trained baseline of the Spiking-UNet paper.

What was implemented (from "Real Spike: Learning Real-valued Spikes for Spiking Neural Networks", Guo, Zhang, Chen,
Tong, Liu, Wang, Huang, Ma, ECCV 2022): training-inference decoupling. In training a spiking layer emits
real-valued spikes ``a_c * s[t]``, its binary spikes ``s[t]`` times a learnable amplitude ``a_c`` per channel (the
paper's channel-wise variant, which it recommends; initialised to 1); at inference the amplitudes are folded into
the weights of the next layer (``W'[:, c] = a_c * W[:, c]``, the paper's re-parameterisation), so the deployed
network sends binary spikes only and computes exactly the same. :func:`fold_real_spikes` does that folding on a
network built by :func:`~monai_snn.conversion.convert_to_snn` / :func:`~monai_snn.engines.spiking_from_scratch`.

The membrane is the package's (leaky) integrate-and-fire neuron with soft reset (``leak``, ``v_threshold``); the
paper trains LIF neurons whose exact decay and reset differ between its experiments, and the re-parameterisation
does not depend on them. Not implemented: the layer-wise and element-wise amplitude variants.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from monai_snn.neurons.neuron import SpikingNeuron

__all__ = ["RealSpikeNeuron", "fold_real_spikes"]


class RealSpikeNeuron(SpikingNeuron):
    """Integrate-and-fire neuron whose spikes carry a learnable amplitude per channel (training) or 1 (folded).

    Args:
        num_channels: channels of the layer (the amplitudes ``a_c``); the input is ``[B, C, *spatial]``.
        v_threshold: firing threshold.
        leak: membrane decay per step (``1.0``: IF).
        kwargs: see :class:`SpikingNeuron` (one threshold; ``thresholds`` is ignored).

    Raises:
        ValueError: ``num_channels`` is not a positive integer, or a :class:`SpikingNeuron` parameter is out of range.
        RuntimeError: the input's channel dimension differs from ``num_channels`` (both named).

    Example::

        rs = RealSpikeNeuron(num_channels=16, leak=0.5)
        out = rs(x)  # rs.amplitude[c] where the neuron fired, else 0
    """

    def __init__(self, num_channels: int, v_threshold: float = 1.0, leak: float = 1.0, **kwargs) -> None:
        if isinstance(num_channels, bool) or not isinstance(num_channels, int) or num_channels < 1:
            raise ValueError(f"RealSpikeNeuron: num_channels must be a positive integer, got {num_channels!r}.")
        kwargs.pop("thresholds", None)
        super().__init__(thresholds=(1.0,), v_threshold=v_threshold, leak=leak, **kwargs)
        self.num_channels = num_channels
        self.amplitude = nn.Parameter(torch.ones(num_channels))

    def _flow_from_membrane(self) -> bool:
        return False  # the output is amplitude x spikes: record it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step of the membrane (binary spikes of height ``v_threshold``), times the channel amplitudes."""
        if x.ndim < 2 or x.shape[1] != self.num_channels:
            raise RuntimeError(
                f"RealSpikeNeuron has {self.num_channels} channel amplitudes, got input of shape {tuple(x.shape)}."
            )
        return super().forward(x)

    def _output(self, spikes: torch.Tensor) -> torch.Tensor:
        """The binary spikes times the amplitude of their channel (the recorded flow is that product too)."""
        return spikes * self.amplitude.view(1, -1, *([1] * (spikes.ndim - 2)))

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}, " + super().extra_repr()


@torch.no_grad()
def fold_real_spikes(snn: nn.Module) -> int:
    """Re-parameterise every :class:`RealSpikeNeuron` of ``snn``: amplitudes into the next layers' weights, then 1.

    Uses the ``synapse_inputs`` map that :func:`~monai_snn.conversion.convert_to_snn` stores in ``snn.metadata``
    (which input channels of each convolution come from which spiking layer, through pooling, upsampling and
    concatenation), so it also handles the U-Net's skip connections. The network's output does not change.

    Args:
        snn: a :class:`~monai_snn.networks.SpikingSimulator` built by ``convert_to_snn`` / ``spiking_from_scratch``.

    Returns:
        the number of folded neuron layers.

    Raises:
        ValueError: ``snn`` has real-spike neurons but no ``synapse_inputs`` metadata, or a neuron feeds no
            convolution (named).

    Example::

        n = fold_real_spikes(snn)  # the network now sends binary spikes; outputs unchanged
    """
    network = getattr(snn, "network", snn)
    neurons = {n: m for n, m in network.named_modules() if isinstance(m, RealSpikeNeuron)}
    if not neurons:
        return 0
    inputs: Mapping[str, Any] | None = getattr(snn, "metadata", {}).get("synapse_inputs")
    if not inputs:
        raise ValueError(
            "fold_real_spikes needs snn.metadata['synapse_inputs'] (written by monai_snn.conversion.convert_to_snn); "
            "build the network with convert_to_snn or spiking_from_scratch."
        )
    fed: set[str] = set()
    for synapse, blocks in inputs.items():
        conv = network.get_submodule(synapse)
        for start, size, source in blocks:
            if source not in neurons:
                continue
            amp = neurons[source].amplitude
            # input channels are dim 1 of a convolution's weight, dim 0 of a transposed convolution's
            dim = 0 if isinstance(conv, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) else 1
            w = conv.weight.narrow(dim, start, size)
            shape = [1] * conv.weight.ndim
            shape[dim] = size
            w.mul_(amp.view(shape).to(w.dtype))
            fed.add(source)
    missing = sorted(set(neurons) - fed)
    if missing:
        raise ValueError(f"fold_real_spikes: real-spike layer(s) {missing} feed no convolution; cannot fold them.")
    for m in neurons.values():
        m.amplitude.fill_(1.0)
    return len(neurons)
