"""``SpikingTrainer``: spike-based fine-tuning (accumulated spiking flow or BPTT) with MONAI's ``SupervisedTrainer``.

The time loop lives in :class:`~monai_snn.networks.SpikingSimulator`, so a training iteration is MONAI's own
``SupervisedTrainer._iteration`` (prepare batch, forward, loss, backward, optimizer step, ``IterationEvents``);
only the forward call differs, and it is chosen by :class:`SpikingForwardInferer`:

* ``"flow"`` (Spiking-UNet, section 3.4): ``network.forward_flow(x)`` simulates ``T`` steps without a graph, then
  runs one differentiable pass in rate form; memory and backward cost do not grow with ``T``;
* ``"bptt"`` (hippocampus three-stage fine-tuning, section 3.1): ``network(x)`` with gradients enabled, i.e.
  backpropagation through time with the neurons' surrogate gradients; memory grows linearly with ``T``.

Both return the readout averaged over ``T`` (biases count once, in training as in evaluation), so any MONAI or
torch loss on logits applies unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents, default_metric_cmp_fn, default_prepare_batch
from monai.inferers import Inferer, SimpleInferer
from monai.transforms import Transform
from monai.utils.enums import CommonKeys as Keys
from torch import nn
from torch.optim.optimizer import Optimizer
from torch.utils.data import DataLoader

from monai_snn.networks.simulator import SpikingSimulator

if TYPE_CHECKING:
    from ignite.engine import Engine, EventEnum
    from ignite.metrics import Metric

__all__ = [
    "SPIKING_TRAINING_METHODS",
    "NonFiniteLossError",
    "SpikingForwardInferer",
    "SpikingTrainer",
    "readout_channels",
    "check_loss_readout",
]

SPIKING_TRAINING_METHODS = ("flow", "bptt")


class NonFiniteLossError(FloatingPointError):
    """Raised by :class:`SpikingTrainer` when the loss or a gradient is NaN or infinite (before the optimizer step)."""


def _check_method(method: str) -> str:
    if method not in SPIKING_TRAINING_METHODS:
        raise ValueError(
            f"method must be one of {SPIKING_TRAINING_METHODS} ('flow': accumulated spiking flow, memory independent "
            f"of T; 'bptt': backpropagation through time with surrogate gradients), got {method!r}."
        )
    return method


def _check_num_steps(num_steps: Any) -> int:
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"num_steps (simulation time steps T) must be a positive integer, got {num_steps!r}.")
    return num_steps


def _check_spiking_network(network: Any, owner: str) -> SpikingSimulator:
    if isinstance(network, SpikingSimulator):
        return network
    if isinstance(network, nn.Module):
        raise TypeError(
            f"{owner} needs a spiking network (monai_snn.networks.SpikingSimulator), got {type(network).__name__}. "
            "Convert a trained ANN first with monai_snn.conversion.convert_to_snn(ann, calibration_data), or build "
            "an untrained spiking network for direct training with monai_snn.engines.spiking_from_scratch(ann)."
        )
    raise TypeError(f"{owner} needs a spiking network (monai_snn.networks.SpikingSimulator), got {type(network)!r}.")


def readout_channels(network: SpikingSimulator) -> int | None:
    """Output channels of the readout layer of a converted network, or ``None`` when they cannot be determined.

    The readout is the synaptic layer whose output feeds no spiking layer (``network.metadata["synapse_outputs"]``
    maps each synapse to the neuron it feeds, ``None`` for the readout).

    Example::

        readout_channels(convert_to_snn(ConvertibleUNet(2, 1, 3), None, normalization="none"))  # 3
    """
    outputs = getattr(network, "metadata", {}).get("synapse_outputs")
    if not outputs:
        return None
    readouts = [name for name, target in outputs.items() if target is None]
    if len(readouts) != 1:
        return None
    try:
        layer = network.network.get_submodule(readouts[0])
    except AttributeError:
        return None
    channels = getattr(layer, "out_channels", None)
    return int(channels) if channels is not None else None


def check_loss_readout(loss_function: Callable, channels: int | None) -> None:
    """Raise a ``ValueError`` when ``loss_function`` cannot work on a readout with ``channels`` channels.

    Detected: a categorical loss (``torch.nn.CrossEntropyLoss``, ``torch.nn.NLLLoss``, or any MONAI loss with
    ``softmax=True``, ``use_softmax=True`` or ``to_onehot_y=True``) on a 1-channel readout, where it is constant or
    silently ignores its options. Losses that are plain functions are not inspected.

    Example::

        check_loss_readout(monai.losses.DiceCELoss(sigmoid=True), 1)  # fine
        check_loss_readout(torch.nn.CrossEntropyLoss(), 1)  # ValueError
    """
    if channels is None or channels > 1 or not isinstance(loss_function, nn.Module):
        return
    name = type(loss_function).__name__
    hint = (
        "For a 1-channel (binary) readout use a sigmoid loss, e.g. monai.losses.DiceCELoss(sigmoid=True), "
        "monai.losses.DiceLoss(sigmoid=True) or torch.nn.BCEWithLogitsLoss(); for a categorical loss the ANN needs "
        "out_channels >= 2 (background included)."
    )
    if isinstance(loss_function, (nn.CrossEntropyLoss, nn.NLLLoss)):
        raise ValueError(f"{name} needs >= 2 output channels but the network's readout has {channels}. {hint}")
    for sub_name, sub in loss_function.named_modules():
        for flag in ("softmax", "use_softmax", "to_onehot_y"):
            if getattr(sub, flag, False) is True:
                where = f"{name}" + (f".{sub_name}" if sub_name else "")
                raise ValueError(
                    f"{where} has {flag}=True, which needs >= 2 output channels, but the network's readout has "
                    f"{channels} (MONAI would ignore the option with a warning). {hint}"
                )


class SpikingForwardInferer(Inferer):
    """Calls a spiking network the way a spike-based training method needs, through any MONAI inferer.

    ``"flow"`` runs ``network.forward_flow`` (accumulated spiking flow), ``"bptt"`` runs ``network`` itself (with
    gradients when they are enabled). Both give the same forward value as the plain simulation.

    Args:
        method: ``"flow"`` or ``"bptt"``.
        inferer: the inferer that runs the forward call (``SimpleInferer`` by default; ``SlidingWindowInferer``
            works too).
        count_spikes: ``False`` switches the network's spike counting off during this inferer's calls (and back
            on after): faster training simulation, no firing rates from these passes.

    Example::

        inferer = SpikingForwardInferer("flow")
        logits = inferer(images, snn)  # == snn.forward_flow(images)
    """

    def __init__(
        self, method: str = "flow", inferer: Inferer | Callable | None = None, count_spikes: bool = True
    ) -> None:
        super().__init__()
        self.method = _check_method(method)
        self.inferer = SimpleInferer() if inferer is None else inferer
        self.count_spikes = bool(count_spikes)

    def __call__(self, inputs: torch.Tensor, network: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run the inner inferer on ``network.forward_flow`` (``"flow"``) or on ``network`` (``"bptt"``)."""
        forward = network.forward_flow if self.method == "flow" else network  # type: ignore[attr-defined]
        if self.count_spikes or not isinstance(network, SpikingSimulator):
            return self.inferer(inputs, forward, *args, **kwargs)
        saved = {m: m.count_spikes for m in network.neurons().values()}
        network.count_spikes = False
        try:
            return self.inferer(inputs, forward, *args, **kwargs)
        finally:
            for m, value in saved.items():
                m.count_spikes = value

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(method={self.method!r}, inferer={self.inferer!r}, "
            f"count_spikes={self.count_spikes})"
        )


