"""FiringRateHandler and EnergyHandler on real hippocampus slices, alone and wired with MONAI's standard handlers."""

from __future__ import annotations

import copy
import json
import logging

import pytest
from ignite.engine import Events
import torch
from ignite.handlers import ProgressBar
from monai.data import DataLoader
from monai.handlers import (
    CheckpointSaver,
    LrScheduleHandler,
    MeanDice,
    MetricsSaver,
    StatsHandler,
    TensorBoardStatsHandler,
    ValidationHandler,
    from_engine,
)
from monai.losses import DiceCELoss
from monai.transforms import Activationsd, AsDiscreted, Compose
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from conftest import BCE_DICE, records
from monai_snn.conversion import convert_to_snn
from monai_snn.energy import estimate_energy
from monai_snn.engines import SpikingEvaluator, SpikingTrainer
from monai_snn.handlers import EnergyHandler, FiringRateHandler


@pytest.fixture(scope="module")
def snn_base(trained_ann, hippo_slices):
    return convert_to_snn(trained_ann, [hippo_slices[0][:64]], num_steps=8, initial_potential=0.0)


def _post():
    return Compose([Activationsd(keys="pred", sigmoid=True), AsDiscreted(keys="pred", threshold=0.5)])


def _events(log_dir) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


@pytest.mark.slow
def test_firing_rate_and_energy_before_and_after_finetuning(snn_base, hippo_slices, tmp_path):
    tx, ty, vx, vy = hippo_slices
    snn = copy.deepcopy(snn_base)
    snn.num_steps = 4  # with membranes starting at 0, T=4 loses most of the Dice: fine-tuning visibly recovers it
    writer = SummaryWriter(log_dir=str(tmp_path / "tb"))
    rates = FiringRateHandler(snn, summary_writer=writer)
    energy = EnergyHandler(snn, summary_writer=writer, save_dir=str(tmp_path / "out"))
    evaluator = SpikingEvaluator(
        "cpu", DataLoader(records(vx, vy), batch_size=43), snn, num_steps=4, postprocessing=_post(),
        key_val_metric={"val_dice": MeanDice(output_transform=from_engine(["pred", "label"]))},
        val_handlers=[rates, energy],
    )
    seen: list[float] = []  # what a handler attached first (e.g. StatsHandler) reads at EPOCH_COMPLETED
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, lambda e: seen.append(e.state.metrics.get("firing_rate_mean")))
    handlers = evaluator._event_handlers[Events.EPOCH_COMPLETED]
    handlers.insert(0, handlers.pop())  # run before every other EPOCH_COMPLETED handler
    evaluator.run()  # before fine-tuning, global step 1
    before, energy_before, dice_before = dict(rates.rates), dict(energy.last), evaluator.state.metrics["val_dice"]
    assert seen == [pytest.approx(sum(before.values()) / len(before))]
    assert set(before) == set(snn.neurons()) and all(0.0 < r < 4.0 for r in before.values())
    assert evaluator.state.firing_rates == before
    assert evaluator.state.metrics["firing_rate_mean"] == pytest.approx(sum(before.values()) / len(before))

    # the energy of the evaluator's first batch, read from its own forward pass, equals a separate estimate
    reference = estimate_energy(snn, vx[:43])
    metrics = evaluator.state.metrics
    assert metrics["energy_snn_uj"] == pytest.approx(reference["energy_snn_j"] / 43 * 1e6, rel=1e-9)
    assert metrics["energy_ann_uj"] == pytest.approx(reference["energy_ann_j"] / 43 * 1e6, rel=1e-9)
    assert metrics["energy_sops"] == pytest.approx(reference["sops"] / 43, rel=1e-9)
    assert metrics["energy_ratio"] == pytest.approx(reference["energy_ratio"], rel=1e-9)
    # the Spiking-UNet paper's counting: one accumulate per spike, so far below the fan-out ratio
    paper = (reference["spikes"] * 0.9 + reference["macs_first_layer"] * 4.6) / (reference["macs_ann"] * 4.6)
    assert metrics["energy_ratio_spikes"] == pytest.approx(paper, rel=1e-9)
    assert 0 < metrics["energy_ratio_spikes"] < metrics["energy_ratio"] / 10

    trainer = SpikingTrainer(
        "cpu", 1, DataLoader(records(tx, ty), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)),
        snn, torch.optim.Adam(snn.parameters(), lr=1e-3), DiceCELoss(**BCE_DICE), method="flow",
    )
    trainer.run()
    evaluator.run(2)  # after fine-tuning, global step 2
    after = rates.rates
    assert rates.history == [before, after]
    change = max(abs(after[n] - before[n]) / before[n] for n in before)
    print(f"dice {dice_before:.3f} -> {evaluator.state.metrics['val_dice']:.3f}; max relative rate change {change:.2f}")
    assert evaluator.state.metrics["val_dice"] > dice_before + 0.1
    assert change > 0.1, "fine-tuning should visibly shift the firing rates"
    assert energy.last["snn_j"] != energy_before["snn_j"]
    writer.close()

    acc = _events(tmp_path / "tb")
    tags = acc.Tags()
    for name in before:
        events = acc.Scalars(f"firing_rate/{name}")
        assert [e.step for e in events] == [1, 2]
        assert [e.value for e in events] == pytest.approx([before[name], after[name]], rel=1e-6)
    images = acc.Images("firing_rate/layers")
    assert [im.step for im in images] == [1, 2] and images[-1].width > 100 and images[-1].height > 100
    for key in ("snn_j", "ann_j", "ratio", "sops"):
        assert f"energy/{key}" in tags["scalars"]
        assert [e.step for e in acc.Scalars(f"energy/{key}")] == [1, 2]
    saved = json.loads((tmp_path / "out" / "energy.json").read_text())
    assert [r["epoch"] for r in saved] == [1, 2] and saved[0]["ratio"] == pytest.approx(energy_before["ratio"])


