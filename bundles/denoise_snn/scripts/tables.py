"""Result tables of the ``denoise_snn`` bundle next to the paper's (Spiking-UNet, Tables 3 and 5), from the
``metrics.json`` files of a run (or of their copies kept under ``docs/results``).

Table 3: PSNR / SSIM of the ANN, the converted and the fine-tuned SNN on BSD68 (grey) and CBSD68 (colour) at every
test sigma, with the paper's U-Net and fine-tuned multi-threshold SNN. Table 5: PSNR / SSIM against T on the key
sigma (25), the converted SNN (the conversion stage's sweep) and the fine-tuned one (the evaluate stage's extra T),
with the estimated energy over the ANN's, and a plot (``psnr_vs_T.png``).

Run (a plain script of the bundle, with the package installed)::

    python bundles/denoise_snn/scripts/tables.py --grey runs/denoise_grey/fold0 --color runs/denoise_color/fold0 \
        --output_dir bundles/denoise_snn/docs/results
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["PAPER_TABLE3", "PAPER_TABLE5", "read_run", "table3", "curves", "table5", "psnr_vs_t_figure", "main"]

# (data set, metric, sigma) -> (U-Net, fine-tuned multi-threshold Spiking-UNet), Li et al. 2024, Table 3
PAPER_TABLE3 = {
    ("BSD68", "psnr", 15): (31.02, 31.08), ("BSD68", "psnr", 25): (28.61, 28.72), ("BSD68", "psnr", 50): (25.72, 25.86),
    ("BSD68", "ssim", 15): (0.868, 0.869), ("BSD68", "ssim", 25): (0.799, 0.802), ("BSD68", "ssim", 50): (0.684, 0.692),
    ("CBSD68", "psnr", 15): (33.32, 33.14), ("CBSD68", "psnr", 25): (30.59, 30.57),
    ("CBSD68", "psnr", 50): (27.14, 27.24), ("CBSD68", "ssim", 15): (0.920, 0.913),
    ("CBSD68", "ssim", 25): (0.864, 0.858), ("CBSD68", "ssim", 50): (0.749, 0.753),
}  # fmt: skip
# T -> (PSNR, SSIM) of the fine-tuned Spiking-UNet on BSD68 at sigma 25, Table 5
PAPER_TABLE5 = {4: (28.04, 0.745), 8: (28.58, 0.790), 10: (28.72, 0.802), 16: (28.72, 0.803), 20: (28.71, 0.803),
                24: (28.73, 0.804), 28: (28.74, 0.804)}  # fmt: skip


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the bundle's convert and evaluate stages first.")
    return json.loads(path.read_text())


def _fmt(v: Any, metric: str) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if metric == "psnr" else f"{v:.3f}"


def read_run(fold: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(convert/metrics.json, evaluate/metrics.json)`` of one run's fold folder."""
    return _read(fold / "convert" / "metrics.json"), _read(fold / "evaluate" / "metrics.json")


