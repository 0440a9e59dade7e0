# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Quantization-aware activation for conversion: the transfer function of the spiking neuron the ANN will become.

QCFS (quantization-clip-floor-shift, Bu et al., ICLR 2022) trains the ANN with the activation a soft-reset neuron
realises, so that conversion at the design ``T`` is exact instead of approximate. Here it is written for this
project's neurons: a neuron with halving levels ``thresholds`` (relative to a clipping level ``lambda``; IF is
``(1,)``, the multi-threshold neuron ``(2, 1, 0.5, 0.25)``), an initial potential ``phi`` (fraction of the smallest
level ``lo``) and ``T`` steps of a constant input ``x`` emits on average

    ``h(x) = lambda * q * clamp(floor(x / (lambda * q) + phi), 0, T * (2**n - 1))``,  ``q = lo / T``:

``T`` levels for IF, ``15 T`` for the four-level neuron, a rounding quantizer for ``phi = 0.5``. The clipping level
``lambda`` is learnt per layer (gradients by the straight-through estimator of ``floor``: ``dh/dx = 1`` inside the
range; ``dh/dlambda = h / lambda - x / lambda`` inside, ``(2**n - 1)`` levels' top above) and becomes the layer's
scale at conversion (``normalization="clip"``: no percentile search).

At ``T = 1`` every layer of the converted network sees a single step, so the SNN reproduces the QCFS ANN exactly
(up to float rounding at level boundaries); at ``T > 1`` the inputs of deeper layers are spike trains rather than
constants, and the match is close but not exact (``tests/test_qcfs.py`` measures both).

Example::

    net = ConvertibleUNet(2, 1, 1, act=("qcfs", {"design_steps": 2, "thresholds": (2.0, 1.0, 0.5, 0.25)}))
    snn = convert_to_snn(net, None, **qcfs_conversion(net))  # neuron, thresholds, v0, T from the activations
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from monai.networks.layers.factories import Act
from torch import nn

__all__ = ["QCFS", "init_qcfs", "qcfs_conversion"]


class QCFS(nn.Module):
    """Clip-floor-shift activation with a learnable clipping level (one per layer).

    Args:
        design_steps: the ``T`` the converted SNN will run at (>= 1).
        thresholds: relative levels of the target neuron, highest first, each half the previous one (IF:
            ``(1.0,)``; multi-threshold: ``(2.0, 1.0, 0.5, 0.25)``).
        initial_potential: the neuron's initial membrane as a fraction of its smallest level, in ``[0, 1)``
            (``0.5``: rounding).
        clip_init: initial clipping level ``lambda`` (> 0).

    Raises:
        ValueError: ``design_steps < 1``, levels that are not halving (the neuron's greedy firing is then no
            uniform quantizer), ``initial_potential`` outside ``[0, 1)``, ``clip_init <= 0``; in ``forward``, a
            clipping level that trained to ``<= 0`` (the message names the layer).

    Example::

        act = QCFS(design_steps=2, thresholds=(1.0,))  # the IF neuron at T = 2: levels 0, lambda / 2, lambda
    """

    def __init__(
        self,
        design_steps: int = 2,
        thresholds: Sequence[float] = (1.0,),
        initial_potential: float = 0.5,
        clip_init: float = 1.0,
    ) -> None:
        super().__init__()
        if isinstance(design_steps, bool) or not isinstance(design_steps, int) or design_steps < 1:
            raise ValueError(f"design_steps must be a positive integer, got {design_steps!r}.")
        levels = tuple(float(t) for t in thresholds)
        if not levels or any(not (t > 0 and math.isfinite(t)) for t in levels):
            raise ValueError(f"thresholds must be positive and finite, got {tuple(thresholds)}.")
        if any(abs(a / 2.0 - b) > 1e-9 * a for a, b in zip(levels, levels[1:])):
            raise ValueError(
                f"thresholds {levels}: the QCFS activation realises neurons whose levels halve (IF: (1.0,); "
                "multi-threshold: (2.0, 1.0, 0.5, 0.25)); other level sets fire greedily into a non-uniform grid."
            )
        if not 0.0 <= initial_potential < 1.0:
            raise ValueError(f"initial_potential must be in [0, 1), got {initial_potential!r}.")
        if not clip_init > 0:
            raise ValueError(f"clip_init must be positive, got {clip_init!r}.")
        self.design_steps = int(design_steps)
        self.thresholds = levels
        self.initial_potential = float(initial_potential)
        self.quantum = levels[-1] / design_steps  # in units of lambda
        self.max_count = float(design_steps * (2 ** len(levels) - 1))
        self.clip = nn.Parameter(torch.tensor(float(clip_init)))
        self.layer_name = ""
        self.track_activity = False  # set by monai_snn.losses.ActivityRegularizedLoss
        self.activity: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lam = self.clip
        if not bool(lam > 0):
            raise ValueError(
                "QCFS clipping level of layer '" + self.layer_name + "' trained to " + str(float(lam.detach()))
                + " <= 0; lower the learning rate or the weight decay of the clipping levels."
            )
        step = lam * self.quantum
        z = x / step + self.initial_potential
        z = z + (torch.floor(z) - z).detach()  # straight-through floor
        count = torch.clamp(z, 0.0, self.max_count)
        if self.track_activity and torch.is_grad_enabled():  # smallest-level quanta per step (IF: spikes per step)
            self.activity = count / self.design_steps
        return count * step

    def extra_repr(self) -> str:
        return (
            f"design_steps={self.design_steps}, thresholds={self.thresholds}, "
            f"initial_potential={self.initial_potential}, clip={float(self.clip.detach()):.4g}"
        )


def init_qcfs(
    network: nn.Module,
    checkpoint: str | os.PathLike | None,
    calibration_data: Iterable | torch.Tensor | None = None,
    percentile: float = 99.9,
) -> nn.Module:
    """Start quantization-aware training from trained weights (a float ReLU ANN or a QCFS ANN).

    QCFS from scratch needs clipping levels that fit activations it has not seen yet; starting from a trained
    ReLU U-Net of the same architecture is faster and the usual recipe (Bu et al. fine-tune too). The weights
    are loaded; clipping levels the checkpoint does not hold (a ReLU ANN) are set to the ``percentile`` of each
    activation's float input on ``calibration_data``, layer by layer, with every activation still a ReLU (the
    float ANN's own activations, as a layer-wise normalization would read them). Without a checkpoint every
    clipping level is calibrated on the network's current (e.g. random) weights: training from scratch then starts
    with levels that fit the activations instead of a fixed ``clip_init``, which can leave most units at zero.

    Args:
        network: a network with QCFS activations (e.g. ``ConvertibleUNet(..., act=("qcfs", {...}))``).
        checkpoint: a state dict file, plain or a CheckpointSaver dict with the weights under ``"network"``;
            ``None``: keep the weights, calibrate every clipping level.
        calibration_data: batches (tensors or dicts with ``"image"``) for the clipping levels; required when the
            checkpoint has none.
        percentile: percentile (0-100] of the positive activations taken as the clipping level.

    Returns:
        ``network`` with the weights and clipping levels, in training mode.

    Raises:
        FileNotFoundError: no file at ``checkpoint``.
        ValueError: ``network`` has no QCFS activation; the checkpoint's weights do not fit ``network`` (the
            message names the file and the keys); clipping levels are missing and no ``calibration_data`` is given;
            a layer whose activations are all <= 0 on the calibration data.

    Example::

        qnet = ConvertibleUNet(2, 1, 1, act=("qcfs", {"design_steps": 2, "thresholds": (2.0, 1.0, 0.5, 0.25)}))
        init_qcfs(qnet, "models/ann.pt", calibration_batch)
    """
    from monai_snn.conversion.statistics import iterate_calibration, robust_percentile
    from monai_snn.handlers.checkpoint import read_state_dict

    acts = {name: m for name, m in network.named_modules() if isinstance(m, QCFS)}
    if not acts:
        raise ValueError(f"{type(network).__name__} has no QCFS activation to initialize (act=('qcfs', {{...}})).")
    clip_keys = {f"{name}.clip" for name in acts}
    missing, unexpected = sorted(clip_keys), []
    if checkpoint is not None:
        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"ann_init checkpoint not found: {checkpoint}.")
        try:
            missing, unexpected = network.load_state_dict(read_state_dict(checkpoint), strict=False)
        except RuntimeError as err:  # shapes differ
            lines = str(err).splitlines()
            raise ValueError(
                f"{checkpoint} does not fit {type(network).__name__} (same channels, bias and levels as the "
                f"checkpoint's network?): {lines[1].strip() if len(lines) > 1 else err}"
            ) from err
    wrong = [k for k in missing if k not in clip_keys] + list(unexpected)
    if wrong:
        raise ValueError(
            f"{checkpoint} does not fit {type(network).__name__}: missing or unexpected weights {wrong[:6]}"
            f"{' ...' if len(wrong) > 6 else ''} (same channels, bias and levels as the checkpoint's network?)."
        )
    to_calibrate = {name: m for name, m in acts.items() if f"{name}.clip" in missing}
    if to_calibrate:
        if calibration_data is None:
            raise ValueError(
                f"{checkpoint} has no QCFS clipping levels (a ReLU ANN): pass calibration_data to set them."
            )
        values: dict[str, list[torch.Tensor]] = {name: [] for name in to_calibrate}

        def as_relu(name: str):  # the float ANN's activation, recorded: a forward hook's return replaces the output
            def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
                out = torch.relu(inputs[0])
                if name in values:
                    values[name].append(out.flatten().cpu())
                return out

            return hook

        hooks = [m.register_forward_hook(as_relu(name)) for name, m in acts.items()]
        device = next(network.parameters()).device
        network.eval()
        try:
            with torch.no_grad():
                for batch in iterate_calibration(calibration_data):
                    network(batch.to(device))
        finally:
            for h in hooks:
                h.remove()
        for name, m in to_calibrate.items():
            v = torch.cat(values[name])
            level = robust_percentile(v[v > 0], percentile)
            if not level > 0:
                raise ValueError(
                    f"QCFS layer '{name}': every activation is <= 0 on the calibration data; no clipping level."
                )
            m.clip.data.fill_(level)
    return network.train()


