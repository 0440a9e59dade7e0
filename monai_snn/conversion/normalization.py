"""Weight normalization for ANN->SNN conversion: layer-wise, connection-wise, threshold balancing.

Every spiking layer ends up with unit base threshold; its scale is folded into the weights:

* the synaptic layer that drives neuron layer ``l`` gets ``W, b / lambda_l``;
* each block of input channels coming from neuron layer ``p`` gets ``W[:, block] * lambda_in(p)``.

``"connection"`` uses ``lambda_in(p) = lambda_p`` for every part of a concatenation (Spiking-UNet's
connection-wise normalization), so each skip connection keeps its own scale and the SNN is invariant to
function-preserving rescalings of the ANN. ``"layer"`` uses one scale for the whole concatenated input (the
percentile of the concatenation), the layer-wise baseline. ``"clip"`` reads each scale from the learnt clipping level
of the ANN's :class:`~monai_snn.networks.QCFS` activations (quantization-aware training: no calibration data, no
percentile) and scales like ``"connection"``. ``"threshold_balancing"`` sets ``lambda_l`` layer
by layer from the input currents of the spiking network itself (spike-norm, Sengupta et al. 2019), and scales
consumers like ``"connection"`` does, so the readout stays in the ANN's units. ``"none"`` copies the weights
unchanged.

:data:`NORMALIZATIONS` maps each name to a :class:`Normalization`, which says what
:func:`~monai_snn.conversion.convert_to_snn` runs: ``ann(graph, batches, percentile)`` on the traced ANN before its
ReLUs become neurons, and / or ``snn(snn, graph, batches, percentile, num_steps)`` on the built spiking network;
each folds its scales into the weights and returns them (neuron node -> scale). Registering one is one line::

    NORMALIZATIONS["connection_max"] = Normalization(ann=lambda graph, batches, _: connection_wise(graph, batches, 100))
    snn = convert_to_snn(ann, calibration, normalization="connection_max")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from monai_snn.conversion.graph import ConversionGraph
from monai_snn.conversion.statistics import ActivationStatistics, robust_percentile
from monai_snn.neurons.registry import look_up

__all__ = [
    "NORMALIZATIONS",
    "Normalization",
    "connection_wise",
    "layer_wise",
    "scale_input_block",
    "scale_output",
    "apply_normalization",
    "clip_levels",
    "threshold_balance",
]


def _in_dim(module: nn.Module) -> int:
    return 0 if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) else 1


@torch.no_grad()
def scale_input_block(module: nn.Module, start: int, size: int, factor: float) -> None:
    """Multiply the weights of input channels ``start:start+size`` of a (transposed) convolution by ``factor``."""
    module.weight.narrow(_in_dim(module), start, size).mul_(factor)


@torch.no_grad()
def scale_output(module: nn.Module, factor: float) -> None:
    """Divide all weights and the bias of a (transposed) convolution by ``factor``."""
    module.weight.div_(factor)
    if module.bias is not None:
        module.bias.div_(factor)


def apply_normalization(
    graph: ConversionGraph, lambdas: dict[str, float], mode: str, cat_lambdas: dict[str, float] | None = None
) -> None:
    """Fold per-layer scales into the weights of ``graph.module`` (in place).

    Args:
        graph: the traced ANN with resolved input blocks.
        lambdas: neuron node -> activation scale (e.g. 99.9th percentile of its ReLU output).
        mode: ``"connection"`` or ``"layer"``.
        cat_lambdas: concatenation node -> scale of the whole concatenation (``"layer"`` only).

    Raises:
        ValueError: ``mode`` is neither ``"connection"`` nor ``"layer"``.
    """
    look_up("mode", mode, ("connection", "layer"))
    for syn in graph.synapse_nodes():
        module = graph.synapse_module(syn)
        for block in graph.input_channels[syn]:
            if mode == "layer" and block.via_cat is not None:
                lam_in = cat_lambdas[block.via_cat]
            else:
                lam_in = 1.0 if block.source is None else lambdas[block.source]
            scale_input_block(module, block.start, block.size, lam_in)
        out = graph.synapse_out[syn]
        scale_output(module, 1.0 if out is None else lambdas[out])


def _activation_normalization(
    graph: ConversionGraph, batches: Sequence[torch.Tensor], percentile: float, mode: str
) -> dict[str, float]:
    """Scales from the ANN's activation percentiles (and, layer-wise, of its concatenations), folded in place."""
    cats = [n for n, k in graph.kinds.items() if k == "cat"] if mode == "layer" else []
    stats = ActivationStatistics(graph.module, graph.neuron_nodes() + cats).collect(batches)
    all_lambdas = stats.percentile(percentile)
    lambdas = {n: all_lambdas[n] for n in graph.neuron_nodes()}
    apply_normalization(graph, lambdas, mode, {c: all_lambdas[c] for c in cats})
    return lambdas


def connection_wise(graph: ConversionGraph, batches: Sequence[torch.Tensor], percentile: float) -> dict[str, float]:
    """Connection-wise normalization of the traced ANN (each concatenated part scaled by its producer), in place.

    Args:
        graph: the traced ANN with resolved input blocks.
        batches: calibration input batches.
        percentile: percentile of each ReLU's activations used as its scale, in (0, 100].

    Returns:
        neuron node -> scale.
    """
    return _activation_normalization(graph, batches, percentile, "connection")


