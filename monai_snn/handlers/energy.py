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


_POOLED = ("memory_snn_j", "memory_ann_j", "sops", "spikes", "macs_ann", "macs_first_layer")


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
            the first iteration's; costs one count pass per iteration (what a test-set figure should use). The
            metrics are updated every iteration, TensorBoard and ``energy.json`` once, at the end of the epoch.

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
        self._totals: dict[str, Any] = {}
        self.last: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self._pending = False

    def attach(self, engine: Engine) -> None:
        """Register the handler's callbacks on ``engine``."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _epoch_started(self, engine: Engine) -> None:
        self._pending = True
        self._totals: dict[str, Any] = {}

    def _measure(self, engine: Engine) -> dict[str, Any]:
        """Totals of the engine's last forward pass (whole batch, all steps): energies, counts, ``n`` samples."""
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
        totals = {k: report[k] for k in _POOLED}
        totals.update(snn_j=report["energy_snn_j"], ann_j=report["energy_ann_j"], n=report["batch_size"],
                      sops_per_layer=dict(report["sops_per_layer"]))  # fmt: skip
        return totals

    @staticmethod
    def _pool(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        """The totals of two passes together."""
        layers = dict(a["sops_per_layer"])
        for k, v in b["sops_per_layer"].items():
            layers[k] = layers.get(k, 0.0) + v
        return {**{k: a[k] + b[k] for k in (*_POOLED, "snn_j", "ann_j", "n")}, "sops_per_layer": layers}

    def _record(self, engine: Engine, t: dict[str, Any]) -> dict[str, Any]:
        """Per-sample values and the SNN / ANN ratios of totals ``t``."""
        n = t["n"]
        snn_j, ann_j, snn_mem, ann_mem = t["snn_j"] / n, t["ann_j"] / n, t["memory_snn_j"] / n, t["memory_ann_j"] / n
        paper_snn = t["spikes"] * self.e_ac + t["macs_first_layer"] * self.e_mac
        return {
            "epoch": engine.state.epoch,
            "iteration": engine.state.iteration,
            "num_steps": self.network.num_steps,
            "batch_size": int(n),
            "snn_j": snn_j,
            "ann_j": ann_j,
            "ratio": snn_j / ann_j if ann_j > 0 else float("nan"),
            "memory_snn_j": snn_mem,
            "memory_ann_j": ann_mem,
            "ratio_mem": (snn_j + snn_mem) / (ann_j + ann_mem) if ann_j + ann_mem > 0 else float("nan"),
            # the Spiking-UNet paper's counting (Qu et al. 2023): one accumulate per spike, fan-out ignored
            "ratio_spikes": paper_snn / (t["macs_ann"] * self.e_mac) if t["macs_ann"] > 0 else float("nan"),
            **{k: t[k] / n for k in ("spikes", "sops", "macs_ann", "macs_first_layer")},
            "sops_per_layer": {k: v / n for k, v in t["sops_per_layer"].items()},
        }

    def _iteration_completed(self, engine: Engine) -> None:
        if not self._pending and not self.average:
            return
        first = self._pending
        self._pending = False
        totals = self._measure(engine)
        self._totals = totals if first else self._pool(self._totals, totals)
        record = self._record(engine, self._totals)
        self.last = record
        if first:
            self.history.append(record)
        else:
            self.history[-1] = record
        if self.metric_prefix is not None:  # every iteration: the epoch's other handlers read them at its end
            metrics = engine.state.metrics
            metrics[f"{self.metric_prefix}snn_uj"] = record["snn_j"] * 1e6
            metrics[f"{self.metric_prefix}ann_uj"] = record["ann_j"] * 1e6
            for k in ("ratio", "ratio_mem", "ratio_spikes", "sops"):
                metrics[f"{self.metric_prefix}{k}"] = record[k]
        if not self.average:
            self._write(engine)

    def _epoch_completed(self, engine: Engine) -> None:
        if self.average and self._totals:
            self._write(engine)

    def _write(self, engine: Engine) -> None:
        """The epoch's record to TensorBoard and ``energy.json`` (once per epoch)."""
        if self._writer is not None:
            for k in ("snn_j", "ann_j", "ratio", "sops"):
                self._writer.add_scalar(f"{self.tag_prefix}/{k}", self.last[k], engine.state.epoch)
            self._writer.flush()
        if self.save_dir is not None:
            os.makedirs(self.save_dir, exist_ok=True)
            with open(os.path.join(self.save_dir, "energy.json"), "w") as f:
                json.dump(self.history, f, indent=2)

    def close(self) -> None:
        """Close the summary writer if this handler created it."""
        if self.internal_writer and self._writer is not None:
            self._writer.close()
