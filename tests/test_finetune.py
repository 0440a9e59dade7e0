"""Spike-based fine-tuning with SpikingTrainer on real hippocampus slices: recovery after conversion, flow/BPTT
forward values and gradients, checkpoint resume, input validation and NaN handling."""

from __future__ import annotations

import copy
import glob
import math
import os

import pytest
import torch
import torch.nn.functional as F
from monai.data import DataLoader
from monai.engines.utils import IterationEvents
from monai.handlers import CheckpointLoader, CheckpointSaver
from monai.losses import DiceCELoss, DiceLoss
from monai.utils.enums import CommonKeys as Keys
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from conftest import BCE_DICE, dice, records
from monai_snn.conversion import convert_to_snn
from monai_snn.engines import (
    NonFiniteLossError,
    SpikingEvaluator,
    SpikingForwardInferer,
    SpikingTrainer,
    readout_channels,
    spiking_from_scratch,
)
from monai_snn.networks import ConvertibleUNet


@pytest.fixture(scope="module")
def converted(trained_ann, hippo_slices):
    """The trained ANN converted at T=8 with the papers' setting (membranes start at 0), multi-threshold neurons
    and connection-wise normalization; plus its validation Dice and the ANN's."""
    tx, _, vx, vy = hippo_slices
    snn = convert_to_snn(trained_ann, [tx[:64]], num_steps=8, initial_potential=0.0)
    with torch.no_grad():
        ann_dice = dice(trained_ann(vx), vy)
        snn_dice = dice(snn.eval()(vx), vy)
    return snn, snn_dice, ann_dice


def _loader(items: list[dict], batch_size: int, seed: int = 0) -> DataLoader:
    """Shuffled with a seeded sampler whose order depends only on the epoch (MONAI's Workflow calls
    ``set_epoch`` at every epoch start), so an interrupted run resumes with the same batches."""
    sampler = DistributedSampler(items, num_replicas=1, rank=0, shuffle=True, seed=seed)
    return DataLoader(items, batch_size=batch_size, sampler=sampler, num_workers=0)


def _val_dice(snn, vx, vy, num_steps: int = 8) -> float:
    previous, snn.num_steps = snn.num_steps, num_steps
    try:
        with torch.no_grad():
            return dice(snn.eval()(vx), vy)
    finally:
        snn.num_steps = previous


# --------------------------------------------------------------------------------------------- (1) recovery
@pytest.mark.slow
@pytest.mark.parametrize("method", ["flow", "bptt"])
def test_finetuning_recovers_dice(converted, hippo_slices, method):
    """Simulated at T=4 with the papers' zero initial potential the converted SNN loses most of its Dice; 2 epochs
    (34 iterations, batch 32, Adam 1e-3) of spike-based fine-tuning at T=4 with the BCE-Dice loss recover it on
    subject-disjoint validation slices never used in training.

    Observed (2-core CPU, 2026-12-02): ANN 0.823, converted 0.244, flow 0.795, bptt 0.787; on another machine of the
    same kind (AMD EPYC, same day), where the fixture's ANN trains to other weights: ANN 0.807, converted 0.237, flow
    0.781, bptt 0.753. Hence the bound to the ANN is 0.08, the recovered share 80 %. (At T=8 the conversion
    lost 0.23 Dice on the machine of an earlier session but only 0.05 on another: the loss at T=8 was too small a
    margin to test recovery on.)"""
    base, _, ann_dice = converted
    tx, ty, vx, vy = hippo_slices
    torch.manual_seed(0)
    snn = copy.deepcopy(base)
    snn.num_steps = 4
    snn_dice = _val_dice(snn, vx, vy, num_steps=4)
    assert snn_dice < ann_dice - 0.1, "conversion at T=4 with zero initial potential should lose Dice"
    trainer = SpikingTrainer(
        device="cpu",
        max_epochs=2,
        train_data_loader=_loader(records(tx, ty), batch_size=32),
        network=snn,
        optimizer=torch.optim.Adam(snn.parameters(), lr=1e-3),
        loss_function=DiceCELoss(**BCE_DICE),
        method=method,
        num_steps=4,
    )
    trainer.run()
    assert trainer.state.iteration == 34
    tuned = _val_dice(snn, vx, vy, num_steps=4)
    print(f"{method}: ANN {ann_dice:.3f}, converted {snn_dice:.3f}, fine-tuned {tuned:.3f}")
    assert tuned > snn_dice + 0.15
    assert tuned - snn_dice > 0.8 * (ann_dice - snn_dice)  # most of the lost Dice is recovered
    assert tuned > ann_dice - 0.08


