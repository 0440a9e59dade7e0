# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Inputs of a bundle's inference or evaluation: a single file, a folder of files or a datalist."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["input_items"]

_DATALIST_KEYS = ("testing", "test", "validation", "training", "items")


def input_items(
    source: str | os.PathLike,
    suffixes: Sequence[str],
    key: str = "image",
    check: Callable[[Path], Any] | None = None,
) -> list[dict[str, str]]:
    """``[{key: path}, ...]`` for ``source``: one file, every file of a folder ending in ``suffixes`` (sorted), or the
    items of a datalist (``.json``: a list, or the first of the keys testing / test / validation / training / items;
    relative paths are resolved against the datalist's folder; other keys of an item are kept).

    Args:
        source: a file, a folder or a datalist.
        suffixes: accepted file endings, e.g. ``(".nii", ".nii.gz")``.
        key: the item key holding the path.
        check: called with every path before anything else runs (e.g. a validating reader that raises an error
            naming the file); a bad file then fails the run before any output is written.

    Raises:
        FileNotFoundError: ``source`` does not exist, or a datalist names a missing file.
        ValueError: no input found (empty folder or datalist), a file with another ending, or a datalist without
            items.

    Example::

        items = input_items("imagesTs/", (".nii.gz",), check=monai_snn.apps.hippocampus.load_image)
        # [{"image": "imagesTs/a.nii.gz"}, {"image": "imagesTs/b.nii.gz"}]
    """
    src = Path(source)
    suffixes = tuple(suffixes)
    if not src.exists():
        raise FileNotFoundError(f"input {src} does not exist: give an image file, a folder of {suffixes} files or a "
                                "datalist (.json).")  # fmt: skip
    if src.is_dir():
        items = [{key: str(p)} for p in sorted(src.iterdir())
                 if p.is_file() and p.name.endswith(suffixes) and not p.name.startswith(".")]  # fmt: skip
        if not items:
            raise ValueError(f"no {' / '.join(suffixes)} file found in {src}.")
    elif src.name.endswith(".json") and ".json" not in suffixes:
        data = json.loads(src.read_text())
        if isinstance(data, dict):
            found = next((k for k in _DATALIST_KEYS if isinstance(data.get(k), list)), None)
            if found is None:
                raise ValueError(f"datalist {src} has none of the item lists {_DATALIST_KEYS}.")
            data = data[found]
        items = []
        for i, it in enumerate(data):
            it = {key: it} if isinstance(it, str) else dict(it)
            if key not in it:
                raise ValueError(f"item {i} of datalist {src} has no {key!r} entry: {it}.")
            path = Path(it[key])
            it[key] = str(path if path.is_absolute() else src.parent / path)
            if not Path(it[key]).is_file():
                raise FileNotFoundError(f"{key} file named in {src} does not exist: {it[key]}")
            items.append(it)
        if not items:
            raise ValueError(f"datalist {src} holds no items.")
    else:
        if not src.name.endswith(suffixes):
            raise ValueError(f"input {src} is not a {' / '.join(suffixes)} file (nor a folder or a .json datalist).")
        items = [{key: str(src)}]
    if check is not None:
        for it in items:
            check(Path(it[key]))
    return items
