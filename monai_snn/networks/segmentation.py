"""Spiking-FCN and Spiking-DeepLab (Kim, Chough, Panda 2022), the directly trained baselines, and their ANN twins.

Table 1 of "Beyond classification: directly training spiking neural networks for semantic segmentation"
(`../shared/papers/spiking_fcn_deeplab_direct_training.txt`), VGG-9 style backbone:

* **DeepLab**: conv 64, conv 64, avg-pool; conv 128, conv 128, avg-pool; conv 256, dilated conv 256, dilated
  conv 256 (dilation 2); intermediate conv 1024 (3x3), conv 1024 (1x1); classifier conv 1024 -> K (1x1), the
  spike accumulator; bilinear upsampling x4 to the input size.
* **FCN**: the same backbone without dilation and with a third avg-pool (1/8 resolution), conv 1024 (3x3),
  conv 1024 (1x1), a spiking conv 1024 -> K; then three stages "transposed conv K -> K (x2) + SkipConv": the
  SkipConv is a 1x1 conv that reduces the backbone features of the same resolution (256, 128, 64 channels, taken
  before each pooling) to K channels and is added, as in FCN-8s. The two inner stages are spiking layers ("all
  layers consist of LIF neurons"); the last sum is the accumulator.

Spiking versions: every hidden conv has no bias and is followed by Batch Normalization Through Time
(:class:`~monai_snn.neurons.BatchNormThroughTime`, one batch norm per step, no shift) and a LIF neuron (leak 0.99,
threshold 1.0, soft reset, the paper's piece-wise linear surrogate ``max(0, 1 - |(u - theta) / theta|)``, i.e.
``"relative_triangle"``); Poisson rate input by default (``"poisson_binary"``; ``"static"`` feeds the analog image).
The readout is the classifier's potential averaged over T (the paper sums it: the same argmax, and a loss on the
average is the package-wide convention); bilinear upsampling, being linear, runs once on that average. They are
:class:`~monai_snn.networks.SpikingSimulator` objects, so the :class:`~monai_snn.engines.SpikingTrainer`
(``method="bptt"``), the evaluators, firing rates and the energy estimate apply unchanged. ANN twins
(:class:`DeepLab`, :class:`FCN`): the same layers with batch norm and ReLU, for the paper's ANN rows.

Not from the paper (it gives channels and layer order only): kernel sizes of the intermediate layers (3x3 then 1x1,
as DeepLab-v1's fc6 / fc7 without its large dilation), transposed convolutions with kernel 4, stride 2 (FCN's
upsampling), no dropout. ``channels`` / ``head_channels`` shrink the network for CPU budgets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.fx
from monai.networks.layers.factories import Conv, Norm, Pool
from torch import nn

from monai_snn.encoding.encoders import Encoder
from monai_snn.networks.convertible_unet import check_unet_input
from monai_snn.networks.simulator import SpikingSimulator
from monai_snn.neurons.neuron import LIFNeuron
from monai_snn.neurons.surrogate import Surrogate, make_surrogate
from monai_snn.neurons.temporal import BatchNormThroughTime, TimeStepped

__all__ = ["DeepLab", "FCN", "SpikingDeepLab", "SpikingFCN", "spiking_unet", "NETWORKS", "make_network"]

torch.fx.wrap(check_unet_input)  # a leaf call in this module's traced forward too (wrap is per module)


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


class _Unit(nn.Module):
    """conv (no bias) -> norm -> activation: batch norm + ReLU (ANN) or BNTT + LIF (SNN)."""

    def __init__(self, conv: nn.Module, norm: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.conv, self.norm, self.act = conv, norm, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class _SegmentationVGG(nn.Module):
    """The shared body of the four networks (the subclass's ``arch``, "deeplab" or "fcn"; ``spiking`` picks the unit:
    ``None`` batch norm + ReLU, else the neuron settings of a Spiking-* network: BNTT + LIF)."""

    arch = ""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spatial_dims: int = 2,
        channels: Sequence[int] = (64, 128, 256),
        head_channels: int = 1024,
        spiking: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        arch = self.arch
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("out_channels", out_channels)
        _check_positive_int("head_channels", head_channels)
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}.")
        channels = tuple(channels)
        if len(channels) != 3:
            raise ValueError(f"channels must give the three backbone widths (e.g. (64, 128, 256)), got {channels!r}.")
        for c in channels:
            _check_positive_int("channels", c)
        self.in_channels, self.out_channels, self.spatial_dims = in_channels, out_channels, spatial_dims
        #: what :func:`make_network` needs to rebuild the ANN twins (saved next to their weights by the bundles)
        self.settings = {
            "architecture": arch,
            "kwargs": {"in_channels": in_channels, "out_channels": out_channels, "spatial_dims": spatial_dims,
                       "channels": list(channels), "head_channels": head_channels},
        }  # fmt: skip
        self.divisor = 4 if arch == "deeplab" else 8
        conv_t = Conv[Conv.CONV, spatial_dims]
        self._spiking = spiking

        def unit(cin: int, cout: int, kernel: int = 3, dilation: int = 1) -> _Unit:
            conv = conv_t(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation, bias=False)
            return _Unit(conv, *self._norm_act(cout))

        c1, c2, c3 = channels
        dil = 2 if arch == "deeplab" else 1
        self.block1 = nn.Sequential(unit(in_channels, c1), unit(c1, c1))
        self.block2 = nn.Sequential(unit(c1, c2), unit(c2, c2))
        self.block3 = nn.Sequential(unit(c2, c3), unit(c3, c3, dilation=dil), unit(c3, c3, dilation=dil))
        self.pool1 = Pool[Pool.AVG, spatial_dims](2)
        self.pool2 = Pool[Pool.AVG, spatial_dims](2)
        self.head = nn.Sequential(unit(c3, head_channels), unit(head_channels, head_channels, kernel=1))
        if arch == "deeplab":
            self.classifier = conv_t(head_channels, out_channels, 1)
            mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[spatial_dims]
            self.upsample = nn.Upsample(scale_factor=4, mode=mode, align_corners=False)
        else:
            self.pool3 = Pool[Pool.AVG, spatial_dims](2)
            self.classifier = unit(head_channels, out_channels, kernel=1)
            up_t = Conv[Conv.CONVTRANS, spatial_dims]
            k = out_channels
            self.up3 = up_t(k, k, 4, stride=2, padding=1, bias=False)
            self.skip3 = conv_t(c3, k, 1, bias=False)
            self.post3 = nn.Sequential(*self._norm_act(k))
            self.up2 = up_t(k, k, 4, stride=2, padding=1, bias=False)
            self.skip2 = conv_t(c2, k, 1, bias=False)
            self.post2 = nn.Sequential(*self._norm_act(k))
            self.up1 = up_t(k, k, 4, stride=2, padding=1, bias=False)
            self.skip1 = conv_t(c1, k, 1, bias=True)

    def _norm_act(self, ch: int) -> tuple[nn.Module, nn.Module]:
        if self._spiking is None:
            return Norm[Norm.BATCH, self.spatial_dims](ch), nn.ReLU()
        s = self._spiking
        neuron = LIFNeuron(leak=s["leak"], v_threshold=s["v_threshold"], surrogate=s["surrogate"])
        return BatchNormThroughTime(ch, s["num_steps"], self.spatial_dims), neuron

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_unet_input(x, self.in_channels, self.spatial_dims, self.divisor)
        f1 = self.block1(x)
        f2 = self.block2(self.pool1(f1))
        f3 = self.block3(self.pool2(f2))
        if self.arch == "deeplab":
            return self.upsample(self.classifier(self.head(f3)))
        score = self.classifier(self.head(self.pool3(f3)))
        score = self.post3(self.up3(score) + self.skip3(f3))
        score = self.post2(self.up2(score) + self.skip2(f2))
        return self.up1(score) + self.skip1(f1)


class DeepLab(_SegmentationVGG):
    """ANN twin of Spiking-DeepLab: the VGG-9 DeepLab of Table 1 with batch norm and ReLU.

    Args:
        in_channels: input channels.
        out_channels: classes ``K`` (logits).
        spatial_dims: 2 (images) or 1 / 3.
        channels: backbone widths, ``(64, 128, 256)`` in the paper.
        head_channels: width of the intermediate layers, 1024 in the paper.
        spiking: ``None`` (the ANN); :class:`SpikingDeepLab` passes its neuron settings here to build its body.

    Raises:
        ValueError: a non-positive size; at run time, an input whose spatial size is not divisible by 4 or whose
            channels differ from ``in_channels``.

    Example::

        net = DeepLab(3, 11, channels=(16, 32, 64), head_channels=128)
        logits = net(torch.rand(2, 3, 96, 128))  # [2, 11, 96, 128]
    """

    arch = "deeplab"


class FCN(_SegmentationVGG):
    """ANN twin of Spiking-FCN: the VGG-9 FCN of Table 1 with batch norm and ReLU (input divisible by 8).

    Args: as :class:`DeepLab`.

    Example::

        net = FCN(3, 11, channels=(16, 32, 64), head_channels=128)
        logits = net(torch.rand(2, 3, 96, 128))  # [2, 11, 96, 128]
    """

    arch = "fcn"


class _Tracer(torch.fx.Tracer):
    """Keeps time-stepped layers (neurons, BNTT) as single nodes."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, TimeStepped) or super().is_leaf_module(m, module_qualified_name)


