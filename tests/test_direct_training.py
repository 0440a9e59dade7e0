"""Direct-training baselines: BNTT, multi-level (ML) and real-spike (RS) neurons, Spiking-FCN / Spiking-DeepLab."""

from __future__ import annotations

import warnings

import pytest
import torch
from ignite.engine import Events
from torch import nn

from monai_snn.conversion import convert_to_snn
from monai_snn.energy import estimate_energy
from monai_snn.engines import SpikingTrainer, spiking_from_scratch
from monai_snn.networks import FCN, ConvertibleUNet, DeepLab, SpikingDeepLab, SpikingFCN, spiking_unet
from monai_snn.neurons import (
    NEURONS,
    BatchNormThroughTime,
    LIFNeuron,
    MultiLevelNeuron,
    RealSpikeNeuron,
    RectangleSurrogate,
    fold_real_spikes,
    make_neuron,
    reset_states,
)

TINY = {"channels": (4, 8, 8), "head_channels": 8}


# ---------------------------------------------------------------------------------------------------------- BNTT
def test_bntt_keeps_statistics_per_time_step():
    torch.manual_seed(0)
    bntt = BatchNormThroughTime(3, num_steps=2, momentum=1.0)  # momentum 1: running stats = last batch's
    bntt.train()
    x0 = torch.randn(64, 3, 4, 4) * 2.0 + 5.0
    x1 = torch.randn(64, 3, 4, 4) * 0.5 - 3.0
    y0, y1 = bntt(x0), bntt(x1)
    for y in (y0, y1):  # each step normalized with its own batch statistics
        assert y.mean().abs() < 1e-4 and (y.var() - 1).abs() < 0.05
    assert torch.allclose(bntt.norms[0].running_mean, x0.mean((0, 2, 3)), atol=1e-4)
    assert torch.allclose(bntt.norms[1].running_mean, x1.mean((0, 2, 3)), atol=1e-4)
    assert all(n.bias is None and n.weight is not None for n in bntt.norms)  # scale, no shift
    with pytest.raises(RuntimeError, match="batch norms for 2 time steps.*step 3"):
        bntt(x0)
    reset_states(nn.Sequential(bntt))
    bntt.eval()
    assert torch.allclose(bntt(x0).mean(), torch.tensor(0.0), atol=0.05)  # step 0 again, running statistics
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        BatchNormThroughTime(3, num_steps=0)


# ----------------------------------------------------------------------------------------------------- ML neuron
def test_multi_level_neuron_forward_hand_computed():
    mlf = MultiLevelNeuron()  # thresholds 0.6, 1.6, 2.6; leak 0.25; hard reset
    assert mlf.levels[::-1] == pytest.approx((0.6, 1.6, 2.6))
    x = torch.tensor([1.0, 2.0])
    out = torch.stack([mlf(x) for _ in range(3)])
    # x = 1: u = 1 each step (the fired compartment resets, the others hold 1 + 0.25 u < 1.6): one spike per step
    # x = 2: u_2 = 2, 2.5, 2.625: the third compartment fires at step 3
    assert out.tolist() == [[1.0, 2.0], [1.0, 2.0], [1.0, 3.0]]
    assert mlf.firing_rate() == pytest.approx(10 / 6)  # spikes of all compartments / (neurons x steps)


