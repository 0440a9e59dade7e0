"""``SpikingEvaluator``: MONAI's ``SupervisedEvaluator`` at a chosen simulation length ``T``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from monai.engines import SupervisedEvaluator
from monai.engines.utils import default_metric_cmp_fn, default_prepare_batch
from monai.inferers import Inferer
from monai.transforms import Transform
from monai.utils import ForwardMode
from torch.utils.data import DataLoader

from monai_snn.engines.trainer import _check_num_steps, _check_spiking_network

if TYPE_CHECKING:
    from ignite.engine import Engine, EventEnum
    from ignite.metrics import Metric

__all__ = ["SpikingEvaluator"]


class SpikingEvaluator(SupervisedEvaluator):
    """Evaluate a spiking network at ``num_steps`` time steps, restoring the network's own ``T`` afterwards.

    A :class:`~monai_snn.networks.SpikingSimulator` maps ``[B, C, *spatial]`` to the time-averaged readout
    ``[B, K, *spatial]`` like its ANN, so the stock ``monai.engines.SupervisedEvaluator`` suffices whenever the
    network is evaluated at its current ``network.num_steps`` (evaluation runs under ``eval_mode``, i.e. without
    gradients, on the simulator's fast path). Use this class to validate at a different ``T`` than the one used for
    fine-tuning (e.g. train at ``T=8`` and validate at ``T=4`` and ``T=16`` with two evaluators), or to sweep ``T``:
    ``num_steps`` is set at the start of every :meth:`run` and the previous value restored at its end, even when
    the run fails. With ``num_steps=None`` the behaviour is exactly ``SupervisedEvaluator``'s.

    Args:
        device: device of the network and the batches.
        val_data_loader: iterable of validation batches.
        network: the network to evaluate (a :class:`~monai_snn.networks.SpikingSimulator` when ``num_steps`` is
            given).
        epoch_length: iterations per run (default ``len(val_data_loader)``).
        non_blocking: asynchronous host-to-device copies.
        prepare_batch: see ``SupervisedEvaluator``.
        iteration_update: replaces the iteration.
        inferer: inferer (``SimpleInferer`` by default; ``SlidingWindowInferer`` for large images).
        postprocessing: post-processing transforms (e.g. ``Activationsd(sigmoid=True)``, ``AsDiscreted``).
        key_val_metric: key metric, e.g. ``{"val_mean_dice": MeanDice()}``.
        additional_metrics: more metrics.
        metric_cmp_fn: key metric comparison.
        val_handlers: handlers (``StatsHandler``, ``CheckpointSaver``, ``FiringRateHandler``, ``EnergyHandler``...).
        amp: automatic mixed precision (CUDA only).
        mode: ``"eval"`` or ``"train"`` forward mode.
        event_names: additional custom ignite events.
        event_to_attr: see ``SupervisedEvaluator``.
        decollate: decollate batch and output after the iteration.
        to_kwargs: extra arguments of ``prepare_batch``.
        amp_kwargs: arguments of ``torch.autocast``.
        num_steps: simulation length ``T`` for this evaluator (``None``: the network's current one).

    Raises:
        TypeError: ``num_steps`` is given but ``network`` is not a spiking network.
        ValueError: ``num_steps < 1``.

    Example::

        evaluator = SpikingEvaluator(
            device="cpu", val_data_loader=val_loader, network=snn, num_steps=4,
            postprocessing=Compose([Activationsd("pred", sigmoid=True), AsDiscreted("pred", threshold=0.5)]),
            key_val_metric={"val_dice_T4": MeanDice()},
        )
        evaluator.run()
    """

    def __init__(
        self,
        device: torch.device | str,
        val_data_loader: Iterable | DataLoader,
        network: torch.nn.Module,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable = default_prepare_batch,
        iteration_update: Callable[[Engine, Any], Any] | None = None,
        inferer: Inferer | None = None,
        postprocessing: Transform | None = None,
        key_val_metric: dict[str, Metric] | None = None,
        additional_metrics: dict[str, Metric] | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        val_handlers: Sequence | None = None,
        amp: bool = False,
        mode: ForwardMode | str = ForwardMode.EVAL,
        event_names: list[str | EventEnum | type[EventEnum]] | None = None,
        event_to_attr: dict | None = None,
        decollate: bool = True,
        to_kwargs: dict | None = None,
        amp_kwargs: dict | None = None,
        num_steps: int | None = None,
    ) -> None:
        if num_steps is not None:
            _check_spiking_network(network, type(self).__name__)
            _check_num_steps(num_steps)
        super().__init__(
            device=device,  # type: ignore[arg-type]
            val_data_loader=val_data_loader,
            network=network,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            iteration_update=iteration_update,
            inferer=inferer,
            postprocessing=postprocessing,
            key_val_metric=key_val_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            val_handlers=val_handlers,
            amp=amp,
            mode=mode,
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=decollate,
            to_kwargs=to_kwargs,
            amp_kwargs=amp_kwargs,
        )
        self.num_steps = num_steps

    def run(self, global_epoch: int = 1) -> None:  # type: ignore[override]
        """Run the evaluation at ``self.num_steps`` time steps (if set), then restore the network's ``T``.

        Args:
            global_epoch: the trainer's epoch when called by ``ValidationHandler``.
        """
        if self.num_steps is None:
            super().run(global_epoch)
            return
        previous = self.network.num_steps
        self.network.num_steps = self.num_steps
        try:
            super().run(global_epoch)
        finally:
            self.network.num_steps = previous
