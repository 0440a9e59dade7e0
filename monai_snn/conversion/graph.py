"""Tracing and checking an ANN for conversion: which layers exist, how they connect, what each one is.

The ANN is traced with ``torch.fx`` into a graph whose nodes are of four kinds:

* ``synapse``: convolutions and transposed convolutions (the layers that carry weights),
* ``neuron``: ReLU (or QCFS) activations (they become spiking neurons),
* ``linear``: parameter-free linear, channel-preserving ops (average pooling, dropout, identity, upsampling,
  the U-Net input check) and channel concatenation,
* ``input`` / ``output``.

Anything else (max pooling, batch norm not directly after a convolution, other activations, additions) is
rejected with an error that names the layer. Batch norm directly after a convolution is folded into it.
"""

from __future__ import annotations

import copy
import logging
import operator
from dataclasses import dataclass, field

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from monai_snn.networks.convertible_unet import check_unet_input
from monai_snn.networks.qcfs import QCFS

__all__ = ["ConversionGraph", "BlockSource", "trace_ann", "SYNAPSE_TYPES", "PASS_TYPES"]

logger = logging.getLogger(__name__)

SYNAPSE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
PASS_TYPES = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.Identity,
    nn.Upsample,
)
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
MAXPOOL_TYPES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
RELU_FUNCTIONS = (F.relu, torch.relu, torch.relu_)
CAT_FUNCTIONS = (torch.cat, torch.concat, torch.concatenate)
PASS_FUNCTIONS = (check_unet_input,)
_SUPPORTED = (
    "Conv/ConvTranspose (1-3D), ReLU, QCFS, AvgPool, AdaptiveAvgPool, Dropout, Identity, Upsample, "
    "BatchNorm directly after a convolution (folded), torch.cat along channels"
)


@dataclass
class BlockSource:
    """One block of input channels of a synaptic layer and where it comes from.

    Attributes:
        start: first input channel of the block.
        size: number of channels.
        source: name of the producing neuron node, or ``None`` for the network input.
        via_cat: name of the concatenation the block went through (``None``: no concatenation).
    """

    start: int
    size: int
    source: str | None
    via_cat: str | None = None


@dataclass
class ConversionGraph:
    """A traced, checked ANN ready for conversion.

    Attributes:
        module: the traced ``torch.fx.GraphModule`` (a copy; the user's ANN is untouched), in eval mode.
        kinds: node name -> ``"input" | "synapse" | "neuron" | "linear" | "cat" | "output"``.
        neuron_producer: neuron node -> the synaptic node that drives it.
        synapse_out: synaptic node -> the neuron node it drives, or ``None`` when it is the readout.
        input_channels: filled by :meth:`resolve_inputs`: synaptic node -> list of :class:`BlockSource`.
    """

    module: torch.fx.GraphModule
    kinds: dict[str, str]
    neuron_producer: dict[str, str] = field(default_factory=dict)
    synapse_out: dict[str, str | None] = field(default_factory=dict)
    input_channels: dict[str, list[BlockSource]] = field(default_factory=dict)

    @property
    def nodes(self) -> dict[str, torch.fx.Node]:
        return {n.name: n for n in self.module.graph.nodes}

    def synapse_module(self, node_name: str) -> nn.Module:
        return self.module.get_submodule(self.nodes[node_name].target)

    def neuron_nodes(self) -> list[str]:
        return [n for n, k in self.kinds.items() if k == "neuron"]

    def synapse_nodes(self) -> list[str]:
        return [n for n, k in self.kinds.items() if k == "synapse"]

    def resolve_inputs(self, channels_of: dict[str, int]) -> None:
        """Find, for each synaptic layer, which channel blocks of its input come from which neuron.

        Args:
            channels_of: node name -> number of output channels (from a calibration pass).
        """
        nodes = self.nodes
        for name in self.synapse_nodes():
            blocks: list[BlockSource] = []
            self._collect(nodes[name].args[0], 0, None, blocks, channels_of)
            self.input_channels[name] = blocks

    def _collect(self, node, start, via_cat, blocks, channels_of) -> int:
        kind = self.kinds[node.name]
        if kind == "neuron":
            blocks.append(BlockSource(start, channels_of[node.name], node.name, via_cat))
            return channels_of[node.name]
        if kind == "input":
            blocks.append(BlockSource(start, channels_of[node.name], None, via_cat))
            return channels_of[node.name]
        if kind == "linear":
            return self._collect(node.args[0], start, via_cat, blocks, channels_of)
        if kind == "cat":
            size = 0
            for part in node.args[0]:
                size += self._collect(part, start + size, via_cat or node.name, blocks, channels_of)
            return size
        raise ValueError(
            f"layer {node.name!r} feeds a weighted layer directly, without a ReLU in between; two linear layers "
            "in a row cannot be normalized separately (merge them, or put a ReLU between them)."
        )


