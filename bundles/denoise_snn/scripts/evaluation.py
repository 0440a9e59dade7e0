"""Evaluate stage of the ``denoise_snn`` bundle: every model at every test noise level, in one ``metrics.json``.

:func:`evaluate_sigmas` runs :func:`monai_snn.bundle.evaluate_models` once per noise level (each in
``<output_dir>/sigma<s>/``) and merges the results per model: the scores at the key level (sigma 25, the paper's
main setting) keep their plain names (``psnr``, ``ssim``, ``energy_snn_over_ann``, ``at_T``...) so the generic
tools (``apps.summary``, ``apps.variants``) read them as for any bundle, and every level adds its scores with a
suffix (``psnr_15``, ``ssim_50``, ``energy_snn_over_ann_50``, ``firing_rate_mean_15``...; the energy details in
joules and operations stay at the key level only).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import DataLoader, Dataset

from monai_snn.bundle import evaluate_models, write_json

from .denoise import check_sigma, eval_transforms

__all__ = ["sigma_tag", "evaluate_sigmas", "example_panel"]


def sigma_tag(sigma: float) -> str:
    """``25.0`` -> ``"25"`` (the suffix of the scores at that noise level)."""
    return f"{float(sigma):g}"


def _numbers(m: Mapping[str, Any]) -> dict[str, float]:
    return {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def evaluate_sigmas(
    make_evaluator: Callable[..., Any],
    test_items: Sequence[Mapping[str, Any]],
    color: bool,
    sigmas: Sequence[float],
    models: Mapping[str, str | os.PathLike],
    network_def: torch.nn.Module,
    output_dir: str | os.PathLike,
    key_sigma: float = 25.0,
    seed: int = 0,
    num_steps: Mapping[str, int | None] | None = None,
    extra_steps: Mapping[str, Sequence[int]] | None = None,
    info: Mapping[str, Any] | None = None,
    num_workers: int = 0,
    inferer: Any = None,
) -> dict[str, Any]:
    """The evaluate stage at several noise levels (see the module docstring); writes ``<output_dir>/metrics.json``
    and, given the ``inferer``, ``examples.png`` (:func:`example_panel` on the first test image at ``key_sigma``).

    Args:
        make_evaluator: the bundle's evaluator factory.
        test_items: the clean test images (``{"image": path, "name": stem}``).
        color: colour (True) or grey images.
        sigmas: the noise levels on the [0, 255] scale, e.g. ``(15, 25, 50)``.
        models: name -> weights file (see :func:`monai_snn.bundle.evaluate_models`).
        network_def: the ANN architecture.
        output_dir: the stage folder.
        key_sigma: the level whose scores also keep their plain names; must be one of ``sigmas``.
        seed: base seed of the test noise (:class:`~scripts.denoise.FixedGaussianNoised`).
        num_steps: name -> ``T`` (``None``: the stored one).
        extra_steps: name -> more ``T`` evaluated at ``key_sigma`` only (``at_T``).
        info: more facts for ``metrics["info"]``.
        num_workers: data loader workers.
        inferer: the bundle's inferer (``ResidualInferer``), for the example panel; ``None``: no panel.

    Returns:
        ``{name: {"psnr": .., "ssim": .., "psnr_15": .., ..., "num_steps": T, ...} | None, "info": {...}}``.

    Raises:
        ValueError: no sigmas, a sigma outside [0, 255], ``key_sigma`` not among ``sigmas``.

    Example::

        evaluate_sigmas(factory, bsd68_items, False, (15, 25, 50), {"ann": "models/grey/ann.pt"}, unet, "runs/eval")
    """
    levels = [check_sigma(s, "test_sigmas") for s in sigmas]
    if not levels:
        raise ValueError("test_sigmas is empty: give at least one noise level, e.g. [15, 25, 50].")
    key = check_sigma(key_sigma, "key_sigma")
    if key not in levels:
        raise ValueError(f"key_sigma {key:g} must be one of test_sigmas {[sigma_tag(s) for s in levels]}.")
    out = Path(output_dir)
    per_sigma: dict[float, dict[str, Any]] = {}
    for s in [key] + [s for s in levels if s != key]:
        loader = DataLoader(Dataset(list(test_items), eval_transforms(color, s, seed)), batch_size=1, shuffle=False,
                            num_workers=num_workers)  # fmt: skip
        per_sigma[s] = evaluate_models(make_evaluator, loader, models, network_def, out / f"sigma{sigma_tag(s)}",
                                       num_steps, extra_steps if s == key else None,
                                       {**dict(info or {}), "sigma": s, "seed": seed}, resume=True)  # fmt: skip
    merged: dict[str, Any] = {}
    for name in models:
        base = per_sigma[key].get(name)
        if base is None:
            merged[name] = None
            continue
        m = dict(base)
        for s in levels:
            for k, v in _numbers(per_sigma[s][name]).items():
                if k != "num_steps" and (not k.startswith("energy_") or k == "energy_snn_over_ann"):
                    m[f"{k}_{sigma_tag(s)}"] = v
        m["key_sigma"] = key
        merged[name] = m
    merged["info"] = {**per_sigma[key]["info"], "sigmas": levels, "key_sigma": key}
    merged["info"].pop("sigma", None)
    write_json(out / "metrics.json", merged)
    if inferer is not None and test_items:
        example_panel(test_items[0], color, key, seed, models, network_def, inferer, out / "examples.png")
    return merged


def example_panel(
    item: Mapping[str, Any],
    color: bool,
    sigma: float,
    seed: int,
    models: Mapping[str, str | os.PathLike],
    network_def: torch.nn.Module,
    inferer: Any,
    path: str | os.PathLike,
    crop: int = 160,
) -> Path:
    """One image, noisy | each model's output | clean, as a PNG grid (a central ``crop`` x ``crop`` and the whole
    image), with each output's PSNR in its title. Models whose weights are missing are left out.

    Example::

        example_panel(bsd68_items[0], False, 25, 0, {"ann": "models/grey/ann.pt"}, unet, ResidualInferer(8), "ex.png")
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from monai.metrics import PSNRMetric

    from monai_snn.bundle import load_model

    d = eval_transforms(color, sigma, seed)(dict(item))
    noisy, clean = d["image"].as_tensor()[None], d["label"].as_tensor()[None]
    panels = [("noisy", noisy)]
    with torch.no_grad():
        for name, weights in models.items():
            if weights and os.path.isfile(weights):
                panels.append((name, inferer(noisy, load_model(name, models, network_def)).clamp(0, 1)))
    panels.append(("clean", clean))

    def show(x: torch.Tensor):
        img = x[0].permute(1, 2, 0).numpy() if color else x[0, 0].numpy()
        return img.clip(0, 1)

    psnr = PSNRMetric(max_val=1.0)
    h, w = clean.shape[-2:]
    top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    fig, axes = plt.subplots(2, len(panels), figsize=(2.6 * len(panels), 5.6), dpi=90, squeeze=False)
    for j, (name, x) in enumerate(panels):
        title = name if name == "clean" else f"{name}\n{float(psnr(x.clamp(0, 1), clean)):.2f} dB"
        for i, img in enumerate((show(x)[top:top + crop, left:left + crop], show(x))):
            axes[i, j].imshow(img, cmap=None if color else "gray", vmin=0, vmax=1)
            axes[i, j].set_axis_off()
        axes[0, j].set_title(title, fontsize=9)
    fig.suptitle(f"{item.get('name', '')}, sigma {sigma:g}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
