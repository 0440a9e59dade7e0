"""``convert_to_snn``: the ANN->SNN conversion entry point."""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from monai_snn.conversion.graph import ConversionGraph, trace_ann
from monai_snn.conversion.normalization import NORMALIZATIONS
from monai_snn.conversion.statistics import iterate_calibration
from monai_snn.encoding.encoders import Encoder, make_encoder
from monai_snn.neurons.multi_level import MultiLevelNeuron
from monai_snn.neurons.neuron import LIFNeuron, _check_thresholds
from monai_snn.neurons.real_spike import RealSpikeNeuron
from monai_snn.neurons.registry import look_up
from monai_snn.neurons.surrogate import Surrogate, make_surrogate
from monai_snn.neurons.utils import NEURONS, make_neuron
from monai_snn.networks.simulator import SpikingSimulator

__all__ = ["convert_to_snn", "static_channels"]

logger = logging.getLogger(__name__)


def static_channels(graph: ConversionGraph) -> dict[str, int]:
    """Output channels of every node, inferred from the layers' shapes (no data needed).

    Raises:
        ValueError: the input's channel count cannot be inferred (no convolution reads it directly).
    """
    nodes, kinds = graph.nodes, graph.kinds
    channels: dict[str, int] = {}
    for name in graph.synapse_nodes():
        src = nodes[name].args[0]
        while kinds[src.name] == "linear":
            src = src.args[0]
        if kinds[src.name] == "input":
            channels[src.name] = graph.synapse_module(name).in_channels
    for name, kind in kinds.items():  # nodes are in topological order
        node = nodes[name]
        if kind == "input" and name not in channels:
            raise ValueError("cannot infer the input channels: no convolution reads the network input directly.")
        if kind == "synapse":
            channels[name] = graph.synapse_module(name).out_channels
        elif kind in ("neuron", "linear"):
            channels[name] = channels[node.args[0].name]
        elif kind == "cat":
            channels[name] = sum(channels[p.name] for p in node.args[0])
    return channels


