# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Inputs of a bundle's inference or evaluation: a single file, a folder of files or a datalist."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["input_items", "default_data_dir", "load_scripts"]

def default_data_dir() -> Path:
    """The folder of the shared data sets: ``$MONAI_SNN_DATA`` if set, else ``shared/data`` next to the repository
    (``<repo>/../shared/data``, found relative to this file). Not checked for existence.

    Example::

        drive_dir = default_data_dir() / "DRIVE"
    """
    env = os.environ.get("MONAI_SNN_DATA")
    if env:
        return Path(env).expanduser()
    return (Path(__file__).resolve().parents[2].parent / "shared" / "data").resolve()


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

        hippo = load_scripts("bundles/hippocampus_snn").hippocampus
        items = input_items("imagesTs/", (".nii.gz",), check=hippo.load_image)
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


def load_scripts(bundle_root: str | os.PathLike) -> Any:
    """Import a bundle's task code (``<bundle_root>/scripts``) as ``<bundle name>_scripts`` with all its modules.

    MONAI puts the bundle root on ``sys.path`` only when its ``run`` starts (after the config's ``imports`` and
    ``initialize``), and every bundle calls its package ``scripts``, so configs refer to their task code through
    this function: a unique module name per bundle, importable in any working directory and next to other
    bundles in one process.

    Args:
        bundle_root: the bundle folder (holding ``scripts/__init__.py``).

    Raises:
        FileNotFoundError: the bundle has no ``scripts`` package.

    Example (a bundle config)::

        "scripts": "$monai_snn.bundle.load_scripts(@bundle_root)",
        "train_items": "$@scripts.drive.drive_datalist(@data_dir, 'training')"
    """
    import importlib
    import importlib.util
    import re
    import sys

    root = Path(bundle_root).resolve()
    init = root / "scripts" / "__init__.py"
    if not init.is_file():
        raise FileNotFoundError(f"bundle {root} has no task code: {init} does not exist.")
    name = re.sub(r"\W", "_", root.name) + "_scripts"
    module = sys.modules.get(name)
    if module is None or Path(getattr(module, "__file__", "")).resolve() != init:
        spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    for path in sorted(init.parent.glob("*.py")):
        if path.stem != "__init__":
            setattr(module, path.stem, importlib.import_module(f"{name}.{path.stem}"))
    return module
