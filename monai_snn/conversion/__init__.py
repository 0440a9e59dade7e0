"""ANN -> SNN conversion: tracing, activation statistics, weight normalization, saving / rebuilding SNNs."""

from __future__ import annotations

from monai_snn.conversion.convert import convert_to_snn, static_channels
from monai_snn.conversion.graph import BlockSource, ConversionGraph, trace_ann
from monai_snn.conversion.io import (
    build_snn,
    convert_with_settings,
    derived_settings,
    load_settings,
    save_snn,
    snn_settings,
)
from monai_snn.conversion.normalization import (
    NORMALIZATIONS,
    Normalization,
    apply_normalization,
    connection_wise,
    layer_wise,
    scale_input_block,
    scale_output,
    threshold_balance,
)
from monai_snn.conversion.statistics import ActivationStatistics, iterate_calibration, robust_percentile
