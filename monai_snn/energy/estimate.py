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

__all__ = ["E_AC_J", "E_MAC_J", "fanout_map", "synaptic_operations", "estimate_energy"]

E_AC_J = 0.9e-12
E_MAC_J = 4.6e-12

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
        ``sops_per_layer`` and ``batch_size``.

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
    return {
        "sops": sum(sops_layers.values()),
        "macs_first_layer": macs_first,
        "macs_ann": macs_ann,
        "sops_per_layer": sops_layers,
        "batch_size": batch,
    }


def estimate_energy(
    snn: SpikingSimulator, inputs: torch.Tensor, e_ac: float = E_AC_J, e_mac: float = E_MAC_J
) -> dict[str, Any]:
    """Run ``snn`` on ``inputs`` and estimate its energy against the ANN's.

    Args:
        snn: the spiking network.
        inputs: a batch ``[B, C, *spatial]``.
        e_ac: energy per accumulate (synaptic operation), joules; 0.9 pJ (45 nm, Horowitz 2014).
        e_mac: energy per multiply-accumulate, joules; 4.6 pJ.

    Returns:
        dict with ``sops``, ``macs_ann``, ``macs_first_layer``, ``energy_snn_j``, ``energy_ann_j``,
        ``energy_ratio`` (SNN / ANN), ``num_steps``, ``batch_size``, ``firing_rates`` and ``sops_per_layer``
        (all totals are for the whole batch and all time steps).

    Example::

        report = estimate_energy(snn, images)
        report["energy_snn_j"] / report["energy_ann_j"]
    """
    with torch.no_grad():
        snn(inputs)
    ops = synaptic_operations(snn)
    energy_snn = ops["sops"] * e_ac + ops["macs_first_layer"] * e_mac
    energy_ann = ops["macs_ann"] * e_mac
    return {
        **ops,
        "energy_snn_j": energy_snn,
        "energy_ann_j": energy_ann,
        "energy_ratio": energy_snn / energy_ann if energy_ann > 0 else float("nan"),
        "num_steps": snn.num_steps,
        "firing_rates": snn.firing_rates(),
    }