def _describe(node: torch.fx.Node, gm: torch.fx.GraphModule) -> str:
    if node.op == "call_module":
        return f"layer {node.target!r} ({type(gm.get_submodule(node.target)).__name__})"
    if node.op == "call_function":
        return f"function {getattr(node.target, '__name__', node.target)!r} (node {node.name!r})"
    return f"{node.op} {node.target!r} (node {node.name!r})"


def _fold_bn(gm: torch.fx.GraphModule, bn_node: torch.fx.Node) -> None:
    bn = gm.get_submodule(bn_node.target)
    prev = bn_node.args[0]
    conv = gm.get_submodule(prev.target) if isinstance(prev, torch.fx.Node) and prev.op == "call_module" else None
    if not isinstance(conv, SYNAPSE_TYPES) or len(prev.users) != 1:
        raise ValueError(
            f"{_describe(bn_node, gm)}: batch norm can only be folded when it directly follows a convolution "
            "used nowhere else; remove it or place it right after a convolution."
        )
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"{_describe(bn_node, gm)}: batch norm without running statistics cannot be folded.")
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1.0 / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        out_dim = 1 if isinstance(conv, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
        shape = [1] * conv.weight.ndim
        shape[out_dim] = -1
        conv.weight.mul_(scale.reshape(shape))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        new_bias = (bias - bn.running_mean) * scale + shift
        conv.bias = nn.Parameter(new_bias.detach().clone())
    bn_node.replace_all_uses_with(prev)
    gm.graph.erase_node(bn_node)
    logger.info("folded batch norm %r into convolution %r", bn_node.target, prev.target)


class _ActivationLeafTracer(torch.fx.Tracer):
    """Keeps QCFS activations (which check their clipping level) as single nodes, like ReLU modules."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, QCFS) or super().is_leaf_module(m, module_qualified_name)


def trace_ann(ann: nn.Module) -> ConversionGraph:
    """Copy, trace and check an ANN for conversion.

    Args:
        ann: the trained ANN (never modified).

    Returns:
        a :class:`ConversionGraph` whose ReLU nodes each have their own ``nn.ReLU`` submodule.

    Raises:
        ValueError: an unsupported layer or connection, named.

    Example::

        graph = trace_ann(ConvertibleUNet(2, 1, 1))
        graph.neuron_nodes()[:2]
    """
    if not isinstance(ann, nn.Module):
        raise TypeError(f"ann must be a torch.nn.Module, got {type(ann).__name__}.")
    model = copy.deepcopy(ann).eval()
    try:
        gm = torch.fx.GraphModule(model, _ActivationLeafTracer().trace(model), type(model).__name__)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"could not trace {type(ann).__name__} with torch.fx for conversion ({type(e).__name__}: {e}); "
            "the network's forward must not branch on tensor values."
        ) from e
    graph = gm.graph
    for node in list(graph.nodes):
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), BN_TYPES):
            _fold_bn(gm, node)
    kinds: dict[str, str] = {}
    relu_count = 0
    used_relu_targets: set[str] = set()
    for node in list(graph.nodes):
        if node.op == "placeholder":
            if kinds and "input" in kinds.values():
                raise ValueError(f"the network must take exactly one input tensor; {node.target!r} is a second one.")
            kinds[node.name] = "input"
        elif node.op == "output":
            kinds[node.name] = "output"
        elif node.op == "call_module":
            mod = gm.get_submodule(node.target)
            if isinstance(mod, SYNAPSE_TYPES):
                if mod.groups != 1:
                    raise ValueError(f"{_describe(node, gm)}: grouped convolutions are not supported.")
                kinds[node.name] = "synapse"
            elif isinstance(mod, (nn.ReLU, QCFS)):
                # every ReLU call site gets its own module: a shared nn.ReLU would share the neuron state
                if node.target in used_relu_targets:
                    relu_count += 1
                    new_target = f"{node.target.replace('.', '_')}_call{relu_count}"
                    gm.add_submodule(new_target, copy.deepcopy(mod))
                    node.target = new_target
                used_relu_targets.add(node.target)
                kinds[node.name] = "neuron"
            elif isinstance(mod, PASS_TYPES):
                kinds[node.name] = "linear"
            elif isinstance(mod, MAXPOOL_TYPES):
                raise ValueError(
                    f"{_describe(node, gm)}: max pooling has no rate-coded spiking equivalent; "
                    "train the ANN with average pooling (e.g. torch.nn.AvgPool2d)."
                )
            else:
                raise ValueError(f"{_describe(node, gm)} is not supported by ANN->SNN conversion; supported: {_SUPPORTED}.")
        elif node.op == "call_function" and node.target in RELU_FUNCTIONS:
            relu_count += 1
            new_target = f"relu_fn{relu_count}"
            gm.add_submodule(new_target, nn.ReLU())
            with graph.inserting_after(node):
                new = graph.call_module(new_target, (node.args[0],))
            node.replace_all_uses_with(new)
            graph.erase_node(node)
            kinds[new.name] = "neuron"
        elif node.op == "call_function" and node.target in CAT_FUNCTIONS:
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
            if dim != 1:
                raise ValueError(f"{_describe(node, gm)}: only concatenation along channels (dim=1) is supported.")
            kinds[node.name] = "cat"
        elif node.op == "call_function" and node.target in PASS_FUNCTIONS:
            kinds[node.name] = "linear"
        elif node.op == "call_function" and node.target is operator.getitem:
            raise ValueError(f"{_describe(node, gm)}: indexing inside the network is not supported by conversion.")
        else:
            raise ValueError(f"{_describe(node, gm)} is not supported by ANN->SNN conversion; supported: {_SUPPORTED}.")
    gm.recompile()
    # re-key kinds by current node order (nodes may have been replaced)
    kinds = {n.name: kinds[n.name] for n in graph.nodes}
    result = ConversionGraph(module=gm, kinds=kinds)
    _link(result)
    return result


def _skip_linear_forward(node: torch.fx.Node, kinds: dict[str, str]) -> list[torch.fx.Node]:
    """Consumers of ``node``, looking through channel-preserving linear ops."""
    out = []
    for user in node.users:
        if kinds[user.name] == "linear":
            out.extend(_skip_linear_forward(user, kinds))
        else:
            out.append(user)
    return out


def _link(graph: ConversionGraph) -> None:
    kinds = graph.kinds
    nodes = graph.nodes
    gm = graph.module
    has_input = False
    for name, kind in kinds.items():
        node = nodes[name]
        if kind == "input":
            has_input = True
        if kind == "neuron":
            src = node.args[0]
            while kinds[src.name] == "linear":
                src = src.args[0]
            if kinds[src.name] != "synapse":
                raise ValueError(
                    f"{_describe(node, gm)} must follow a convolution (through pooling/dropout at most); "
                    f"it follows {_describe(src, gm)}."
                )
            graph.neuron_producer[name] = src.name
        if kind == "synapse":
            consumers = _skip_linear_forward(node, kinds)
            neurons = [c for c in consumers if kinds[c.name] == "neuron"]
            outputs = [c for c in consumers if kinds[c.name] == "output"]
            if len(neurons) == 1 and len(consumers) == 1:
                graph.synapse_out[name] = neurons[0].name
            elif outputs and len(consumers) == 1:
                graph.synapse_out[name] = None
            else:
                raise ValueError(
                    f"{_describe(node, gm)} must feed exactly one ReLU, or be the network output; "
                    f"it feeds {[c.name for c in consumers]}."
                )
    if not has_input:
        raise ValueError("the network has no input.")
    if not graph.synapse_nodes():
        raise ValueError("the network has no convolution to convert.")
