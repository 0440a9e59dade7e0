"""Synaptic operations and energy estimates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monai_snn.conversion import convert_to_snn
from monai_snn.energy import E_AC_J, E_MAC_J, estimate_energy, fanout_map, synaptic_operations
from monai_snn.networks import ConvertibleUNet


def test_fanout_is_exact_at_borders():
    conv = nn.Conv2d(2, 5, 3, padding=1)
    fan = fanout_map(conv, (2, 4, 4))
    assert fan[0, 0, 0] == 5 * 4 and fan[0, 1, 1] == 5 * 9 and fan[1, 0, 1] == 5 * 6
    up = nn.ConvTranspose2d(3, 4, 2, stride=2)
    assert torch.all(fanout_map(up, (3, 2, 2)) == 4 * 4)


def macs_by_formula(ann: nn.Module, x: torch.Tensor) -> float:
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.ConvTranspose2d):
            total += inp[0].numel() * m.out_channels * m.weight[0, 0].numel()

    handles = [m.register_forward_hook(hook) for m in ann.modules() if isinstance(m, nn.ConvTranspose2d)]
    ann(x)
    for h in handles:
        h.remove()
    return total


def test_energy_report_static_and_poisson():
    torch.manual_seed(0)
    ann = ConvertibleUNet(2, 1, 1, channels=(4, 8)).eval()
    x = torch.rand(3, 1, 8, 8)
    snn = convert_to_snn(ann, [x], num_steps=6)
    rep = estimate_energy(snn, x)
    for key in ("sops", "macs_ann", "energy_snn_j", "energy_ann_j", "firing_rates", "sops_per_layer"):
        assert key in rep
    # the first layer under static input is analog: MACs once per sample, no SOPs
    first = ann.encoder[0][0]
    assert rep["sops_per_layer"]["encoder.0.0"] == 0
    assert rep["macs_first_layer"] == pytest.approx(3 * float(fanout_map(first, (1, 8, 8)).sum()))
    assert rep["energy_snn_j"] == pytest.approx(rep["sops"] * E_AC_J + rep["macs_first_layer"] * E_MAC_J)
    assert rep["energy_ann_j"] == pytest.approx(rep["macs_ann"] * E_MAC_J)
    # transposed convolution MACs agree with the textbook formula (no padding, so no border effect)
    assert float(fanout_map(ann.up[0][0], (8, 4, 4)).sum()) * 3 == pytest.approx(macs_by_formula(ann, x))
    # SOPs of one layer = spikes of its source x exact fan-out
    neuron = snn.network.get_submodule("encoder.0.1")
    expected = float((neuron.spike_count * fanout_map(ann.encoder[0][2], (4, 8, 8))).sum())
    assert rep["sops_per_layer"]["encoder.0.2"] == pytest.approx(expected)
    # twice the time steps, about twice the operations
    snn.num_steps = 12
    assert estimate_energy(snn, x)["sops"] == pytest.approx(2 * rep["sops"], rel=0.1)
    # Poisson input: the first layer now counts input spikes
    snn.encoder = "poisson_binary"
    rep_p = estimate_energy(snn, x)
    assert rep_p["macs_first_layer"] == 0 and rep_p["sops_per_layer"]["encoder.0.0"] > 0


def test_multi_threshold_counts_every_spike():
    conv = nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    net = nn.Sequential(conv, nn.ReLU(), nn.Conv2d(1, 1, 1))
    # calibrated on 1.0, so an input of 3.75 is 3.75 thresholds: one spike at each level 2, 1, 0.5, 0.25
    snn = convert_to_snn(net, [torch.ones(1, 1, 1, 1)], percentile=100, num_steps=1, initial_potential=0.0)
    rep = estimate_energy(snn, torch.full((1, 1, 1, 1), 3.75))
    assert snn.network.get_submodule("1").spike_count.item() == 4
    assert rep["sops_per_layer"]["2"] == 4  # a graded output is counted per spike, not as one event


def test_requires_a_forward_pass():
    ann = ConvertibleUNet(2, 1, 1, channels=(2, 4))
    snn = convert_to_snn(ann, [torch.rand(1, 1, 8, 8)])
    with pytest.raises(RuntimeError, match="run the spiking network"):
        synaptic_operations(snn)


def test_memory_inclusive_estimate_counts():
    from monai_snn.energy import E_MEM_J, memory_energy

    ops = {"sops": 10.0, "neuron_updates": 6.0, "spikes": 4.0, "macs_first_layer": 2.0, "macs_ann": 20.0,
           "neurons": 3.0}  # fmt: skip
    mem = memory_energy(ops, e_mem=1.0)
    assert mem == {"memory_snn_j": 3 * 10 + 2 * 6 + 4 + 2 * 2, "memory_ann_j": 2 * 20 + 3}
    torch.manual_seed(0)
    ann = ConvertibleUNet(2, 1, 1, (4, 8))
    x = torch.rand(2, 1, 16, 16)
    snn = convert_to_snn(ann, [x], num_steps=3)
    r = estimate_energy(snn, x)
    # batch x (encoder 2 x 4 @ 16^2, bottom 2 x 8 @ 8^2, up-conv 4 @ 16^2, decoder 2 x 4 @ 16^2)
    relu_outputs = 2 * (2 * 4 * 256 + 2 * 8 * 64 + 4 * 256 + 2 * 4 * 256)
    assert r["neurons"] == relu_outputs and r["neuron_updates"] == 3 * relu_outputs
    assert r["spikes"] == sum(float(m.spike_count.sum()) for m in snn.neurons().values()) > 0
    assert r["memory_snn_j"] == pytest.approx(memory_energy(r, E_MEM_J)["memory_snn_j"])
    total = (r["energy_snn_j"] + r["memory_snn_j"]) / (r["energy_ann_j"] + r["memory_ann_j"])
    assert r["energy_ratio_mem"] == pytest.approx(total) and r["energy_ratio_mem"] > r["energy_ratio"]


def test_energy_handler_average_pools_every_batch():
    """average=True: the epoch's figure pools every batch (weighted by samples), not the first batch alone."""
    from monai_snn.engines import SpikingEvaluator
    from monai_snn.handlers import EnergyHandler

    torch.manual_seed(3)
    ann = ConvertibleUNet(2, 1, 1, (4, 8))
    x = torch.cat([torch.rand(3, 1, 16, 16) * 0.1, torch.rand(2, 1, 16, 16) * 3.0])  # quiet batch, busy batch
    snn = convert_to_snn(ann, [x], num_steps=3)
    batches = [{"image": b, "label": torch.zeros_like(b)} for b in (x[:3], x[3:])]
    handlers = {avg: EnergyHandler(snn, average=avg) for avg in (False, True)}
    SpikingEvaluator("cpu", batches, snn, num_steps=3, val_handlers=list(handlers.values())).run()
    parts = [estimate_energy(snn, x[:3]), estimate_energy(snn, x[3:])]
    pooled = sum(p["energy_snn_j"] for p in parts) / sum(p["energy_ann_j"] for p in parts)
    assert handlers[True].last["ratio"] == pytest.approx(pooled, rel=1e-6)
    assert handlers[False].last["ratio"] == pytest.approx(parts[0]["energy_ratio"], rel=1e-6)
    assert handlers[True].last["batch_size"] == 5 and len(handlers[True].history) == 1
    assert abs(handlers[True].last["ratio"] - handlers[False].last["ratio"]) > 1e-3  # the batches differ