def table3(evaluations: dict[str, dict[str, Any]]) -> str:
    """Markdown Table 3 for the evaluate-stage metrics given as ``{"BSD68": ..., "CBSD68": ...}`` (either may be
    absent)."""
    lines = ["| data | metric | sigma | paper U-Net | paper SNN (FT) | ANN | converted SNN | fine-tuned SNN |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for data, ev in evaluations.items():
        steps = {k: (ev.get(k) or {}).get("num_steps") for k in ("converted", "finetuned")}
        for metric in ("psnr", "ssim"):
            for sigma in ev["info"]["sigmas"]:
                tag = f"{float(sigma):g}"
                paper = PAPER_TABLE3.get((data, metric, int(sigma)), (None, None))
                ours = [(ev.get(k) or {}).get(f"{metric}_{tag}") for k in ("ann", "converted", "finetuned")]
                cells = [_fmt(p, metric) for p in paper] + [_fmt(v, metric) for v in ours]
                lines.append(f"| {data} | {metric.upper()} | {tag} | " + " | ".join(cells) + " |")
        lines.append(f"| {data} | T | | | | - | {steps['converted']} | {steps['finetuned']} |")
    return "\n".join(lines)


def curves(conv: dict[str, Any], ev: dict[str, Any]) -> tuple[dict[str, dict[int, dict[str, float]]], dict]:
    """``({"converted": {T: metrics}, "fine-tuned": {T: metrics}}, ANN metrics)`` of one run: the conversion's T
    sweep and the fine-tuned SNN at its T and its extra T."""
    converted = {int(t): m for t, m in conv.get("metrics_vs_T", {}).items()}
    fine: dict[int, dict[str, float]] = {}
    if ev.get("finetuned"):
        fine[int(ev["finetuned"]["num_steps"])] = ev["finetuned"]
        fine.update({int(t): m for t, m in ev["finetuned"].get("at_T", {}).items()})
    return {"converted": converted, "fine-tuned": fine}, ev.get("ann") or conv["ann"]


def table5(vs_t: dict[str, dict[int, dict[str, float]]], ann: dict[str, Any], data: str = "BSD68") -> str:
    """Markdown Table 5 (metrics against T at the key sigma) from :func:`curves`."""
    paper = PAPER_TABLE5 if data == "BSD68" else {}
    ts = sorted(set(vs_t["converted"]) | set(vs_t["fine-tuned"]) | set(paper))
    lines = ["| T | converted PSNR | converted SSIM | fine-tuned PSNR | fine-tuned SSIM | fine-tuned energy vs ANN "
             "| paper (FT) PSNR | paper (FT) SSIM |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for t in ts:
        c, f = vs_t["converted"].get(t, {}), vs_t["fine-tuned"].get(t, {})
        p = paper.get(t, (None, None))
        energy = f.get("energy_snn_over_ann")
        lines.append(f"| {t} | {_fmt(c.get('psnr'), 'psnr')} | {_fmt(c.get('ssim'), 'ssim')} | "
                     f"{_fmt(f.get('psnr'), 'psnr')} | {_fmt(f.get('ssim'), 'ssim')} | "
                     f"{'-' if energy is None else f'{energy:.2f}x'} | {_fmt(p[0], 'psnr')} | {_fmt(p[1], 'ssim')} |")
    lines.append(f"| ANN | {_fmt(ann.get('psnr'), 'psnr')} | {_fmt(ann.get('ssim'), 'ssim')} | | | | | |")
    return "\n".join(lines)


def psnr_vs_t_figure(vs_t: dict[str, dict[int, dict[str, float]]], ann: dict[str, Any], data: str = "BSD68"):
    """PSNR against T (log2 axis, :func:`monai_snn.bundle.metric_vs_steps_figure`): converted and fine-tuned SNN,
    the ANN (dashed) and, on BSD68, the paper's fine-tuned SNN."""
    from monai_snn.bundle import metric_vs_steps_figure

    lines = {f"{name} SNN": {t: m["psnr"] for t, m in rows.items()} for name, rows in vs_t.items() if rows}
    fig = metric_vs_steps_figure(lines, ann.get("psnr"), "PSNR (dB), sigma 25", f"{data}: readout error against T")
    if data == "BSD68":
        ax = fig.axes[0]
        ax.plot(sorted(PAPER_TABLE5), [PAPER_TABLE5[t][0] for t in sorted(PAPER_TABLE5)], "s:", color="grey",
                label="paper, fine-tuned")  # fmt: skip
        ax.legend()
    return fig


def main(argv: Sequence[str] | None = None) -> str:
    """Write ``tables.md`` (Tables 3 and 5) and ``psnr_vs_T_<data>.png`` per run to ``--output_dir``; returns the
    text."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grey", type=Path, help="fold folder of the grey run (holding convert/ and evaluate/)")
    p.add_argument("--color", type=Path, help="fold folder of the colour run")
    p.add_argument("--output_dir", type=Path, required=True)
    args = p.parse_args(argv)
    folds = {k: v for k, v in (("BSD68", args.grey), ("CBSD68", args.color)) if v is not None}
    if not folds:
        p.error("give --grey and / or --color")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    runs = {data: read_run(fold) for data, fold in folds.items()}
    parts = ["## Table 3: PSNR / SSIM at each noise level", "", table3({data: ev for data, (_, ev) in runs.items()})]
    for data, (conv, ev) in runs.items():
        vs_t, ann = curves(conv, ev)
        parts += ["", f"## Table 5: {data}, sigma 25, against T", "", table5(vs_t, ann, data)]
        psnr_vs_t_figure(vs_t, ann, data).savefig(args.output_dir / f"psnr_vs_T_{data}.png")
    text = "\n".join(parts) + "\n"
    (args.output_dir / "tables.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
