"""Networks: the convertible ANN U-Net and the spiking simulator."""

from __future__ import annotations

from monai_snn.networks.convertible_unet import ConvertibleUNet, check_unet_input
from monai_snn.networks.simulator import SpikingSimulator