def layer_wise(graph: ConversionGraph, batches: Sequence[torch.Tensor], percentile: float) -> dict[str, float]:
    """Layer-wise normalization of the traced ANN (one scale per concatenated input), in place.

    Args:
        graph: the traced ANN with resolved input blocks.
        batches: calibration input batches.
        percentile: percentile of the activations (and of each whole concatenation) used as scale, in (0, 100].

    Returns:
        neuron node -> scale.
    """
    return _activation_normalization(graph, batches, percentile, "layer")


def clip_levels(graph: ConversionGraph, batches: Sequence[torch.Tensor], percentile: float) -> dict[str, float]:
    """Connection-wise normalization with each layer's scale read from its QCFS clipping level, in place.

    Args:
        graph: the traced ANN (QCFS activations) with resolved input blocks.
        batches: unused (the scales were learnt).
        percentile: unused.

    Returns:
        neuron node -> scale (the clipping level).

    Raises:
        ValueError: an activation is not a QCFS (named), or a clipping level is not positive.
    """
    from monai_snn.networks.qcfs import QCFS

    lambdas: dict[str, float] = {}
    for node in graph.neuron_nodes():
        act = graph.module.get_submodule(graph.nodes[node].target)
        if not isinstance(act, QCFS):
            raise ValueError(
                f"normalization='clip' reads QCFS clipping levels, but activation {graph.nodes[node].target!r} is "
                f"{type(act).__name__}; use 'connection' for ReLU networks."
            )
        lam = float(act.clip.detach())
        if not lam > 0:
            raise ValueError(f"QCFS clipping level of {graph.nodes[node].target!r} is {lam:g} <= 0.")
        lambdas[node] = lam
    apply_normalization(graph, lambdas, "connection")
    return lambdas


@torch.no_grad()
def threshold_balance(
    snn: nn.Module, graph: ConversionGraph, batches: Sequence[torch.Tensor], percentile: float, num_steps: int
) -> dict[str, float]:
    """Spike-norm threshold balancing on the spiking network, layer by layer in topological order.

    For each spiking layer, the network (already balanced up to that layer) is simulated for ``num_steps``
    steps on the calibration batches; the ``percentile`` of the layer's input currents over all steps becomes
    its threshold, folded into the weights (producer divided, consumers multiplied).

    Args:
        snn: a :class:`~monai_snn.networks.SpikingSimulator` built on ``graph.module``.
        graph: the conversion graph.
        batches: calibration input batches.
        percentile: percentile of the input currents (100: maximum, as in Sengupta et al.).
        num_steps: simulation length for balancing.

    Returns:
        neuron node -> threshold found.
    """
    saved_steps = snn.num_steps
    snn.num_steps = num_steps
    modules = dict(graph.module.named_modules())
    nodes = graph.nodes
    found: dict[str, float] = {}
    try:
        for neuron_node in graph.neuron_nodes():
            neuron = modules[nodes[neuron_node].target]
            values: list[torch.Tensor] = []

            def hook(_mod, args):
                flat = args[0].detach().float().reshape(-1)
                if flat.numel() > 1 << 18:
                    flat = flat[torch.randint(0, flat.numel(), (1 << 18,), generator=gen, device=flat.device)]
                values.append(flat.cpu())

            gen = torch.Generator(device=next(snn.parameters()).device).manual_seed(len(found))
            handle = neuron.register_forward_pre_hook(hook)
            try:
                for batch in batches:
                    snn(batch)
            finally:
                handle.remove()
            theta = robust_percentile(torch.cat(values), percentile)
            if not theta > 0:
                theta = 1.0
            found[neuron_node] = theta
            scale_output(graph.synapse_module(graph.neuron_producer[neuron_node]), theta)
            for syn, blocks in graph.input_channels.items():
                for block in blocks:
                    if block.source == neuron_node:
                        scale_input_block(graph.synapse_module(syn), block.start, block.size, theta)
    finally:
        snn.num_steps = saved_steps
    return found


@dataclass(frozen=True)
class Normalization:
    """What :func:`~monai_snn.conversion.convert_to_snn` runs for one normalization name.

    Args:
        ann: ``fn(graph, batches, percentile) -> scales`` run on the traced ANN (with resolved input blocks)
            before its ReLUs are replaced, e.g. :func:`connection_wise`; ``None``: nothing.
        snn: ``fn(snn, graph, batches, percentile, num_steps) -> scales`` run on the built
            :class:`~monai_snn.networks.SpikingSimulator`, e.g. :func:`threshold_balance`; ``None``: nothing.

        reads_data: ``False`` when the scales need no calibration data (``"clip"``).

    Both fold their scales into the weights in place and return neuron node -> scale. With neither (or
    ``reads_data=False``), no calibration data is read (``"none"``, ``"clip"``).

    Example::

        NORMALIZATIONS["layer_max"] = Normalization(ann=lambda graph, batches, _: layer_wise(graph, batches, 100))
    """

    ann: Callable[[ConversionGraph, Sequence[torch.Tensor], float], dict[str, float]] | None = None
    snn: Callable[[nn.Module, ConversionGraph, Sequence[torch.Tensor], float, int], dict[str, float]] | None = None
    reads_data: bool = True

    @property
    def needs_data(self) -> bool:
        """Whether calibration data is read."""
        return self.reads_data and (self.ann is not None or self.snn is not None)


NORMALIZATIONS: dict[str, Normalization] = {
    "layer": Normalization(ann=layer_wise),
    "connection": Normalization(ann=connection_wise),
    "threshold_balancing": Normalization(snn=threshold_balance),
    "clip": Normalization(ann=clip_levels, reads_data=False),
    "none": Normalization(),
}