@pytest.mark.parametrize("method", ["flow", "bptt"])
def test_standard_monai_handlers_with_spiking_trainer(snn_base, hippo_slices, tmp_path, caplog, method):
    """ValidationHandler, StatsHandler, TensorBoardStatsHandler, LrScheduleHandler(ReduceLROnPlateau),
    CheckpointSaver, MetricsSaver and ignite's ProgressBar around SpikingTrainer / SpikingEvaluator."""
    tx, ty, vx, vy = hippo_slices
    snn = copy.deepcopy(snn_base)
    tb = str(tmp_path / "tb")
    evaluator = SpikingEvaluator(
        "cpu", DataLoader(records(vx[:16], vy[:16]), batch_size=8), snn, num_steps=4, postprocessing=_post(),
        key_val_metric={"val_dice": MeanDice(output_transform=from_engine(["pred", "label"]))},
        val_handlers=[
            EnergyHandler(snn),
            FiringRateHandler(snn, log_dir=tb),
            StatsHandler(iteration_log=False),
            TensorBoardStatsHandler(log_dir=tb, iteration_log=False),
            MetricsSaver(save_dir=str(tmp_path / "metrics"), metrics="*"),
            CheckpointSaver(str(tmp_path / "best"), {"network": snn}, save_key_metric=True),
        ],
    )
    optimizer = torch.optim.Adam(snn.parameters(), lr=1e-3)
    train_energy = EnergyHandler(snn)
    trainer = SpikingTrainer(
        "cpu", 2, DataLoader(records(tx[:32], ty[:32]), batch_size=8), snn, optimizer, DiceCELoss(**BCE_DICE),
        epoch_length=2, method=method, num_steps=2,
        train_handlers=[
            ValidationHandler(validator=evaluator, interval=1, epoch_level=True),
            LrScheduleHandler(
                torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", patience=0),
                print_lr=True, step_transform=lambda engine: evaluator.state.metrics["val_dice"],
            ),
            StatsHandler(tag_name="train_loss", output_transform=from_engine(["loss"], first=True)),
            TensorBoardStatsHandler(
                log_dir=tb, tag_name="train_loss", output_transform=from_engine(["loss"], first=True)
            ),
            CheckpointSaver(str(tmp_path / "ckpt"), {"network": snn, "optimizer": optimizer}, save_interval=1),
            train_energy,
            FiringRateHandler(snn, epoch_level=False),
        ],
    )
    ProgressBar(persist=False).attach(trainer, output_transform=from_engine(["loss"], first=True))
    with caplog.at_level(logging.INFO):
        trainer.run()
    assert trainer.state.epoch == 2 and trainer.state.iteration == 4
    assert snn.num_steps == 2  # the evaluator's T=4 was restored after each validation
    assert {"energy_snn_uj", "energy_ratio", "energy_sops", "firing_rate_mean"} <= set(trainer.state.metrics)
    assert [r["epoch"] for r in train_energy.history] == [1, 2]
    assert train_energy.history[0]["num_steps"] == 2
    metrics = evaluator.state.metrics
    assert {"val_dice", "energy_snn_uj", "energy_ann_uj", "energy_ratio", "energy_sops", "firing_rate_mean"} <= set(
        metrics
    )
    assert 0.0 < metrics["energy_ratio"] < 10.0
    saved = (tmp_path / "metrics" / "metrics.csv").read_text()
    assert "energy_ratio" in saved and "val_dice" in saved
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt"]
    assert any("key_metric=" in p.name for p in (tmp_path / "best").iterdir())
    tags = _events(tb).Tags()
    assert {"train_loss", "val_dice", "energy_ratio"} <= set(tags["scalars"])
    assert any(t.startswith("firing_rate/") for t in tags["scalars"]) and "firing_rate/layers" in tags["images"]
    assert "val_dice" in caplog.text


