# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""The neuron update without gradients as one fused kernel (``torch.compile``), with eager PyTorch as the fallback.

A step of a soft-reset neuron with halving levels is a chain of element-wise operations (integrate, scale, floor,
clamp, scale back, subtract, popcount). In eager PyTorch each is a pass over the layer's membrane; compiled by
TorchInductor it is one pass that updates the membrane (and the per-element spike counts) in place and writes the
output: twice the memory traffic of a ReLU, the floor of an update that keeps a membrane. IF neurons (one level)
and multi-threshold neurons use the same kernel (``benchmarks/neuron_update.py`` measures both against eager and
a ReLU; ``benchmarks/simulation.py`` and ``benchmarks/peers.py`` the whole networks).

The mode is ``"auto"`` by default: compiled on CPU when a C++ compiler is found (TorchInductor's CPU backend needs
one), eager otherwise; environment variable ``MONAI_SNN_FUSED`` (``auto`` / ``1`` / ``0``) or
:func:`set_fused_update` change it. If compiling or running the kernel fails, the neurons warn once and fall back to
eager for the rest of the process: results are the same either way (tested bit for bit).

Example::

    from monai_snn.neurons import set_fused_update
    set_fused_update(False)  # eager neuron updates, e.g. to profile
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from collections.abc import Iterator
from typing import Any, Callable

import torch

__all__ = [
    "set_fused_update", "eager_updates", "fused_update", "quantized_update", "quantized_update_into", "MAX_LEVELS",
]  # fmt: skip

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


MAX_LEVELS = 8  # the kernel's popcount covers up to this many halving levels; neurons with more update eagerly


@contextlib.contextmanager
def eager_updates() -> Iterator[None]:
    """Neuron updates in eager PyTorch inside the block (e.g. while ``torch.jit.trace`` records a network, which
    cannot trace a compiled kernel), the previous mode after it.

    Example::

        with eager_updates():
            traced = torch.jit.trace(snn, x)
    """
    saved = (_STATE["mode"], _STATE["failed"])
    set_fused_update(False)
    try:
        yield
    finally:
        _STATE["mode"], _STATE["failed"] = saved


def quantized_update(
    v: torch.Tensor,
    x: torch.Tensor,
    out: torch.Tensor,
    leak: torch.Tensor,
    lo: torch.Tensor,
    qmax: torch.Tensor,
    signed: bool,
    counts: torch.Tensor | None,
    num_levels: int = MAX_LEVELS,
) -> None:
    """One soft-reset step with halving levels (smallest ``lo``, ``num_levels`` <= :data:`MAX_LEVELS` of them, output
    at most ``qmax * lo``), in place: writes the output into ``out``, the new membrane into ``v`` and adds each
    element's spikes to ``counts`` (unless ``None``; ``num_levels`` is read only then).

    Compiled, the step reads ``v`` and ``x`` and writes ``v`` and ``out`` once. Only ``signed`` and, when counting,
    ``num_levels`` select a different kernel; the rest are tensors, so the networks of one process (IF and
    multi-threshold, leaky or not, counting or not) stay within TorchDynamo's recompile limit. Dividing by ``lo``
    gives the eager path's values exactly: where the eager path multiplies by ``1 / lo`` (a power of two) both are
    the correctly rounded same quotient."""
    w = v * leak + x
    a = w.abs() if signed else w
    q = torch.floor(a / lo).clamp(torch.zeros_like(qmax), qmax)
    mag = q
    if signed:
        q = q * torch.sign(w)
    o = q * lo
    v.copy_(w - o)
    if counts is not None:  # per element: popcount of the fired levels; summed over the batch when read
        spikes = mag
        for k in range(1, num_levels):
            spikes = spikes - torch.floor(mag * (0.5**k))
        counts.copy_(counts + spikes)
    out.copy_(o)


def quantized_update_into(
    v: torch.Tensor,
    x: torch.Tensor,
    leak: torch.Tensor,
    lo: torch.Tensor,
    qmax: torch.Tensor,
    signed: bool,
    counts: torch.Tensor | None,
    num_levels: int = MAX_LEVELS,
) -> None:
    """:func:`quantized_update` writing the output into ``x``, for inputs that nothing reads after the step (a
    convolution output with the neuron as its only user): the step reads ``v`` and ``x`` and writes both, twice a
    ReLU's memory traffic and no new tensor. A function of its own, so that TorchDynamo keeps its kernels apart
    (passing ``x`` twice to :func:`quantized_update` would add an aliasing variant to its cache)."""
    quantized_update(v, x, x, leak, lo, qmax, signed, counts, num_levels)


def fused_update(device: torch.device) -> tuple[Callable, Callable] | None:
    """The compiled :func:`quantized_update` and :func:`quantized_update_into` for tensors on ``device``, or ``None``
    (use eager)."""
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
        _STATE["fn"] = tuple(
            torch.compile(f, dynamic=True, fullgraph=True) for f in (quantized_update, quantized_update_into)
        )
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