class _SpikingSegmentation(SpikingSimulator):
    """The Spiking-* networks: the subclass's ``body`` (the ANN twin's class) built with BNTT + LIF units, traced."""

    body: type[_SegmentationVGG]  # DeepLab or FCN, set by the subclass

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_steps: int = 20,
        spatial_dims: int = 2,
        channels: Sequence[int] = (64, 128, 256),
        head_channels: int = 1024,
        leak: float = 0.99,
        v_threshold: float = 1.0,
        surrogate: str | Surrogate = "relative_triangle",
        encoding: str | Encoder = "poisson_binary",
        chunk_size: int | None = None,
    ) -> None:
        _check_positive_int("num_steps", num_steps)
        if isinstance(leak, bool) or not isinstance(leak, (int, float)) or not 0.0 < leak <= 1.0:
            raise ValueError(f"leak must be in (0, 1], got {leak!r}.")
        if isinstance(v_threshold, bool) or not isinstance(v_threshold, (int, float)) or not v_threshold > 0:
            raise ValueError(f"v_threshold must be positive, got {v_threshold!r}.")
        make_surrogate(surrogate)  # unknown names fail here, listing the valid ones
        spiking = {"num_steps": num_steps, "leak": float(leak), "v_threshold": float(v_threshold)}
        spiking["surrogate"] = surrogate
        body = self.body(in_channels, out_channels, spatial_dims, channels, head_channels, spiking)
        gm = torch.fx.GraphModule(body, _Tracer().trace(body))
        super().__init__(gm, num_steps, encoding, chunk_size, in_channels=in_channels, spatial_dims=spatial_dims)
        self.max_steps = num_steps
        #: what :func:`make_network` needs to rebuild this network (saved next to its weights)
        self.settings = {
            "architecture": f"spiking_{self.body.arch}",
            "kwargs": {
                "in_channels": in_channels, "out_channels": out_channels, "num_steps": num_steps,
                "spatial_dims": spatial_dims, "channels": list(channels), "head_channels": head_channels,
                "leak": float(leak), "v_threshold": float(v_threshold),
                "surrogate": surrogate if isinstance(surrogate, str) else repr(surrogate),
                "encoding": encoding if isinstance(encoding, str) else repr(encoding),
            },
        }  # fmt: skip
        self.metadata.update(self.settings["kwargs"], architecture=self.settings["architecture"], neuron="lif")

    def check_input(self, x: torch.Tensor) -> None:
        """As :meth:`SpikingSimulator.check_input`, and ``num_steps`` within the T that BNTT was built for."""
        super().check_input(x)
        if self.num_steps > self.max_steps:
            raise ValueError(
                f"num_steps={self.num_steps} exceeds the {self.max_steps} time steps this network's BNTT layers "
                f"were built (and trained) for; use num_steps <= {self.max_steps}."
            )


