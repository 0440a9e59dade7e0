"""Layers whose output depends on the time step: the base class the simulator steps, and BNTT.

:class:`TimeStepped` is what :class:`~monai_snn.networks.SpikingSimulator` looks for: a layer with state over the
steps of one sample, reset by :func:`~monai_snn.neurons.reset_states`, and run on ``k`` steps at a time through
:meth:`TimeStepped.multi_step` (``[k, B, ...] -> [k, B, ...]``). Spiking neurons are one kind (membrane
potential); :class:`BatchNormThroughTime` is another (one batch norm per time step, Kim & Panda 2021). The simulator
never computes a time-stepped layer once for all steps, never moves it behind the time average of the readout, and
keeps its state out of ``state_dict``.
"""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Norm
from torch import nn

__all__ = ["TimeStepped", "BatchNormThroughTime"]


class TimeStepped(nn.Module):
    """Base class of layers that the simulator advances step by step (state between the steps of one sample).

    Subclasses implement :meth:`forward` (one step) and :meth:`reset` (start of a sample); :meth:`multi_step` loops
    over the first dimension by default.
    """

    def reset(self) -> None:
        """Forget the state of the current sample."""
        raise NotImplementedError

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``k`` time steps at once: ``[k, B, ...] -> [k, B, ...]`` (a stride-0 expanded input is fine)."""
        if x_seq.shape[0] == 1:
            return self(x_seq[0]).unsqueeze(0)
        return torch.stack([self(x_seq[t]) for t in range(x_seq.shape[0])])


class BatchNormThroughTime(TimeStepped):
    """Batch Normalization Through Time (BNTT, Kim & Panda 2021): a separate batch norm for every time step.

    Step ``t`` of a sample is normalized with the statistics and the scale of its own ``BatchNorm`` (running
    statistics per step at inference), so a directly trained SNN learns how strongly each step drives the next
    layer. As in the BNTT reference implementation the layers have a learnable scale and no shift
    (``bias=False``): a shift would make neurons fire without input. Built with MONAI's ``Norm`` factory, so it works
    for 1D, 2D and 3D.

    Args:
        num_features: channels.
        num_steps: number of time steps (and of batch norm layers); a simulation may run fewer steps, not more.
        spatial_dims: 1, 2 or 3.
        eps: batch norm epsilon (1e-4 in the BNTT code).
        momentum: running-statistics momentum.
        bias: learnable shift per step (``False`` in BNTT).

    Raises:
        ValueError: ``num_features`` or ``num_steps`` is not a positive integer.
        RuntimeError: more steps are simulated than ``num_steps`` (the message names both).

    Example::

        bntt = BatchNormThroughTime(64, num_steps=20)
        y = torch.stack([bntt(conv(x_t)) for x_t in spikes])  # step t uses bntt.norms[t]
    """

    def __init__(
        self,
        num_features: int,
        num_steps: int,
        spatial_dims: int = 2,
        eps: float = 1e-4,
        momentum: float = 0.1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("num_features", num_features), ("num_steps", num_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BatchNormThroughTime: {name} must be a positive integer, got {value!r}.")
        norm_type = Norm[Norm.BATCH, spatial_dims]
        self.norms = nn.ModuleList([norm_type(num_features, eps=eps, momentum=momentum) for _ in range(num_steps)])
        if not bias:
            for n in self.norms:
                n.bias = None
        self.num_features = num_features
        self.reset()

    @property
    def num_steps(self) -> int:
        """Time steps the layer has statistics for."""
        return len(self.norms)

    def reset(self) -> None:
        self.step = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize one time step with the batch norm of the current step, then advance the step counter."""
        if self.step >= len(self.norms):
            raise RuntimeError(
                f"BatchNormThroughTime has batch norms for {len(self.norms)} time steps, but step {self.step + 1} was "
                "simulated; run the network with num_steps <= the T it was built (and trained) with."
            )
        y = self.norms[self.step](x)
        self.step += 1
        return y

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``k`` steps, each with its own batch norm (statistics of step ``t`` over the batch only)."""
        return torch.stack([self(x_seq[t]) for t in range(x_seq.shape[0])])

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, num_steps={self.num_steps}"
