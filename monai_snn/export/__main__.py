# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""``python -m monai_snn.export``: export a bundle's shipped model (``--network ann|converted|finetuned|...``).

The model is chosen exactly as the bundle's ``inference.json`` chooses it (its ``models`` mapping and
``network_def``, :func:`monai_snn.bundle.load_model`); the example input comes from the bundle's
``metadata.json`` (``network_data_format``: channels and spatial shape of the input patch).

Example::

    python -m monai_snn.export --bundle_root bundles/em_snn --network finetuned --out em_snn_T8.ts
    python -m monai_snn.export --bundle_root bundles/denoise_snn --set color=true --network ann --out denoise_color_ann.ts
    python -m monai_snn.export --bundle_root B --network NAME --out model.nir   # an SNN with IF neurons, to NIR

The format follows ``--format`` or the suffix of ``--out`` (``.nir``: NIR, anything else: TorchScript). An NIR graph
has fixed shapes: it is exported for the metadata's input patch (or ``--input_shape 1 C H W``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from monai_snn.export.torchscript import export_torchscript

FORMATS = ("torchscript", "nir")


def _example_input(meta: dict, shape: Sequence[int] | None, channels: int | None) -> torch.Tensor:
    """``--input_shape``, else one patch of the metadata's input shape (channels from the model where it knows them:
    a bundle with several variants, e.g. grey and colour, has one metadata file)."""
    if shape:
        return torch.rand(*[int(s) for s in shape])
    try:
        image = meta["network_data_format"]["inputs"]["image"]
        c = int(channels) if channels else int(image["num_channels"])
        return torch.rand(1, c, *[int(s) for s in image["spatial_shape"]])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"metadata.json has no usable network_data_format.inputs.image ({e!r}); give --input_shape B C H W."
        ) from None


def main(argv: Sequence[str] | None = None) -> Path:
    from monai.bundle import ConfigParser

    from monai_snn.apps.overrides import _literal
    from monai_snn.bundle import load_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle_root", required=True)
    p.add_argument("--network", default="finetuned", help="a name of the bundle's inference models")
    p.add_argument("--out", required=True, help="output file (.ts)")
    p.add_argument("--format", default=None, choices=FORMATS, help="default: from the suffix of --out")
    p.add_argument("--num_steps", type=int, default=None, help="T of a spiking network (default: its shipped T)")
    p.add_argument("--input_shape", type=int, nargs="+", default=None, help="example input B C *spatial")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="bundle overrides, e.g. color=true")
    args = p.parse_args(argv)
    root = Path(args.bundle_root).resolve()
    cfg = root / "configs"
    if not (cfg / "inference.json").is_file():
        raise SystemExit(f"error: {root} is not a bundle with configs/inference.json.")
    parser = ConfigParser()
    parser.read_config([str(cfg / "common.json"), str(cfg / "inference.json")])
    parser["bundle_root"] = str(root)
    for item in args.set:
        if "=" not in item:
            raise SystemExit(f"error: --set expects KEY=VALUE, got {item!r}.")
        k, v = item.split("=", 1)
        if k not in parser:
            raise SystemExit(f"error: --set {k}: the bundle's common.json / inference.json define no key {k!r}.")
        parser[k] = _literal(v)
    if "imports" in parser:
        parser.get_parsed_content("imports")
    try:
        network_def = parser.get_parsed_content("network_def")
        model = load_model(args.network, parser.get_parsed_content("models"), network_def, args.num_steps)
        meta = json.loads((cfg / "metadata.json").read_text())
        channels = getattr(model, "in_channels", None) or getattr(network_def, "in_channels", None)
        example = _example_input(meta, args.input_shape, channels)
        fmt = args.format or ("nir" if str(args.out).endswith(".nir") else "torchscript")
        if fmt == "nir":
            from monai_snn.export.nir import write_nir

            write_nir(model, args.out, tuple(example.shape[1:]))
        else:
            export_torchscript(model, example, args.out)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"exported {args.network!r} of {root.name} ({type(model).__name__}"
          f"{', T=' + str(model.num_steps) if hasattr(model, 'num_steps') else ''}) to {args.out}")  # fmt: skip
    return Path(args.out)


if __name__ == "__main__":
    main()