class SpikingDeepLab(_SpikingSegmentation):
    """Spiking-DeepLab (Kim et al. 2022): VGG-9 DeepLab with LIF neurons and BNTT, trained directly with BPTT.

    ``[B, C, H, W]`` in (``H``, ``W`` divisible by 4), the classifier's potential averaged over T
    ``[B, K, H, W]`` out, so MONAI's losses and metrics apply.

    Args:
        in_channels: input channels.
        out_channels: classes ``K``.
        num_steps: time steps ``T`` (20 in the paper); BNTT holds one batch norm per step, so a trained network runs
            at most this many steps.
        spatial_dims: 2 (1 / 3 also build).
        channels: backbone widths, ``(64, 128, 256)`` in the paper.
        head_channels: intermediate width, 1024 in the paper.
        leak: LIF leak, 0.99 in the paper.
        v_threshold: LIF threshold, 1.0.
        surrogate: surrogate gradient, ``"relative_triangle"`` (the paper's piece-wise linear function).
        encoding: ``"poisson_binary"`` (rate coding, the paper) or ``"static"`` / ``"poisson_ternary"``.
        chunk_size: see :class:`~monai_snn.networks.SpikingSimulator`.

    Raises:
        ValueError: a non-positive size or ``num_steps``, a leak outside ``(0, 1]``, a non-positive threshold or an
            unknown surrogate / encoding (named); at run time an input of the wrong shape or size.

    Example::

        snn = SpikingDeepLab(3, 11, num_steps=20, channels=(16, 32, 64), head_channels=128)
        trainer = SpikingTrainer("cpu", 60, loader, snn, torch.optim.Adam(snn.parameters(), 3e-3),
                                 torch.nn.CrossEntropyLoss(), method="bptt")
    """

    body = DeepLab


