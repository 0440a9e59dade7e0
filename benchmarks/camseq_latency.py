"""Converted CamSeq01 SNN of a run: validation mIoU against T, to tell latency (the score rises with T to the ANN's)
from clipping (it stays below). Measured 2026-12-05 on ``runs/camseq`` converted at percentile 99: T = 20 / 80 / 200
gave 0.438 / 0.589 / 0.608 against the ANN's 0.610 (see ``bundles/camseq_snn/docs``).

Usage (from the repository root)::

    python benchmarks/camseq_latency.py --run_dir runs/camseq --steps 20 80 200
"""

from __future__ import annotations

import argparse
import time

from monai.bundle import ConfigParser

from monai_snn.bundle import load_model
from monai_snn.bundle.evaluation import run_evaluator

BUNDLE = "bundles/camseq_snn"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run_dir", default="runs/camseq")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--steps", type=int, nargs="+", default=[20, 80, 200])
    args = p.parse_args()
    parser = ConfigParser()
    parser.read_config([f"{BUNDLE}/configs/common.json"])
    parser.update({"bundle_root": BUNDLE, "output_dir": args.run_dir, "fold": args.fold})
    loader, factory = parser.get_parsed_content("val_loader"), parser.get_parsed_content("evaluator")
    network_def = parser.get_parsed_content("network_def")
    models = {"ann": parser.get_parsed_content("ann_checkpoint"),
              "converted": parser.get_parsed_content("converted_weights")}  # fmt: skip
    print("| model | T | validation mIoU | seconds |\n|---|---|---|---|")
    t0 = time.time()
    score = run_evaluator(factory, load_model("ann", models, network_def), loader, desc="ann", progress=False)["miou"]
    print(f"| ann | - | {score:.4f} | {time.time() - t0:.0f} |", flush=True)
    snn = load_model("converted", models, network_def)
    for T in args.steps:
        t0 = time.time()
        score = run_evaluator(factory, snn, loader, num_steps=T, desc=f"T={T}", progress=False)["miou"]
        print(f"| converted | {T} | {score:.4f} | {time.time() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