def _replace_module(root: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _builds(factory, classes: type | tuple[type, ...]) -> bool:
    """Whether a :data:`~monai_snn.neurons.NEURONS` factory (a class, a ``functools.partial`` of one, or any other
    registered callable, which builds none of ``classes``) builds instances of ``classes``."""
    cls = factory.func if isinstance(factory, functools.partial) else factory
    return isinstance(cls, type) and issubclass(cls, classes)


def convert_to_snn(
    ann: nn.Module,
    calibration_data: Iterable | None,
    *,
    normalization: str = "connection",
    percentile: float = 99.9,
    neuron: str = "multi_threshold",
    thresholds: Sequence[float] = (2.0, 1.0, 0.5, 0.25),
    leak: float = 1.0,
    num_steps: int = 16,
    encoding: str | Encoder = "static",
    initial_potential: float = 0.5,
    chunk_size: int | None = None,
    balance_steps: int | None = None,
    surrogate: str | Surrogate = "triangle",
) -> SpikingSimulator:
    """Convert a trained ANN (e.g. :class:`~monai_snn.networks.ConvertibleUNet`) into a spiking network.

    The ANN is traced, checked (unsupported layers are named in the error), batch norms after convolutions are
    folded, weights are copied and normalized from activation statistics, and each ReLU becomes a spiking layer.
    The input ANN is never modified.

    Args:
        ann: the trained ANN.
        calibration_data: iterable of input batches (tensors, or dicts with ``"image"`` such as a MONAI
            ``DataLoader``); may be ``None`` with ``normalization="none"`` or ``"clip"``.
        normalization: a name of :data:`~monai_snn.conversion.NORMALIZATIONS`: ``"connection"`` (each part of a
            concatenation scaled by its producer), ``"layer"`` (one scale per layer, from the whole concatenated
            input), ``"threshold_balancing"`` (spike-norm on the SNN's own input currents), ``"clip"`` (the learnt
            clipping levels of QCFS activations; ``neuron``, ``thresholds`` and ``initial_potential`` must match
            them: :func:`~monai_snn.networks.qcfs_conversion` gives all of it) or ``"none"`` (weights copied
            unchanged, e.g. before loading a fine-tuned SNN's ``state_dict``).
        percentile: percentile of the activations (or input currents) used as scale, in (0, 100]; 100 is the max.
        neuron: a name of :data:`~monai_snn.neurons.NEURONS`: ``"if"`` (one threshold), ``"multi_threshold"``
            (``thresholds``), ``"lif"`` (one threshold, membrane decay ``leak``), ``"multi_level_rate"`` (Feng et
            al.'s multi-level unit as a rate code: soft reset, compartment rates summing to the input),
            ``"real_spike"`` (per-channel spike amplitudes); ``"multi_level"`` keeps Feng et al.'s leak and hard
            reset for direct training and barely fires when converted (a warning says so).
        thresholds: relative levels of the multi-threshold neuron, highest first (other neurons have one level).
        leak: membrane decay per step of leaky neurons (``"lif"``), in (0, 1]. ``1.0`` (no leak) makes ``"lif"``
            exactly ``"if"``; below 1 the membrane loses charge every step, so firing rates fall below the ANN's
            activations and the conversion is approximate (a warning says so). Non-leaky neurons need ``1.0``.
        num_steps: simulation length ``T`` (changeable later: ``snn.num_steps = 8``).
        encoding: a name of :data:`~monai_snn.encoding.ENCODERS`: ``"static"`` (analog current),
            ``"poisson_binary"`` ([0, 1] data) or ``"poisson_ternary"`` ([-1, 1] data); or an
            :class:`~monai_snn.encoding.Encoder`.
        initial_potential: fraction of each neuron's smallest threshold its membrane starts from (0.0: papers).
        chunk_size: time steps folded into the batch per chunk (``None``: 1 on CPU, up to 16 on GPU).
        balance_steps: simulation length for threshold balancing (``None``: ``num_steps``).
        surrogate: surrogate gradient of the neurons for spike-based fine-tuning: a name of
            :data:`~monai_snn.neurons.SURROGATES` or a :class:`~monai_snn.neurons.Surrogate`.

    Returns:
        a :class:`~monai_snn.networks.SpikingSimulator` (in eval mode) mapping ``[B, C, *spatial]`` to
        ``[B, K, *spatial]``.

    Raises:
        ValueError: bad parameters (e.g. non-positive or non-finite ``thresholds``, ``leak`` outside (0, 1] or
            below 1 for a non-leaky neuron; the message names the parameter and its value), an unknown
            ``normalization``, ``neuron``, ``encoding`` or ``surrogate`` name (MONAI's ``look_up_option`` message
            with the valid names), unsupported layers, empty calibration data, or a calibration batch that is not
            floating point or holds NaN / infinite values (the message names the batch).

    Example::

        snn = convert_to_snn(ann, [x_calib], normalization="connection", num_steps=16)
        lif = convert_to_snn(ann, [x_calib], neuron="lif", leak=0.95, num_steps=16)  # approximate: rates < ANN
        y = snn(x)
    """
    norm = look_up("normalization", normalization, NORMALIZATIONS)
    if not (isinstance(percentile, (int, float)) and 0.0 < percentile <= 100.0):
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}.")
    factory = look_up("neuron", neuron, NEURONS)
    leaky = _builds(factory, (LIFNeuron, RealSpikeNeuron))  # takes ``leak``
    levels = _check_thresholds(thresholds) if neuron == "multi_threshold" else (1.0,)
    if isinstance(leak, bool) or not (isinstance(leak, (int, float)) and 0.0 < leak <= 1.0):
        raise ValueError(f"leak must be in (0, 1], got {leak!r}.")
    if leak != 1.0 and not leaky:
        raise ValueError(f"leak={leak!r} needs a leaky neuron (neuron='lif'); {neuron!r} neurons take leak=1.0.")
    if leaky and leak < 1.0:
        warnings.warn(
            f"neuron={neuron!r} with leak={leak:g} < 1: the membrane loses charge every step, so the SNN's firing "
            "rates (and readout) fall below the ANN's activations; the conversion is approximate (leak=1.0 is "
            "exact IF conversion).",
            UserWarning,
            stacklevel=2,
        )
    if _builds(factory, MultiLevelNeuron):
        warnings.warn(
            f"neuron={neuron!r} keeps its direct-training dynamics (Feng et al.: leak 0.25, hard reset, thresholds "
            "0.6 / 1.6 / 2.6 with unit spikes): its rates do not follow the normalized ANN's activations, so the "
            "converted SNN barely fires (DRIVE: 0.1 % firing, F1 0). Convert to 'multi_level_rate' (the same unit with "
            "leak 1, soft reset and thresholds whose rates sum to the input), 'multi_threshold' or 'if', or train "
            "multi-level Spiking-UNets directly (the bundles' train_unet_ml stage).",
            UserWarning,
            stacklevel=2,
        )
    encoder = make_encoder(encoding)
    make_surrogate(surrogate)  # an unknown name fails here, before tracing and calibration
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}.")
    if not 0.0 <= initial_potential < 1.0:
        raise ValueError(f"initial_potential must be in [0, 1), got {initial_potential!r}.")

    if normalization == "clip":
        from monai_snn.networks.qcfs import qcfs_conversion

        design = qcfs_conversion(ann)
        got = {"neuron": neuron, "thresholds": tuple(levels), "initial_potential": initial_potential}
        want = {k: design[k] for k in got}
        if got != want:
            raise ValueError(
                f"normalization='clip': the neuron must realise the ANN's QCFS activations, {want}; got {got} "
                "(pass **monai_snn.networks.qcfs_conversion(ann))."
            )
    graph = trace_ann(ann)
    gm = graph.module
    batches: list[torch.Tensor] = []
    if norm.needs_data:
        batches = list(iterate_calibration(calibration_data))
    channels = static_channels(graph)
    graph.resolve_inputs(channels)

    lambdas: dict[str, float] = {}
    if norm.ann is not None:
        lambdas = norm.ann(graph, batches, percentile)

    nodes = graph.nodes
    neuron_kwargs = {"thresholds": levels, "initial_potential": initial_potential, "surrogate": surrogate}
    if leaky:
        neuron_kwargs["leak"] = leak
    per_channel = _builds(factory, RealSpikeNeuron)  # per-channel parameters: needs the layer's channels
    for name in graph.neuron_nodes():
        kwargs = dict(neuron_kwargs, num_channels=channels[name]) if per_channel else neuron_kwargs
        _replace_module(gm, nodes[name].target, make_neuron(neuron, **kwargs))
    gm.recompile()

    first = graph.synapse_module(graph.synapse_nodes()[0])
    snn = SpikingSimulator(
        gm,
        num_steps=num_steps,
        encoding=encoder,
        chunk_size=chunk_size,
        in_channels=first.in_channels,
        spatial_dims=first.weight.ndim - 2,
    )
    device = next(ann.parameters()).device
    snn.to(device).eval()  # inference-ready; trainers switch to train mode themselves
    if norm.snn is not None:
        found = norm.snn(snn, graph, [b.to(device) for b in batches], percentile, balance_steps or num_steps)
        lambdas = {n: lambdas.get(n, 1.0) * v for n, v in found.items()}  # both stages scale: the totals
    snn.metadata.update(
        {
            "normalization": normalization,
            "percentile": percentile,
            "neuron": neuron,
            "thresholds": list(levels),
            "leak": float(leak),
            "initial_potential": initial_potential,
            "scales": {nodes[n].target: v for n, v in lambdas.items()},
            "synapse_inputs": {
                nodes[s].target: [(b.start, b.size, nodes[b.source].target if b.source else None) for b in blocks]
                for s, blocks in graph.input_channels.items()
            },
            "synapse_outputs": {
                nodes[s].target: (nodes[o].target if o else None) for s, o in graph.synapse_out.items()
            },
        }
    )
    logger.info(
        "converted %s to a spiking network: %d spiking layers, normalization=%s, neuron=%s%s, T=%d",
        type(ann).__name__,
        len(graph.neuron_nodes()),
        normalization,
        neuron,
        f" (leak={leak:g})" if leaky else "",
        num_steps,
    )
    return snn
