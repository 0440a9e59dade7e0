# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Validating MONAI transforms shared by the bundles' task code: channel counts and binary annotations, with errors
that name the file an image was loaded from (or the item it belongs to) and what was expected."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

__all__ = [
    "source_of",
    "item_source",
    "channels_text",
    "channel_kind",
    "CheckChannelsd",
    "BinarizeLabel",
    "BinarizeLabeld",
]

_ITEM_KEYS = ("name", "slice", "subject")


def source_of(img: Any, fallback: str) -> str:
    """The file an image was loaded from (``MetaTensor`` ``filename_or_obj``), else ``fallback``."""
    meta = getattr(img, "meta", None)
    if isinstance(meta, Mapping) and meta.get("filename_or_obj"):
        return str(meta["filename_or_obj"])
    return fallback


def item_source(d: Mapping[Hashable, Any], key: Hashable) -> str:
    """What an error names for ``d[key]``: its file, else ``'key' of <item key> <value>`` (name, slice or subject).

    Example::

        item_source({"label": torch.zeros(1, 2, 2), "slice": 7}, "label")  # "'label' of slice 7"
    """
    src = source_of(d[key], "")
    if src:
        return src
    for k in _ITEM_KEYS:
        if k in d:
            return f"'{key}' of {'item' if k == 'name' else k} {d[k]}"
    return f"'{key}' of an item"


def channels_text(n: int) -> str:
    """``"1 channel"`` / ``"3 channels"``."""
    return f"{n} channel" if n == 1 else f"{n} channels"


_KINDS = {1: "grey", 3: "colour", 4: "colour with alpha"}


def channel_kind(n: int, default: str = "unsupported") -> str:
    """What an image with ``n`` channels is (``"grey"``, ``"colour"``, ``"colour with alpha"``), else ``default``."""
    return _KINDS.get(int(n), default)


class CheckChannelsd(MapTransform):
    """Check the channel count of channel-first images (e.g. 1 for labels and masks: a colour label is an error).

    Args:
        keys: keys of the images to check.
        num_channels: the expected number of channels.
        allow_missing_keys: don't raise for missing keys.

    Raises:
        ValueError: naming the file (or the item) and both channel counts.

    Example:
        >>> CheckChannelsd("label", 1)({"label": torch.zeros(3, 4, 4)})  # ValueError: ... got 3 channels (colour)
    """

    def __init__(self, keys: KeysCollection, num_channels: int = 1, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.num_channels = int(num_channels)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            got = int(d[key].shape[0])
            if got != self.num_channels:
                raise ValueError(
                    f"{item_source(d, key)}: expected {channels_text(self.num_channels)} "
                    f"({channel_kind(self.num_channels, str(key))}), got {channels_text(got)} "
                    f"({channel_kind(got, f'shape {tuple(d[key].shape)}')})."
                )
        return d


class BinarizeLabel(Transform):
    """Binary annotation with values ``values = (background, foreground)`` -> float32 {0, 1}.

    Args:
        values: the two values the image may hold (e.g. 0 and 255 in DRIVE and ISBI 2012 EM annotations).
        require_foreground: an image without any foreground pixel is an error.

    Raises:
        ValueError: a value outside ``values`` (listed) or, with ``require_foreground``, no foreground pixel; names
            the file.

    Example:
        >>> BinarizeLabel()(torch.tensor([[[0.0, 255.0]]]))
        tensor([[[0., 1.]]])
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, values: Sequence[float] = (0, 255), require_foreground: bool = False) -> None:
        if len(values) != 2:
            raise ValueError(f"values must be (background, foreground), got {values}.")
        self.values = (float(values[0]), float(values[1]))
        self.require_foreground = require_foreground

    def __call__(self, img: Any, source: str | None = None) -> torch.Tensor:
        img_t = convert_to_tensor(img, track_meta=get_track_meta())
        raw = img_t.as_tensor() if isinstance(img_t, MetaTensor) else img_t
        uniq = torch.unique(raw)
        bad = uniq[(uniq != self.values[0]) & (uniq != self.values[1])]
        src = source or source_of(img, "label")
        if bad.numel():
            raise ValueError(
                f"{src}: values {bad[:10].tolist()} outside the expected {{{self.values[0]:g}, {self.values[1]:g}}} "
                f"(found {uniq[:10].tolist()})."
            )
        fg = raw == self.values[1]
        if self.require_foreground and not bool(fg.any()):
            raise ValueError(f"{src}: no foreground pixel (value {self.values[1]:g}).")
        out, *_ = convert_to_dst_type(fg.to(torch.float32), img_t, dtype=torch.float32)
        return out


class BinarizeLabeld(MapTransform):
    """Dictionary version of :class:`BinarizeLabel`; errors name the loaded file (or the item, see
    :func:`item_source`)."""

    backend = BinarizeLabel.backend

    def __init__(
        self,
        keys: KeysCollection,
        values: Sequence[float] = (0, 255),
        require_foreground: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = BinarizeLabel(values, require_foreground)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key], source=item_source(d, key))
        return d
