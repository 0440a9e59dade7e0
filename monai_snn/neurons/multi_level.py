"""Multi-level firing (MLF) neuron of Feng et al. (IJCAI 2022), a directly trained baseline of the Spiking-UNet paper.

What was implemented (from "Multi-Level Firing with Spiking DS-ResNet", Feng, Liu, Tang, Ma, Pan, IJCAI 2022, and its
reference code): one MLF unit is ``K`` LIF compartments that receive the same input current and differ only in
their thresholds, ``theta_k = v_threshold + k * level_spacing`` (``k = 0 .. K-1``; 0.6, 1.6, 2.6 in the paper). Each
compartment has its own membrane, ``u_k[t] = leak * u_k[t-1] * (1 - s_k[t-1]) + x[t]`` (hard reset, leak 0.25 as in
the STBP-family code the paper builds on), fires ``s_k[t] = H(u_k[t] - theta_k)`` and the unit outputs the sum
``sum_k s_k[t]`` (0 .. K spikes per step). The surrogate gradient is rectangular with width 1: with thresholds
one unit apart the windows of the compartments tile ``[theta_0 - 0.5, theta_{K-1} + 0.5]``, so membranes far above
the first threshold still get gradients; that is the point of the unit ("gradient vanishing" of a single LIF).
``reset="soft"`` (subtract the threshold) is offered for conversion-style use.

For conversion (the "FT" columns of the Spiking-UNet paper's Tables 2 and 3) the paper's unit does not work as is:
with leak 0.25 and hard reset a compartment's membrane stays below ``x / (1 - 0.25)``, so it never fires for a
normalized input under 0.45 (DRIVE: 0.1 % firing, F1 0). :func:`rate_matched_multi_level` (registered as
``"multi_level_rate"``) keeps the unit's shape, ``K`` compartments on one input with thresholds in the ratio
``0.6 : 1.6 : 2.6``, and makes it a rate code: leak 1, soft reset, and all thresholds scaled by ``sum_k 1 / (0.6 +
k)`` so that the compartments' rates, ``x / theta_k`` each, sum to ``x``, the normalized ANN activation (thresholds
1.61, 4.28, 6.96 for ``K = 3``). Each compartment quantizes its own count, so at short ``T`` the unit's rate is
coarser than an IF neuron's: with uniform inputs in [0, 1] and membranes starting at half of each threshold, the
mean absolute rate error at T = 10 is 0.037 against IF's 0.025 (0.064 if all compartments start at half of the
first threshold).

Not implemented: the paper's DS-ResNet blocks (the unit is a drop-in neuron here, used in the U-Net) and its
per-dataset hyper-parameters.
"""

from __future__ import annotations

import torch

from monai_snn.neurons.neuron import SpikingNeuron
from monai_snn.neurons.surrogate import Surrogate

__all__ = ["MultiLevelNeuron", "rate_matched_multi_level"]


def _check_num_levels(num_levels: int) -> None:
    if isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 1:
        raise ValueError(f"MultiLevelNeuron: num_levels must be a positive integer, got {num_levels!r}.")


