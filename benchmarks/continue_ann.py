# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Control for spike fine-tuning: continue training a run's best ANN with the fine-tuning schedule, no SNN at all.

Fine-tuning a converted SNN restarts Adam at a constant learning rate on a network whose ANN training annealed to
zero. When the SNN's validation score falls during fine-tuning, this asks whether the ANN does the same under the same
restart (same bundle, training patches, loss, validation evaluator and epochs; the ANN's own training stage config
with its optimizer reset to Adam at ``--lr`` and no schedule). If it does, the drop comes from restarting training,
not from the spiking gradient. Prints a table (validation key metric before and after each epoch); writes nothing
into the run.

Example::

    python benchmarks/continue_ann.py --bundle_root bundles/camseq_snn --run_dir runs/camseq --epochs 1 --lr 1e-4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle_root", required=True)
    p.add_argument("--run_dir", required=True, help="runner output with fold<k>/train_ann/ckpt/best_model.pt")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="bundle overrides the run was made with")
    args = p.parse_args(argv)
    from ignite.engine import Events
    from monai.bundle import ConfigParser
    from monai.utils import set_determinism

    from monai_snn.apps.overrides import _literal
    from monai_snn.handlers.checkpoint import load_weights

    cfg = Path(args.bundle_root) / "configs"
    ann = Path(args.run_dir) / f"fold{args.fold}" / "train_ann" / "ckpt" / "best_model.pt"
    if not ann.is_file():
        raise SystemExit(f"error: no trained ANN at {ann}: run the train_ann stage of fold {args.fold} first.")
    parser = ConfigParser()
    parser.read_config([str(cfg / "common.json"), str(cfg / "train_ann.json")])
    with tempfile.TemporaryDirectory() as tmp:
        parser.update({"bundle_root": str(Path(args.bundle_root).resolve()), "output_dir": tmp, "fold": args.fold,
                       **{k: _literal(v) for k, v in (kv.split("=", 1) for kv in args.set)},
                       "max_epochs": args.epochs, "learning_rate": args.lr, "val_interval": 1})  # fmt: skip
        set_determinism(seed=parser.get_parsed_content("seed"))
        net = parser.get_parsed_content("network")
        load_weights(net, ann)
        trainer = parser.get_parsed_content("train#trainer", instantiate=True)
        trainer.optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)  # no schedule: fine-tuning's optimizer
        evaluator = parser.get_parsed_content("validate#evaluator")
        rows = []
        t0 = time.perf_counter()

        def record(epoch: int) -> None:  # after the trainer's ValidationHandler (val_interval 1) ran the evaluator
            rows.append({"epoch": epoch, "val": float(evaluator.state.metrics[evaluator.state.key_metric_name]),
                         "seconds": time.perf_counter() - t0})  # fmt: skip

        evaluator.run()
        record(0)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: record(engine.state.epoch))
        trainer.run()
    print(f"\nANN of {ann}, Adam {args.lr:g} restarted, no schedule; validation key metric:\n")
    print("| epoch | validation | time since start (s) |\n|---|---|---|")
    for r in rows:
        print(f"| {r['epoch']} | {r['val']:.4f} | {r['seconds']:.0f} |")
    return rows


if __name__ == "__main__":
    main()
