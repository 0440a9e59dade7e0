"""Export of trained models out of PyTorch: TorchScript (MONAI model zoo) and NIR (neuromorphic toolchains)."""

from __future__ import annotations

from monai_snn.export.nir import NIRExportError, NIRSimulator, nir_semantics, run_nir, to_nir, write_nir
from monai_snn.export.torchscript import export_torchscript
