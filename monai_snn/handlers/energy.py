"""``EnergyHandler``: synaptic operations and energy of a spiking network versus its ANN, once per epoch."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from monai.utils import IgniteInfo, min_version, optional_import
from monai.utils.enums import CommonKeys as Keys

from monai_snn.energy.estimate import E_AC_J, E_MAC_J, estimate_energy, memory_energy, synaptic_operations
from monai_snn.handlers.firing_rate import _make_writer
from monai_snn.networks.simulator import SpikingSimulator

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
    from torch.utils.tensorboard import SummaryWriter
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")
    SummaryWriter, _ = optional_import("torch.utils.tensorboard", name="SummaryWriter")

__all__ = ["EnergyHandler", "batch_images"]


def batch_images(batch: Any) -> torch.Tensor:
    """The image tensor of an engine batch: a tensor, a ``(image, label)`` tuple, a dict with ``"image"`` or a
    decollated list of such dicts (stacked).

    Example::

        EnergyHandler(snn, inputs_transform=batch_images)
    """
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, dict):
        return batch[Keys.IMAGE]
    if isinstance(batch, (list, tuple)) and batch:
        if isinstance(batch[0], dict):
            return torch.stack([torch.as_tensor(b[Keys.IMAGE]) for b in batch])
        if isinstance(batch[0], torch.Tensor) and isinstance(batch, tuple):
            return batch[0]
        if isinstance(batch[0], torch.Tensor):
            return torch.stack(list(batch))
    raise TypeError(f"cannot find the images in a batch of type {type(batch).__name__}; pass inputs_transform.")


class EnergyHandler:
    """Estimate the energy of a spiking network on the first batch of every epoch and log / save it.

    By default no extra forward pass is run: at the epoch's first ``ITERATION_COMPLETED`` the spike counts of the
    engine's own forward pass are read with :func:`~monai_snn.energy.synaptic_operations` (an evaluator's
    simulation, or a :class:`~monai_snn.engines.SpikingTrainer`'s: ``"flow"`` simulates under ``no_grad`` before
    its rate-form pass and ``"bptt"`` records spikes too). With a sliding-window inferer the last forward pass is
    the last window batch, so energies are per window; set ``recompute=True`` to run
    :func:`~monai_snn.energy.estimate_energy` on ``inputs_transform(engine.state.batch)`` instead (also done when
    the network has no recorded pass).

    Values are per sample: the SNN's energy (accumulates x 0.9 pJ + analog first-layer MACs x 4.6 pJ), the ANN's
    (MACs x 4.6 pJ), their ratio (SNN / ANN) and the synaptic operations. They go

    * to ``engine.state.metrics`` as ``energy_snn_uj`` and ``energy_ann_uj`` (microjoules, readable in
      ``StatsHandler``'s 4-decimal output), ``energy_ratio``, ``energy_ratio_mem`` (memory included),
      ``energy_ratio_spikes`` (the Spiking-UNet paper's counting: one accumulate per spike, whatever its fan-out,
      which is why that paper reports ratios two orders of magnitude below this one) and ``energy_sops`` (with
      ``metric_prefix="energy_"``),
      so ``StatsHandler``, ``TensorBoardStatsHandler`` and ``MetricsSaver`` report them with the evaluation metrics;
    * to TensorBoard as ``energy/snn_j``, ``energy/ann_j`` (joules), ``energy/ratio`` and ``energy/sops`` (global
      step ``engine.state.epoch``);
    * with ``save_dir``, to ``save_dir/energy.json`` (one record per epoch, joules, with per-layer SOPs).

    The last record is :attr:`last`; all of them are :attr:`history`.

    Args:
        network: the :class:`~monai_snn.networks.SpikingSimulator` the engine runs.
        inputs_transform: maps ``engine.state.batch`` to the input tensor for ``recompute`` (default
            :func:`batch_images`).
        summary_writer: a TensorBoard ``SummaryWriter`` to write to.
        log_dir: directory of a new ``SummaryWriter`` when ``summary_writer`` is not given (neither: no
            TensorBoard logging).
        save_dir: directory of ``energy.json`` (``None``: not written).
        tag_prefix: prefix of the TensorBoard tags.
        metric_prefix: prefix of the keys in ``engine.state.metrics`` (``None``: not stored there).
        e_ac: energy per accumulate, joules.
        e_mac: energy per multiply-accumulate, joules.
        recompute: always run an extra forward pass on the batch instead of reading the engine's.
        average: measure every iteration and report the epoch's pooled values (weighted by samples) instead of
            the first iteration's; costs one count pass per iteration (what a test-set figure should use).

    Raises:
        TypeError: ``network`` is not a spiking network.

    Example::

        evaluator = SpikingEvaluator(
            "cpu", val_loader, snn, key_val_metric={"val_dice": MeanDice()},
            val_handlers=[EnergyHandler(snn, log_dir="runs"), MetricsSaver("out", metrics="*")],
        )
        evaluator.run()
        evaluator.state.metrics["energy_ratio"], evaluator.state.metrics["energy_snn_uj"]
    """

    def __init__(
        self,
        network: SpikingSimulator,
        inputs_transform: Callable[[Any], torch.Tensor] = batch_images,
        summary_writer: SummaryWriter | None = None,
        log_dir: str | None = None,
        save_dir: str | None = None,
        tag_prefix: str = "energy",
        metric_prefix: str | None = "energy_",
        e_ac: float = E_AC_J,
        e_mac: float = E_MAC_J,
        recompute: bool = False,
        average: bool = False,
    ) -> None:
        if not isinstance(network, SpikingSimulator):
            raise TypeError(
                f"EnergyHandler needs a spiking network (monai_snn.networks.SpikingSimulator), "
                f"got {type(network).__name__}."
            )
        self.network = network
        self.inputs_transform = inputs_transform
        self._writer, self.internal_writer = _make_writer(summary_writer, log_dir)
        self.save_dir = save_dir
        self.tag_prefix = tag_prefix
        self.metric_prefix = metric_prefix
        self.e_ac = e_ac
        self.e_mac = e_mac
        self.recompute = recompute
        self.average = average
        self._sums: dict[str, float] = {}
        self.last: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self._pending = False

    def attach(self, engine: Engine) -> None:
        """Register the handler's callbacks on ``engine``."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)

    def _epoch_started(self, engine: Engine) -> None:
        self._pending = True
        self._sums = {}

    def _accumulate(self, record: dict[str, Any]) -> dict[str, Any]:
        """Pool ``record`` (per-sample values of one forward pass) with the epoch's earlier ones (``average``)."""
        b = record["batch_size"]
        keys = ("snn_j", "ann_j", "memory_snn_j", "memory_ann_j", "sops", "spikes", "macs_ann", "macs_first_layer")
        for k in keys:
            self._sums[k] = self._sums.get(k, 0.0) + record[k] * b
        self._sums["n"] = self._sums.get("n", 0.0) + b
        layers = self._sums.setdefault("sops_per_layer", {})  # type: ignore[arg-type]
        for k, v in record["sops_per_layer"].items():
            layers[k] = layers.get(k, 0.0) + v * b
        n, t = self._sums["n"], self._sums
        snn_j, ann_j, snn_mem, ann_mem = t["snn_j"] / n, t["ann_j"] / n, t["memory_snn_j"] / n, t["memory_ann_j"] / n
        return {
            **record,
            "batch_size": int(n),
            **{k: t[k] / n for k in keys},
            "ratio": snn_j / ann_j if ann_j > 0 else float("nan"),
            "ratio_mem": (snn_j + snn_mem) / (ann_j + ann_mem) if ann_j + ann_mem > 0 else float("nan"),
            "ratio_spikes": (t["spikes"] * self.e_ac + t["macs_first_layer"] * self.e_mac)
            / (t["macs_ann"] * self.e_mac) if t["macs_ann"] > 0 else float("nan"),
            "sops_per_layer": {k: v / n for k, v in layers.items()},
        }

    def _measure(self, engine: Engine) -> dict[str, Any]:
        net = self.network
        recorded = net.last_input_shape is not None and all(n.spike_count is not None for n in net.neurons().values())
        if self.recompute or not recorded:
            inputs = self.inputs_transform(engine.state.batch)
            device = next(net.parameters()).device
            report = estimate_energy(net, torch.as_tensor(inputs).to(device), e_ac=self.e_ac, e_mac=self.e_mac)
        else:
            report = synaptic_operations(net)
            report["energy_snn_j"] = report["sops"] * self.e_ac + report["macs_first_layer"] * self.e_mac
            report["energy_ann_j"] = report["macs_ann"] * self.e_mac
            report.update(memory_energy(report))
        batch = report["batch_size"]
        snn_j, ann_j = report["energy_snn_j"] / batch, report["energy_ann_j"] / batch
        snn_mem, ann_mem = report["memory_snn_j"] / batch, report["memory_ann_j"] / batch
        return {
            "epoch": engine.state.epoch,
            "iteration": engine.state.iteration,
            "num_steps": net.num_steps,
            "batch_size": batch,
            "snn_j": snn_j,
            "ann_j": ann_j,
            "ratio": snn_j / ann_j if ann_j > 0 else float("nan"),
            "memory_snn_j": snn_mem,
            "memory_ann_j": ann_mem,
            "ratio_mem": (snn_j + snn_mem) / (ann_j + ann_mem) if ann_j + ann_mem > 0 else float("nan"),
            # the Spiking-UNet paper's counting (Qu et al. 2023): one accumulate per spike, fan-out ignored
            "ratio_spikes": (report["spikes"] * self.e_ac + report["macs_first_layer"] * self.e_mac)
            / (report["macs_ann"] * self.e_mac) if report["macs_ann"] > 0 else float("nan"),
            "spikes": report["spikes"] / batch,
            "sops": report["sops"] / batch,
            "macs_ann": report["macs_ann"] / batch,
            "macs_first_layer": report["macs_first_layer"] / batch,
            "sops_per_layer": {k: v / batch for k, v in report["sops_per_layer"].items()},
        }

    def _iteration_completed(self, engine: Engine) -> None:
        if not self._pending and not self.average:
            return
        first = self._pending
        self._pending = False
        record = self._measure(engine)
        if self.average:
            record = self._accumulate(record)
        self.last = record
        if first:
            self.history.append(record)
        else:
            self.history[-1] = record
        keys = ("snn_j", "ann_j", "ratio", "sops")
        if self.metric_prefix is not None:
            metrics = engine.state.metrics
            metrics[f"{self.metric_prefix}snn_uj"] = record["snn_j"] * 1e6
            metrics[f"{self.metric_prefix}ann_uj"] = record["ann_j"] * 1e6
            metrics[f"{self.metric_prefix}ratio"] = record["ratio"]
            metrics[f"{self.metric_prefix}ratio_mem"] = record["ratio_mem"]
            metrics[f"{self.metric_prefix}ratio_spikes"] = record["ratio_spikes"]
            metrics[f"{self.metric_prefix}sops"] = record["sops"]
        if self._writer is not None:
            for k in keys:
                self._writer.add_scalar(f"{self.tag_prefix}/{k}", record[k], engine.state.epoch)
            self._writer.flush()
        if self.save_dir is not None:
            os.makedirs(self.save_dir, exist_ok=True)
            with open(os.path.join(self.save_dir, "energy.json"), "w") as f:
                json.dump(self.history, f, indent=2)

    def close(self) -> None:
        """Close the summary writer if this handler created it."""
        if self.internal_writer and self._writer is not None:
            self._writer.close()