def test_atomic_checkpoint_saver_and_incomplete_checkpoints(tmp_path):
    """Saves go through a temporary file (a kill mid-save leaves no truncated checkpoint), and the resume helper
    skips a truncated file in favour of the previous complete one."""
    import os
    import time

    from ignite.engine import Engine

    from monai_snn.handlers import latest_checkpoint
    from monai_snn.handlers import AtomicCheckpointSaver

    net = torch.nn.Linear(2, 1)
    saver = AtomicCheckpointSaver(str(tmp_path), {"network": net}, save_interval=1, n_saved=2, file_prefix="latest",
                                  save_key_metric=True, key_metric_name="m", key_metric_filename="best_model.pt")
    assert saver._interval_checkpoint.save_handler._atomic and saver._key_metric_checkpoint.save_handler._atomic
    engine = Engine(lambda e, b: None)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(m=float(e.state.epoch)))
    saver.attach(engine)
    engine.run([0], max_epochs=2)
    good = latest_checkpoint(tmp_path)
    assert good.endswith("epoch=2.pt")
    torch.load(good, weights_only=True)  # complete
    torch.load(tmp_path / "best_model.pt", weights_only=True)
    assert not [f for f in os.listdir(tmp_path) if f.startswith("tmp")]  # no temporary files left behind
    # a truncated newer file (what a kill during a non-atomic save leaves) is skipped
    time.sleep(0.01)
    (tmp_path / "latest_network_epoch=3.pt").write_bytes(open(good, "rb").read()[:100])
    assert latest_checkpoint(tmp_path) == good


class _Bomb:
    def __reduce__(self):
        raise KeyboardInterrupt("killed while writing the checkpoint")


class _Interruptible(torch.nn.Linear):
    """A module whose checkpoint cannot be written once ``fail`` is set: a kill in the middle of ``torch.save``."""

    fail = False

    def state_dict(self, *args, **kwargs):
        state = super().state_dict(*args, **kwargs)
        if self.fail:
            state["bomb"] = _Bomb()
        return state


@pytest.mark.parametrize("n_saved", [1, 2])
def test_atomic_checkpoint_saver_keeps_old_files_until_new_ones_are_complete(tmp_path, n_saved):
    """ignite removes the previous file before it writes the new one; a kill in between used to leave no
    ``latest_*.pt`` (the resumed run restarted from epoch 0) and no ``best_model.pt``."""
    import os

    from ignite.engine import Engine

    from monai_snn.handlers import latest_checkpoint
    from monai_snn.handlers import AtomicCheckpointSaver

    net = _Interruptible(2, 1)
    saver = AtomicCheckpointSaver(str(tmp_path), {"network": net}, save_interval=1, n_saved=n_saved,
                                  file_prefix="latest", save_key_metric=True, key_metric_name="m",
                                  key_metric_filename="best_model.pt")  # fmt: skip
    engine = Engine(lambda e, b: None)
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(m=float(e.state.epoch)))

    def _kill_at_epoch_4(e):
        net.fail = e.state.epoch == 4

    engine.add_event_handler(Events.EPOCH_COMPLETED, _kill_at_epoch_4)  # registered before the saver: runs first
    saver.attach(engine)
    engine.run([0], max_epochs=3)
    latest = sorted(f for f in os.listdir(tmp_path) if f.startswith("latest"))
    assert latest == [f"latest_network_epoch={e}.pt" for e in range(4 - n_saved, 4)]  # old files removed after saves
    with pytest.raises(KeyboardInterrupt):
        engine.run([0], max_epochs=5)  # resumes the same engine: epoch 4's saves are interrupted
    assert latest_checkpoint(tmp_path).endswith("epoch=3.pt")
    assert torch.load(latest_checkpoint(tmp_path), weights_only=True)["weight"].shape == (1, 2)
    assert torch.load(tmp_path / "best_model.pt", weights_only=True)["weight"].shape == (1, 2)
    assert not [f for f in os.listdir(tmp_path) if f.startswith("tmp")]