def test_multi_level_neuron_gradients_hand_computed():
    # one step: d out / dx = sum_k 1[|x - theta_k| < 0.5] (rectangular surrogate, width 1)
    x = torch.tensor([0.05, 0.3, 1.5, 3.0, 4.0], requires_grad=True)
    MultiLevelNeuron()(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    # two steps at x = 0.3 (no spike): u1 = x, u2 = 0.25 u1 (1 - s1) + x
    # d o1/dx = 1; d u2_0/dx = 0.25 - 0.25 u1 * rect(u1 - 0.6) + 1 = 1.175 and rect(u2_0 - 0.6) = 1
    x = torch.tensor([0.3], requires_grad=True)
    mlf = MultiLevelNeuron()
    (mlf(x) + mlf(x)).sum().backward()
    assert x.grad.item() == pytest.approx(2.175)


def test_multi_level_soft_reset_and_errors():
    mlf = MultiLevelNeuron(num_levels=2, v_threshold=1.0, leak=1.0, reset="soft")
    out = torch.stack([mlf(torch.tensor([0.75])) for _ in range(4)])
    # compartment 1 (theta 1): u = 0.75, 1.5 -> 0.5, 1.25 -> 0.25, 1.0 -> 0; compartment 2 (theta 2): 0.75, 1.5,
    # 2.25 -> 0.25, 1.0: each keeps its own membrane
    assert out.flatten().tolist() == [0.0, 1.0, 2.0, 1.0]
    with pytest.raises(ValueError, match="num_levels must be a positive integer"):
        MultiLevelNeuron(num_levels=0)
    with pytest.raises(ValueError, match="reset must be 'hard' or 'soft'"):
        MultiLevelNeuron(reset="zero")
    with pytest.raises(ValueError, match="leak must be in \\(0, 1\\]"):
        MultiLevelNeuron(leak=0.0)
    with pytest.raises(ValueError, match="width must be positive"):
        RectangleSurrogate(width=0.0)


# ----------------------------------------------------------------------------------------------------- RS neuron
def test_real_spike_neuron_forward_backward_hand_computed():
    rs = RealSpikeNeuron(num_channels=2, surrogate="triangle")
    with torch.no_grad():
        rs.amplitude.copy_(torch.tensor([2.0, 3.0]))
    x = torch.tensor([[1.5, 0.5]], requires_grad=True)
    out = rs(x)
    assert out.tolist() == [[2.0, 0.0]]  # amplitude x binary spike
    out.sum().backward()
    assert rs.amplitude.grad.tolist() == [1.0, 0.0]  # d out / d a_c = s_c
    # d out / dx = a_c * triangle'(x - 1) = a_c * (1 - |x - 1|)
    assert x.grad.flatten().tolist() == pytest.approx([2.0 * 0.5, 3.0 * 0.5])
    with pytest.raises(RuntimeError, match="2 channel amplitudes.*shape \\(1, 3\\)"):
        rs(torch.zeros(1, 3))


@pytest.mark.parametrize("neuron", ["multi_level", "real_spike", "lif"])
def test_direct_training_networks_build_without_conversion_warnings(neuron):
    """The conversion warnings (leaky / multi-level neurons convert approximately) concern conversion only."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        leak = 0.9 if neuron == "lif" else 1.0
        snn = spiking_from_scratch(ConvertibleUNet(2, 1, 2, (4, 8, 8)), num_steps=2, neuron=neuron, leak=leak)
    assert snn(torch.rand(1, 1, 16, 16)).shape == (1, 2, 16, 16)
    with pytest.warns(UserWarning, match="keeps its direct-training dynamics"):
        convert_to_snn(ConvertibleUNet(2, 1, 2, (4, 8, 8)), None, normalization="none", neuron="multi_level")


@pytest.mark.parametrize("neuron", ["multi_threshold", "multi_level"])
def test_spiking_unet_he_init_keeps_deep_layers_firing_and_learning(neuron):
    """PyTorch's default init silences the deep layers of a from-scratch spiking U-Net; He-normal weights do not."""
    surrogate = "rectangle" if neuron == "multi_level" else "triangle"
    x = torch.rand(2, 1, 48, 48)
    rates, grads = {}, {}
    for init in ("kaiming", None):
        torch.manual_seed(0)
        snn = spiking_unet(1, 1, num_steps=4, channels=(16, 32, 64, 128), neuron=neuron, surrogate=surrogate,
                           weight_init=init)  # fmt: skip
        snn.count_spikes = True
        snn(x).std().backward()
        rates[init] = snn.firing_rates()
        grads[init] = [p.grad.norm().item() for n, p in snn.named_parameters() if "encoder.3" in n and p.dim() > 1]
    deepest = min(rates["kaiming"].values())
    assert deepest > 0.03, rates["kaiming"]  # every layer fires (the least active 0.07-0.49 over six seeds)
    assert min(rates[None].values()) < 0.2 * deepest  # the default init: the deep layers (nearly) silent
    assert min(grads["kaiming"]) > 1e-3 and max(grads[None]) < 1e-2 * min(grads["kaiming"])
    snn = spiking_unet(1, 1, num_steps=2, channels=(4, 8))
    assert snn.settings["kwargs"]["weight_init"] == "kaiming"
    ann = ConvertibleUNet(2, 1, 1, (4, 8))
    before = [p.clone() for p in ann.parameters()]
    kept = spiking_from_scratch(ann, num_steps=2)  # weight_init=None keeps the given weights
    assert all(torch.equal(a, b) for a, b in zip(before, kept.parameters()))
    with pytest.raises(ValueError, match="weight_init='xavier'.*kaiming"):
        spiking_unet(1, 1, num_steps=2, channels=(4, 8), weight_init="xavier")


def test_rate_matched_multi_level_fires_at_the_input_rate():
    """Feng et al.'s threshold shape (0.6 : 1.6 : 2.6) scaled so the compartments' rates sum to the input."""
    ml = make_neuron("multi_level_rate", thresholds=(1.0,), initial_potential=0.0)  # conversion's keywords
    theta = torch.tensor(ml.levels[::-1])
    assert (1 / theta).sum().item() == pytest.approx(1.0)
    assert (theta / theta[0]).tolist() == pytest.approx([1.0, 1.6 / 0.6, 2.6 / 0.6])
    assert ml.leak == 1.0 and not ml.hard_reset
    x = torch.linspace(0, 1.6, 17)  # up to the first compartment's threshold
    for steps in (10, 100):
        ml.reset()
        rate = sum(ml(x) for _ in range(steps)) / steps
        assert (rate - x).abs().max() <= 3 / steps + 1e-6  # each of the 3 compartments floors its own count
    ml = make_neuron("multi_level_rate", initial_potential=0.5)  # each compartment starts at half its threshold
    ml(torch.zeros(1))
    assert ml.v.flatten().tolist() == pytest.approx((0.5 * theta).tolist())
    x = torch.rand(10000, generator=torch.Generator().manual_seed(0))
    ml.reset()
    rate = sum(ml(x) for _ in range(10)) / 10
    assert (rate - x).abs().mean() < 0.045  # rounding per compartment (0.037; 0.064 from half the first threshold)
    with pytest.raises(ValueError, match="leak=1.0"):
        make_neuron("multi_level_rate", leak=0.5)
    with pytest.raises(ValueError, match="first_threshold and level_spacing must be positive"):
        make_neuron("multi_level_rate", level_spacing=0.0)


def test_fold_real_spikes_keeps_outputs_and_sends_binary_spikes():
    torch.manual_seed(0)
    snn = spiking_from_scratch(ConvertibleUNet(2, 1, 2, (4, 8, 8)), num_steps=4, neuron="real_spike")
    neurons = [m for m in snn.modules() if isinstance(m, RealSpikeNeuron)]
    assert neurons and [m.num_channels for m in neurons[:2]] == [4, 4]
    with torch.no_grad():
        for m in neurons:
            m.amplitude.uniform_(0.5, 2.0)
    x = torch.rand(2, 1, 16, 16) * 3
    snn.eval()
    before = snn(x)
    assert fold_real_spikes(snn) == len(neurons)
    outputs = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: outputs.append(out)) for m in neurons]
    after = snn(x)
    for h in hooks:
        h.remove()
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)
    assert all(set(o.unique().tolist()) <= {0.0, 1.0} for o in outputs)  # binary spikes after folding


