"""Synaptic operations and energy estimates (compute only, and memory-inclusive)."""

from __future__ import annotations

from monai_snn.energy.estimate import (
    E_AC_J,
    E_MAC_J,
    E_MEM_J,
    estimate_energy,
    fanout_map,
    memory_energy,
    synaptic_operations,
)
