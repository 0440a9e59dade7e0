"""Activity regularization (issue 13): what the penalty measures, that it is differentiable where training needs it,
and QCFS initialization from a float ANN."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss

from monai_snn.conversion import convert_to_snn
from monai_snn.losses import ActivityRegularizedLoss
from monai_snn.networks import QCFS, ConvertibleUNet, init_qcfs, qcfs_conversion

BCE_DICE = DiceCELoss(sigmoid=True, lambda_ce=0.3, lambda_dice=0.7)


def _qcfs_unet(levels=(1.0,), steps=1):
    torch.manual_seed(0)
    net = ConvertibleUNet(2, 1, 1, (4, 8), act=("qcfs", {"design_steps": steps, "thresholds": levels}))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, QCFS):
                m.clip.fill_(0.1)  # small enough that the random network fires
    return net


def test_qcfs_activity_is_the_converted_if_networks_spike_rate():
    """IF at T = 1: the penalty's activity equals the firing rate the converted SNN measures."""
    net = _qcfs_unet()
    loss = ActivityRegularizedLoss(BCE_DICE, net, weight=0.0)
    x = torch.rand(2, 1, 16, 16)
    y = (torch.rand(2, 1, 16, 16) > 0.5).float()
    out = net(x)
    value = loss(out, y)
    torch.testing.assert_close(value, BCE_DICE(out, y))  # weight 0: measured, not penalized
    snn = convert_to_snn(net.eval(), None, **qcfs_conversion(net))
    with torch.no_grad():
        snn(x)
    rates = snn.firing_rates()
    neurons = snn.neurons()
    total = sum(rates[n] * neurons[n]._num_neurons for n in rates)
    assert loss.last_activity == pytest.approx(total / sum(neurons[n]._num_neurons for n in rates), rel=1e-4)
    assert loss.last_activity > 0


def test_penalty_lowers_the_activity_and_reaches_weights_and_clip_levels():
    net = _qcfs_unet(levels=(2.0, 1.0, 0.5, 0.25), steps=2)
    x = torch.rand(4, 1, 16, 16)
    y = (x > 0.5).float()
    loss = ActivityRegularizedLoss(BCE_DICE, net, weight=1.0)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    first = None
    for _ in range(20):
        opt.zero_grad()
        value = loss(net(x), y)
        value.backward()
        first = loss.last_activity if first is None else first
        clip_grads = [m.clip.grad for m in net.modules() if isinstance(m, QCFS)]
        assert all(g is not None and torch.isfinite(g) for g in clip_grads)
        opt.step()
    assert loss.last_activity < 0.8 * first


@pytest.mark.parametrize("method", ["flow", "bptt"])
def test_spiking_activity_is_differentiable_in_fine_tuning(method):
    torch.manual_seed(1)
    ann = ConvertibleUNet(2, 1, 1, (4, 8)).eval()
    x = torch.rand(2, 1, 16, 16)
    snn = convert_to_snn(ann, x, num_steps=3, neuron="multi_threshold", thresholds=(2.0, 1.0, 0.5, 0.25))
    loss = ActivityRegularizedLoss(torch.nn.BCEWithLogitsLoss(), snn, weight=1.0)
    out = snn.forward_flow(x) if method == "flow" else snn(x)
    value = loss(out, torch.ones_like(out))
    value.backward()
    assert loss.last_activity > 0
    grads = [p.grad for p in snn.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    with pytest.raises(RuntimeError, match="no activity was recorded"):
        loss(out.detach(), torch.ones_like(out))  # consumed: a second call without a forward pass


def test_bad_weight_or_network_is_refused():
    with pytest.raises(ValueError, match="activity weight"):
        ActivityRegularizedLoss(BCE_DICE, _qcfs_unet(), weight=-1.0)
    with pytest.raises(ValueError, match="ReLU ANN has no spikes"):
        ActivityRegularizedLoss(BCE_DICE, ConvertibleUNet(2, 1, 1, (4, 8)), weight=0.1)


def test_init_from_a_float_ann_calibrates_the_clip_levels(tmp_path):
    torch.manual_seed(2)
    relu = ConvertibleUNet(2, 1, 1, (4, 8))
    path = tmp_path / "ann.pt"
    torch.save({"network": relu.state_dict()}, path)
    qnet = _qcfs_unet(steps=4)
    calib = torch.rand(4, 1, 16, 16)
    with pytest.raises(ValueError, match="no QCFS clipping levels"):
        init_qcfs(qnet, path)
    init_qcfs(qnet, path, calib, percentile=99.0)
    for name, m in qnet.named_modules():
        if isinstance(m, QCFS):
            assert float(m.clip.detach()) > 0 and float(m.clip.detach()) != 1.0, name
    # weights are the float ANN's: with a fine grid the QCFS ANN follows it
    with torch.no_grad():
        a, b = relu.eval()(calib), qnet.eval()(calib)
    assert float((a - b).abs().mean()) < 0.1 * float(a.abs().mean()) + 1e-3
    with pytest.raises(ValueError, match="does not fit"):
        init_qcfs(ConvertibleUNet(2, 1, 1, (4, 16), act=("qcfs", {})), path, calib)
    with pytest.raises(FileNotFoundError, match="ann_init"):
        init_qcfs(qnet, tmp_path / "missing.pt", calib)


def test_clip_flow_gradient_stops_at_the_saturated_rate():
    """flow_gradient='clip': the flow pass's gradient is 0 where the input current reaches the most a step emits."""
    from monai_snn.neurons import MultiThresholdNeuron

    grads = {}
    for mode in ("relu", "clip"):
        n = MultiThresholdNeuron(thresholds=(2.0, 1.0, 0.5, 0.25), initial_potential=0.5)
        n.flow_gradient = mode
        n.record_flow = True
        x = torch.tensor([-1.0, 0.3, 2.0, 3.7, 3.8, 9.0])
        with torch.no_grad():
            for _ in range(2):
                n(x)
        xr = x.clone().requires_grad_(True)
        n.flow(xr).sum().backward()
        grads[mode] = xr.grad
    assert grads["relu"].tolist() == [0, 1, 1, 1, 1, 1]
    assert grads["clip"].tolist() == [0, 1, 1, 1, 0, 0]  # max output of a step: 3.75
    with pytest.raises(ValueError, match="flow_gradient"):
        from monai_snn.engines import SpikingTrainer

        snn = convert_to_snn(ConvertibleUNet(2, 1, 1, (4, 8)).eval(), torch.rand(1, 1, 16, 16), num_steps=2)
        SpikingTrainer("cpu", 1, [], snn, torch.optim.SGD(snn.parameters(), 0.1), BCE_DICE, flow_gradient="tanh")


def test_init_without_checkpoint_calibrates_the_random_network():
    qnet = _qcfs_unet(steps=2)
    before = {n: p.clone() for n, p in qnet.state_dict().items() if not n.endswith(".clip")}
    calib = torch.rand(4, 1, 16, 16)
    init_qcfs(qnet, None, calib, percentile=99.0)
    clips = [float(m.clip.detach()) for m in qnet.modules() if isinstance(m, QCFS)]
    assert all(c > 0 for c in clips) and len(set(clips)) == len(clips)  # each layer its own level
    after = qnet.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in before)  # weights untouched
