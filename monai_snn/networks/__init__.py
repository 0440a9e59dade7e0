"""Networks: the convertible ANN U-Net, the spiking simulator, and the directly trained baselines (Spiking-FCN /
Spiking-DeepLab) with their ANN twins."""

from __future__ import annotations

from monai_snn.networks.convertible_unet import ConvertibleUNet, check_unet_input
from monai_snn.networks.init import WEIGHT_INITS, init_weights
from monai_snn.networks.qcfs import QCFS, init_qcfs, qcfs_conversion
from monai_snn.networks.segmentation import (
    FCN,
    NETWORKS,
    DeepLab,
    SpikingDeepLab,
    SpikingFCN,
    make_network,
    spiking_unet,
)
from monai_snn.networks.simulator import SpikingSimulator
