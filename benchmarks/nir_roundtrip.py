"""NIR round trip on real data: a bundle's ANN converted with IF neurons, exported to NIR, run by norse.

For each bundle (hippocampus MRI, DRIVE vessels): the shipped ANN is converted with IF neurons (the bundle's
normalization and percentile, calibration from its training data), exported with
:func:`monai_snn.export.to_nir` and read back from the ``.nir`` file; on the bundle's test images and through the
bundle's own inferer and metrics, the table compares

* ``ours, soft reset``: our simulator, IF with soft reset and the initial potential ``v0``;
* ``ours, NIR semantics``: the same network with NIR's IF (hard reset to 0, ``v > theta``, ``v0 = 0``),
  :func:`monai_snn.export.nir_semantics`: what the file describes;
* ``NIR file -> norse``: :class:`monai_snn.export.NIRSimulator` (nirtorch's interpreter, norse's IF / Conv2d).

It prints the key metric of each, the max abs difference of the outputs between the last two (on every test
image) and the agreement of their binary masks (Dice between the two predictions), the file size and the
export time. Results go to ``benchmarks/nir_roundtrip_results.txt`` with ``--save``.

Usage::

    python benchmarks/nir_roundtrip.py --num_images 8 2 --save   # 8 hippocampus volumes, 2 DRIVE images
    python benchmarks/nir_roundtrip.py --bundles hippocampus_snn --num_images 2 --steps 8   # smoke
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _parser(bundle: str, stage: str):
    from monai.bundle import ConfigParser

    root = ROOT / "bundles" / bundle
    p = ConfigParser()
    p.read_config([str(root / "configs" / "common.json"), str(root / "configs" / stage)])
    p["bundle_root"] = str(root)
    p["num_workers"] = 0
    p.get_parsed_content("imports")
    return p


class _Capture(torch.nn.Module):
    """Records the outputs of a network (to compare two networks on the same windows / slices)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.outputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        self.outputs.append(y.detach().clone())
        return y


def run_bundle(bundle: str, num_images: int, steps: int, threads: int) -> list[str]:
    from monai.data import DataLoader

    from monai_snn.bundle import load_model
    from monai_snn.conversion import convert_to_snn
    from monai_snn.export import NIRSimulator, nir_semantics, write_nir

    torch.set_num_threads(threads)
    conv = _parser(bundle, "convert.json")
    models = _parser(bundle, "inference.json").get_parsed_content("models")
    ann = load_model("ann", models, conv.get_parsed_content("network_def"))
    calibration = conv.get_parsed_content("calibration")
    norm, pct = conv.get_parsed_content("normalization"), conv.get_parsed_content("percentile")
    v0 = conv.get_parsed_content("initial_potential")
    snn = convert_to_snn(
        ann, calibration, neuron="if", normalization=norm, percentile=pct, initial_potential=v0, num_steps=steps
    ).eval()
    snn.count_spikes = False
    loader = conv.get_parsed_content("test_loader")
    ds = loader.dataset
    subset = torch.utils.data.Subset(ds, list(range(min(num_images, len(ds)))))
    loader = DataLoader(subset, batch_size=1, shuffle=False, num_workers=0)
    first = subset[0]
    first = first[0] if isinstance(first, list) else first
    if bundle.startswith("hippocampus"):
        shape = (1, *first["image"].shape[-2:])  # the slice inferer feeds [C, H, W] slices
    else:
        win = conv.get_parsed_content("window_size")
        shape = (int(first["image"].shape[0]), *[int(s) for s in win])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{bundle}_if_T{steps}.nir")
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the approximations are in the graph's metadata
            graph = write_nir(snn, path, shape)
        export_s = time.perf_counter() - t0
        size_mb = os.path.getsize(path) / 2**20
        nir_net = NIRSimulator(path)
    approx = "; ".join(graph.metadata["approximations"]) or "none"
    key = conv.get_parsed_content("key_metric")
    nets = {"ours, soft reset": snn, "ours, NIR semantics": nir_semantics(snn), "NIR file -> norse": nir_net}
    results, outputs, times = {}, {}, {}
    for label, net in nets.items():
        cap = _Capture(net)
        evaluator = conv.get_parsed_content("evaluator")(val_data_loader=loader, network=cap)
        evaluator.logger.setLevel("WARNING")
        t0 = time.perf_counter()
        with torch.no_grad():
            evaluator.run()
        times[label] = time.perf_counter() - t0
        results[label] = float(evaluator.state.metrics[key])
        outputs[label] = torch.cat([o.flatten() for o in cap.outputs])
    a, b = outputs["ours, NIR semantics"], outputs["NIR file -> norse"]
    diff = float((a - b).abs().max())
    differ = float(((a - b).abs() > 1e-4).float().mean())
    ma, mb = a > 0, b > 0  # logits: the masks at probability 0.5
    cost = results["ours, NIR semantics"] - results["ours, soft reset"]
    agree = float(2 * (ma & mb).sum() / max(int(ma.sum() + mb.sum()), 1))
    rows = [
        f"### {bundle}: IF conversion ({norm}-wise, percentile {pct}, v0 = {v0}), T = {steps}, "
        f"{len(subset)} test {'volumes' if bundle.startswith('hippocampus') else 'images'}, input {shape}",
        "",
        f"| model | {key} | time (s) |",
        "|---|---|---|",
    ]
    rows += [f"| {k} | {results[k]:.4f} | {times[k]:.1f} |" for k in nets]
    rows += [
        "",
        f"- NIR file vs ours with NIR semantics: max abs output difference {diff:.2e}, outputs differing by more "
        f"than 1e-4: {100 * differ:.3f} %, mask agreement (Dice) {agree:.5f}",
        f"- cost of the closest NIR semantics ({approx}): {key} {cost:+.4f}",
        f"- file {size_mb:.1f} MB, {len(graph.nodes)} nodes, {len(graph.edges)} edges, output polyphase factor "
        f"{graph.metadata['pixel_shuffle']}, export {export_s:.1f} s",
        "",
    ]
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundles", nargs="+", default=["hippocampus_snn", "drive_snn"])
    p.add_argument("--num_images", type=int, nargs="+", default=[8, 2], help="test images per bundle (one or one each)")
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--save", action="store_true")
    args = p.parse_args(argv)
    lines = [
        "# NIR round trip (benchmarks/nir_roundtrip.py)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {args.threads} thread(s), torch {torch.__version__}, "
        f"python {sys.version.split()[0]}. Data: the bundles' test sets in MONAI_SNN_DATA.",
        "",
    ]
    counts = args.num_images * len(args.bundles) if len(args.num_images) == 1 else args.num_images
    for b, n in zip(args.bundles, counts):
        lines += run_bundle(b, n, args.steps, args.threads)
        print("\n".join(lines[-12:]), flush=True)
    if args.save:
        (ROOT / "benchmarks" / "nir_roundtrip_results.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
