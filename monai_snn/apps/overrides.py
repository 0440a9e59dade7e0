# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""Mistyped bundle overrides are errors: ``--max_epoch 1`` names the close match ``max_epochs`` instead of running
20 epochs.

``python -m monai.bundle run`` adds every ``--key value`` it does not know to the config and runs on, so a typo is
silently ignored. :func:`check_cli_overrides` is the first expression of every stage's ``initialize`` in the
bundles: it reads the overrides from the command line and checks each against the keys of the config files the
command merges. :func:`check_overrides` does the same for a list of keys (the cross-validation runner checks its
``--set`` keys with it before it starts any stage).
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import inspect
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["UnknownOverrideError", "check_overrides", "check_cli_overrides", "cli_overrides"]

# keys that ``--tracking`` settings add to the config (monai.bundle.utils.DEFAULT_MLFLOW_SETTINGS)
_TRACKING_KEYS = ("output_dir", "tracking_uri", "experiment_name", "run_name", "save_execute_config",
                  "is_not_rank0")  # fmt: skip


class UnknownOverrideError(ValueError):
    """An override names a key that no merged config file defines."""


def _run_parameters() -> set[str]:
    from monai.bundle.scripts import run

    return {p for p in inspect.signature(run).parameters if p != "override"}


def _literal(value: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def cli_overrides(argv: Sequence[str] | None = None) -> tuple[Any, dict[str, str]] | None:
    """The ``config_file`` and the overrides of a ``python -m monai.bundle run`` command line.

    Args:
        argv: the command line (default ``sys.argv``).

    Returns:
        ``(config_file, {key: value})``, or ``None`` when ``argv`` is not a ``monai.bundle run`` command (the bundle
        was built from Python, not from the CLI).
    """
    argv = list(sys.argv if argv is None else argv)
    if not argv or os.path.join("monai", "bundle") not in str(argv[0]) or "run" not in argv[1:2]:
        return None
    own = _run_parameters()
    args: dict[str, str] = {}
    tokens = argv[2:]
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("--") and len(tok) > 2:
            key, eq, value = tok[2:].partition("=")
            if not eq:
                nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
                if nxt.startswith("--") or i + 1 >= len(tokens):
                    value = "True"  # a bare flag
                else:
                    value, i = nxt, i + 1
            args[key] = value
        i += 1
    if "args_file" in args:
        from monai.bundle import ConfigParser

        for k, v in ConfigParser.load_config_file(args["args_file"]).items():
            args.setdefault(k, v)
    config_file = args.get("config_file")
    if isinstance(config_file, str):
        config_file = _literal(config_file)
    overrides = {k: v for k, v in args.items() if k not in own and k.replace("-", "_") not in own}
    if "tracking" in args:
        overrides = {k: v for k, v in overrides.items() if k.split("#")[0] not in _TRACKING_KEYS}
    return config_file, overrides


def check_overrides(keys: Iterable[str], config: dict[str, Any], where: str = "the bundle configs") -> None:
    """Raise when an override key names no key of ``config`` (nested keys ``a#b`` are checked level by level).

    Args:
        keys: override keys, e.g. ``["max_epochs", "network_def#channels"]``.
        config: the merged config content (a dict, as ``ConfigParser.load_config_files`` returns it).
        where: how to name the configs in the message.

    Raises:
        UnknownOverrideError: naming the unknown key and up to three close matches.

    Example::

        check_overrides(["max_epoch"], {"max_epochs": 20})
        # UnknownOverrideError: unknown override --max_epoch: no key 'max_epoch' in the bundle configs; did you
        # mean --max_epochs?
    """
    for key in keys:
        node: Any = config
        path: list[str] = []
        for part in key.replace("::", "#").split("#"):
            if isinstance(node, dict) and part in node:
                node, path = node[part], path + [part]
                continue
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node, path = node[int(part)], path + [part]
                continue
            if path and not isinstance(node, (dict, list)):
                break  # overriding inside a scalar: MONAI replaces the value, nothing to check below it
            choices = list(node) if isinstance(node, dict) else []
            close = difflib.get_close_matches(part, [str(c) for c in choices], n=3, cutoff=0.6)
            prefix = "#".join(path + [""]) if path else ""
            hint = ("; did you mean " + " or ".join(f"--{prefix}{c}" for c in close) + "?") if close else (
                "; run with a key the configs define (see the bundle's configs/*.json)")
            raise UnknownOverrideError(f"unknown override --{key}: no key {'#'.join(path + [part])!r} in {where}"
                                       + hint)  # fmt: skip


def check_cli_overrides(argv: Sequence[str] | None = None, exit_on_error: bool = True) -> None:
    """Check the overrides of the running ``python -m monai.bundle run`` command against its config files.

    Put it first in a stage's ``initialize``: ``"$monai_snn.apps.overrides.check_cli_overrides()"``. It does nothing
    when the workflow was built from Python (``sys.argv`` is not a ``monai.bundle run`` command line).

    Args:
        argv: the command line (default ``sys.argv``).
        exit_on_error: exit with the message (``SystemExit``, status 1) instead of raising: MONAI would wrap the
            error in a long "Failed to evaluate ConfigExpression" traceback.

    Raises:
        UnknownOverrideError: an override names a key that no config of the bundle defines (``exit_on_error=False``).
        SystemExit: the same, with ``exit_on_error=True``.
    """
    parsed = cli_overrides(argv)
    if parsed is None or parsed[0] is None:
        return
    from monai.bundle import ConfigParser

    config_file, overrides = parsed
    files = [str(f) for f in (config_file if isinstance(config_file, (list, tuple)) else [config_file])]
    config = ConfigParser.load_config_files(files)
    # a key that another config of the same bundle defines is no typo (one override set is often passed to every
    # stage, e.g. --steps_sweep to train_ann): only keys that no config of the bundle knows are refused
    siblings: dict[str, Any] = {}
    for folder in sorted({os.path.dirname(os.path.abspath(f)) for f in files}):
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.endswith((".json", ".yaml", ".yml")) and path not in map(os.path.abspath, files):
                with contextlib.suppress(Exception):
                    siblings = _merge(siblings, ConfigParser.load_config_file(path))
    where = " + ".join(os.path.basename(f) for f in files)
    for key in overrides:
        try:
            check_overrides([key], config, where=where)
        except UnknownOverrideError:
            try:
                check_overrides([key], siblings)
            except UnknownOverrideError:
                try:
                    check_overrides([key], _merge(siblings, config), where=f"{where} nor any other bundle config")
                except UnknownOverrideError as e:
                    if exit_on_error:
                        # SystemExit passes through MONAI's expression wrapper: one line instead of a traceback
                        raise SystemExit(f"error: {e}") from None
                    raise


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``a`` updated with ``b`` one level deep for dicts (enough to look keys up)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out
