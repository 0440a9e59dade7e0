"""monai_snn: spiking U-Nets for MONAI.

Three stages: train a conversion-friendly ANN (:mod:`monai_snn.networks`), convert it into a spiking network
(:mod:`monai_snn.conversion`), then fine-tune the spiking network with spikes (:mod:`monai_snn.engines`).
"""

from __future__ import annotations

__version__ = "0.1.0"
