"""Synaptic operations and energy estimates."""

from __future__ import annotations

from monai_snn.energy.estimate import E_AC_J, E_MAC_J, estimate_energy, fanout_map, synaptic_operations
