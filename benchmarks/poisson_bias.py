"""Why binary Poisson input collapses a converted hippocampus SNN: readout error and bias, Poisson vs static input.

Loads a fold's ANN and converted SNN from a cross-validation run made with ``encoding=poisson_binary`` (or
``poisson_ternary``), simulates the same SNN with its Poisson input and with static (analog) input on test volumes,
and prints, per T: the relative L2 error of the readout against the ANN's logits, the mean logit (ANN vs SNN) and
the number of foreground pixels (logit > 0). A negative shift of the mean logit that shrinks only slowly with T
points at rate bias from input noise (rectified by the spiking layers) rather than at the conversion itself, which
the static-input rows check.

Usage::

    python benchmarks/poisson_bias.py --run_dir runs/hippo_poisson_binary --encoding poisson_binary
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from monai_snn.bundle import load_scripts
from monai_snn.conversion import build_snn
from monai_snn.handlers import load_weights
from monai_snn.networks import ConvertibleUNet

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "hippocampus_snn"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run_dir", required=True, help="cross-validation output folder (prep/, fold<k>/)")
    p.add_argument("--encoding", default="poisson_binary", help="the run's input encoding")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--volumes", type=int, default=8, help="test volumes to use")
    p.add_argument("--steps", type=int, nargs="+", default=[4, 16, 64])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    bu = load_scripts(BUNDLE).task  # the bundle's task code: fold split, slices
    split = bu.fold_split(f"{args.run_dir}/prep/datalist.json", args.fold)
    slices = bu.make_slices(split["test"][: args.volumes], args.encoding)
    fold_dir = f"{args.run_dir}/fold{args.fold}"
    settings = json.loads(open(f"{fold_dir}/convert/snn_converted.json").read())
    ann = ConvertibleUNet(2, 1, 1, channels=settings["channels"], dropout=settings["dropout"], bias=settings["bias"])
    load_weights(ann, f"{fold_dir}/train_ann/ckpt/best_model.pt")
    snn = build_snn(ann, f"{fold_dir}/convert/snn_converted.pt")
    x = torch.stack([s["image"] for s in slices])
    print(f"{args.run_dir}, fold {args.fold}: {len(split['test'][: args.volumes])} test volumes, {len(x)} slices, "
          f"input range [{float(x.min()):.2f}, {float(x.max()):.2f}], mean {float(x.mean()):.3f}\n")
    print("| input | T | rel. L2 error of logits | mean logit ANN | mean logit SNN | foreground px ANN | SNN |")
    print("|---|---|---|---|---|---|---|")
    with torch.no_grad():
        y_ann = ann(x)
        for enc in (args.encoding, "static"):
            snn.encoder = enc
            for T in args.steps:
                snn.num_steps = T
                y = snn(x)
                err = float((y - y_ann).norm() / y_ann.norm())
                print(f"| {enc} | {T} | {err:.3f} | {float(y_ann.mean()):.1f} | {float(y.mean()):.1f} | "
                      f"{int((y_ann > 0).sum())} | {int((y > 0).sum())} |", flush=True)


if __name__ == "__main__":
    main()
