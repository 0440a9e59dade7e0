"""StageCheckpoints: a killed training stage resumes from its latest checkpoint, keeps its best model and its
best-metric record, and ranks that must not write (save=False) write nothing."""

from __future__ import annotations

import os

import pytest
import torch
from ignite.engine import Events
from ignite.metrics import Metric
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import ValidationHandler

from monai_snn.handlers import StageCheckpoints


class _Stop(Exception):
    pass


class _Scripted(Metric):
    """A validation metric that returns the next of ``scores`` at each validation, so the best epoch is known."""

    def __init__(self, scores):
        self.scores, self.calls = list(scores), 0
        super().__init__()

    def reset(self):
        pass

    def update(self, output):
        pass

    def compute(self):
        self.calls += 1
        return self.scores[self.calls - 1]


def _stage(ckpt_dir, scores, max_epochs=4, save=True, kill_after=None, start_epoch=0):
    """A tiny regression stage validated every epoch with a scripted metric."""
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 1)
    data = DataLoader([{"image": torch.randn(2), "label": torch.randn(1)} for _ in range(4)], batch_size=1)
    evaluator = SupervisedEvaluator("cpu", data, net, key_val_metric={"score": _Scripted(scores[start_epoch:])})
    trainer = SupervisedTrainer("cpu", max_epochs, data, net, torch.optim.SGD(net.parameters(), lr=0.01),
                                torch.nn.MSELoss(), train_handlers=[ValidationHandler(1, evaluator)])  # fmt: skip
    checkpoints = StageCheckpoints(ckpt_dir, state={"network": net, "trainer": trainer}, best={"network": net},
                                   save=save)  # fmt: skip
    checkpoints.attach(trainer, evaluator)
    if kill_after is not None:  # after the savers: the kill comes once the epoch's checkpoint is written
        trainer.add_event_handler(Events.EPOCH_COMPLETED(once=kill_after), lambda e: (_ for _ in ()).throw(_Stop()))
    return trainer, evaluator, checkpoints, net


def test_resume_keeps_best_model_and_record(tmp_path):
    scores = [0.2, 0.9, 0.5, 0.6]  # best at epoch 2; the resumed epochs 3-4 are worse and must not replace it
    trainer, _, checkpoints, net = _stage(tmp_path, scores, kill_after=2)
    assert checkpoints.resume_path == ""
    with pytest.raises(_Stop):
        trainer.run()
    best_after_kill = torch.load(checkpoints.best_path, weights_only=True)
    assert best_after_kill["best_metric_state"] == {"best_metric": 0.9, "best_metric_epoch": 2}

    trainer, evaluator, checkpoints, _ = _stage(tmp_path, scores, start_epoch=2)
    assert checkpoints.resume_path.endswith(".pt") and os.path.basename(checkpoints.resume_path).startswith("latest")
    epochs_run = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs_run.append(e.state.epoch))
    trainer.run()
    assert epochs_run == [3, 4]  # resumed after epoch 2, not from 0
    best = torch.load(checkpoints.best_path, weights_only=True)
    assert best["best_metric_state"] == {"best_metric": 0.9, "best_metric_epoch": 2}
    for k, v in best_after_kill["network"].items():
        assert torch.equal(best["network"][k], v)
    assert evaluator.state.best_metric == 0.9


def test_save_false_only_resumes(tmp_path):
    trainer, _, _, _ = _stage(tmp_path / "a", [0.1, 0.2], max_epochs=2, save=False)
    trainer.run()
    assert os.listdir(tmp_path / "a") == []


@pytest.mark.parametrize("kwargs, match", [({"state": {}}, "non-empty state"),
                                           ({"state": {"x": 1}, "save_interval": 0}, "positive")])  # fmt: skip
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        StageCheckpoints(tmp_path, **kwargs)
