"""``make run`` demo: train a small convertible U-Net on real hippocampus MRI slices, convert it, print ANN vs SNN.

Data: MSD Task04 Hippocampus from ``$MONAI_SNN_DATA/Task04_Hippocampus`` (default ``../shared/data``), prepared
to a fixed box and five subject-level folds; fold 0 is the test fold, model selection never sees it.

Usage::

    python -m monai_snn.demo --epochs 12 --output_dir outputs/demo
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import torch
from ignite.contrib.handlers import ProgressBar
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedTrainer
from monai.handlers import CheckpointSaver
from monai.losses import DiceCELoss

from monai_snn.bundle import default_data_dir, load_scripts
from monai_snn.conversion import convert_to_snn
from monai_snn.energy import estimate_energy
from monai_snn.networks import ConvertibleUNet

__all__ = ["main"]

# the hippocampus task code (data preparation, slices, 2D / 3D Dice) is the bundle's: bundles/hippocampus_snn/scripts
BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "hippocampus_snn"


def _collate(slices: list[dict]) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
    return (
        torch.stack([s["image"] for s in slices]),
        torch.stack([s["label"] for s in slices]),
        [s["subject"] for s in slices],
        [s["slice"] for s in slices],
    )


@torch.no_grad()
def _predict(net: torch.nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat([net(x[i : i + batch]) for i in range(0, len(x), batch)])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description="Convert a U-Net trained on real hippocampus MRI into a spiking U-Net.")
    p.add_argument("--data_dir", default=str(default_data_dir() / "Task04_Hippocampus"))
    p.add_argument("--output_dir", default="outputs/demo")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--channels", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(args.seed)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    scripts = load_scripts(BUNDLE)
    hippo, dice_2d_3d = scripts.hippocampus, scripts.slices.dice_2d_3d
    datalist = hippo.prepare_msd_folder(args.data_dir, out / "prep")
    train_items, test_items = hippo.load_datalist_folds(datalist, fold=0)
    train_items, _ = hippo.split_validation(train_items, fraction=0.125, seed=args.seed)
    train = scripts.slices.volume_slices(train_items)
    test = scripts.slices.volume_slices(test_items)
    tx, ty, ts, tp = _collate(test)
    print(f"data: {len(train_items)} training volumes ({len(train)} slices), {len(test_items)} test volumes "
          f"(fold 0, {len(test)} slices of {tuple(tx.shape[2:])})")

    ann = ConvertibleUNet(2, 1, 1, channels=tuple(args.channels), bias=True, dropout=0.1)
    ckpt = out / f"ann_epoch{args.epochs}.pt"
    if ckpt.exists():
        ann.load_state_dict(torch.load(ckpt, map_location="cpu"))
        print(f"loaded trained ANN from {ckpt}")
    else:
        loader = DataLoader(Dataset(train), batch_size=26, shuffle=True, num_workers=0,
                            generator=torch.Generator().manual_seed(args.seed))
        trainer = SupervisedTrainer(
            device=torch.device("cpu"),
            max_epochs=args.epochs,
            train_data_loader=loader,
            network=ann,
            optimizer=torch.optim.Adam(ann.parameters(), lr=1e-3),
            loss_function=DiceCELoss(sigmoid=True, lambda_ce=0.3, lambda_dice=0.7),  # BCE-Dice of the paper
        )
        ProgressBar(persist=False, disable=not sys.stdout.isatty()).attach(
            trainer, output_transform=lambda o: {"loss": o[0]["loss"]}
        )
        CheckpointSaver(str(out / "ckpt"), {"network": ann}, save_final=True, final_filename="ann.pt").attach(trainer)
        t0 = time.time()
        trainer.run()
        torch.save(ann.state_dict(), ckpt)
        print(f"trained ANN for {args.epochs} epochs in {time.time() - t0:.0f} s")
    ann.eval()

    calib = [torch.stack([s["image"] for s in train[:: max(1, len(train) // 64)][:64]])]
    rows = []
    y_ann = _predict(ann, tx)
    ann_dice = dice_2d_3d(y_ann > 0, ty, ts, tp)
    rows.append(("ANN", "-", "-", "-", "-", ann_dice["dice_3d_mean"], ann_dice["dice_2d_mean"], 0.0, float("nan")))
    configs = [
        ("if", "layer", 0.0),
        ("if", "connection", 0.0),
        ("multi_threshold", "layer", 0.0),
        ("multi_threshold", "connection", 0.0),
        ("multi_threshold", "connection", 0.5),
    ]
    for neuron, norm, v0 in configs:
        snn = convert_to_snn(ann, calib, normalization=norm, neuron=neuron, initial_potential=v0, num_steps=1)
        for T in args.steps:
            snn.num_steps = T
            y = _predict(snn, tx)
            d = dice_2d_3d(y > 0, ty, ts, tp)
            err = float((y - y_ann).norm() / y_ann.norm())
            ratio = estimate_energy(snn, tx[:26])["energy_ratio"]
            rows.append((neuron, norm, v0, T, "static", d["dice_3d_mean"], d["dice_2d_mean"], err, ratio))
            print(f"  {neuron:15s} {norm:10s} v0={v0} T={T:3d}: 3D Dice {d['dice_3d_mean']:.3f}", flush=True)

    print(f"\nANN vs converted SNN on test fold 0 ({len(test_items)} volumes), machine: {platform.machine()}, "
          f"{torch.get_num_threads()} threads, U-Net {tuple(args.channels)}, {args.epochs} epochs BCE-Dice, "
          "99.9th percentile, static input, no fine-tuning\n")
    print("| network | neuron | normalization | v0 | T | 3D Dice | 2D Dice | rel. error vs ANN | energy SNN/ANN |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {'ANN' if r[0] == 'ANN' else 'SNN'} | {r[0] if r[0] != 'ANN' else '-'} | {r[1]} | {r[2]} | {r[3]} "
              f"| {r[5]:.3f} | {r[6]:.3f} | {r[7]:.3f} | {r[8]:.2f} |")
    result = {"rows": rows, "args": vars(args)}
    (out / "demo_results.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
