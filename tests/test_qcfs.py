"""QCFS quantization-aware activation: transfer, gradients of the clipping level, exact conversion at T = 1."""

from __future__ import annotations

import pytest
import torch

from monai_snn.conversion import convert_to_snn
from monai_snn.networks import QCFS, ConvertibleUNet, qcfs_conversion
from tests.conftest import BCE_DICE


def test_transfer_is_the_neurons_average_output():
    """IF at T = 4 with v0 = 0.5: constant input x over 4 steps fires round(4 x / lambda) spikes of lambda / 4."""
    act = QCFS(design_steps=4, thresholds=(1.0,), initial_potential=0.5, clip_init=2.0)
    x = torch.tensor([-1.0, 0.0, 0.2, 0.26, 0.74, 1.0, 1.9, 2.0, 5.0])
    want = torch.clamp(torch.floor(x / 0.5 + 0.5), 0, 4) * 0.5
    torch.testing.assert_close(act(x), want)
    from monai_snn.neurons import IFNeuron

    neuron = IFNeuron(v_threshold=2.0, initial_potential=0.5)
    with torch.no_grad():
        rate = sum(neuron(x) for _ in range(4)) / 4
    torch.testing.assert_close(act(x), rate)  # the quantizer is the neuron's transfer at its design T


def test_clip_level_gradient_matches_the_straight_through_formula():
    lam, T, levels = 1.5, 2, (2.0, 1.0, 0.5, 0.25)
    act = QCFS(design_steps=T, thresholds=levels, initial_potential=0.5, clip_init=lam)
    x = torch.tensor([-0.3, 0.1, 0.7, 1.4, 3.0, 9.0], requires_grad=True)
    y = act(x)
    y.sum().backward()
    q = lam * levels[-1] / T  # one quantum
    top = T * (2 ** len(levels) - 1)
    z = x.detach() / q + 0.5
    inside = (z >= 0) & (z <= top)
    # d/dx: 1 inside the range (straight through), 0 outside
    torch.testing.assert_close(x.grad, inside.float())
    # d/dlambda: h / lambda - x / lambda inside, top * q / lambda above, 0 below
    h = y.detach()
    want = torch.where(inside, h / lam - x.detach() / lam, torch.where(z > top, torch.full_like(h, top * q / lam), 0 * h))
    torch.testing.assert_close(act.clip.grad, want.sum())


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("levels", [(1.0,), (2.0, 1.0, 0.5, 0.25)])
def test_conversion_is_exact_at_t1_with_concatenating_skips(spatial_dims, levels):
    torch.manual_seed(spatial_dims)
    ann = ConvertibleUNet(spatial_dims, 2, 3, (4, 8, 16), act=("qcfs", {"design_steps": 1, "thresholds": levels}))
    with torch.no_grad():
        for m in ann.modules():
            if isinstance(m, QCFS):
                m.clip.fill_(float(torch.rand(1)) * 2 + 0.2)  # each layer its own scale
    snn = convert_to_snn(ann.eval(), None, **qcfs_conversion(ann))
    assert snn.num_steps == 1 and snn.metadata["normalization"] == "clip"
    x = torch.rand(3, 2, *([16] * spatial_dims))
    with torch.no_grad():
        a, b = ann(x), snn(x)
    # equal up to float rounding at level boundaries (the weights are rescaled by the clipping levels)
    assert float(((a - b).abs() > 1e-5).float().mean()) < 1e-3
    assert float(a.abs().max()) > 0.05  # not a trivially silent network


def test_trained_on_real_slices_converts_exactly_at_t1(hippo_slices):
    """A QCFS U-Net trained briefly on real hippocampus slices (MT levels, T = 1): ANN == SNN on validation."""
    from monai.losses import DiceCELoss

    tx, ty, vx, _ = hippo_slices
    torch.manual_seed(0)
    ann = ConvertibleUNet(2, 1, 1, (8, 16, 32), act=("qcfs", {"design_steps": 1, "thresholds": (2.0, 1.0, 0.5, 0.25)}))
    opt = torch.optim.Adam(ann.parameters(), lr=3e-3)
    loss_fn = DiceCELoss(**BCE_DICE)
    for idx in torch.randperm(len(tx), generator=torch.Generator().manual_seed(0))[:256].split(32):
        opt.zero_grad()
        loss_fn(ann(tx[idx]), ty[idx]).backward()
        opt.step()
    clips = [float(m.clip.detach()) for m in ann.modules() if isinstance(m, QCFS)]
    assert len(set(clips)) > 1  # the clipping levels did train, each its own way
    ann.eval()
    snn = convert_to_snn(ann, None, **qcfs_conversion(ann))
    with torch.no_grad():
        a, b = ann(vx[:16]), snn(vx[:16])
    assert float(((a - b).abs() > 1e-4).float().mean()) < 1e-3


def test_bad_options_name_the_option_and_the_layer():
    with pytest.raises(ValueError, match="design_steps"):
        QCFS(design_steps=0)
    with pytest.raises(ValueError, match="levels halve"):
        QCFS(thresholds=(3.0, 1.0))
    with pytest.raises(ValueError, match="clip_init"):
        QCFS(clip_init=0.0)
    ann = ConvertibleUNet(2, 1, 1, (4, 8), act=("qcfs", {"design_steps": 2}))
    with torch.no_grad():
        ann.encoder[1][3].clip.fill_(-0.1)
    with pytest.raises(ValueError, match=r"layer 'encoder.1.3' trained to -0.1"):
        ann(torch.rand(1, 1, 8, 8))
    ok = ConvertibleUNet(2, 1, 1, (4, 8), act=("qcfs", {"design_steps": 2}))
    with pytest.raises(ValueError, match=r"must realise the ANN's QCFS activations"):
        convert_to_snn(ok, None, normalization="clip", neuron="multi_threshold", num_steps=2)
    with pytest.raises(ValueError, match="has no QCFS activation"):
        qcfs_conversion(ConvertibleUNet(2, 1, 1, (4, 8)))
    with pytest.raises(ValueError, match="activations that convert"):
        ConvertibleUNet(2, 1, 1, (4, 8), act="gelu")


def test_he_init_keeps_every_qcfs_layer_active_where_the_default_init_silences_the_deep_ones():
    """The stall of QCFS from scratch (hippocampus fold 2): PyTorch's default weights shrink each layer's activity,
    and the quantizer rounds the deep layers' small inputs to zero; He-normal weights keep every layer active."""
    from monai_snn.networks import init_weights

    active: dict[str, list[float]] = {}
    for init in (None, "kaiming"):
        torch.manual_seed(0)
        act = ("qcfs", {"design_steps": 2, "thresholds": (2.0, 1.0, 0.5, 0.25)})
        net = ConvertibleUNet(2, 1, 1, (16, 32, 64, 128), act=act)
        assert init_weights(net, init) is net
        rates = active[str(init)] = []  # fraction of active outputs of each QCFS layer
        for m in net.modules():
            if isinstance(m, QCFS):
                m.register_forward_hook(lambda m, i, o, rates=rates: rates.append(float((o > 0).double().mean())))
        with torch.no_grad():
            net(torch.rand(2, 1, 64, 64))
    assert min(active["None"]) == 0.0  # silent layers under the default init
    assert min(active["kaiming"]) > 0.2
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert float(conv.bias.abs().max()) == 0.0
    fan_in = conv.weight[0].numel()
    assert abs(float(conv.weight.std()) / (2.0 / fan_in) ** 0.5 - 1.0) < 0.25
    with pytest.raises(ValueError, match="weight_init='xavier'.*kaiming"):
        init_weights(net, "xavier")
