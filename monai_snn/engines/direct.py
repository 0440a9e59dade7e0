"""Direct training from scratch: the baseline the papers compare conversion + fine-tuning against."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from torch import nn

from monai_snn.conversion.convert import convert_to_snn
from monai_snn.encoding.encoders import Encoder
from monai_snn.networks.init import WEIGHT_INITS, init_weights
from monai_snn.networks.simulator import SpikingSimulator

__all__ = ["WEIGHT_INITS", "spiking_from_scratch"]


def spiking_from_scratch(
    ann: nn.Module,
    num_steps: int,
    neuron: str = "if",
    encoding: str | Encoder = "static",
    surrogate: str = "triangle",
    thresholds: Sequence[float] = (2.0, 1.0, 0.5, 0.25),
    initial_potential: float = 0.0,
    chunk_size: int | None = None,
    leak: float = 1.0,
    weight_init: str | None = None,
) -> SpikingSimulator:
    """An untrained spiking copy of ``ann`` for direct training with surrogate gradients (BPTT).

    This is the direct-training baseline of the hippocampus three-stage paper (and of Rathi et al.): the ANN's
    architecture with its current (usually random) weights copied unchanged, no calibration and no weight
    normalization, every ReLU replaced by a spiking layer. Train it with
    :class:`~monai_snn.engines.SpikingTrainer` and ``method="bptt"`` (``"flow"`` also runs, but its
    straight-through gradient assumes a converted network whose firing rates approximate ReLUs).

    Args:
        ann: the ANN whose architecture (and initial weights) to use, e.g. a fresh ``ConvertibleUNet``.
        num_steps: simulation length ``T``.
        neuron: a :data:`~monai_snn.neurons.NEURONS` name: ``"if"``, ``"multi_threshold"``, ``"lif"``,
            ``"multi_level"`` (Feng et al.) or ``"real_spike"`` (Guo et al.).
        encoding: ``"static"`` (analog current into the first layer), ``"poisson_binary"`` or
            ``"poisson_ternary"``, or an :class:`~monai_snn.encoding.Encoder`.
        surrogate: surrogate gradient (``"triangle"``, ``"relative_triangle"`` or ``"sigmoid"``).
        thresholds: relative levels of the multi-threshold neuron.
        initial_potential: fraction of the smallest threshold the membranes start from (0.0 as in the papers).
        chunk_size: see :class:`~monai_snn.networks.SpikingSimulator`.
        leak: membrane decay per step of leaky neurons (``"lif"``, ``"real_spike"``), in (0, 1].
        weight_init: ``None`` keeps ``ann``'s weights; ``"kaiming"`` re-initializes them in place first (He-normal,
            fan-in, ReLU gain; zero biases). PyTorch's default initialization shrinks the activity of every layer
            by a constant factor, which a spiking network cannot afford: in DRIVE's 17-layer spiking U-Net the
            multi-threshold firing rate falls from 0.41 in the first layer to 0.009 at the bottleneck (multi-level
            and real-spike neurons fall silent there) and the surrogate gradient reaching the bottleneck is 4e-8
            against 1e-2 at the head; with He-normal weights every layer fires and learns
            (``benchmarks/direct_init.py``).

    Raises:
        ValueError: an unknown ``weight_init`` (the valid ones named).

    Returns:
        ``convert_to_snn(ann, None, normalization="none", ...)``: a :class:`~monai_snn.networks.SpikingSimulator`.

    Example::

        snn = spiking_from_scratch(ConvertibleUNet(2, 1, 1, (16, 32, 64, 128)), num_steps=8, surrogate="triangle")
        trainer = SpikingTrainer("cpu", 100, loader, snn, torch.optim.Adam(snn.parameters(), 1e-3),
                                 monai.losses.DiceCELoss(sigmoid=True), method="bptt")
    """
    init_weights(ann, weight_init)
    # convert_to_snn warns that leaky and multi-level neurons make a conversion approximate; nothing is converted here
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*conversion is approximate")
        warnings.filterwarnings("ignore", message=".*keeps its direct-training dynamics")
        return convert_to_snn(
            ann,
            None,
            normalization="none",
            neuron=neuron,
            thresholds=thresholds,
            num_steps=num_steps,
            encoding=encoding,
            initial_potential=initial_potential,
            chunk_size=chunk_size,
            surrogate=surrogate,
            leak=leak,
        )
