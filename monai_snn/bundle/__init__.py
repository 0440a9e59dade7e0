"""Generic support for monai_snn bundles.

* model selection (``--network ann|converted|finetuned``) and inputs (a file, a folder or a datalist):
  :func:`load_model`, :func:`input_items`;
* evaluation through the bundle's evaluator factory: :func:`run_evaluator`, the evaluate stage
  :func:`evaluate_models`; robustness to input noise: :func:`evaluate_robustness`;
* the conversion stage: :func:`calibration_batch`, :func:`select_percentile`, :func:`run_conversion`;
* result files: :func:`write_json`, :func:`machine_info`, :func:`export_snn`, :func:`portable_path` /
  :func:`resolve_path`.
"""

from __future__ import annotations

from monai_snn.bundle.conversion import calibration_batch, run_conversion, select_percentile
from monai_snn.bundle.evaluation import evaluate_models, evaluate_robustness, metric_vs_steps_figure, run_evaluator
from monai_snn.bundle.inputs import default_data_dir, input_items, load_scripts
from monai_snn.bundle.models import load_model, model_kind
from monai_snn.bundle.results import as_number, export_snn, machine_info, portable_path, resolve_path, write_json

__all__ = [
    "as_number",
    "calibration_batch",
    "default_data_dir",
    "evaluate_models",
    "evaluate_robustness",
    "export_snn",
    "input_items",
    "load_model",
    "load_scripts",
    "machine_info",
    "metric_vs_steps_figure",
    "model_kind",
    "portable_path",
    "resolve_path",
    "run_conversion",
    "run_evaluator",
    "select_percentile",
    "write_json",
]