class SpikingFCN(_SpikingSegmentation):
    """Spiking-FCN (Kim et al. 2022): VGG-9 FCN with LIF neurons, BNTT, transposed convs and SkipConvs.

    ``[B, C, H, W]`` in (``H``, ``W`` divisible by 8), the accumulated readout ``[B, K, H, W]`` out.

    Args: as :class:`SpikingDeepLab`.

    Example::

        snn = SpikingFCN(3, 11, num_steps=20, channels=(16, 32, 64), head_channels=128)
        y = snn(torch.rand(1, 3, 64, 64))  # [1, 11, 64, 64]
    """

    body = FCN


def spiking_unet(
    in_channels: int,
    out_channels: int,
    num_steps: int,
    spatial_dims: int = 2,
    channels: Sequence[int] = (16, 32, 64, 128),
    bias: bool = True,
    dropout: float = 0.0,
    neuron: str = "multi_threshold",
    surrogate: str = "triangle",
    encoding: str = "static",
    thresholds: Sequence[float] = (2.0, 1.0, 0.5, 0.25),
    initial_potential: float = 0.0,
    leak: float = 1.0,
    weight_init: str | None = "kaiming",
) -> SpikingSimulator:
    """A Spiking-UNet for direct training (the "DT" columns of the Spiking-UNet paper's Tables 2 and 3).

    The :class:`~monai_snn.networks.ConvertibleUNet` architecture with random weights and every ReLU replaced by
    ``neuron`` (:func:`~monai_snn.engines.spiking_from_scratch`): ``"multi_threshold"`` (MT), ``"multi_level"``
    (ML, Feng et al.; use ``surrogate="rectangle"``) or ``"real_spike"`` (RS, Guo et al.), trained with BPTT. The
    returned network carries ``settings`` so that :func:`make_network` rebuilds it from its settings file.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        num_steps: time steps ``T``.
        spatial_dims: 2 or 3.
        channels: U-Net widths per level.
        bias: convolution biases.
        dropout: dropout after each level (one mask per sample, shared by all steps).
        neuron: a :data:`~monai_snn.neurons.NEURONS` name.
        surrogate: a :data:`~monai_snn.neurons.SURROGATES` name.
        encoding: input encoding.
        thresholds: levels of the multi-threshold neuron.
        initial_potential: initial membrane potential (fraction of the smallest threshold).
        leak: leak of leaky neurons (``"lif"``, ``"real_spike"``).
        weight_init: initial weights (:func:`~monai_snn.engines.spiking_from_scratch`): ``"kaiming"`` (He-normal,
            the default: every layer of the deep spiking U-Net fires at the start) or ``None`` (PyTorch's default,
            under which the deep layers of a from-scratch spiking U-Net barely fire and get no gradient).

    Raises:
        ValueError: unknown neuron / surrogate / encoding / weight_init names, bad sizes (named).

    Example::

        snn = spiking_unet(3, 11, num_steps=20, neuron="multi_level", surrogate="rectangle")
    """
    from monai_snn.engines.direct import spiking_from_scratch
    from monai_snn.networks.convertible_unet import ConvertibleUNet

    ann = ConvertibleUNet(spatial_dims, in_channels, out_channels, tuple(channels), bias=bias, dropout=dropout)
    snn = spiking_from_scratch(
        ann, num_steps, neuron=neuron, encoding=encoding, surrogate=surrogate, thresholds=tuple(thresholds),
        initial_potential=initial_potential, leak=leak, weight_init=weight_init,
    )  # fmt: skip
    snn.settings = {
        "architecture": "spiking_unet",
        "kwargs": {
            "in_channels": in_channels, "out_channels": out_channels, "num_steps": num_steps,
            "spatial_dims": spatial_dims, "channels": list(channels), "bias": bias, "dropout": dropout,
            "neuron": neuron, "surrogate": surrogate, "encoding": encoding, "thresholds": list(thresholds),
            "initial_potential": initial_potential, "leak": leak, "weight_init": weight_init,
        },
    }  # fmt: skip
    return snn


NETWORKS: dict[str, Any] = {
    "spiking_fcn": SpikingFCN,
    "spiking_deeplab": SpikingDeepLab,
    "spiking_unet": spiking_unet,
    "fcn": FCN,
    "deeplab": DeepLab,
}
"""The directly trained networks (Spiking-FCN / Spiking-DeepLab, Spiking-UNet with any neuron) and the ANN twins by
name; :func:`make_network` builds them, and a bundle's settings file names one to rebuild a trained model."""


def make_network(name: str, **kwargs: Any) -> nn.Module:
    """Build a network of :data:`NETWORKS` by name.

    Args:
        name: ``"spiking_fcn"``, ``"spiking_deeplab"``, ``"spiking_unet"``, ``"fcn"`` or ``"deeplab"`` (or any
            registered name).
        kwargs: the constructor's arguments.

    Raises:
        ValueError: unknown name (MONAI's ``look_up_option`` message: the closest name and the valid ones).

    Example::

        snn = make_network("spiking_deeplab", in_channels=3, out_channels=11, num_steps=20)
    """
    from monai_snn.neurons.registry import look_up

    return look_up("network", name, NETWORKS)(**kwargs)
