"""Generic support for monai_snn bundles: model selection (``--network ann|converted|finetuned``) and input
lists (a file, a folder or a datalist) for inference and evaluation configs."""

from __future__ import annotations

from monai_snn.bundle.inputs import input_items
from monai_snn.bundle.models import load_model, model_kind

__all__ = ["input_items", "load_model", "model_kind"]
