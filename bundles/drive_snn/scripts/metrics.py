"""FOV-masked DRIVE metrics of the ``drive_snn`` bundle: F1, Jaccard, accuracy, sensitivity, specificity, precision,
ROC AUC, computed through MONAI on the pixels inside the field-of-view (FOV) mask only.

A pixel is predicted vessel when ``prob >= threshold``. The confusion matrix comes from
``monai.metrics.get_confusion_matrix`` on the selected pixels and each score from
``compute_confusion_matrix_metric`` (``"f1 score"``; Jaccard is MONAI's ``"threat score"``, tp / (tp + fp + fn));
AUC from ``monai.metrics.compute_roc_auc`` on the selected probabilities (an exact rank AUC in a Python loop: about
1.2 s per million pixels, a DRIVE image has about 225,000 FOV pixels).

Two reductions:

* **pooled** (:func:`pooled_fov_metrics`, ``FOVMetric(reduction="pooled")``): the FOV pixels of all images in one
  confusion matrix / one ROC curve. This is how the paper's tables are computed (Li et al., arXiv:2307.10974,
  table 2: sklearn scores over all test pixels at once).
* **per image** (:func:`fov_metrics` on one image; ``FOVMetric(reduction="mean")`` averages them, NaN-skipping).

The reference code scores **all** pixels of the zero-padded 624 x 576 canvas, outside the FOV too (background
there is trivially right), which inflates accuracy and specificity; these functions score inside the FOV only, at
the original image size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine
from ignite.metrics.metric import reinit__is_reduced
from monai.handlers import IgniteMetricHandler, from_engine
from monai.metrics import (
    CumulativeIterationMetric,
    compute_confusion_matrix_metric,
    compute_roc_auc,
    get_confusion_matrix,
)
from monai.utils import evenly_divisible_all_gather

__all__ = [
    "METRIC_NAMES",
    "PRED_LABEL",
    "BATCH_MASK",
    "select_fov",
    "fov_confusion_matrix",
    "fov_metrics",
    "pooled_fov_metrics",
    "FOVMetric",
    "FOVMetricHandler",
]

# our name -> MONAI's compute_confusion_matrix_metric name ("auc" goes to compute_roc_auc)
_MONAI_NAMES = {
    "f1": "f1 score",
    "jaccard": "threat score",
    "accuracy": "accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "precision": "precision",
}
METRIC_NAMES = ("f1", "jaccard", "accuracy", "sensitivity", "specificity", "precision", "auc")
PRED_LABEL = from_engine(["pred", "label"])  # default output_transform of FOVMetricHandler
BATCH_MASK = from_engine("mask")  # default mask_transform of FOVMetricHandler


def _check_names(metric_names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(metric_names)
    unknown = [n for n in names if n not in METRIC_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown metric names {unknown}; choose from {METRIC_NAMES}.")
    return names


def _as_tensor(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.as_tensor() if hasattr(x, "as_tensor") else x
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as e:
            raise TypeError(f"{what} must be a tensor or an array, got {type(x).__name__}.") from e
    return t.detach().cpu()


def select_fov(prob: Any, label: Any, mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The probabilities and labels of the pixels inside the FOV mask, as 1D float32 tensors.

    Args:
        prob: vessel probabilities in [0, 1] (after the sigmoid), any shape.
        label: binary ground truth {0, 1}, the shape of ``prob``.
        mask: binary FOV mask {0, 1} (or bool), the shape of ``prob``.

    Raises:
        ValueError: different shapes, probabilities outside [0, 1] or not finite, a label or mask value outside
            {0, 1}, an empty mask.

    Example:
        >>> p, y = select_fov(torch.rand(1, 8, 8), torch.zeros(1, 8, 8), torch.ones(1, 8, 8))
        >>> p.shape
        torch.Size([64])
    """
    p, y, m = _as_tensor(prob, "prob"), _as_tensor(label, "label"), _as_tensor(mask, "mask")
    if not p.shape == y.shape == m.shape:
        raise ValueError(
            f"prob, label and mask must have the same shape, got {tuple(p.shape)}, {tuple(y.shape)}, {tuple(m.shape)}."
        )
    p = p.float()
    if not bool(torch.isfinite(p).all()):
        raise ValueError("prob has NaN or infinite values.")
    if p.numel() and (float(p.min()) < 0.0 or float(p.max()) > 1.0):
        raise ValueError(
            f"prob must be probabilities in [0, 1], got [{float(p.min()):.4g}, {float(p.max()):.4g}] "
            "(apply a sigmoid to logits first)."
        )
    for what, t in (("label", y), ("mask", m)):
        values = torch.unique(t.float())
        bad = values[(values != 0) & (values != 1)]
        if bad.numel():
            raise ValueError(f"{what} must be binary {{0, 1}}, got values {bad[:10].tolist()}.")
    inside = m.bool() if m.dtype == torch.bool else m > 0.5
    if not bool(inside.any()):
        raise ValueError("the FOV mask is empty: no pixel to score.")
    return p[inside], y[inside].float()


