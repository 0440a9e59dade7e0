"""A U-Net built only from layers that convert to spiking layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.fx
from monai.networks.layers.factories import Conv, Dropout, Pool
from monai.networks.layers.utils import get_act_layer
from torch import nn

from monai_snn.networks.qcfs import QCFS

__all__ = ["ConvertibleUNet", "check_unet_input"]


@torch.fx.wrap
def check_unet_input(x: torch.Tensor, in_channels: int, spatial_dims: int, divisor: int) -> torch.Tensor:
    """Validate a U-Net input ``[B, C, *spatial]``; returns ``x`` unchanged (TorchScript-compatible).

    Raises:
        ValueError: wrong number of dimensions or channels, or a spatial size not divisible by ``divisor``.
    """
    if x.dim() != spatial_dims + 2:
        raise ValueError(
            f"expected input of shape [B, {in_channels}, {spatial_dims} spatial sizes] ({spatial_dims + 2} "
            f"dimensions), got shape {list(x.shape)}."
        )
    if x.shape[1] != in_channels:
        raise ValueError(f"expected {in_channels} input channel(s), got {x.shape[1]} (input shape {list(x.shape)}).")
    for size in x.shape[2:]:
        if size % divisor != 0:
            raise ValueError(
                f"spatial size {list(x.shape[2:])} must be divisible by {divisor} (2 ** number of poolings); "
                "pad or crop the input (e.g. monai.transforms.DivisiblePad)."
            )
    return x


class ConvertibleUNet(nn.Module):
    """U-Net for ANN-to-SNN conversion (Spiking-UNet / hippocampus papers).

    Two 3x3 convolutions + ReLU per level, average pooling down, transposed convolution (kernel 2, stride 2) +
    ReLU up, concatenating skip connections (``cat([skip, up])``), final 1x1 convolution without activation.
    No batch norm; optional bias; dropout after each level. 2D and 3D. Spatial sizes must be divisible by
    ``2 ** (len(channels) - 1)``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels (logits).
        channels: feature channels per level, e.g. ``(16, 32, 64, 128)`` (4 levels, 3 poolings).
        bias: use biases in the convolutions (the hippocampus paper removed them).
        dropout: dropout probability after each level (0 disables).
        act: the activation, as MONAI's ``get_act_layer`` takes it: ``"relu"`` (default) or ``("qcfs", {...})``,
            the quantization-aware :class:`~monai_snn.networks.QCFS` (the transfer of the spiking neuron at a design
            ``T``, learnable clipping level per layer), for conversion without loss at short ``T``.

    Raises:
        ValueError: bad sizes, ``dropout`` outside ``[0, 1)``, or an activation other than ReLU / QCFS (other
            activations do not convert).

    Example::

        net = ConvertibleUNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(16, 32, 64, 128))
        y = net(torch.rand(2, 1, 56, 48))  # [2, 1, 56, 48]
        qnet = ConvertibleUNet(2, 1, 1, act=("qcfs", {"design_steps": 2, "thresholds": (2.0, 1.0, 0.5, 0.25)}))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (16, 32, 64, 128),
        bias: bool = True,
        dropout: float = 0.0,
        act: str | tuple = "relu",
    ) -> None:
        super().__init__()
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}.")
        if len(channels) < 2:
            raise ValueError(f"channels needs at least 2 levels, got {tuple(channels)}.")
        if in_channels < 1 or out_channels < 1 or any(c < 1 for c in channels):
            raise ValueError("in_channels, out_channels and channels must be positive.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.channels = tuple(int(c) for c in channels)
        self.size_divisor = 2 ** (len(channels) - 1)
        conv = Conv[Conv.CONV, spatial_dims]
        convt = Conv[Conv.CONVTRANS, spatial_dims]
        drop = Dropout[Dropout.DROPOUT, spatial_dims]
        if not isinstance(get_act_layer(act), (nn.ReLU, QCFS)):
            raise ValueError(f"act must be 'relu' or ('qcfs', {{...}}) (activations that convert), got {act!r}.")
        self.activation = "qcfs" if isinstance(get_act_layer(act), QCFS) else "relu"

        def block(cin: int, cout: int) -> nn.Sequential:
            layers: list[nn.Module] = [
                conv(cin, cout, 3, padding=1, bias=bias),
                get_act_layer(act),
                conv(cout, cout, 3, padding=1, bias=bias),
                get_act_layer(act),
            ]
            if dropout > 0:
                layers.append(drop(dropout))
            return nn.Sequential(*layers)

        self.encoder = nn.ModuleList()
        cin = in_channels
        for c in self.channels:
            self.encoder.append(block(cin, c))
            cin = c
        self.pool = Pool[Pool.AVG, spatial_dims](kernel_size=2, stride=2)
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for c_low, c in zip(self.channels[:0:-1], self.channels[-2::-1]):
            self.up.append(nn.Sequential(convt(c_low, c, 2, stride=2, bias=bias), get_act_layer(act)))
            self.decoder.append(block(2 * c, c))
        self.head = conv(self.channels[0], out_channels, 1, bias=bias)
        for name, m in self.named_modules():
            if isinstance(m, QCFS):
                m.layer_name = name  # named in its errors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_unchecked(check_unet_input(x, self.in_channels, self.spatial_dims, self.size_divisor))

    def forward_unchecked(self, x: torch.Tensor) -> torch.Tensor:
        """The U-Net without the input check (for tools whose tracers cannot convert that function node)."""
        h = x
        skips: list[torch.Tensor] = []
        for i, enc in enumerate(self.encoder):
            if i > 0:
                h = self.pool(h)
            h = enc(h)
            skips.append(h)
        skips.pop()
        for up, dec in zip(self.up, self.decoder):
            h = dec(torch.cat([skips.pop(), up(h)], dim=1))
        return self.head(h)
