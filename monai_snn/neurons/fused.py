# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""The neuron update without gradients as one fused kernel (``torch.compile``), with eager PyTorch as the fallback.

A step of a soft-reset neuron with halving levels is a chain of element-wise operations (integrate, scale, floor,
clamp, scale back, subtract, popcount, sum over the batch). In eager PyTorch each is a pass over the layer's
membrane; compiled by TorchInductor most of it is one pass. Measured on the 2-core CPU (one thread, a
[26, 16, 56, 48] layer, loaded machine): a multi-threshold step with spike counting 3.1-3.7 ms compiled against
6.1-7.2 ms eager; a one-threshold IF step is already a few in-place passes in eager (1.3-1.8 ms) and was not faster
compiled, so only multi-level neurons use the kernel (``benchmarks/simulation.py`` has the whole-network ratios).

The mode is ``"auto"`` by default: compiled on CPU when a C++ compiler is found (TorchInductor's CPU backend needs
one), eager otherwise; environment variable ``MONAI_SNN_FUSED`` (``auto`` / ``1`` / ``0``) or
:func:`set_fused_update` change it. If compiling or running the kernel fails, the neurons warn once and fall back to
eager for the rest of the process: results are the same either way (tested bit for bit).

Example::

    from monai_snn.neurons import set_fused_update
    set_fused_update(False)  # eager neuron updates, e.g. to profile
"""

from __future__ import annotations

import os
import shutil
import warnings
from typing import Any, Callable

import torch

__all__ = ["set_fused_update", "fused_update", "quantized_update"]

_STATE: dict[str, Any] = {"mode": None, "fn": None, "failed": False}


def set_fused_update(mode: bool | str | None) -> None:
    """Choose how neurons update without gradients: ``True`` / ``"on"`` compiled, ``False`` / ``"off"`` eager,
    ``"auto"`` / ``None`` compiled on CPU when a C++ compiler is found (the default).

    Raises:
        ValueError: another value.

    Example::

        set_fused_update("auto")
    """
    if mode is None or mode == "auto":
        _STATE["mode"] = "auto"
    elif mode in (True, "on", "1", 1):
        _STATE["mode"] = "on"
    elif mode in (False, "off", "0", 0):
        _STATE["mode"] = "off"
    else:
        raise ValueError(f"fused update mode must be True, False or 'auto', got {mode!r}.")
    _STATE["failed"] = False


def quantized_update(
    v: torch.Tensor,
    x: torch.Tensor,
    leak: torch.Tensor | None,
    scale: torch.Tensor,
    lo: torch.Tensor,
    qmax: float,
    n: int,
    signed: bool,
    count: bool,
    exact: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One soft-reset step with halving levels (``n`` levels, smallest ``lo``): output, new membrane, spikes per
    element (``None`` unless ``count``). ``exact``: ``scale`` is ``1 / lo`` and a power of two (multiply),
    otherwise ``scale`` is ``lo`` (divide), as the eager path does so that ``v == k * lo`` lands on level ``k``."""
    if leak is not None:
        v = v * leak
    v = v + x
    a = v.abs() if signed else v
    q = torch.floor(a * scale if exact else a / scale)
    q = q.clamp(0.0, qmax)
    mag = q
    if signed:
        q = q * torch.sign(v)
    out = q * lo
    v = v - out
    spikes = None
    if count:  # per element; summed over the batch by the caller (a reduction inside the kernel measured slower)
        spikes = mag
        for k in range(1, n):
            spikes = spikes - torch.floor(mag * (0.5**k))
    return out, v, spikes


def fused_update(device: torch.device) -> Callable | None:
    """The compiled :func:`quantized_update` for tensors on ``device``, or ``None`` (use eager)."""
    if _STATE["mode"] is None:
        set_fused_update(os.environ.get("MONAI_SNN_FUSED", "auto"))
    if _STATE["failed"] or _STATE["mode"] == "off" or device.type != "cpu":
        return None
    if _STATE["mode"] == "auto":
        if "compiler" not in _STATE:  # looked up once per process: this runs every neuron step
            _STATE["compiler"] = shutil.which(os.environ.get("CXX", "c++")) is not None
        if not _STATE["compiler"]:
            return None
    if _STATE["fn"] is None:
        _STATE["fn"] = torch.compile(quantized_update, dynamic=True, fullgraph=True)
    return _STATE["fn"]


def fused_failed(error: BaseException) -> None:
    """Fall back to eager updates for the rest of the process, with one warning naming the error."""
    _STATE["failed"] = True
    warnings.warn(
        f"compiled neuron update failed ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
        "using eager updates (same results, slower). Set MONAI_SNN_FUSED=0 to skip the attempt.",
        RuntimeWarning,
        stacklevel=3,
    )