# --------------------------------------------------------------------------------------- Spiking-FCN / DeepLab
@pytest.mark.parametrize("cls,ann_cls", [(SpikingDeepLab, DeepLab), (SpikingFCN, FCN)])
def test_spiking_segmentation_shapes_gradients_energy(cls, ann_cls):
    torch.manual_seed(0)
    snn = cls(3, 5, num_steps=3, **TINY)
    lif = [m for m in snn.modules() if isinstance(m, LIFNeuron)]
    assert lif and all(m.leak == 0.99 and m.v_threshold == 1.0 for m in lif)
    bntt = [m for m in snn.modules() if isinstance(m, BatchNormThroughTime)]
    assert len(bntt) == len(lif) and all(b.num_steps == 3 for b in bntt)
    x = torch.rand(2, 3, 16, 24)
    snn.train()
    y = snn(x)
    assert y.shape == (2, 5, 16, 24)
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in snn.parameters())
    assert any(p.grad.abs().sum() > 0 for n, p in snn.named_parameters() if "block1" in n)  # reaches the input
    snn.eval()
    report = estimate_energy(snn, x)
    assert report["sops"] > 0 and report["macs_first_layer"] == 0  # Poisson input: no analog first layer
    assert set(report["firing_rates"]) == {n for n, _ in snn.neurons().items()}
    assert ann_cls(3, 5, **TINY)(x).shape == (2, 5, 16, 24)


