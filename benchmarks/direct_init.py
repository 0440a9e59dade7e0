"""Why direct training needs He-normal weights: firing and surrogate gradients of a from-scratch spiking U-Net at init.

Builds the DRIVE bundle's U-Net (widths 16-128, one grey channel) as a from-scratch spiking network
(:func:`monai_snn.networks.spiking_unet`) with PyTorch's default initialization (``weight_init=None``) and with
He-normal weights (``"kaiming"``, the default), runs it on 48 x 48 patches of real DRIVE training images (the
bundle's preprocessing: grey, z-score, [0, 1], CLAHE, gamma) and prints, per neuron and initialization: the firing
rate (spikes per neuron and step, multi-level output counted per compartment) of the first, the least active and the
deepest layer, and the gradient norm (of the output's standard deviation) reaching the bottleneck convolutions
against that at the head. Several seeds; numbers are means over them.

Usage::

    python benchmarks/direct_init.py [--steps 10] [--seeds 3] [--patches 4]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from monai.transforms import Compose

from monai_snn.bundle import default_data_dir, load_scripts
from monai_snn.networks import spiking_unet

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "drive_snn"
NEURONS = {"multi_threshold": "triangle", "multi_level": "rectangle", "real_spike": "triangle"}


def drive_patches(num: int, size: int = 48, seed: int = 0) -> torch.Tensor:
    """``num`` random ``size`` x ``size`` patches (inside the field of view) of DRIVE training images 21-24."""
    scripts = load_scripts(BUNDLE)
    items = scripts.drive.drive_datalist(default_data_dir() / "DRIVE", "training")[: min(num, 4)]
    prep = Compose(scripts.drive.load_transforms(("image",)) + scripts.drive.preprocess_transforms("image"))
    images = [torch.as_tensor(prep({"image": item["image"]})["image"]).float() for item in items]
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(num):
        img = images[i % len(images)]
        h, w = img.shape[-2:]
        r = int(torch.randint(h // 4, 3 * h // 4 - size, (1,), generator=g))
        c = int(torch.randint(w // 4, 3 * w // 4 - size, (1,), generator=g))
        out.append(img[:, r : r + size, c : c + size])
    return torch.stack(out)


def measure(x: torch.Tensor, neuron: str, init: str | None, steps: int, seed: int) -> dict[str, float]:
    torch.manual_seed(seed)
    snn = spiking_unet(1, 1, num_steps=steps, channels=(16, 32, 64, 128), neuron=neuron, surrogate=NEURONS[neuron],
                       weight_init=init)  # fmt: skip
    snn.count_spikes = True
    snn(x).std().backward()
    rates = snn.firing_rates()
    grads = {n: p.grad.norm().item() for n, p in snn.named_parameters() if p.grad is not None and p.dim() > 1}
    deep = [v for n, v in grads.items() if ".encoder.3." in n]
    head = [v for n, v in grads.items() if ".head." in n]
    return {"first": rates["encoder.0.1"], "least": min(rates.values()), "bottleneck": rates["encoder.3.3"],
            "grad_deep": statistics.mean(deep), "grad_head": statistics.mean(head)}  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="T (DRIVE's fine-tuning T)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--patches", type=int, default=4)
    args = parser.parse_args(argv)
    x = drive_patches(args.patches)
    print(f"DRIVE patches {list(x.shape)}, T = {args.steps}, U-Net 16-128, mean over {args.seeds} seeds; torch "
          f"{torch.__version__}, {torch.get_num_threads()} thread(s)\n")  # fmt: skip
    print("| neuron | init | firing: first layer | least active layer | bottleneck | grad norm: bottleneck convs "
          "| head |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for neuron in NEURONS:
        for init in (None, "kaiming"):
            runs = [measure(x, neuron, init, args.steps, s) for s in range(args.seeds)]
            r = {k: statistics.mean(run[k] for run in runs) for k in runs[0]}
            rows.append({"neuron": neuron, "init": init or "PyTorch default", **r})
            print(f"| {neuron} | {init or 'PyTorch default'} | {r['first']:.3f} | {r['least']:.4f} | "
                  f"{r['bottleneck']:.4f} | {r['grad_deep']:.1e} | {r['grad_head']:.1e} |")
    return rows


if __name__ == "__main__":
    main()