def fov_confusion_matrix(prob: torch.Tensor, label: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """``[tp, fp, tn, fn]`` of selected pixels (1D ``prob`` / ``label``, e.g. from :func:`select_fov`) through
    ``monai.metrics.get_confusion_matrix``; a pixel is positive when ``prob >= threshold``.

    Example:
        >>> fov_confusion_matrix(torch.tensor([0.9, 0.2]), torch.tensor([1.0, 1.0]))
        tensor([1., 0., 0., 1.])
    """
    pred = (prob >= threshold).float().reshape(1, 1, -1)
    return get_confusion_matrix(pred, label.float().reshape(1, 1, -1), include_background=True)[0, 0]


def _scores(
    cm: torch.Tensor, prob: torch.Tensor | None, label: torch.Tensor | None, names: Sequence[str]
) -> dict[str, float]:
    out = {}
    for name in names:
        if name == "auc":
            if prob is None or label is None:
                raise ValueError("auc needs the pixel probabilities.")
            out[name] = float(compute_roc_auc(prob, label))
        else:
            out[name] = float(compute_confusion_matrix_metric(_MONAI_NAMES[name], cm).reshape(-1)[0])
    return out


def fov_metrics(
    prob: Any, label: Any, mask: Any, threshold: float = 0.5, metric_names: Sequence[str] = METRIC_NAMES
) -> dict[str, float]:
    """Scores of one image inside its FOV mask.

    Args:
        prob: vessel probabilities in [0, 1], e.g. ``(1, H, W)``.
        label: binary ground truth {0, 1}, the shape of ``prob``.
        mask: binary FOV mask {0, 1}, the shape of ``prob``.
        threshold: a pixel is predicted vessel when ``prob >= threshold``.
        metric_names: any of ``METRIC_NAMES`` (``"f1"``, ``"jaccard"``, ``"accuracy"``, ``"sensitivity"``,
            ``"specificity"``, ``"precision"``, ``"auc"``).

    Returns:
        ``{name: value}``; a score whose denominator is 0 (or AUC of an FOV with one class) is NaN.

    Raises:
        ValueError: see :func:`select_fov`; unknown metric names.

    Example:
        >>> fov_metrics(prob, label, mask)["f1"]
        0.8
    """
    names = _check_names(metric_names)
    p, y = select_fov(prob, label, mask)
    return _scores(fov_confusion_matrix(p, y, threshold), p, y, names)


def pooled_fov_metrics(
    probs: Sequence[Any],
    labels: Sequence[Any],
    masks: Sequence[Any],
    threshold: float = 0.5,
    metric_names: Sequence[str] = METRIC_NAMES,
) -> dict[str, float]:
    """Scores of the FOV pixels of all images pooled (one confusion matrix, one ROC curve), as the paper's tables.

    Args:
        probs: per image vessel probabilities in [0, 1].
        labels: per image binary ground truth, each the shape of its ``probs`` entry.
        masks: per image binary FOV masks, each the shape of its ``probs`` entry.
        threshold: a pixel is predicted vessel when ``prob >= threshold``.
        metric_names: any of ``METRIC_NAMES``.

    Raises:
        ValueError: sequences of different lengths or empty; see :func:`select_fov`.

    Example:
        >>> pooled_fov_metrics([p1, p2], [y1, y2], [m1, m2])["auc"]
        0.97
    """
    names = _check_names(metric_names)
    if not len(probs) == len(labels) == len(masks) or not len(probs):
        raise ValueError(
            f"need as many probs, labels, masks (at least 1), got {len(probs)}, {len(labels)}, {len(masks)}."
        )
    selected = [select_fov(p, y, m) for p, y, m in zip(probs, labels, masks)]
    cm = torch.stack([fov_confusion_matrix(p, y, threshold) for p, y in selected]).sum(0)
    need_pixels = "auc" in names
    p_all = torch.cat([p for p, _ in selected]) if need_pixels else None
    y_all = torch.cat([y for _, y in selected]) if need_pixels else None
    return _scores(cm, p_all, y_all, names)


def _items(x: Any) -> list[Any]:
    """A batch-first tensor / array or a list of channel-first ones -> list of per-image entries."""
    if isinstance(x, (list, tuple)):
        return list(x)
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return list(x)
    raise TypeError(f"expected a batch-first tensor or a list of channel-first tensors, got {type(x).__name__}.")


class FOVMetric(CumulativeIterationMetric):
    """FOV-masked DRIVE scores accumulated over iterations; ``metric(y_pred, y, mask)`` then ``aggregate()``.

    Per image it keeps the confusion matrix (a buffer row) and, when ``"auc"`` is asked for, the FOV pixels (local
    lists, gathered across ranks with ``evenly_divisible_all_gather``).

    Args:
        metric_name: one name of ``METRIC_NAMES`` or a sequence of them.
        threshold: a pixel is predicted vessel when ``prob >= threshold``.
        reduction: ``"pooled"`` (all FOV pixels of all images at once, the paper's tables) or ``"mean"`` (mean of
            the per-image scores, NaNs skipped).

    Example:
        >>> metric = FOVMetric("f1")
        >>> for batch in loader:
        ...     metric(torch.sigmoid(net(batch["image"])), batch["label"], batch["mask"])
        >>> metric.aggregate()  # tensor(0.80)
    """

    def __init__(self, metric_name: str | Sequence[str] = "f1", threshold: float = 0.5, reduction: str = "pooled"):
        super().__init__()
        self.metric_name = metric_name
        self.names = _check_names([metric_name] if isinstance(metric_name, str) else metric_name)
        if reduction not in ("pooled", "mean"):
            raise ValueError(f"reduction must be 'pooled' or 'mean', got {reduction!r}.")
        self.threshold = float(threshold)
        self.reduction = reduction
        self._probs: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def reset(self) -> None:
        super().reset()
        self._probs, self._labels = [], []

    def __call__(self, y_pred: Any, y: Any = None, mask: Any = None) -> torch.Tensor:  # type: ignore[override]
        """Add a batch: ``y_pred`` probabilities, ``y`` labels and ``mask`` FOV masks, each a batch-first tensor or a
        list of channel-first tensors. Returns the batch's confusion matrices ``[B, 4]`` (tp, fp, tn, fn)."""
        if y is None or mask is None:
            raise ValueError("FOVMetric needs y_pred, y and mask.")
        preds, labels, masks = _items(y_pred), _items(y), _items(mask)
        if not len(preds) == len(labels) == len(masks):
            raise ValueError(f"batch sizes differ: y_pred {len(preds)}, y {len(labels)}, mask {len(masks)}.")
        cms, lengths = self._compute_tensor(preds, labels, mask=masks)
        self.extend(cms, lengths)
        return cms

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: Sequence[Any], y: Sequence[Any], mask: Sequence[Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cms, lengths = [], []
        for p, t, m in zip(y_pred, y, mask):
            p_in, y_in = select_fov(p, t, m)
            cms.append(fov_confusion_matrix(p_in, y_in, self.threshold))
            lengths.append(p_in.numel())
            if "auc" in self.names:
                self._probs.append(p_in)
                self._labels.append(y_in.to(torch.uint8))
        return torch.stack(cms), torch.tensor(lengths, dtype=torch.long)

    def _gathered_pixels(self) -> tuple[torch.Tensor, torch.Tensor]:
        probs = torch.cat(self._probs) if self._probs else torch.zeros(0)
        labels = torch.cat(self._labels) if self._labels else torch.zeros(0, dtype=torch.uint8)
        probs = evenly_divisible_all_gather(probs, concat=True)
        labels = evenly_divisible_all_gather(labels, concat=True)
        return probs, labels.float()

    def _rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        buffers = self.get_buffer()
        if buffers is None:
            raise ValueError("FOVMetric has no data: call it on at least one image before aggregate().")
        cms, lengths = buffers
        return cms, lengths

    def per_image(self) -> torch.Tensor:
        """Per-image scores ``[N, len(names)]`` in the order of ``names`` (AUC per image costs a rank sort each)."""
        cms, lengths = self._rows()
        probs, labels = self._gathered_pixels() if "auc" in self.names else (None, None)
        rows, start = [], 0
        for cm, n in zip(cms, lengths.tolist()):
            p = probs[start : start + n] if probs is not None else None
            y = labels[start : start + n] if labels is not None else None
            start += n
            rows.append(list(_scores(cm, p, y, self.names).values()))
        return torch.tensor(rows, dtype=torch.float64)

    def aggregate(self) -> torch.Tensor | list[torch.Tensor]:  # type: ignore[override]
        """Pooled or mean scores: a scalar tensor for one ``metric_name``, else a list in the order given."""
        if self.reduction == "mean":
            values = torch.nanmean(self.per_image(), dim=0)
        else:
            cms, _ = self._rows()
            probs, labels = self._gathered_pixels() if "auc" in self.names else (None, None)
            values = torch.tensor(list(_scores(cms.sum(0), probs, labels, self.names).values()), dtype=torch.float64)
        result = [v for v in values]
        return result[0] if isinstance(self.metric_name, str) else result


class FOVMetricHandler(IgniteMetricHandler):
    """Ignite / MONAI metric handler of :class:`FOVMetric`, e.g. ``key_val_metric`` of a ``SupervisedEvaluator``.

    ``y_pred`` and ``y`` come from ``engine.state.output`` through ``output_transform``; the FOV mask from
    ``engine.state.batch`` through ``mask_transform`` (MONAI evaluators keep only image / label / pred in the
    output; the batch keeps every key of the data). The mask must be in the space of the prediction: true for
    ``scripts.drive.eval_transforms`` (no spatial transform). ``y_pred`` must be probabilities: add
    ``Activationsd(keys="pred", sigmoid=True)`` to the evaluator's postprocessing. With ``save_details`` the
    per-image scores go to ``engine.state.metric_details[name]`` (``[N, 1]``).

    Args:
        metric_name: one name of ``scripts.metrics.METRIC_NAMES``.
        threshold: a pixel is predicted vessel when ``prob >= threshold``.
        reduction: ``"pooled"`` or ``"mean"``, see :class:`FOVMetric`.
        output_transform: ``engine.state.output`` -> ``(y_pred, y)``.
        mask_transform: ``engine.state.batch`` -> masks; None: ``output_transform`` returns ``(y_pred, y, mask)``.
        save_details: save per-image scores in ``engine.state.metric_details``.

    Example:
        >>> evaluator = SupervisedEvaluator(..., postprocessing=Activationsd("pred", sigmoid=True),
        ...     key_val_metric={"val_f1": FOVMetricHandler("f1")},
        ...     additional_metrics={"val_auc": FOVMetricHandler("auc")})
    """

    def __init__(
        self,
        metric_name: str = "f1",
        threshold: float = 0.5,
        reduction: str = "pooled",
        output_transform: Callable = PRED_LABEL,
        mask_transform: Callable | None = BATCH_MASK,
        save_details: bool = True,
    ) -> None:
        if not isinstance(metric_name, str):
            raise ValueError(f"FOVMetricHandler takes one metric name, got {metric_name!r}.")
        super().__init__(
            metric_fn=FOVMetric(metric_name, threshold, reduction),
            output_transform=output_transform,
            save_details=save_details,
        )
        self.mask_transform = mask_transform

    @torch.no_grad()
    def iteration_completed(self, engine: Engine) -> None:
        output = self._output_transform(engine.state.output)
        if self.mask_transform is not None:
            output = (*output, self.mask_transform(engine.state.batch))
        self.update(output)

    @reinit__is_reduced
    def update(self, output: Sequence[Any]) -> None:  # type: ignore[override]
        """Args: output: ``(y_pred, y, mask)``."""
        if len(output) != 3:
            raise ValueError(f"FOVMetricHandler expects (y_pred, y, mask), got {len(output)} items.")
        self.metric_fn(*output)

    def compute(self) -> Any:
        result = self.metric_fn.aggregate()
        self._is_reduced = True
        if self.save_details:
            if self._engine is None or self._name is None:
                raise RuntimeError("please call the attach() function to connect expected engine first.")
            self._engine.state.metric_details[self._name] = self.metric_fn.per_image()  # type: ignore[attr-defined]
        return float(result)