# ------------------------------------------------------------------------------- (2) flow value and biases
def test_flow_value_equals_simulation_and_bias_counts_once(converted, hippo_slices):
    base, _, _ = converted
    x = hippo_slices[2][:12]
    snn = copy.deepcopy(base)
    head = snn.network.get_submodule("head")
    with torch.no_grad():
        ref = snn.eval()(x)
        flow = snn.train().forward_flow(x)
        bptt = snn.train()(x)
    torch.testing.assert_close(flow, ref, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(bptt, ref, rtol=1e-6, atol=1e-4)

    with torch.no_grad():
        head.bias += 5.0  # a big readout bias must count once, in training as in evaluation
    outputs: dict[str, torch.Tensor] = {}
    for method in ("flow", "bptt"):
        trainer = SpikingTrainer(
            "cpu", 1, [{"image": x, "label": torch.zeros_like(x)}], snn,
            torch.optim.SGD(snn.parameters(), lr=0.0), nn.BCEWithLogitsLoss(), method=method,
        )
        trainer.add_event_handler(
            IterationEvents.FORWARD_COMPLETED,
            lambda e, m=method: outputs.__setitem__(m, e.state.output[Keys.PRED].detach().clone()),
        )
        trainer.run()
    with torch.no_grad():
        evaluated = snn.eval()(x)
    torch.testing.assert_close(evaluated, ref + 5.0, rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(outputs["flow"], evaluated, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(outputs["bptt"], evaluated, rtol=1e-6, atol=1e-4)


# -------------------------------------------------------------------------------- (3) BPTT gradient check
def _reference_bptt(params: list[torch.Tensor], x: torch.Tensor, num_steps: int, u0: float, alpha: float = 4.0):
    """Hand-unrolled IF network: static input, straight-through sigmoid spikes, soft reset, averaged readout."""
    w1, b1, w2, b2, w3, b3 = params
    theta = 1.0

    def spike(u):
        s = torch.sigmoid(alpha * (u - theta))
        return (u >= theta).to(u.dtype).detach() + s - s.detach()

    c1 = F.conv2d(x, w1, b1, padding=1)
    v1 = torch.full_like(c1, u0 * theta)
    v2 = None
    acc = 0.0
    for _ in range(num_steps):
        v1 = v1 + c1
        s1 = spike(v1)
        v1 = v1 - theta * s1
        c2 = F.conv2d(theta * s1, w2, b2, padding=1)
        v2 = (torch.full_like(c2, u0 * theta) if v2 is None else v2) + c2
        s2 = spike(v2)
        v2 = v2 - theta * s2
        acc = acc + theta * s2
    return F.conv2d(acc / num_steps, w3, b3)


@pytest.mark.parametrize("u0", [0.0, 0.5])
def test_bptt_gradients_match_hand_unrolled_reference(u0):
    torch.manual_seed(0)
    tiny = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1)
    ).double()
    with torch.no_grad():
        tiny[0].weight.mul_(3.0)  # enough input current for spikes in the first steps
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    y = (torch.rand(3, 1, 8, 8) > 0.5).double()
    T = 6
    snn = convert_to_snn(
        tiny, None, normalization="none", neuron="if", surrogate="sigmoid", num_steps=T, initial_potential=u0
    )
    loss_fn = nn.BCEWithLogitsLoss()
    grads: dict[str, torch.Tensor] = {}
    trainer = SpikingTrainer(
        "cpu", 1, [{"image": x, "label": y}], snn, torch.optim.SGD(snn.parameters(), lr=0.0), loss_fn, method="bptt"
    )
    trainer.add_event_handler(
        IterationEvents.BACKWARD_COMPLETED,
        lambda e: grads.update({n: p.grad.clone() for n, p in e.network.network.named_parameters()}),
    )
    trainer.run()
    names = ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    params = [snn.network.get_parameter(n).detach().clone().requires_grad_() for n in names]
    out = _reference_bptt(params, x, T, u0)
    loss = loss_fn(out, y)
    assert float(loss.detach()) == pytest.approx(float(trainer.state.output[0][Keys.LOSS]), rel=1e-12)
    ref = torch.autograd.grad(loss, params)
    for name, g in zip(names, ref):
        assert g.abs().sum() > 0, f"reference gradient of {name} vanished; the check would be vacuous"
        torch.testing.assert_close(grads[name], g, rtol=1e-9, atol=1e-12, msg=f"gradient of {name}")


# -------------------------------------------------------------------------------------------- (4) resume
def _resume_setup(base, tx, ty, save_dir, max_epochs, load_path=None, load_keys=("network", "optimizer", "trainer")):
    torch.manual_seed(0)
    snn = copy.deepcopy(base)
    snn.num_steps = 4
    optimizer = torch.optim.Adam(snn.parameters(), lr=1e-3)
    trainer = SpikingTrainer(
        "cpu", max_epochs, _loader(records(tx[:48], ty[:48]), 16, seed=1), snn, optimizer,
        DiceCELoss(**BCE_DICE), method="flow",
    )
    save_dict = {"network": snn, "optimizer": optimizer, "trainer": trainer}
    CheckpointSaver(save_dir, save_dict, save_interval=1, epoch_level=True).attach(trainer)
    if load_path is not None:
        CheckpointLoader(load_path, {k: save_dict[k] for k in load_keys}, map_location="cpu").attach(trainer)
    return snn, trainer


def test_resume_from_checkpoint_gives_identical_weights(converted, hippo_slices, tmp_path):
    base, _, _ = converted
    tx, ty = hippo_slices[:2]
    straight, trainer = _resume_setup(base, tx, ty, str(tmp_path / "straight"), max_epochs=2)
    trainer.run()
    assert trainer.state.epoch == 2

    _, first = _resume_setup(base, tx, ty, str(tmp_path / "resumed"), max_epochs=1)
    first.run()  # stops after epoch 1 ("killed")
    ckpt = tmp_path / "resumed" / "checkpoint_epoch=1.pt"
    assert ckpt.exists(), os.listdir(tmp_path / "resumed")
    resumed, second = _resume_setup(base, tx, ty, str(tmp_path / "resumed"), max_epochs=2, load_path=str(ckpt))
    second.run()
    assert second.state.epoch == 2 and second.state.iteration == trainer.state.iteration
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resume"
    assert not torch.equal(straight.state_dict()["network.head.weight"], base.state_dict()["network.head.weight"])
    # control: without the optimizer's state (Adam moments) the resumed run does not match, so the check can fail
    no_opt, third = _resume_setup(
        base, tx, ty, str(tmp_path / "no_opt"), max_epochs=2, load_path=str(ckpt), load_keys=("network", "trainer")
    )
    third.run()
    assert third.state.epoch == 2
    assert not torch.equal(straight.state_dict()["network.head.weight"], no_opt.state_dict()["network.head.weight"])


# ------------------------------------------------------------------------------------- (5) bad inputs, NaN
def test_construction_errors(converted, trained_ann, hippo_slices):
    base, _, _ = converted
    tx, ty = hippo_slices[:2]
    data = [{"image": tx[:4], "label": ty[:4]}]

    def make(network=base, loss=None, **kw):
        loss = DiceCELoss(**BCE_DICE) if loss is None else loss
        return SpikingTrainer("cpu", 1, data, network, torch.optim.SGD(network.parameters(), lr=0.0), loss, **kw)

    with pytest.raises(TypeError, match="convert it first|Convert a trained ANN first.*convert_to_snn"):
        make(network=trained_ann)
    with pytest.raises(ValueError, match="num_steps.*positive integer.*got 0"):
        make(num_steps=0)
    with pytest.raises(ValueError, match="method must be one of.*'flow'.*'bptt'.*got 'foo'"):
        make(method="foo")
    assert readout_channels(base) == 1
    with pytest.raises(ValueError, match="CrossEntropyLoss needs >= 2 output channels.*readout has 1"):
        make(loss=nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match="softmax=True.*readout has 1"):
        make(loss=DiceCELoss(softmax=True))
    with pytest.raises(ValueError, match="to_onehot_y=True.*readout has 1"):
        make(loss=DiceLoss(sigmoid=True, to_onehot_y=True))
    with pytest.raises(TypeError, match="SpikingSimulator"):
        SpikingEvaluator("cpu", data, trained_ann, num_steps=4)
    # losses that fit the readout are accepted, and the multi-class loss is accepted on a 3-channel readout
    for loss in (nn.BCEWithLogitsLoss(), DiceLoss(sigmoid=True), DiceCELoss(**BCE_DICE), nn.L1Loss()):
        make(loss=loss)
    three = spiking_from_scratch(ConvertibleUNet(2, 1, 3, (4, 8)), num_steps=2)
    assert readout_channels(three) == 3
    make(network=three, loss=DiceCELoss(softmax=True, to_onehot_y=True), method="bptt")
    wrapped = make(inferer=SpikingForwardInferer("bptt"), method="flow").inferer  # not wrapped twice
    assert wrapped.method == "flow" and not isinstance(wrapped.inferer, SpikingForwardInferer)


def test_nan_loss_stops_training_and_keeps_last_good_checkpoint(converted, hippo_slices, tmp_path):
    base, _, _ = converted
    tx, ty = hippo_slices[:2]
    items = records(tx[:32], ty[:32], names=True)
    snn = copy.deepcopy(base)
    snn.num_steps = 4
    optimizer = torch.optim.Adam(snn.parameters(), lr=1e-3)
    trainer = SpikingTrainer(
        "cpu", 3, _loader(items, 8), snn, optimizer, DiceCELoss(**BCE_DICE), method="flow"
    )
    CheckpointSaver(
        str(tmp_path), {"network": snn, "optimizer": optimizer, "trainer": trainer}, save_interval=1,
        save_final=True, final_filename="final.pt",
    ).attach(trainer)
    poisoned = 5

    @trainer.on(IterationEvents.MODEL_COMPLETED)
    def poison(engine):  # after epoch 1 (4 iterations), one label map is corrupted (a new tensor: the records
        if engine.state.iteration == 4:  # hold views of the session fixture, which must stay intact)
            items[poisoned]["label"] = torch.full_like(items[poisoned]["label"], float("nan"))

    with pytest.raises(NonFiniteLossError) as err:
        trainer.run()
    msg = str(err.value)
    print(msg)
    assert "non-finite loss (nan)" in msg and "epoch 2" in msg and f"slice_{poisoned:03d}.nii.gz" in msg
    assert f"iteration {trainer.state.iteration}" in msg
    assert trainer.state.epoch == 2
    # the bad batch never reached the optimizer, the epoch-1 checkpoint is intact and nothing was saved for epoch 2
    assert all(torch.isfinite(p).all() for p in snn.parameters())
    files = sorted(os.path.basename(f) for f in glob.glob(str(tmp_path / "*.pt")))
    assert files == ["checkpoint_epoch=1.pt", "final.pt"], files
    good = torch.load(tmp_path / "checkpoint_epoch=1.pt", weights_only=False)
    final = torch.load(tmp_path / "final.pt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in good["network"].values())
    for name, v in final["network"].items():  # the exception-time checkpoint holds the last good weights
        assert torch.equal(v, snn.state_dict()[name])
    assert not math.isfinite(float(trainer.state.output[Keys.LOSS].detach()))


def test_training_without_spike_counts(converted, hippo_slices):
    """count_spikes=False changes nothing but the counting: same weights after training, counting back on after
    each iteration, and a clear error (not zeros) when rates are read from such a pass."""
    tx, ty, vx, _ = hippo_slices
    weights = {}
    for count in (True, False):
        snn = copy.deepcopy(converted[0])
        trainer = SpikingTrainer(
            "cpu", 1, _loader(records(tx[:16], ty[:16]), 8), snn, torch.optim.SGD(snn.parameters(), lr=0.05),
            DiceCELoss(**BCE_DICE), method="flow", num_steps=4, count_spikes=count,
        )
        trainer.run()
        weights[count] = [p.detach().clone() for p in snn.parameters()]
        assert snn.count_spikes  # switched off only inside the trainer's forward calls
        if not count:
            with pytest.raises(RuntimeError, match="count_spikes=False"):
                snn.firing_rates()
            with torch.no_grad():
                snn.eval()(vx[:4])
            rates = snn.firing_rates()  # counted again (a layer may be silent on 4 slices: not all need fire)
            assert rates and sum(rates.values()) > 0
    assert all(torch.equal(a, b) for a, b in zip(weights[True], weights[False]))
