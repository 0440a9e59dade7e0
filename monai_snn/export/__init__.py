"""Export of trained models out of PyTorch (TorchScript; NIR to follow)."""

from __future__ import annotations

from monai_snn.export.torchscript import export_torchscript
