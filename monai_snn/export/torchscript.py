# Copyright (c) monai_snn contributors
# Licensed under the Apache License, Version 2.0
"""TorchScript export of a bundle's models: the ANN scripted, a spiking network traced at its fixed T.

* **ANN** (e.g. :class:`~monai_snn.networks.ConvertibleUNet`): ``torch.jit.script``, as MONAI's
  ``python -m monai.bundle ckpt_export`` does; the input check stays in the scripted model.
* **Spiking network** (:class:`~monai_snn.networks.SpikingSimulator`): the simulation loop runs Python control flow
  over neuron state kept outside the module, which TorchScript cannot script; ``torch.jit.trace`` records it
  instead, at the network's ``num_steps``: the exported graph is the simulation unrolled over T steps (spike
  counting off), exact for any batch and spatial size, but T is fixed. Re-export to change T. The simulation's
  input checks are not part of a trace.

TorchScript is what MONAI's model zoo (``ckpt_export``) ships; torch 2.13 marks ``torch.jit.trace`` / ``script``
deprecated in favour of ``torch.export``, so this exporter may need a ``torch.export`` path in a later torch.

Example::

    ts = export_torchscript(snn, torch.rand(1, 1, 48, 40), "model_T4.ts")
    torch.jit.load("model_T4.ts")(images)  # == snn(images)
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

__all__ = ["export_torchscript"]


def export_torchscript(
    model: torch.nn.Module, example_input: torch.Tensor, path: str | os.PathLike | None = None, check: bool = True
) -> torch.jit.ScriptModule:
    """Script an ANN or trace a spiking network at its ``num_steps``; optionally save it and check it.

    Args:
        model: an ANN or a :class:`~monai_snn.networks.SpikingSimulator` (its ``num_steps`` is the exported T).
        example_input: a batch ``[B, C, *spatial]`` the model accepts (the tracing input of an SNN).
        path: where to save the ``.ts`` file (``None``: not saved).
        check: run the exported model on ``example_input`` and on a second random input of another batch size and
            compare with the Python model (max abs difference 1e-5 relative to the output range).

    Returns:
        the exported module (eval mode).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        RuntimeError: the check fails (the difference is named).

    Example::

        export_torchscript(ann, torch.rand(1, 1, 64, 64), "ann.ts")
    """
    from monai_snn.networks.simulator import SpikingSimulator
    from monai_snn.neurons.fused import eager_updates

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    model = model.eval()
    spiking = isinstance(model, SpikingSimulator)
    with torch.no_grad():
        if spiking:
            saved = model.count_spikes
            model.count_spikes = False
            try:
                with warnings.catch_warnings(), eager_updates():  # a trace cannot record the compiled kernel
                    warnings.simplefilter("ignore", torch.jit.TracerWarning)
                    exported = torch.jit.trace(model, example_input, check_trace=False)
            finally:
                model.count_spikes = saved
        else:
            exported = torch.jit.script(model)
        if check:
            other = torch.rand(example_input.shape[0] + 1, *example_input.shape[1:], dtype=example_input.dtype)
            other = other * (example_input.max() - example_input.min()) + example_input.min()
            for x in (example_input, other):
                ref, out = model(x), exported(x)
                diff = float((ref - out).abs().max())
                scale = max(float(ref.abs().max()), 1.0)
                if diff > 1e-5 * scale:
                    raise RuntimeError(
                        f"the exported model differs from the Python model by {diff:.3g} (output range {scale:.3g}) "
                        f"on an input of shape {tuple(x.shape)}."
                    )
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        exported.save(str(path))
    return exported
