"""Activation statistics of an ANN on calibration data (robust percentiles for weight normalization)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.fx

__all__ = ["ActivationStatistics", "iterate_calibration", "robust_percentile"]


def iterate_calibration(calibration_data: Iterable) -> Iterable[torch.Tensor]:
    """Yield input batches from an iterable of tensors or of dicts with an ``"image"`` key (MONAI data loaders).

    Every batch is checked to be a floating-point tensor with finite values: a single NaN voxel would make every
    percentile NaN and every layer scale meaningless.

    Raises:
        ValueError: an item is neither a tensor nor a dict with ``"image"``, a batch is not floating point or holds
            NaN / infinite values (the message names the batch, and the file where the batch records it), or the
            iterable is empty.
    """
    if calibration_data is None:
        raise ValueError("calibration_data is required for this normalization (an iterable of batches).")
    if isinstance(calibration_data, torch.Tensor):
        calibration_data = [calibration_data]
    count = 0
    for i, item in enumerate(calibration_data):
        names = None
        if isinstance(item, dict):
            if "image" not in item:
                raise ValueError(f"calibration_data item {i} is a dict without an 'image' key (keys: {sorted(item)}).")
            names = item.get("image_path")
            item = item["image"]
        if not isinstance(item, torch.Tensor):
            raise ValueError(f"calibration_data item {i} must be a tensor or a dict with 'image', got {type(item).__name__}.")
        _check_batch(item, i, names)
        count += 1
        yield item.as_tensor() if hasattr(item, "as_tensor") else item
    if count == 0:
        raise ValueError("calibration_data is empty: give at least one batch of training images.")


def _check_batch(batch: torch.Tensor, index: int, names: Sequence[str] | str | None = None) -> None:
    """Raise a ``ValueError`` naming calibration batch ``index`` (and its sample's file) when it is unusable."""
    if not batch.is_floating_point():
        raise ValueError(
            f"calibration batch {index} has dtype {batch.dtype}; expected a floating-point tensor (e.g. x.float())."
        )
    finite = torch.isfinite(batch)
    if bool(finite.all()):
        return
    bad = int((~finite).sum())
    where = ""
    if batch.ndim > 0:
        sample = int((~finite).flatten(1).any(1).nonzero()[0]) if batch.ndim > 1 else 0
        if names is None and hasattr(batch, "meta"):
            names = batch.meta.get("filename_or_obj")
        name = names if isinstance(names, str) else None
        if isinstance(names, (list, tuple)) and sample < len(names):
            name = str(names[sample])
        where = f", first in sample {sample}" + (f" (from {name})" if name else "")
    raise ValueError(
        f"calibration batch {index} holds {bad} NaN/infinite value(s){where}; calibration data must be finite. "
        "Check the images it was made from (the bundles' input checks, e.g. scripts.hippocampus.load_image of "
        "hippocampus_snn, name a bad file)."
    )


def robust_percentile(values: torch.Tensor, percentile: float) -> float:
    """The ``percentile`` (0-100] of ``values`` (all of them, zeros included); 100 gives the maximum."""
    if values.numel() == 0:
        return 0.0
    if percentile >= 100.0:
        return float(values.max())
    return float(np.percentile(values.numpy(), percentile))


class ActivationStatistics:
    """Collects the values of chosen nodes of a traced ANN over calibration data and reduces them to percentiles.

    Args:
        module: the traced ANN (``torch.fx.GraphModule``).
        nodes: names of the nodes to record.
        max_values_per_batch: per node and batch, at most this many values are kept (a seeded random
            subsample); the percentile of a large layer is then estimated from a large sample.
        seed: seed of the subsampling.

    Example::

        stats = ActivationStatistics(graph.module, graph.neuron_nodes())
        stats.collect(loader)
        lam = stats.percentile(99.9)
    """

    def __init__(
        self, module: torch.fx.GraphModule, nodes: Sequence[str], max_values_per_batch: int = 1 << 22, seed: int = 0
    ) -> None:
        self.module = module
        self.nodes = list(nodes)
        self.max_values_per_batch = int(max_values_per_batch)
        self.values: dict[str, list[torch.Tensor]] = {n: [] for n in self.nodes}
        self.num_batches = 0
        self._gen = torch.Generator().manual_seed(seed)

    def collect(self, calibration_data: Iterable) -> "ActivationStatistics":
        """Run the ANN on every calibration batch and record the chosen nodes."""
        wanted = set(self.nodes)
        stats = self

        class _Recorder(torch.fx.Interpreter):
            def run_node(self, n):
                out = super().run_node(n)
                if n.name in wanted:
                    stats._add(n.name, out)
                return out

        device = next(self.module.parameters()).device
        with torch.no_grad():
            for batch in iterate_calibration(calibration_data):
                _Recorder(self.module).run(batch.to(device))
                self.num_batches += 1
        return self

    def _add(self, name: str, out: torch.Tensor) -> None:
        flat = out.detach().float().reshape(-1).cpu()
        if flat.numel() > self.max_values_per_batch:
            idx = torch.randint(0, flat.numel(), (self.max_values_per_batch,), generator=self._gen)
            flat = flat[idx]
        self.values[name].append(flat)

    def percentile(self, percentile: float) -> dict[str, float]:
        """Node name -> percentile of its recorded values; all-zero layers warn and get 1.0 (nothing to scale).

        Raises:
            ValueError: when a layer's recorded activations hold NaN / infinite values (calibration inputs are
                checked by :func:`iterate_calibration`, so the ANN's weights are not finite or overflow).
        """
        result = {}
        for name in self.nodes:
            vals = torch.cat(self.values[name]) if self.values[name] else torch.zeros(0)
            if not bool(torch.isfinite(vals).all()):
                raise ValueError(
                    f"layer {name!r}: calibration activations hold NaN/infinite values although the calibration "
                    "inputs are finite; the ANN's weights are not finite (or overflow): check the checkpoint."
                )
            lam = robust_percentile(vals, percentile)
            if not lam > 0:
                lam = float(vals.max()) if vals.numel() else 0.0
            if not lam > 0 or not np.isfinite(lam):
                warnings.warn(
                    f"layer {name!r}: all calibration activations are zero (dead layer); its scale is set to 1.0.",
                    stacklevel=2,
                )
                lam = 1.0
            result[name] = lam
        return result
