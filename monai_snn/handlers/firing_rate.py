"""``FiringRateHandler``: per-layer firing rates of a spiking network, logged to TensorBoard (scalars, bar chart)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from monai.utils import IgniteInfo, min_version, optional_import

from monai_snn.networks.simulator import SpikingSimulator

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
    from torch.utils.tensorboard import SummaryWriter
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")
    SummaryWriter, _ = optional_import("torch.utils.tensorboard", name="SummaryWriter")

__all__ = ["FiringRateHandler", "firing_rate_figure"]


def _make_writer(summary_writer: Any, log_dir: str | None) -> tuple[Any, bool]:
    if summary_writer is not None:
        return summary_writer, False
    if log_dir is not None:
        return SummaryWriter(log_dir=log_dir), True
    return None, False


def firing_rate_figure(
    rates: dict[str, float], reference: dict[str, float] | None = None, labels: tuple[str, str] = ("first", "current")
) -> np.ndarray:
    """Bar chart of per-layer firing rates as an ``[H, W, 3]`` ``uint8`` image (matplotlib, Agg canvas).

    Args:
        rates: ``{layer: rate}`` to plot.
        reference: optional ``{layer: rate}`` drawn beside ``rates`` (e.g. before fine-tuning).
        labels: legend entries of ``reference`` and ``rates``.

    Example::

        img = firing_rate_figure(snn.firing_rates())
        writer.add_image("firing_rate/layers", img, 0, dataformats="HWC")
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(rates)
    x = np.arange(len(names))
    fig = Figure(figsize=(max(6.0, 0.45 * len(names) + 2.0), 4.0), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if reference is not None:
        width = 0.4
        ax.bar(x - width / 2, [reference.get(n, 0.0) for n in names], width, label=labels[0], color="0.6")
        ax.bar(x + width / 2, [rates[n] for n in names], width, label=labels[1], color="tab:blue")
        ax.legend()
    else:
        ax.bar(x, [rates[n] for n in names], 0.7, color="tab:blue")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("spikes / neuron / step")
    ax.set_title("firing rate per spiking layer")
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class FiringRateHandler:
    """Collect the per-layer firing rates of a spiking network and log them to TensorBoard.

    At every ``ITERATION_COMPLETED`` the rates of the iteration's forward pass are read from
    ``network.firing_rates()``; at ``EPOCH_COMPLETED`` their mean over the epoch's iterations is logged as scalars
    ``<tag_prefix>/<layer>`` and as a bar-chart image ``<tag_prefix>/layers`` that also shows the first logged
    epoch's rates, so "before vs after fine-tuning" is one look (attach it to an evaluator that runs once before
    training, e.g. ``evaluator.run()``, and then from a ``ValidationHandler``). The global step is
    ``engine.state.epoch`` (the trainer's epoch for an evaluator run by ``ValidationHandler``).

    The last epoch's rates are kept in :attr:`rates`, every epoch's in :attr:`history`, and the rates are also
    stored in ``engine.state.firing_rates``; their mean over layers goes to
    ``engine.state.metrics[metric_name]`` (so ``StatsHandler`` / ``MetricsSaver`` show it).

    Works on an evaluator (``SupervisedEvaluator`` / :class:`~monai_snn.engines.SpikingEvaluator`) or on a
    :class:`~monai_snn.engines.SpikingTrainer` (both ``"flow"`` and ``"bptt"`` record spikes).

    Args:
        network: the :class:`~monai_snn.networks.SpikingSimulator` the engine runs.
        summary_writer: a TensorBoard ``SummaryWriter`` to write to.
        log_dir: directory of a new ``SummaryWriter`` when ``summary_writer`` is not given; with neither, nothing
            is written to TensorBoard (rates are still collected).
        tag_prefix: prefix of the TensorBoard tags.
        epoch_level: log at every epoch (``True``) or at every iteration (``False``; the image is still drawn per
            epoch).
        log_image: also log the bar chart.
        metric_name: key of the mean rate in ``engine.state.metrics`` (``None``: not stored there).

    Raises:
        TypeError: ``network`` is not a spiking network.

    Example::

        handler = FiringRateHandler(snn, log_dir="runs/finetune")
        evaluator = SpikingEvaluator("cpu", val_loader, snn, val_handlers=[handler])
        evaluator.run()  # before fine-tuning
        trainer = SpikingTrainer(..., train_handlers=[ValidationHandler(1, evaluator)])
        trainer.run()
        handler.history[0], handler.rates  # before / after
    """

    def __init__(
        self,
        network: SpikingSimulator,
        summary_writer: SummaryWriter | None = None,
        log_dir: str | None = None,
        tag_prefix: str = "firing_rate",
        epoch_level: bool = True,
        log_image: bool = True,
        metric_name: str | None = "firing_rate_mean",
    ) -> None:
        if not isinstance(network, SpikingSimulator):
            raise TypeError(
                f"FiringRateHandler needs a spiking network (monai_snn.networks.SpikingSimulator), "
                f"got {type(network).__name__}."
            )
        self.network = network
        self._writer, self.internal_writer = _make_writer(summary_writer, log_dir)
        self.tag_prefix = tag_prefix
        self.epoch_level = epoch_level
        self.log_image = log_image
        self.metric_name = metric_name
        self.rates: dict[str, float] = {}
        self.history: list[dict[str, float]] = []
        self._sums: dict[str, float] = {}
        self._count = 0

    @property
    def summary_writer(self) -> SummaryWriter | None:
        """The TensorBoard writer (``None`` when not logging to TensorBoard)."""
        return self._writer

    def attach(self, engine: Engine) -> None:
        """Register the handler's callbacks on ``engine``."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _epoch_started(self, engine: Engine) -> None:
        self._sums = {}
        self._count = 0

    def _iteration_completed(self, engine: Engine) -> None:
        rates = self.network.firing_rates()
        for name, rate in rates.items():
            self._sums[name] = self._sums.get(name, 0.0) + rate
        self._count += 1
        if self.metric_name is not None and self._sums:
            # the running epoch mean is in the metrics after every iteration, so handlers that read the metrics at
            # EPOCH_COMPLETED before this one (StatsHandler, TensorBoardStatsHandler) see this epoch's value
            engine.state.metrics[self.metric_name] = float(np.mean(list(self._sums.values()))) / self._count
        if not self.epoch_level and self._writer is not None:
            for name, rate in rates.items():
                self._writer.add_scalar(f"{self.tag_prefix}/{name}", rate, engine.state.iteration)

    def _epoch_completed(self, engine: Engine) -> None:
        if self._count == 0:
            return
        self.rates = {name: total / self._count for name, total in self._sums.items()}
        self.history.append(dict(self.rates))
        engine.state.firing_rates = dict(self.rates)  # the mean is in the metrics already (every iteration)
        if self._writer is None:
            return
        step = engine.state.epoch
        if self.epoch_level:
            for name, rate in self.rates.items():
                self._writer.add_scalar(f"{self.tag_prefix}/{name}", rate, step)
        if self.log_image and self.rates:
            reference = self.history[0] if len(self.history) > 1 else None
            image = firing_rate_figure(self.rates, reference, labels=("first epoch", f"epoch {step}"))
            self._writer.add_image(f"{self.tag_prefix}/layers", image, step, dataformats="HWC")
        self._writer.flush()

    def close(self) -> None:
        """Close the summary writer if this handler created it."""
        if self.internal_writer and self._writer is not None:
            self._writer.close()