def test_spiking_segmentation_bad_input():
    with pytest.raises(ValueError, match="divisible by 8"):
        SpikingFCN(3, 5, num_steps=2, **TINY)(torch.rand(1, 3, 20, 24))
    with pytest.raises(ValueError, match="divisible by 4"):
        DeepLab(3, 5, **TINY)(torch.rand(1, 3, 18, 24))
    with pytest.raises(ValueError, match="expected 3 input channel"):
        SpikingDeepLab(3, 5, num_steps=2, **TINY)(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="leak must be in \\(0, 1\\]"):
        SpikingDeepLab(3, 5, leak=1.5)
    with pytest.raises(ValueError, match="v_threshold must be positive"):
        SpikingFCN(3, 5, v_threshold=0.0)
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        SpikingFCN(3, 5, num_steps=0)
    with pytest.raises(ValueError, match="surrogate.*did you mean.*relative_triangle"):
        SpikingFCN(3, 5, surrogate="relative_triangel")
    with pytest.raises(ValueError, match="neuron.*multi_level"):
        make_neuron("multi_levels")
    assert {"multi_level", "real_spike"} <= set(NEURONS)
    snn = SpikingDeepLab(3, 5, num_steps=2, **TINY)
    snn.num_steps = 4
    with pytest.raises(ValueError, match="num_steps=4 exceeds the 2 time steps"):
        snn(torch.rand(1, 3, 16, 16))
    snn.num_steps = 2
    with pytest.raises(ValueError, match="BatchNormThroughTime changes with the time step.*bptt"):
        snn.forward_flow(torch.rand(1, 3, 16, 16))


def test_direct_training_end_to_end_learns_a_toy_segmentation():
    """A tiny Spiking-DeepLab trained by BPTT with the SpikingTrainer separates bright squares from background."""
    torch.manual_seed(0)
    images, labels = [], []
    for _ in range(8):
        img = torch.rand(1, 16, 16) * 0.2
        lab = torch.zeros(16, 16, dtype=torch.long)
        r, c = torch.randint(0, 8, (2,)).tolist()
        img[:, r : r + 8, c : c + 8] += 0.7
        lab[r : r + 8, c : c + 8] = 1
        images.append(img)
        labels.append(lab)
    data = [{"image": torch.stack(images[i : i + 4]), "label": torch.stack(labels[i : i + 4])} for i in (0, 4)]
    snn = SpikingDeepLab(1, 2, num_steps=4, channels=(8, 8, 8), head_channels=16)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    trainer = SpikingTrainer(
        "cpu", 40, data, snn, torch.optim.Adam(snn.parameters(), 3e-3), loss_fn, method="bptt", num_steps=4
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output[0]["loss"])))
    trainer.run()
    assert sum(losses[-4:]) / 4 < 0.6 * sum(losses[:4]) / 4
    snn.eval()
    with torch.no_grad():
        pred = snn(data[0]["image"]).argmax(1)
    assert (pred == data[0]["label"]).float().mean() > 0.8


def test_make_network_builds_every_registered_network():
    from monai_snn.networks import NETWORKS, make_network

    x = torch.rand(1, 3, 16, 16)
    for name in NETWORKS:
        kwargs = {"channels": (4, 8, 8)} if name == "spiking_unet" else dict(TINY)
        if name.startswith("spiking"):
            kwargs["num_steps"] = 2
        net = make_network(name, in_channels=3, out_channels=4, **kwargs).eval()
        assert net(x).shape == (1, 4, 16, 16), name
    rs = make_network("spiking_unet", in_channels=3, out_channels=4, num_steps=2, channels=(4, 8), neuron="real_spike")
    assert [m.num_channels for m in rs.modules() if isinstance(m, RealSpikeNeuron)][:2] == [4, 4]
    assert rs.settings["kwargs"]["neuron"] == "real_spike"  # what a settings file stores to rebuild it
    with pytest.raises(ValueError, match="network.*spiking_fcn"):
        make_network("spiking_fnc", in_channels=3, out_channels=4)


def test_direct_init_benchmark_on_real_drive_patches():
    """benchmarks/direct_init.py on one real DRIVE patch, T = 2: it cannot rot, and its claim holds."""
    from tests.conftest import DATA, load_benchmark, require_data

    require_data(DATA / "DRIVE")
    main = load_benchmark("direct_init").main
    rows = {(r["neuron"], r["init"]): r for r in main(["--steps", "2", "--seeds", "1", "--patches", "1"])}
    for neuron in ("multi_threshold", "multi_level"):
        he, default = rows[(neuron, "kaiming")], rows[(neuron, "PyTorch default")]
        assert he["least"] > 0.02 and default["least"] < 0.2 * he["least"], (he, default)
        assert he["grad_deep"] > 100 * default["grad_deep"]