def _batch_files(engine: Engine) -> list[str] | None:
    """File names of the current batch from MONAI meta data, if any."""
    candidates: list[Any] = []
    output = engine.state.output
    if isinstance(output, dict):
        candidates.append(getattr(output.get(Keys.IMAGE), "meta", None))
    batch = engine.state.batch
    if isinstance(batch, dict):
        candidates.append(getattr(batch.get(Keys.IMAGE), "meta", None))
        candidates.append(batch.get(f"{Keys.IMAGE}_meta_dict"))
        candidates.append(batch)
    for meta in candidates:
        if isinstance(meta, dict):
            for key in ("filename_or_obj", "filename"):
                files = meta.get(key)
                if isinstance(files, str):
                    return [files]
                if isinstance(files, (list, tuple)) and files:
                    return [str(f) for f in files]
    return None


def _where(engine: Engine) -> str:
    state = engine.state
    length = state.epoch_length
    local = (state.iteration - 1) % length + 1 if length else state.iteration
    where = f"iteration {state.iteration} (epoch {state.epoch}, batch {local}"
    where += f" of {length} in the epoch" if length else " in the epoch"
    files = _batch_files(engine)
    if files:
        where += f", files {files}"
    return where + ")"


class SpikingTrainer(SupervisedTrainer):
    """Spike-based fine-tuning of a spiking network with MONAI's ``SupervisedTrainer``.

    The iteration is ``SupervisedTrainer``'s own (``prepare_batch``, ``IterationEvents.FORWARD_COMPLETED`` /
    ``LOSS_COMPLETED`` / ``BACKWARD_COMPLETED`` / ``MODEL_COMPLETED``, ``engine.state.output`` with
    ``Keys.IMAGE/LABEL/PRED/LOSS``, gradient accumulation, post-processing, metrics, handlers); the forward call is
    ``network.forward_flow`` for ``"flow"`` and ``network(x)`` for ``"bptt"`` (wrapped around ``inferer`` by a
    :class:`SpikingForwardInferer`). The simulator resets the neurons at every forward pass.

    The readout is the membrane potential of the output layer averaged over ``T`` (in the ANN's logit units, biases
    counted once in training as in evaluation), so use any MONAI / torch loss on logits: ``BCEWithLogitsLoss``,
    ``DiceLoss(sigmoid=True)``, ``DiceCELoss(sigmoid=True, lambda_ce=0.3, lambda_dice=0.7)`` (BCE-Dice),
    ``DiceCELoss(softmax=True, to_onehot_y=True)`` (multi-class) or ``L1Loss`` (denoising).

    A NaN or infinite loss (or gradient) stops training with :class:`NonFiniteLossError`, naming the iteration,
    epoch and batch (file names when the batch has MONAI meta data). The check runs before the backward pass and
    before the optimizer step, so the network never takes a non-finite update: checkpoints already written by
    ``CheckpointSaver`` are untouched, and a ``save_final`` checkpoint written on the exception holds the last good
    weights.

    Direct training from scratch (the baseline of the papers) uses this trainer too: build the network with
    :func:`monai_snn.engines.spiking_from_scratch` and train with ``method="bptt"``.

    Args:
        device: device of the network and the batches.
        max_epochs: number of epochs.
        train_data_loader: iterable of batches, e.g. a MONAI ``DataLoader`` of ``{"image", "label"}`` dicts.
        network: a :class:`~monai_snn.networks.SpikingSimulator` (from ``convert_to_snn``).
        optimizer: a torch optimizer over ``network.parameters()``.
        loss_function: a loss on the readout (logits) and the labels.
        epoch_length: iterations per epoch (default ``len(train_data_loader)``).
        non_blocking: asynchronous host-to-device copies.
        prepare_batch: see ``SupervisedTrainer``.
        iteration_update: replaces the whole iteration (then ``method`` is only used by ``inferer``).
        inferer: inferer that runs the forward call, wrapped in :class:`SpikingForwardInferer` (``SimpleInferer``
            by default).
        postprocessing: post-processing transforms, see ``SupervisedTrainer``.
        key_train_metric: key metric, see ``SupervisedTrainer``.
        additional_metrics: more metrics.
        metric_cmp_fn: key metric comparison.
        train_handlers: handlers to attach (``CheckpointSaver``, ``StatsHandler``, ``ValidationHandler``, ...).
        amp: automatic mixed precision (CUDA only); off by default.
        event_names: additional custom ignite events.
        event_to_attr: see ``SupervisedTrainer``.
        decollate: decollate ``engine.state.batch`` / ``output`` after the iteration.
        optim_set_to_none: ``optimizer.zero_grad(set_to_none=...)``.
        to_kwargs: extra arguments of ``prepare_batch``.
        amp_kwargs: arguments of ``torch.autocast``.
        accumulation_steps: mini-batches per optimizer step.
        method: ``"flow"`` (accumulated spiking flow, memory independent of ``T``) or ``"bptt"``.
        num_steps: simulation length ``T`` used for training; sets ``network.num_steps`` when given.
        check_finite: stop on a non-finite loss or gradient (see above).
        count_spikes: count spikes in the training simulation (``network.firing_rates()`` after an iteration, a
            :class:`~monai_snn.handlers.FiringRateHandler` on the trainer). ``False`` makes a multi-threshold
            simulation about a quarter faster; evaluators still count (rates before / after fine-tuning come from
            the validation evaluator).
        flow_gradient: the flow pass's straight-through gradient, ``"relu"`` (``1[x > 0]``) or ``"clip"`` (also 0
            where a neuron's input current reaches the most one step can emit: the saturation a QCFS ANN was
            trained with).

    Raises:
        TypeError: ``network`` is not a spiking network (e.g. the ANN itself).
        ValueError: unknown ``method`` or ``flow_gradient``, ``num_steps < 1``, or a loss that does not fit the
            readout (e.g. a categorical loss on a 1-channel readout).

    Example::

        snn = convert_to_snn(ann, calibration_loader, num_steps=8, initial_potential=0.0)
        trainer = SpikingTrainer(
            device="cpu", max_epochs=10, train_data_loader=train_loader, network=snn,
            optimizer=torch.optim.Adam(snn.parameters(), 1e-4),
            loss_function=monai.losses.DiceCELoss(sigmoid=True, lambda_ce=0.3, lambda_dice=0.7),
            method="flow", num_steps=8,
        )
        trainer.run()
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        network: SpikingSimulator,
        optimizer: Optimizer,
        loss_function: Callable,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable = default_prepare_batch,
        iteration_update: Callable[[Engine, Any], Any] | None = None,
        inferer: Inferer | None = None,
        postprocessing: Transform | None = None,
        key_train_metric: dict[str, Metric] | None = None,
        additional_metrics: dict[str, Metric] | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        event_names: list[str | EventEnum | type[EventEnum]] | None = None,
        event_to_attr: dict | None = None,
        decollate: bool = True,
        optim_set_to_none: bool = False,
        to_kwargs: dict | None = None,
        amp_kwargs: dict | None = None,
        accumulation_steps: int = 1,
        method: str = "flow",
        num_steps: int | None = None,
        check_finite: bool = True,
        count_spikes: bool = True,
        flow_gradient: str = "relu",
    ) -> None:
        _check_spiking_network(network, type(self).__name__)
        _check_method(method)
        if flow_gradient not in ("relu", "clip"):
            raise ValueError(f"flow_gradient must be 'relu' or 'clip', got {flow_gradient!r}.")
        for neuron in network.neurons().values():
            neuron.flow_gradient = flow_gradient
        if num_steps is not None:
            _check_num_steps(num_steps)
        check_loss_readout(loss_function, readout_channels(network))
        if num_steps is not None:
            network.num_steps = num_steps
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            iteration_update=iteration_update,
            inferer=SpikingForwardInferer(
                method, inferer.inferer if isinstance(inferer, SpikingForwardInferer) else inferer, count_spikes
            ),
            postprocessing=postprocessing,
            key_train_metric=key_train_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            train_handlers=train_handlers,
            amp=amp,
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=decollate,
            optim_set_to_none=optim_set_to_none,
            to_kwargs=to_kwargs,
            amp_kwargs=amp_kwargs,
            compile=False,
            accumulation_steps=accumulation_steps,
        )
        self.check_finite = check_finite
        self.add_event_handler(IterationEvents.LOSS_COMPLETED, self._check_loss)
        self.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self._check_gradients)

    @property
    def method(self) -> str:
        """``"flow"`` or ``"bptt"``; can be changed between runs."""
        return self.inferer.method

    @method.setter
    def method(self, value: str) -> None:
        self.inferer.method = _check_method(value)

    @property
    def num_steps(self) -> int:
        """Simulation length ``T`` of the network (``network.num_steps``)."""
        return self.network.num_steps

    @num_steps.setter
    def num_steps(self, value: int) -> None:
        self.network.num_steps = _check_num_steps(value)

    def _check_loss(self, engine: SpikingTrainer) -> None:
        if not self.check_finite:
            return
        loss = engine.state.output[Keys.LOSS]
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"{type(self).__name__}: non-finite loss ({value}) at {_where(engine)}, method={self.method!r}, "
                f"T={self.num_steps}. Training stopped before the backward pass and the optimizer step: the network "
                "keeps the weights of the previous iteration and saved checkpoints are untouched. Check this batch's "
                "inputs and labels, or lower the learning rate and resume from the last checkpoint."
            )

    def _check_gradients(self, engine: SpikingTrainer) -> None:
        if not self.check_finite or engine.scaler is not None:  # the AMP grad scaler skips non-finite steps itself
            return
        grads = [p.grad for group in engine.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
            return
        params = engine.network.named_parameters()
        bad = [n for n, p in params if p.grad is not None and not torch.isfinite(p.grad).all()]
        raise NonFiniteLossError(
            f"{type(self).__name__}: non-finite gradient of {bad[:5]}{' ...' if len(bad) > 5 else ''} at "
            f"{_where(engine)}, method={self.method!r}, T={self.num_steps}. Training stopped before the optimizer "
            "step: the network keeps the weights of the previous iteration and saved checkpoints are untouched. "
            "Lower the learning rate (or clip gradients) and resume from the last checkpoint."
        )