def qcfs_conversion(ann: nn.Module) -> dict[str, Any]:
    """The ``convert_to_snn`` arguments that make the SNN realise ``ann``'s QCFS activations.

    Returns:
        ``normalization="clip"``, ``neuron`` (``"if"`` for one level, else ``"multi_threshold"``), ``thresholds``,
        ``initial_potential`` and ``num_steps`` (the design ``T``).

    Raises:
        ValueError: ``ann`` has no QCFS activation, or its activations disagree (design ``T``, levels or shift).

    Example::

        snn = convert_to_snn(ann, None, **qcfs_conversion(ann))
    """
    acts = [m for m in ann.modules() if isinstance(m, QCFS)]
    if not acts:
        raise ValueError(f"{type(ann).__name__} has no QCFS activation; train it with act=('qcfs', {{...}}).")
    designs = {(a.design_steps, a.thresholds, a.initial_potential) for a in acts}
    if len(designs) > 1:
        raise ValueError(f"the QCFS activations of {type(ann).__name__} disagree: {sorted(designs)}.")
    steps, levels, phi = designs.pop()
    return {
        "normalization": "clip",
        "neuron": "if" if len(levels) == 1 else "multi_threshold",
        "thresholds": levels,
        "initial_potential": phi,
        "num_steps": steps,
    }


if "QCFS" not in Act.names:
    Act.add_factory_callable("qcfs", lambda: QCFS, "quantization-aware clip-floor-shift (monai_snn)")
