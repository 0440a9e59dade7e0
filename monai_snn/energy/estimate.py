"""Synaptic operations and energy of a spiking network versus its ANN.

Counting rules (Spiking-UNet / Rueckauer et al.):

* every spike (each level of a multi-threshold neuron counts as one spike) costs one accumulate (0.9 pJ) per
  synapse it reaches; the fan-out of each neuron is exact, borders included (the structural connections of the
  convolution it feeds, found by differentiating an all-ones convolution);
* a spike that goes through average pooling reaches the fan-out of the pooled position (pooling folded into the
  next convolution, as on neuromorphic hardware);
* a first layer fed by a static analog input is counted as multiply-accumulates (4.6 pJ), once per sample;
  with Poisson input it is counted per input spike like any other layer;
* the ANN costs one MAC per connection per sample.

That is the compute-only model of the papers. :func:`memory_energy` adds a memory-inclusive estimate (a simplified
form of Lemaire et al. 2022, "An analytical estimation of spiking neural networks energy efficiency"), every
access ``E_MEM_J`` = 5 pJ (one 32-bit word of an 8 KB SRAM in 45 nm, Horowitz 2014), no data reuse on either side:

* ANN: per MAC a weight read and an input read; per activation one write;
* SNN: per synaptic operation a weight read and a read + write of the target's membrane potential (event-driven
  accumulation); per neuron and time step a read + write of its potential (leak, threshold, reset); per spike one
  write of the event; an analog first layer as ANN MACs.

Memory then dominates both sides, and an SNN saves far less than the compute-only ratio suggests (each synaptic
operation moves three words where the ANN's MAC moves two): the reason the estimates in the literature disagree.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from monai_snn.conversion.graph import SYNAPSE_TYPES
from monai_snn.networks.simulator import SpikingSimulator
from monai_snn.neurons.neuron import SpikingNeuron

__all__ = ["E_AC_J", "E_MAC_J", "E_MEM_J", "fanout_map", "synaptic_operations", "memory_energy", "estimate_energy"]

E_AC_J = 0.9e-12
E_MAC_J = 4.6e-12
E_MEM_J = 5e-12  # one 32-bit SRAM access (8 KB bank, 45 nm; Horowitz 2014: 10 pJ per 64-bit read)

_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_AVGPOOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)


def fanout_map(module: nn.Module, in_shape: tuple[int, ...]) -> torch.Tensor:
    """Number of synapses leaving each input element of a (transposed) convolution, for one sample.

    Args:
        module: a ``Conv*d`` or ``ConvTranspose*d``.
        in_shape: ``(C_in, *spatial)`` of its input.

    Returns:
        a tensor of shape ``in_shape``.
    """
    x = torch.ones((1, *in_shape), requires_grad=True, device=module.weight.device)
    ones = torch.ones_like(module.weight)
    dims = module.weight.ndim - 2
    with torch.enable_grad():
        if isinstance(module, _TRANSPOSED):
            fn = getattr(F, f"conv_transpose{dims}d")
            y = fn(x, ones, None, module.stride, module.padding, module.output_padding, module.groups, module.dilation)
        else:
            fn = getattr(F, f"conv{dims}d")
            y = fn(x, ones, None, module.stride, module.padding, module.dilation, module.groups)
        (grad,) = torch.autograd.grad(y.sum(), x)
    return grad[0].detach()


def _events_through(module: nn.Module, counts: torch.Tensor) -> torch.Tensor:
    """Propagate spike counts through a parameter-free linear layer (pooling sums events)."""
    if isinstance(module, _AVGPOOL):
        k = module.kernel_size if isinstance(module.kernel_size, tuple) else (module.kernel_size,) * (counts.ndim - 2)
        return module(counts) * math.prod(k)
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        out = module(counts)
        return out * (counts[0, 0].numel() / out[0, 0].numel())
    if isinstance(module, nn.Upsample):
        return module(counts)
    return counts  # dropout / identity at inference


@torch.no_grad()
def synaptic_operations(snn: SpikingSimulator) -> dict[str, Any]:
    """Synaptic operations of the last forward pass of ``snn`` (call it right after a forward pass).

    Returns:
        a dict with ``sops`` (total accumulates over all steps and samples), ``macs_first_layer`` (analog
        first-layer MACs, static input only), ``macs_ann`` (MACs of the ANN on the same inputs),
        ``sops_per_layer``, ``batch_size``, and for :func:`memory_energy`: ``neurons`` (spiking neurons of the
        batch, i.e. the ANN's activations), ``neuron_updates`` (neurons x time steps) and ``spikes`` (all levels).

    Raises:
        RuntimeError: no forward pass was run since the last reset.
    """
    gm = snn.network
    if snn.last_input_shape is None:
        raise RuntimeError("no spikes recorded: run the spiking network on an input first.")
    modules = dict(gm.named_modules())
    env: dict[str, torch.Tensor] = {}  # per node: events summed over time, or a shape carrier on analog paths
    analog: dict[str, bool] = {}
    sops_layers: dict[str, float] = {}
    macs_first = macs_ann = 0.0
    batch = snn.last_input_shape[0]
    for node in gm.graph.nodes:
        inputs = node.all_input_nodes
        if node.op == "placeholder":
            analog[node.name] = snn.encoder.static
            env[node.name] = torch.ones(snn.last_input_shape) if snn.encoder.static else snn.input_spike_count
            continue
        if node.op == "output":
            continue
        mod = modules.get(node.target) if node.op == "call_module" else None
        analog[node.name] = any(analog[a.name] for a in inputs) and not isinstance(mod, SpikingNeuron)
        if isinstance(mod, SpikingNeuron):
            if mod.spike_count is None:
                raise RuntimeError(f"spiking layer {node.target!r} recorded no spikes in the last forward pass.")
            env[node.name] = mod.spike_count
        elif isinstance(mod, SYNAPSE_TYPES):
            src = env[inputs[0].name]
            fan = fanout_map(mod, tuple(src.shape[1:]))
            connections = float(fan.sum()) * batch
            macs_ann += connections
            if analog[inputs[0].name]:  # static analog input: one MAC per connection, once per sample
                macs_first += connections
                sops_layers[node.target] = 0.0
            else:
                sops_layers[node.target] = float((src.to(fan.device) * fan).sum())
            env[node.name] = torch.zeros(0)  # a synapse's output only feeds a neuron or the readout
        elif node.op == "call_function" and node.target in (torch.cat, torch.concat, torch.concatenate):
            env[node.name] = torch.cat([env[a.name] for a in node.args[0]], dim=1)
        elif mod is not None:
            src = env[inputs[0].name]
            # an empty carrier is a synapse's analog output (e.g. batch norm, or upsampling of the readout)
            env[node.name] = src if src.numel() == 0 else _events_through(mod, src)
        else:  # the input check function and other pass-through functions
            env[node.name] = env[inputs[0].name]
    neurons = [m for m in modules.values() if isinstance(m, SpikingNeuron)]
    return {
        "sops": sum(sops_layers.values()),
        "macs_first_layer": macs_first,
        "macs_ann": macs_ann,
        "sops_per_layer": sops_layers,
        "batch_size": batch,
        "neurons": float(sum(m._num_neurons for m in neurons)),
        "neuron_updates": float(sum(m._num_neurons * m.num_steps for m in neurons)),
        "spikes": float(sum(float(m.spike_count.sum()) for m in neurons if m.spike_count is not None)),
    }


def memory_energy(ops: dict[str, Any], e_mem: float = E_MEM_J) -> dict[str, float]:
    """Memory-access energy of the SNN and of its ANN from the counts of :func:`synaptic_operations` (the model of
    the module docstring), joules for the whole batch.

    Returns:
        ``{"memory_snn_j", "memory_ann_j"}``.

    Example::

        mem = memory_energy(synaptic_operations(snn))
    """
    snn = (3 * ops["sops"] + 2 * ops["neuron_updates"] + ops["spikes"] + 2 * ops["macs_first_layer"]) * e_mem
    ann = (2 * ops["macs_ann"] + ops["neurons"]) * e_mem
    return {"memory_snn_j": snn, "memory_ann_j": ann}


def estimate_energy(
    snn: SpikingSimulator,
    inputs: torch.Tensor,
    e_ac: float = E_AC_J,
    e_mac: float = E_MAC_J,
    e_mem: float = E_MEM_J,
) -> dict[str, Any]:
    """Run ``snn`` on ``inputs`` and estimate its energy against the ANN's.

    Args:
        snn: the spiking network.
        inputs: a batch ``[B, C, *spatial]``.
        e_ac: energy per accumulate (synaptic operation), joules; 0.9 pJ (45 nm, Horowitz 2014).
        e_mac: energy per multiply-accumulate, joules; 4.6 pJ.
        e_mem: energy per memory access of the memory-inclusive estimate, joules; 5 pJ.

    Returns:
        dict with ``sops``, ``macs_ann``, ``macs_first_layer``, ``energy_snn_j``, ``energy_ann_j``,
        ``energy_ratio`` (SNN / ANN, compute only), ``memory_snn_j``, ``memory_ann_j``, ``energy_ratio_mem``
        (SNN / ANN with memory accesses: (compute + memory) / (compute + memory)), ``num_steps``, ``batch_size``,
        ``firing_rates`` and ``sops_per_layer`` (all totals are for the whole batch and all time steps).

    Example::

        report = estimate_energy(snn, images)
        report["energy_snn_j"] / report["energy_ann_j"]
    """
    with torch.no_grad():
        snn(inputs)
    ops = synaptic_operations(snn)
    energy_snn = ops["sops"] * e_ac + ops["macs_first_layer"] * e_mac
    energy_ann = ops["macs_ann"] * e_mac
    mem = memory_energy(ops, e_mem)
    total_ann = energy_ann + mem["memory_ann_j"]
    return {
        **ops,
        **mem,
        "energy_snn_j": energy_snn,
        "energy_ann_j": energy_ann,
        "energy_ratio": energy_snn / energy_ann if energy_ann > 0 else float("nan"),
        "energy_ratio_mem": (energy_snn + mem["memory_snn_j"]) / total_ann if total_ann > 0 else float("nan"),
        "num_steps": snn.num_steps,
        "firing_rates": snn.firing_rates(),
    }
