"""Peers side by side: our ANN -> SNN converter and simulator against spikingjelly's (and sinabs where it runs).

On the shipped hippocampus ANN (``bundles/hippocampus_snn/models/ann.pt``) and the bundle's own test volumes and
calibration slices (its configs build them from ``MONAI_SNN_DATA``), in one process:

1. **Accuracy against T**: 3D Dice (per volume, mean; MONAI ``DiceMetric``, logit > 0) of

   * ``ours IF, layer, p99.9, v0 = 0``: :func:`monai_snn.conversion.convert_to_snn`, the textbook recipe;
   * ``ours MT, connection, bundle settings``: the bundle's converter (multi-threshold, connection-wise, its
     percentile and ``v0 = 0.5``);
   * ``spikingjelly RateCoding 99.9 %``: ``ann2snn.Converter(RateCodingRecipe(dataloader, mode="99.9%"))``
     (spikingjelly 2.0: scaler + ``IFNode`` + scaler around every ReLU), stepped ``T`` times;
   * ``sinabs from_model``: where sinabs is importable (it cannot share an environment with the NIR extra, see
     :class:`SinabsRunner` and the note printed with the table).

   spikingjelly traces the network with torch.fx and refuses the U-Net's input check (a function node it cannot
   convert), so it gets the same weights in the same U-Net without that check.
2. **Speed**: time of one batch of ``--batch`` slices, SNN / (T x ANN forward), measured interleaved (every case
   once per round, ``--repeats`` rounds, medians) at 1 and 2 threads, because the machines are shared and noisy;
   process CPU time and wall-clock.

Usage::

    python benchmarks/peers.py --save                      # the full table (benchmarks/peers_results.txt)
    python benchmarks/peers.py --num_volumes 1 --steps 2 --timing_steps 2 --repeats 1   # smoke (tests)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _bundle():
    from monai.bundle import ConfigParser

    root = ROOT / "bundles" / "hippocampus_snn"
    p = ConfigParser()
    p.read_config([str(root / "configs" / "common.json"), str(root / "configs" / "convert.json")])
    p["bundle_root"] = str(root)
    p["num_workers"] = 0
    p.get_parsed_content("imports")
    return p


def shipped_ann(cfg) -> tuple[torch.nn.Module, torch.Tensor]:
    """The shipped hippocampus ANN (fold 0) and the bundle's calibration slices ``[N, 1, H, W]``."""
    from monai_snn.bundle import load_model

    models = {"ann": str(ROOT / "bundles/hippocampus_snn/models/ann.pt")}
    ann = load_model("ann", models, cfg.get_parsed_content("network_def"))
    cal = cfg.get_parsed_content("calibration")
    cal_x = cal[0] if isinstance(cal, (list, tuple)) else cal
    return ann, cal_x["image"] if isinstance(cal_x, dict) else cal_x


