# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Export of a spiking U-Net to the Neuromorphic Intermediate Representation (NIR), and a second simulator for it.

NIR (PyPI ``nir``, 1.0.8) has 17 primitives: no concatenation, no transposed convolution, no upsampling, and an
``IF`` node whose reset is to a potential (hard reset). :func:`to_nir` therefore does not map module by module;
it exports the *synapses between spiking populations*:

* Between two spiking layers (or the input and a spiking layer, or the last spiking layer and the output) every
  path of the network is linear: convolutions, average pooling, transposed convolutions, concatenation, dropout
  (identity at inference). Each source -> target pair becomes **one** NIR ``Conv2d``, whose weights are measured by
  feeding impulses through the original layers (exact for any such chain, tested against them). A concatenating
  skip ``conv(cat(a, b))`` becomes two ``Conv2d`` nodes, one per channel block, entering the same neuron node, whose
  inputs NIR sums: exact. Average pooling folds into the following convolution (stride 2, one larger kernel).
* **Transposed convolutions** have no NIR node and no composition of NIR's stride >= 1 nodes can upsample. The
  exporter keeps every layer below the coarsest resolution it depends on in *polyphase* (space-to-depth) form: a
  map of ``C`` channels at pixel size ``p`` is stored on a grid of cell ``a`` as ``C * (a / p)**2`` channels
  (``torch.pixel_unshuffle`` order). On that grid a transposed convolution is an ordinary convolution, so the
  decoder of a U-Net runs on the bottleneck's grid: exact, at the price of larger (block-sparse) weights. The
  output node is polyphase too; its metadata ``pixel_shuffle`` is the factor that :func:`run_nir` (or the user)
  applies to the time-averaged output.
* **Neurons**: our IF neuron with one threshold ``theta`` becomes NIR ``IF(r=1, v_threshold=theta, v_reset=0)``
  emitting 1; ``theta`` is folded into the weights of the synapses it drives. NIR defines only reset to a
  potential and no initial membrane potential, so a soft-reset neuron (subtract ``theta``) and an initial potential
  ``v0 != 0`` are exported with the **closest NIR semantics**: hard reset to 0 and ``v0 = 0``. The export warns
  and lists them in the graph's metadata (``approximations``); :func:`nir_semantics` gives the network that the
  file describes exactly, to measure the cost (``benchmarks/nir_roundtrip.py``). Multi-threshold, leaky, signed,
  multi-level and real-spike neurons and batch norm through time are refused with an error naming the layer.
* The input is static (the image is presented at every step, so the first convolution is an input current) and
  the readout is the mean over the ``T`` steps of the output node.

:func:`run_nir` runs a ``.nir`` file with `norse <https://github.com/norse/norse>`_'s NIR node importers (IF ->
``IAFCell``, Conv2d -> ``torch.nn.Conv2d``) wired by ``nirtorch``'s graph interpreter: an implementation of
NIR's semantics that shares no code with ours. (Norse 1.1's own ``from_nir`` goes through nirtorch's older
executor, which runs branching graphs out of order with nirtorch 2.6, so its node importer is used directly.)

Example::

    graph = to_nir(snn, input_shape=(1, 64, 64))
    nir.write("model.nir", graph)
    y = run_nir("model.nir", images, num_steps=snn.num_steps)  # == nir_semantics(snn)(images)