class MultiLevelNeuron(SpikingNeuron):
    """Multi-level firing unit: ``num_levels`` LIF compartments with thresholds ``v_threshold + k * level_spacing``.

    The output of a step is the number of compartments that fired (each spike has weight 1, as in the paper), so
    the layer after it sees integers in ``[0, num_levels]``; spike counts (firing rates, energy) count every
    compartment's spike.

    Args:
        num_levels: compartments per unit ``K`` (3 in the paper).
        v_threshold: threshold of the first compartment (0.6 in the paper).
        level_spacing: threshold step between compartments (1.0 in the paper).
        leak: membrane decay per step, in ``(0, 1]`` (0.25 in the paper's code).
        reset: ``"hard"`` (membrane to 0 after a spike, as in the paper) or ``"soft"`` (subtract the threshold).
        surrogate: surrogate gradient, ``"rectangle"`` (width 1) by default.
        kwargs: ``initial_potential`` (every compartment starts at this fraction of its own threshold, so that with
            0.5 each one rounds its count instead of flooring it; 0 in the paper), ``detach_reset``,
            ``count_spikes``, ``record_flow`` (see :class:`SpikingNeuron`).

    Raises:
        ValueError: ``num_levels`` is not a positive integer, ``level_spacing`` is not positive, ``reset`` is not
            ``"hard"`` / ``"soft"``, or a :class:`SpikingNeuron` parameter is out of range (named).

    Example::

        mlf = MultiLevelNeuron(num_levels=3)                      # thresholds 0.6, 1.6, 2.6
        out = mlf(torch.tensor([0.7, 1.7, 5.0]))                  # tensor([1., 2., 3.])
    """

    def __init__(
        self,
        num_levels: int = 3,
        v_threshold: float = 0.6,
        level_spacing: float = 1.0,
        leak: float = 0.25,
        reset: str = "hard",
        surrogate: str | Surrogate = "rectangle",
        **kwargs,
    ) -> None:
        _check_num_levels(num_levels)
        if not level_spacing > 0:
            raise ValueError(f"MultiLevelNeuron: level_spacing must be positive, got {level_spacing!r}.")
        if reset not in ("hard", "soft"):
            raise ValueError(f"MultiLevelNeuron: reset must be 'hard' or 'soft', got {reset!r}.")
        if v_threshold <= 0:
            raise ValueError(f"v_threshold must be positive and finite, got {v_threshold}.")
        kwargs.pop("thresholds", None)  # the levels follow from v_threshold and level_spacing
        relative = tuple((v_threshold + k * level_spacing) / v_threshold for k in reversed(range(num_levels)))
        super().__init__(thresholds=relative, v_threshold=v_threshold, leak=leak, surrogate=surrogate, **kwargs)
        self.num_levels = num_levels
        self.level_spacing = float(level_spacing)
        self.hard_reset = reset == "hard"

    @property
    def max_output(self) -> float:
        """Largest output of one step: every compartment fires."""
        return float(self.num_levels)

    def reset(self) -> None:
        super().reset()
        self.spikes: torch.Tensor | None = None  # last step's spikes per compartment, [K, *x.shape]

    def _flow_from_membrane(self) -> bool:
        return False  # the output is not the charge that left the membrane: the flow is recorded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One time step of all compartments; returns the number of compartments that fired."""
        k = self.num_levels
        levels = self.levels[::-1]  # ascending: compartment k has threshold v_threshold + k * spacing
        theta = torch.tensor(levels, dtype=x.dtype, device=x.device).view(k, *([1] * x.ndim))
        if self.v is None:  # each compartment starts at initial_potential x its own threshold
            self.v = (theta * self.initial_potential).expand(k, *x.shape).clone()
            self.spike_count = torch.zeros_like(x[:1]) if self.count_spikes else None
            self._num_neurons = x.numel()
        elif self.v.shape[1:] != x.shape:
            raise RuntimeError(
                f"{type(self).__name__}: input shape {tuple(x.shape)} differs from the state shape "
                f"{tuple(self.v.shape[1:])}; call monai_snn.neurons.reset_states(network) between samples."
            )
        grad = torch.is_grad_enabled() and (x.requires_grad or self.v.requires_grad)
        v = self.v * self.leak if self.leak != 1.0 else self.v
        if self.hard_reset and self.spikes is not None:
            keep = 1.0 - (self.spikes.detach() if self.detach_reset else self.spikes)
            v = v * keep
        u = v + x.unsqueeze(0)
        if grad:
            spikes = torch.stack([self.surrogate.spike(u[i], levels[i]) for i in range(k)])
        else:
            spikes = (u >= theta).to(u.dtype)
        if self.hard_reset:
            self.v = u
        else:
            self.v = u - theta * (spikes.detach() if self.detach_reset else spikes)
        self.spikes = spikes
        out = spikes.sum(0)
        self._count(out.detach())
        if self.record_flow:
            self._record_flow(out)
        self.num_steps += 1
        return out

    def extra_repr(self) -> str:
        levels = ", ".join(f"{t:g}" for t in self.levels[::-1])
        return f"thresholds=({levels}), leak={self.leak}, reset={'hard' if self.hard_reset else 'soft'}"


def rate_matched_multi_level(
    num_levels: int = 3, first_threshold: float = 0.6, level_spacing: float = 1.0, **kwargs
) -> MultiLevelNeuron:
    """The multi-level unit in a form that converts: leak 1, soft reset, thresholds whose rates sum to the input.

    The compartments keep the relative thresholds ``first_threshold + k * level_spacing`` of Feng et al. (0.6, 1.6,
    2.6), all multiplied by ``s = sum_k 1 / (first_threshold + k * level_spacing)``: an input ``x`` charges each
    compartment by ``x`` per step, compartment ``k`` fires at rate ``x / theta_k`` (soft reset, no leak) and the
    unit's output, the number of compartments that fired, has mean ``x * sum_k 1 / theta_k = x`` until the first
    compartment saturates at ``x = theta_0 > 1``: an integrate-and-fire neuron's rate, as layer-wise or
    connection-wise normalization expects. Registered as ``"multi_level_rate"`` in
    :data:`~monai_snn.neurons.NEURONS`.

    Args:
        num_levels: compartments ``K`` (3 in the paper).
        first_threshold: the paper's first threshold before scaling (0.6).
        level_spacing: the paper's threshold step before scaling (1.0).
        kwargs: ``initial_potential`` (every compartment starts at this fraction of its own scaled threshold),
            ``surrogate``, ``detach_reset``, ``count_spikes``, ``record_flow`` (see :class:`MultiLevelNeuron`);
            ``thresholds`` and ``leak`` given by conversion are ignored / must be 1.

    Raises:
        ValueError: ``first_threshold`` or ``level_spacing`` not positive, ``leak`` other than 1, or a
            :class:`MultiLevelNeuron` parameter out of range (named).

    Example::

        ml = rate_matched_multi_level()                           # thresholds 1.61, 4.28, 6.96
        snn = convert_to_snn(ann, calibration, neuron="multi_level_rate", num_steps=10)
    """
    if not (first_threshold > 0 and level_spacing > 0):
        raise ValueError(
            f"rate_matched_multi_level: first_threshold and level_spacing must be positive, got "
            f"{first_threshold!r} / {level_spacing!r}."
        )
    if kwargs.pop("leak", 1.0) != 1.0:
        raise ValueError("rate_matched_multi_level: the rate-matched unit has no leak (leak=1.0).")
    _check_num_levels(num_levels)  # before the thresholds are computed from it
    scale = sum(1.0 / (first_threshold + k * level_spacing) for k in range(num_levels))
    kwargs.pop("thresholds", None)
    return MultiLevelNeuron(
        num_levels=num_levels,
        v_threshold=first_threshold * scale,
        level_spacing=level_spacing * scale,
        leak=1.0,
        reset="soft",
        **kwargs,
    )