def _plain_unet(ann):
    """The same U-Net and weights without the input check (spikingjelly's tracer cannot convert that node)."""
    from monai_snn.networks import ConvertibleUNet

    class PlainUNet(ConvertibleUNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.forward_unchecked(x)

    plain = PlainUNet(ann.spatial_dims, ann.in_channels, ann.out_channels, ann.channels)
    plain.load_state_dict(ann.state_dict())
    return plain.eval()


class SpikingJellyRunner:
    """spikingjelly's converted network stepped ``num_steps`` times (single-step mode), output averaged."""

    def __init__(self, ann, calibration: torch.Tensor, num_steps: int) -> None:
        from spikingjelly.activation_based import ann2snn

        recipe = ann2snn.RateCodingRecipe(dataloader=[calibration], mode="99.9%")
        self.net = ann2snn.Converter(recipe).convert(_plain_unet(ann)).eval()
        self.num_steps = num_steps

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from spikingjelly.activation_based import functional

        functional.reset_net(self.net)
        out = 0
        for _ in range(self.num_steps):
            out = out + self.net(x)
        return out / self.num_steps


class SinabsRunner:
    """sinabs's ``from_model`` (ReLU -> ``IAFSqueeze``: soft reset, ``MultiSpike``: as many spikes per step as the
    membrane holds thresholds, threshold 1), the input repeated ``num_steps`` times in the batch, output averaged.

    No weight normalization: ``sinabs.utils.normalize_weights`` walks ``named_children()`` of a flat model and
    rescales each parameter layer by the previous ReLU, which a U-Net with nested blocks and concatenating skips
    is not; with multi-spike neurons the raw ANN scale still converts (spike counts are not binary)."""

    def __init__(self, ann, num_steps: int) -> None:
        from sinabs.from_torch import from_model

        self.plain = _plain_unet(ann)
        self.from_model = from_model
        self.num_steps = num_steps

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        T, b = self.num_steps, x.shape[0]
        net = self.from_model(self.plain, batch_size=b, num_timesteps=T).spiking_model.eval()
        y = net(x.repeat_interleave(T, dim=0))
        return y.reshape(b, T, *y.shape[1:]).mean(1)


def _sinabs_note() -> str:
    try:
        import sinabs  # noqa: F401 - only whether it is importable
    except ImportError as e:
        return (f"sinabs not installed ({e.name}): sinabs 3.1.3 pins nir 1.0.4 / nirtorch 2.0.2, which conflict with "
                "the NIR export's nir 1.0.8 / nirtorch 2.6, so it is not in the [peers] extra; install it beside with "
                "`pip install --no-deps --target DIR sinabs==3.1.3 pbr` and PYTHONPATH=DIR")  # fmt: skip
    return (
        "sinabs 3.1.3 `from_model` converts the U-Net (module by module: concatenation and transposed convolutions "
        "stay PyTorch ops); no weight normalization (its normalize_weights needs a flat model)"
    )


def _slices(volumes):
    """[D, 1, H, W] slices of each [1, D, H, W] volume (the bundle's slice inferer does the same)."""
    return [(v["image"][0][:, None].as_tensor().float(), v["label"][0][:, None].as_tensor() > 0.5) for v in volumes]


def dice_3d(model, data) -> float:
    from monai.metrics import DiceMetric

    metric = DiceMetric(include_background=True, reduction="mean")
    with torch.no_grad():
        for x, y in data:
            pred = model(x) > 0
            metric(pred.permute(1, 0, 2, 3)[None].float(), y.permute(1, 0, 2, 3)[None].float())
    return float(metric.aggregate())


def main(argv=None) -> list[str]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num_volumes", type=int, default=42, help="test volumes for the accuracy table")
    p.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    p.add_argument("--timing_steps", type=int, nargs="+", default=[8, 32])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--save", action="store_true")
    args = p.parse_args(argv)

    from monai_snn.conversion import convert_to_snn
    from monai_snn.conversion.io import load_settings

    torch.manual_seed(0)
    cfg = _bundle()
    ann, cal_x = shipped_ann(cfg)
    shipped = load_settings(ROOT / "bundles/hippocampus_snn/models/converted.json")
    volumes = cfg.get_parsed_content("test_volumes")
    data = _slices([volumes[i] for i in range(min(args.num_volumes, len(volumes)))])
    builders = {
        "ours IF, layer, p99.9, v0 = 0": lambda T: convert_to_snn(
            ann, [cal_x], neuron="if", normalization="layer", percentile=99.9, initial_potential=0.0, num_steps=T
        ),
        f"ours MT, connection, p{shipped['percentile']:g}, v0 = {shipped['initial_potential']:g}": lambda T: (
            convert_to_snn(ann, [cal_x], neuron="multi_threshold", thresholds=shipped["thresholds"],
                           normalization=shipped["normalization"], percentile=shipped["percentile"],
                           initial_potential=shipped["initial_potential"], num_steps=T)  # fmt: skip
        ),
        "spikingjelly RateCoding 99.9 %": lambda T: SpikingJellyRunner(ann, cal_x, T),
        "sinabs from_model (MultiSpike IAF)": lambda T: SinabsRunner(ann, T),
    }
    nets = {}
    for name, build in builders.items():
        try:
            nets[name] = build(args.steps[0])
        except ImportError as e:
            print(f"{name}: not installed ({e.name}); see the module docstring")
    for net in nets.values():
        if hasattr(net, "count_spikes"):
            net.count_spikes = False
    lines = [
        "# Peers side by side (benchmarks/peers.py)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, torch "
        f"{torch.__version__}, python {sys.version.split()[0]}. Shipped hippocampus ANN (fold 0), "
        f"{len(data)} test volumes of the bundle ({sum(len(x) for x, _ in data)} slices), calibration: the "
        f"bundle's {len(cal_x)} training slices.",
        "",
        f"ANN 3D Dice: {dice_3d(ann, data):.3f}",
        "",
        "| converter | " + " | ".join(f"T = {T}" for T in args.steps) + " |",
        "|---|" + "---|" * len(args.steps),
    ]
    for name, net in nets.items():
        row = []
        for T in args.steps:
            net.num_steps = T
            row.append(f"{dice_3d(net, data):.3f}")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    lines += ["", _sinabs_note(), ""]
    print("\n".join(lines), flush=True)

    # speed: interleaved rounds, medians of SNN / (T x ANN forward)
    x = torch.cat([d[0] for d in data])[: args.batch]
    while len(x) < args.batch:
        x = torch.cat([x, x])[: args.batch]
    lines += [
        f"Speed: batch {args.batch}, {args.repeats} interleaved rounds, median SNN / (T x ANN forward) in process "
        "CPU time (wall-clock in brackets; CPU time is what a busy machine disturbs least: a process waiting for a "
        "core accrues none; at 2 threads it includes the threads' waits) (spike counting off; our neuron updates "
        "compiled where a C++ compiler is found)",
        "",
        "| threads | T | " + " | ".join(nets) + " |",
        "|---|---|" + "---|" * len(nets),
    ]
    for threads in args.threads:
        torch.set_num_threads(threads)
        for T in args.timing_steps:
            for net in nets.values():
                net.num_steps = T
            cases = {"ann": ann, **nets}
            times = {k: [] for k in cases}
            cpu = {k: [] for k in cases}
            with torch.no_grad():
                for fn in cases.values():
                    fn(x)  # warm-up (and compilation)
                for _ in range(args.repeats):
                    for k, fn in cases.items():
                        t0, c0 = time.perf_counter(), time.process_time()
                        fn(x)
                        times[k].append(time.perf_counter() - t0)
                        cpu[k].append(time.process_time() - c0)
            ann_t, ann_c = statistics.median(times["ann"]), statistics.median(cpu["ann"])
            cells = [
                f"{statistics.median(cpu[k]) / (T * ann_c):.2f} ({statistics.median(times[k]) / (T * ann_t):.2f})"
                for k in nets
            ]
            lines.append(f"| {threads} | {T} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    if args.save:
        (ROOT / "benchmarks" / "peers_results.txt").write_text("\n".join(lines) + "\n")
    return lines


if __name__ == "__main__":
    main()
