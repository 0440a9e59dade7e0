"""Weight normalization for ANN->SNN conversion: layer-wise, connection-wise, threshold balancing.

Every spiking layer ends up with unit base threshold; its scale is folded into the weights:

* the synaptic layer that drives neuron layer ``l`` gets ``W, b / lambda_l``;
* each block of input channels coming from neuron layer ``p`` gets ``W[:, block] * lambda_in(p)``.

``"connection"`` uses ``lambda_in(p) = lambda_p`` for every part of a concatenation (Spiking-UNet's
connection-wise normalization), so each skip connection keeps its own scale and the SNN is invariant to
function-preserving rescalings of the ANN. ``"layer"`` uses one scale for the whole concatenated input (the
percentile of the concatenation), the layer-wise baseline. ``"threshold_balancing"`` sets ``lambda_l`` layer
by layer from the input currents of the spiking network itself (spike-norm, Sengupta et al. 2019), and scales
consumers like ``"connection"`` does, so the readout stays in the ANN's units.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from monai_snn.conversion.graph import ConversionGraph
from monai_snn.conversion.statistics import robust_percentile

__all__ = ["NORMALIZATIONS", "scale_input_block", "scale_output", "apply_normalization", "threshold_balance"]

NORMALIZATIONS = ("layer", "connection", "threshold_balancing", "none")


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
    """
    if mode not in ("connection", "layer"):
        raise ValueError(f"mode must be 'connection' or 'layer', got {mode!r}.")
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