"""

from __future__ import annotations

import copy
import operator
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.fx
from torch import nn
from torch.nn import functional as F

from monai_snn.neurons.neuron import SpikingNeuron

__all__ = ["to_nir", "write_nir", "run_nir", "NIRSimulator", "nir_semantics", "NIRExportError"]

_EXTRA = "install the optional NIR packages: pip install 'monai_snn[peers]' (nir, nirtorch, norse)"
_LINEAR_MODULES = (
    nn.Conv2d,
    nn.ConvTranspose2d,
    nn.AvgPool2d,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
)
_LINEAR_FUNCTIONS = (torch.cat, operator.add, torch.add)


def _nir_name(layer: str) -> str:
    """The NIR node name of a layer (dots as underscores)."""
    return layer.replace(".", "_")


class NIRExportError(ValueError):
    """A network (or one of its layers) that NIR cannot express; the message names the layer and what is supported."""


def _import_nir():
    try:
        import nir
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"NIR export needs the 'nir' package ({e}); {_EXTRA}.") from None
    return nir


def nir_semantics(snn: nn.Module) -> nn.Module:
    """A copy of ``snn`` whose neurons behave as NIR's IF node: hard reset to 0, firing on ``v > theta``, ``v0 = 0``.

    The file written by :func:`to_nir` describes this network exactly; comparing it with ``snn`` measures what the
    closest NIR semantics cost.

    Args:
        snn: a spiking network with one-threshold neurons.

    Raises:
        ValueError: a neuron with several thresholds (hard reset is defined for one).

    Example::

        dice_cost = dice(snn(x), y) - dice(nir_semantics(snn)(x), y)
    """
    out = copy.deepcopy(snn)
    for name, m in out.named_modules():
        if isinstance(m, SpikingNeuron):
            if len(m.thresholds) != 1:
                raise ValueError(f"layer {name!r}: NIR semantics need one threshold, got {m.thresholds}.")
            m.reset_mode = "zero"
            m.initial_potential = 0.0
            m.reset()
    return out


def _neuron_check(name: str, m: nn.Module) -> list[str]:
    """Raise for a neuron NIR cannot express; return the approximations it needs."""
    if type(m).__name__ in ("MultiLevelNeuron", "RealSpikeNeuron") or not isinstance(m, SpikingNeuron):
        raise NIRExportError(
            f"layer {name!r} ({type(m).__name__}) has no NIR node; supported spiking layers: IFNeuron "
            "(one threshold, no leak, unsigned)."
        )
    if len(m.thresholds) != 1:
        raise NIRExportError(
            f"layer {name!r} is a multi-threshold neuron (levels {m.levels}): NIR's IF node has one threshold and "
            "a hard reset, and a bank of parallel IF nodes does not share one membrane, so no exact export exists. "
            "Convert the ANN with neuron='if' to export it (supported: IFNeuron)."
        )
    if m.leak != 1.0 or m.signed:
        raise NIRExportError(
            f"layer {name!r} has leak={m.leak} / signed={m.signed}: only unsigned IF neurons without leak are "
            "exported (NIR's LIF node is a continuous-time model with another discretization)."
        )
    approx = []
    if m.reset_mode == "subtract":
        approx.append("soft reset exported as NIR's reset to 0")
    if m.initial_potential != 0.0:
        approx.append(f"initial potential {m.initial_potential} x theta exported as 0 (NIR has no initial state)")
    return approx


class _Probe(torch.fx.Interpreter):
    """Runs the linear paths of a spiking graph: neurons output what ``inject`` gives (zeros otherwise) and their
    inputs are recorded; the output node's value is recorded as ``"output"``.

    With ``needed`` only those nodes run (the ancestors of one sink); nodes in ``constant`` (values of an all-zero
    run, batch 1) are taken from there, expanded to the batch, instead of being computed.
    """

    def __init__(
        self,
        gm: torch.fx.GraphModule,
        inject: dict[str, torch.Tensor],
        needed: set[str] | None = None,
        constant: dict[str, torch.Tensor] | None = None,
        record_all: bool = False,
    ) -> None:
        super().__init__(gm)
        self.inject = inject
        self.inputs: dict[str, torch.Tensor] = {}
        self.needed, self.constant, self.values = needed, constant or {}, {} if record_all else None
        self.batch = 1

    def run(self, *args, **kwargs):
        self.batch = args[0].shape[0]
        return super().run(*args, **kwargs)

    def run_node(self, n: torch.fx.Node):
        if self.needed is not None and n.name not in self.needed:
            return None
        if n.name in self.constant:
            v = self.constant[n.name]
            return v.expand(self.batch, *v.shape[1:])
        out = super().run_node(n)
        if self.values is not None and isinstance(out, torch.Tensor):
            self.values[n.name] = out
        return out

    def call_module(self, target, args, kwargs):
        m = self.fetch_attr(target)
        if isinstance(m, SpikingNeuron):
            x = args[0]
            self.inputs[target] = x
            v = self.inject.get(target)
            return torch.zeros_like(x) if v is None else v
        return super().call_module(target, args, kwargs)

    def output(self, target, args, kwargs):
        self.inputs["output"] = args[0]
        return args[0]


def _reachable(start: torch.fx.Node, step) -> set[str]:
    """Names of the nodes reached from ``start`` (included) by repeatedly following ``step(node)``."""
    seen, stack = set(), [start]
    while stack:
        n = stack.pop()
        if n.name not in seen:
            seen.add(n.name)
            stack.extend(step(n))
    return seen


def _probe_plan(gm: torch.fx.GraphModule, source: str, sink: str, zero_values: dict[str, torch.Tensor]):
    """Nodes to run for ``source`` -> ``sink`` (the sink's ancestors) and those that stay at their zero-run value
    (not downstream of the source)."""
    by_target = {n.target: n for n in gm.graph.nodes if n.op == "call_module"}
    sink_node = next(n for n in gm.graph.nodes if n.op == "output") if sink == "output" else by_target[sink]
    src_node = next(n for n in gm.graph.nodes if n.op == "placeholder") if source == "input" else by_target[source]
    needed = _reachable(sink_node, lambda n: n.all_input_nodes)
    down = _reachable(src_node, lambda n: n.users)
    constant = {k: zero_values[k] for k in needed if k not in down and k in zero_values and k != sink_node.name}
    return needed, constant


def _linear_graph(gm: torch.fx.GraphModule) -> tuple[list[str], dict[str, list[str]]]:
    """Neuron names in graph order and, for each sink (every neuron and ``"output"``), its sources (neurons or
    ``"input"``) through linear layers only. Raises :class:`NIRExportError` for any other layer."""
    neurons: list[str] = []
    for node in gm.graph.nodes:
        if node.op == "call_module":
            m = gm.get_submodule(node.target)
            if isinstance(m, SpikingNeuron):
                neurons.append(node.target)
            elif not isinstance(m, _LINEAR_MODULES):
                raise NIRExportError(
                    f"layer {node.target!r} ({type(m).__name__}) cannot be exported to NIR; supported between "
                    "spiking layers: Conv2d, ConvTranspose2d, AvgPool2d, concatenation, addition, dropout."
                )
        elif node.op == "call_function" and node.target not in _LINEAR_FUNCTIONS:
            if getattr(node.target, "__name__", "") != "check_unet_input":
                raise NIRExportError(
                    f"operation {node.name!r} ({getattr(node.target, '__name__', node.target)}) cannot be exported "
                    "to NIR; supported functions: torch.cat, addition."
                )
        elif node.op in ("call_method", "get_attr"):
            raise NIRExportError(f"graph node {node.name!r} ({node.op} {node.target}) cannot be exported to NIR.")

    def sources(node: torch.fx.Node, found: list[str]) -> None:
        for arg in node.all_input_nodes:
            if arg.op == "placeholder":
                if "input" not in found:
                    found.append("input")
            elif arg.op == "call_module" and arg.target in neurons:
                if arg.target not in found:
                    found.append(arg.target)
            else:
                sources(arg, found)

    sinks: dict[str, list[str]] = {}
    for node in gm.graph.nodes:
        if (node.op == "call_module" and node.target in neurons) or node.op == "output":
            found: list[str] = []
            sources(node, found)
            sinks["output" if node.op == "output" else node.target] = found
    return neurons, sinks


def _edge_kernel(
    gm: torch.fx.GraphModule,
    source: str,
    sink: str,
    shapes: dict[str, tuple[int, ...]],
    cells: dict[str, int],
    pixels: dict[str, int],
    canvas: int,
    zero_response: torch.Tensor,
    zero_values: dict[str, torch.Tensor],
    chunk: int = 256,
) -> tuple[np.ndarray, int, tuple[int, int]]:
    """Weights, stride and padding of the convolution on the polyphase grids equal to the linear map from
    ``source``'s output to ``sink``'s input (bias excluded), measured with impulses on a ``canvas`` x ``canvas``
    image: one impulse per input channel and phase of the stride, ``chunk`` impulses per run."""
    a_s, a_n, p_s, p_n = cells[source], cells[sink], pixels[source], pixels[sink]
    f_s, f_n, stride = a_s // p_s, a_n // p_n, a_n // a_s
    n_s, n_n = canvas // a_s, canvas // a_n
    b = shapes[source][0] * f_s * f_s
    centre = stride * (n_s // (2 * stride))
    ys = torch.arange(n_n)
    needed, constant = _probe_plan(gm, source, sink, zero_values)
    probes = [(dy, dx, c) for dy in range(stride) for dx in range(stride) for c in range(b)]
    taps: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (d_y, d_x, channels, response)
    for k0 in range(0, len(probes), chunk):
        batch = probes[k0 : k0 + chunk]
        idx = torch.tensor(batch)
        coarse = torch.zeros(len(batch), b, n_s, n_s)
        coarse[torch.arange(len(batch)), idx[:, 2], centre + idx[:, 0], centre + idx[:, 1]] = 1.0
        probe = F.pixel_shuffle(coarse, f_s) if f_s > 1 else coarse
        x = probe if source == "input" else torch.zeros(len(batch), shapes["input"][0], canvas, canvas)
        interp = _Probe(gm, {} if source == "input" else {source: probe}, needed, constant)
        with torch.no_grad():
            interp.run(x)
        resp = interp.inputs[sink] - zero_response
        resp = F.pixel_unshuffle(resp, f_n) if f_n > 1 else resp  # [chunk, c_n f_n^2, n_n, n_n]
        mag = resp.abs().amax(dim=1)  # [chunk, n_n, n_n]
        border = torch.cat([mag[:, 0], mag[:, -1], mag[:, :, 0], mag[:, :, -1]], dim=1).amax()
        if float(border) > 1e-6 * max(float(mag.max()), 1e-12):
            raise _CanvasTooSmall(f"synapses {source!r} -> {sink!r} reach the border of the {canvas} px canvas")
        for phase in {(dy, dx) for dy, dx, _ in batch}:
            sel = torch.nonzero((idx[:, 0] == phase[0]) & (idx[:, 1] == phase[1])).flatten()
            m = mag[sel].amax(0)
            rows = torch.nonzero(m.amax(1) > 0).flatten()
            cols = torch.nonzero(m.amax(0) > 0).flatten()
            if len(rows) == 0:
                continue
            crop = resp[sel][:, :, rows][:, :, :, cols]
            taps.append(
                (centre + phase[0] - stride * ys[rows], centre + phase[1] - stride * ys[cols], idx[sel, 2], crop)
            )
    if not taps:
        raise NIRExportError(f"synapses {source!r} -> {sink!r} are all zero; nothing to export.")
    pad, size = [], []
    for i in (0, 1):
        lo = min(int(t[i].min()) for t in taps)
        hi = max(int(t[i].max()) for t in taps)
        p = max(-lo, hi + 1 - stride, 0)
        pad.append(p)
        size.append(max(hi + p + 1, 2 * p + 1))
    # conv2d reads w[k] against in[stride * y + k - pad]; the probes measured d = in - stride * y, so k = d + pad
    weight = torch.zeros(zero_response.shape[1] * f_n * f_n, b, size[0], size[1])
    for d_y, d_x, cs, crop in taps:
        weight[:, cs[:, None, None], (d_y + pad[0])[None, :, None], (d_x + pad[1])[None, None, :]] = crop.permute(
            1, 0, 2, 3
        )
    return weight.numpy(), stride, (pad[0], pad[1])


class _CanvasTooSmall(Exception):
    pass


def to_nir(snn: nn.Module, input_shape: Sequence[int], *, canvas: int | None = None, check: bool = True) -> Any:
    """Export a converted or fine-tuned spiking U-Net (IF neurons, static input) to an NIR graph.

    Args:
        snn: a :class:`~monai_snn.networks.SpikingSimulator` over a 2D network with IF neurons.
        input_shape: ``(C, H, W)`` of the input; NIR's neuron nodes have fixed shapes, so the graph is for this
            size. ``H`` and ``W`` must be multiples of the coarsest grid cell (the network's size divisor).
        canvas: size of the impulse canvas used to measure the synapses (default: 4 x the coarsest cell, doubled
            while a synapse reaches its border).
        check: compare every exported synapse with the original layers on random spikes (relative error 1e-4).

    Returns:
        ``nir.NIRGraph`` with nodes ``input``, one ``IF`` per spiking layer (the layer's name, dots as ``_``),
        one ``Conv2d`` per synapse block (``<target>__from__<source>``) and ``output``; graph metadata: producer,
        ``num_steps``, ``pixel_shuffle`` (the output's polyphase factor), ``readout`` and ``approximations``.

    Raises:
        TypeError: ``snn`` is not a spiking simulator (e.g. an ANN: convert it first).
        NIRExportError: a layer NIR cannot express (named), Poisson input, 3D networks, a bad ``input_shape``.
        ImportError: ``nir`` is not installed (names the extra to install).

    Example::

        graph = to_nir(snn, (1, 64, 64))
        nir.write("hippocampus_if.nir", graph)
    """
    from monai_snn.networks.simulator import SpikingSimulator

    nir = _import_nir()
    if not isinstance(snn, SpikingSimulator):
        raise TypeError(
            f"to_nir exports spiking networks, got {type(snn).__name__}; convert the ANN first "
            "(monai_snn.conversion.convert_to_snn(ann, calibration, neuron='if')) or export the ANN as TorchScript."
        )
    if type(snn.encoder).__name__ != "StaticEncoder":
        raise NIRExportError(f"input encoding {snn.encoder!r}: only static input (an input current) is exported.")
    if snn.spatial_dims not in (None, 2):
        raise NIRExportError(f"NIR has 1D and 2D convolutions only; this network is {snn.spatial_dims}D.")
    if len(input_shape) != 3 or any(int(s) < 1 for s in input_shape):
        raise NIRExportError(f"input_shape must be (C, H, W), got {tuple(input_shape)}.")
    c_in, h, w = (int(s) for s in input_shape)
    gm = snn.network.eval()
    neurons, sinks = _linear_graph(gm)
    if not neurons:
        raise NIRExportError("the network has no spiking layer; nothing to export to NIR.")
    approximations: set[str] = set()
    modules = dict(gm.named_modules())
    for name in neurons:
        approximations.update(_neuron_check(name, modules[name]))

    # shapes and pixel sizes at the real input size
    interp = _Probe(gm, {})
    try:
        with torch.no_grad():
            interp.run(torch.zeros(1, c_in, h, w))
    except (ValueError, RuntimeError) as e:
        msg = str(e).split("\n")[0]
        raise NIRExportError(f"input_shape {(c_in, h, w)} does not fit the network: {msg}") from None
    shapes: dict[str, tuple[int, ...]] = {"input": (c_in, h, w)}
    shapes.update({k: tuple(v.shape[1:]) for k, v in interp.inputs.items()})
    pixels = {"input": 1}
    for k, s in shapes.items():
        if len(s) != 3:
            raise NIRExportError(f"layer {k!r} has shape {s}; NIR export handles 2D feature maps [C, H, W].")
        if k != "input":
            if h % s[1] or w % s[2] or h // s[1] != w // s[2]:
                raise NIRExportError(f"layer {k!r}: size {s[1:]} is not an integer fraction of the input {h}x{w}.")
            pixels[k] = h // s[1]
    cells = {"input": 1}
    for sink in [*neurons, "output"]:
        cells[sink] = max([pixels[sink]] + [cells[s] for s in sinks[sink]])
    coarsest = max(cells.values())
    if h % coarsest or w % coarsest:
        raise NIRExportError(f"input {h}x{w} must be a multiple of {coarsest} (the coarsest grid of the export).")
    canvas = int(canvas or 4 * coarsest)
    if canvas % coarsest:
        raise NIRExportError(f"canvas {canvas} must be a multiple of {coarsest}.")
    for _ in range(4):
        try:
            synapses, zero_inputs = _measure(gm, neurons, sinks, shapes, cells, pixels, c_in, canvas)
            break
        except _CanvasTooSmall:
            canvas *= 2
    else:
        raise NIRExportError(f"the synapses reach beyond a {canvas} px canvas; this network is too wide to export.")

    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array([c_in, h, w])})}
    edges: list[tuple[str, str]] = []
    for sink in [*neurons, "output"]:
        a, f = cells[sink], cells[sink] // pixels[sink]
        c_sink = shapes[sink][0] * f * f
        grid = (h // a, w // a)
        bias = synapses[sink]["bias"]
        for i, src in enumerate(sinks[sink]):
            weight, stride, pad = synapses[sink][src]
            theta = 1.0 if src == "input" else modules[src].levels[0]
            weight = weight * np.float32(theta)  # NIR's IF emits 1, ours theta
            b = bias.numpy() if i == 0 else np.zeros(c_sink, np.float32)
            conv = f"{_nir_name(sink)}__from__{_nir_name(src)}"
            in_grid = (h // cells[src], w // cells[src])
            nodes[conv] = nir.Conv2d(in_grid, weight, stride, pad, 1, 1, b.astype(np.float32))
            edges += [(_nir_name(src), conv), (conv, _nir_name(sink))]
        shape = (c_sink, *grid)
        if sink == "output":
            nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
        else:
            theta = modules[sink].levels[0]
            nodes[_nir_name(sink)] = nir.IF(
                r=np.ones(shape, np.float32),
                v_threshold=np.full(shape, theta, np.float32),
                v_reset=np.zeros(shape, np.float32),
            )
    metadata = {
        "producer": "monai_snn",
        "num_steps": int(snn.num_steps),
        "pixel_shuffle": int(cells["output"] // pixels["output"]),
        "readout": "mean over num_steps of the output node, then pixel_shuffle",
        "approximations": sorted(approximations),
    }
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)
    if approximations:
        warnings.warn(
            "NIR export uses the closest NIR semantics: " + "; ".join(sorted(approximations)) + ". Measure the "
            "cost with monai_snn.export.nir_semantics (see benchmarks/nir_roundtrip.py).",
            stacklevel=2,
        )
    if check:
        _check_synapses(graph, gm, modules, sinks, cells, pixels, c_in, canvas, zero_inputs)
    return graph


def _measure(gm, neurons, sinks, shapes, cells, pixels, c_in, canvas) -> tuple[dict[str, dict[str, Any]], dict]:
    """Bias and (weight, stride, padding) of every synapse block, per sink; and the all-zero run's sink inputs."""
    zero = _Probe(gm, {}, record_all=True)
    with torch.no_grad():
        zero.run(torch.zeros(1, c_in, canvas, canvas))
    out: dict[str, dict[str, Any]] = {}
    for sink in [*neurons, "output"]:
        f = cells[sink] // pixels[sink]
        zr = zero.inputs[sink]
        zc = F.pixel_unshuffle(zr, f) if f > 1 else zr
        bias = zc.mean(dim=(2, 3))[0]
        if float((zc - bias[None, :, None, None]).abs().max()) > 1e-5 * max(float(bias.abs().max()), 1.0):
            raise NIRExportError(f"the bias reaching {sink!r} is not uniform over the image; cannot export it.")
        out[sink] = {"bias": bias}
        for src in sinks[sink]:
            out[sink][src] = _edge_kernel(gm, src, sink, shapes, cells, pixels, canvas, zr, zero.values)
    return out, zero.inputs


def _check_synapses(graph, gm, modules, sinks, cells, pixels, c_in, canvas, zero_inputs: dict[str, torch.Tensor]):
    """Each sink's input from random spikes: the exported convolutions against the original layers (on the probe
    canvas, whose all-zero run ``zero_inputs`` gives the shapes)."""
    gen = torch.Generator().manual_seed(0)
    inject: dict[str, torch.Tensor] = {}
    for k, v in zero_inputs.items():
        if k != "output":
            theta = modules[k].levels[0]
            inject[k] = (torch.rand(v.shape, generator=gen) < 0.3).float() * theta
    x = torch.rand(1, c_in, canvas, canvas, generator=gen)
    ref = _Probe(gm, inject)
    with torch.no_grad():
        ref.run(x)
    for sink, srcs in sinks.items():
        total = 0.0
        for src in srcs:
            node = graph.nodes[f"{_nir_name(sink)}__from__{_nir_name(src)}"]
            val = x if src == "input" else inject[src] / modules[src].levels[0]
            f_s = cells[src] // pixels[src]
            val = F.pixel_unshuffle(val, f_s) if f_s > 1 else val
            total = total + F.conv2d(val, torch.from_numpy(node.weight), torch.from_numpy(node.bias),
                                     stride=node.stride, padding=node.padding)  # fmt: skip
        f_n = cells[sink] // pixels[sink]
        want = F.pixel_unshuffle(ref.inputs[sink], f_n) if f_n > 1 else ref.inputs[sink]
        err = float((total - want).abs().max()) / max(float(want.abs().max()), 1e-6)
        if err > 1e-4:
            raise NIRExportError(f"exported synapses into {sink!r} differ from the network (relative error {err:.2e}).")


def write_nir(snn: nn.Module, path: str | os.PathLike, input_shape: Sequence[int], **kwargs: Any) -> Any:
    """:func:`to_nir` and ``nir.write`` to ``path`` (HDF5 ``.nir``); returns the graph.

    Example::

        write_nir(snn, "model.nir", (1, 64, 64))
    """
    nir = _import_nir()
    graph = to_nir(snn, input_shape, **kwargs)
    nir.write(str(path), graph)
    return graph


class NIRSimulator(nn.Module):
    """An NIR graph written by :func:`to_nir`, simulated with norse's node semantics wired by nirtorch.

    Maps ``[B, C, H, W]`` (static input, presented at every step) to the mean over ``num_steps`` of the output
    node, pixel-shuffled back to ``[B, K, H, W]``: a drop-in for the spiking network in MONAI inferers and
    evaluators.

    Args:
        graph: an ``nir.NIRGraph`` or the path of a ``.nir`` file.
        num_steps: ``T`` (default: the graph's metadata ``num_steps``).

    Raises:
        ImportError: ``nir``, ``nirtorch`` or ``norse`` missing (names the extra to install).
        ValueError: no ``num_steps`` given or stored.

    Example::

        y = NIRSimulator("model.nir")(images)
    """

    def __init__(self, graph: Any, num_steps: int | None = None) -> None:
        super().__init__()
        nir = _import_nir()
        try:
            import nirtorch
            from norse.torch.utils.import_nir import _import_norse_module
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(f"running NIR graphs needs nirtorch and norse ({e}); {_EXTRA}.") from None
        if isinstance(graph, (str, os.PathLike)):
            graph = nir.read(str(graph))
        meta = {k: (v.item() if getattr(v, "size", 0) == 1 else v) for k, v in (graph.metadata or {}).items()}
        steps = num_steps if num_steps is not None else meta.get("num_steps")
        if steps is None:
            raise ValueError("num_steps is neither given nor stored in the graph's metadata.")
        self.num_steps = int(steps)
        self.shuffle = int(meta.get("pixel_shuffle", 1))
        self.input_shape = tuple(int(s) for s in graph.nodes["input"].input_type["input"])

        def importer(node):
            return _import_norse_module(node, ignore_warnings=True)

        self.module = nirtorch.nir_to_torch(graph, {nir.Conv2d: importer, nir.IF: importer})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"the NIR graph was exported for inputs {self.input_shape}, got {tuple(x.shape[1:])}.")
        state, total = None, None
        with torch.no_grad():
            for _ in range(self.num_steps):
                y, state = self.module(x, state)
                total = y.clone() if total is None else total.add_(y)
        out = total / self.num_steps
        return F.pixel_shuffle(out, self.shuffle) if self.shuffle > 1 else out


def run_nir(graph: Any, x: torch.Tensor, num_steps: int | None = None) -> torch.Tensor:
    """Simulate an NIR graph written by :func:`to_nir` on ``x`` (see :class:`NIRSimulator`).

    Example::

        y = run_nir("model.nir", images)
    """
    return NIRSimulator(graph, num_steps)(x)
