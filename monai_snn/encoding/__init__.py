"""Input encoders (static analog current, Poisson binary, Poisson ternary)."""

from __future__ import annotations

from monai_snn.encoding.encoders import ENCODERS, ENCODINGS, Encoder, PoissonEncoder, StaticEncoder, make_encoder
