"""Time-stepped simulation of a spiking network traced with ``torch.fx``.

The schedule, measured on 2-core CPUs (``benchmarks/simulation.py``):

* nodes that do not change over time (the input and the first convolution under static input) are computed once;
* the rest runs in chunks of ``chunk_size`` time steps folded into the batch (stateless layers see
  ``[chunk * B, ...]``, neurons loop over the chunk); ``chunk_size=1`` is the step-by-step loop, the fastest on
  CPU; on a GPU larger chunks fill the device better;
* the layers after the last spiking layer are affine, so they run once on the time-averaged spikes: the
  readout is the output layer's membrane potential averaged over ``num_steps``, in the ANN's output units.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx
from monai.data import MetaTensor
from monai.utils import convert_to_dst_type
from torch import nn

from monai_snn.encoding.encoders import Encoder, make_encoder
from monai_snn.neurons.neuron import SpikingNeuron
from monai_snn.neurons.temporal import TimeStepped
from monai_snn.neurons.utils import reset_states

__all__ = ["SpikingSimulator"]


_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
# layers whose output is always a new tensor (never a view or the input itself)
_FRESH_OUTPUT = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear,
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
)  # fmt: skip


class _Op:
    __slots__ = ("node", "name", "fn", "is_neuron", "is_stepped", "is_dropout", "free")

    def __init__(self, node: torch.fx.Node, fn: Any, is_stepped: bool) -> None:
        self.node = node
        self.name = node.name
        self.fn = fn
        self.is_stepped = is_stepped  # a TimeStepped layer: neurons, BNTT
        self.is_neuron = isinstance(fn, SpikingNeuron)
        self.is_dropout = isinstance(fn, _DROPOUT)
        self.free: list[str] = []


class SpikingSimulator(nn.Module):
    """Runs a spiking network for ``num_steps`` time steps and returns the averaged readout.

    Maps ``[B, C, *spatial]`` to ``[B, K, *spatial]`` like the ANN it came from, so losses, MONAI inferers and
    post-processing apply unchanged. Usually built by :func:`monai_snn.conversion.convert_to_snn`.

    Args:
        module: an ``fx.GraphModule`` whose activations are :class:`~monai_snn.neurons.SpikingNeuron` layers.
        num_steps: simulation length ``T``; can be changed at any time (``snn.num_steps = 8``).
        encoding: ``"static"``, ``"poisson_binary"``, ``"poisson_ternary"`` or an :class:`Encoder`.
        chunk_size: time steps folded into the batch per chunk; ``None`` picks 1 on CPU and up to 16 on GPU.
        in_channels: expected input channels (checked); ``None`` skips the check.
        spatial_dims: expected spatial dimensions (checked); ``None`` skips the check.

    Example::

        snn = convert_to_snn(ann, calibration_batches, num_steps=16)
        y = snn(x)  # [B, K, H, W], averaged over 16 steps
        snn.firing_rates()  # {"encoder.0.1": 0.12, ...}
    """

    def __init__(
        self,
        module: torch.fx.GraphModule,
        num_steps: int = 16,
        encoding: str | Encoder = "static",
        chunk_size: int | None = None,
        in_channels: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__()
        self.network = module
        self.num_steps = num_steps
        self.encoder = make_encoder(encoding)
        self.chunk_size = chunk_size
        self.in_channels = in_channels
        self.spatial_dims = spatial_dims
        self.metadata: dict[str, Any] = {}
        self.last_input_shape: tuple[int, ...] | None = None
        self.input_spike_count: torch.Tensor | None = None
        self._input_sum: torch.Tensor | None = None
        self._dropout_masks: dict[str, torch.Tensor] = {}
        self._plan_key: tuple | None = None
        self._disposable_inputs: list[SpikingNeuron] = []

    # ----------------------------------------------------------------- config
    @property
    def num_steps(self) -> int:
        return self._num_steps

    @num_steps.setter
    def num_steps(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"num_steps must be a positive integer, got {value!r}.")
        self._num_steps = value

    @property
    def encoder(self) -> Encoder:
        return self._encoder

    @encoder.setter
    def encoder(self, value: str | Encoder) -> None:
        self._encoder = make_encoder(value)
        self._plan_key = None

    def neurons(self) -> dict[str, SpikingNeuron]:
        """Spiking layers by name (the ANN's ReLU module paths)."""
        return {n: m for n, m in self.network.named_modules() if isinstance(m, SpikingNeuron)}

    @property
    def count_spikes(self) -> bool:
        """Whether the neurons count spikes (firing rates, energy); set it to switch all of them."""
        return all(m.count_spikes for m in self.neurons().values())

    @count_spikes.setter
    def count_spikes(self, value: bool) -> None:
        for m in self.neurons().values():
            m.count_spikes = bool(value)

    def firing_rates(self) -> dict[str, float]:
        """Spikes per neuron and time step of each spiking layer during the last forward pass.

        Raises:
            RuntimeError: the last forward pass ran with spike counting switched off (``count_spikes=False``).
        """
        neurons = self.neurons()
        if any(m.num_steps and m.spike_count is None for m in neurons.values()):
            raise RuntimeError(
                "no spike counts: the last forward pass ran with count_spikes=False (e.g. a SpikingTrainer with "
                "count_spikes=False); read firing rates from an evaluator's pass, or switch counting on."
            )
        return {n: m.firing_rate() for n, m in neurons.items()}

    def reset(self) -> None:
        """Reset all neuron states (done automatically at the start of every forward pass)."""
        reset_states(self.network)

    # ------------------------------------------------------------------- plan
    def _plan(self) -> None:
        key = (id(self.network.graph), self._encoder.static)
        if self._plan_key == key:
            return
        modules = dict(self.network.named_modules())
        nodes = list(self.network.graph.nodes)
        # time-stepped layers (neurons, BNTT) change over time and keep state: never constant, never in the tail
        stepped = {n.name: n.op == "call_module" and isinstance(modules[n.target], TimeStepped) for n in nodes}
        variant: dict[str, bool] = {}
        for n in nodes:
            if n.op == "placeholder":
                variant[n.name] = not self._encoder.static
            elif n.op == "get_attr":
                variant[n.name] = False
            else:
                variant[n.name] = stepped[n.name] or any(variant[a.name] for a in n.all_input_nodes)
        # "tail": variant nodes with no time-stepped layer downstream; affine, so they run once on time-averaged inputs
        feeds_stepped: dict[str, bool] = {}
        for n in reversed(nodes):
            feeds_stepped[n.name] = any(stepped[u.name] or feeds_stepped[u.name] for u in n.users)
        const, body, tail = [], [], []
        for n in nodes:
            if n.op in ("placeholder", "output"):
                continue
            fn = modules[n.target] if n.op == "call_module" else n.target
            if n.op == "call_method":
                raise ValueError(f"method call {n.target!r} (node {n.name!r}) is not supported in simulation.")
            op = _Op(n, fn, stepped[n.name])
            if not variant[n.name]:
                const.append(op)
            elif stepped[n.name] or feeds_stepped[n.name]:
                body.append(op)
            else:
                tail.append(op)
        body_names = {op.name for op in body}
        if self._encoder.static is False:
            body_names.add(next(n.name for n in nodes if n.op == "placeholder"))
        # values produced in the body and read by the tail (or the output) are accumulated over time
        output_node = next(n for n in nodes if n.op == "output")
        readers = [op.node for op in tail] + [output_node]
        boundary = sorted({a.name for r in readers for a in r.all_input_nodes if a.name in body_names})
        # free body values after their last use inside the chunk
        last_use: dict[str, int] = {}
        for i, op in enumerate(body):
            for a in op.node.all_input_nodes:
                last_use[a.name] = i
        for name, i in last_use.items():
            if name in body_names and name not in boundary:
                body[i].free.append(name)
        # the rate-form pass of forward_flow runs every node once, in order; free each value after its last use
        # (the output's values excepted) so that only what autograd saved stays alive
        flow_ops = const + body + tail
        flow_last: dict[str, int] = {}
        for i, op in enumerate(flow_ops):
            for a in op.node.all_input_nodes:
                flow_last[a.name] = i
        keep = {a.name for a in output_node.all_input_nodes}
        self._flow_free: list[list[str]] = [[] for _ in flow_ops]
        for name, i in flow_last.items():
            if name not in keep:
                self._flow_free[i].append(name)
        # neurons whose input is a fresh tensor that nothing else reads (the output of a convolution, pooling or
        # linear layer with this neuron as its only user): their update may write its output into that tensor
        self._disposable_inputs = [
            op.fn
            for op in body
            if op.is_neuron
            and (src := op.node.args[0]).name in body_names
            and src.op == "call_module"
            and isinstance(modules[src.target], _FRESH_OUTPUT)
            and len(src.users) == 1
        ]
        self._const, self._body, self._tail = const, body, tail
        self._boundary = boundary
        self._output_node = output_node
        self._placeholder = next(n.name for n in nodes if n.op == "placeholder")
        self._plan_key = key

    # ---------------------------------------------------------------- forward
    def check_input(self, x: torch.Tensor) -> None:
        """Check that ``x`` fits the network before anything is simulated.

        Args:
            x: the input batch ``[B, C, *spatial]``.

        Raises:
            TypeError: when ``x`` is not a floating-point tensor.
            ValueError: when ``x`` has the wrong number of dimensions or channels, or holds NaN / infinite values.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"SpikingSimulator expects a torch.Tensor, got {type(x).__name__}.")
        if not x.is_floating_point():
            raise TypeError(
                f"SpikingSimulator expects a floating-point input tensor, got dtype {x.dtype}; pass a float tensor "
                "(e.g. x.float(), scaled as in training)."
            )
        if self.spatial_dims is not None and x.ndim != self.spatial_dims + 2:
            raise ValueError(
                f"expected input [B, C, *spatial] with {self.spatial_dims} spatial dimensions "
                f"({self.spatial_dims + 2} in all), got shape {tuple(x.shape)}."
            )
        if self.in_channels is not None and (x.ndim < 2 or x.shape[1] != self.in_channels):
            raise ValueError(f"expected {self.in_channels} input channel(s), got input of shape {tuple(x.shape)}.")
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(
                f"SpikingSimulator input holds {bad} NaN/infinite value(s) (shape {tuple(x.shape)}); expected finite "
                "values: a NaN input silences or saturates every neuron. Check the image it comes from."
            )

    def _chunk(self) -> int:
        if self.chunk_size is not None:
            if self.chunk_size < 1:
                raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}.")
            return min(self.chunk_size, self.num_steps)
        device = next(self.network.parameters()).device
        return 1 if device.type == "cpu" else min(16, self.num_steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Simulate ``num_steps`` steps on ``x`` (``[B, C, *spatial]``); returns the averaged readout.

        A MONAI ``MetaTensor`` input is simulated as a plain tensor (its per-op metadata handling would cost every
        step and keeps the compiled neuron update from running) and the readout gets its metadata back.
        """
        return _with_meta_of(x, self._simulate(_plain(x)))

    def _simulate(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        self._plan()
        for n in self._disposable_inputs:  # a hook may keep the input (threshold balancing's does)
            n.input_disposable = not n.has_forward_hooks()
        try:
            return self._run(x)
        finally:
            for n in self._disposable_inputs:
                n.input_disposable = False

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        self.reset()
        self._encoder.reset(x)
        self.last_input_shape = tuple(x.shape)
        self.input_spike_count = self._input_sum = None
        self._dropout_masks = {}
        T, batch = self.num_steps, x.shape[0]
        inv: dict[str, torch.Tensor] = {self._placeholder: x}
        for op in self._const:
            inv[op.name] = self._call(op, lambda a: inv[a.name])
        acc: dict[str, torch.Tensor] = {}
        chunk = self._chunk()
        for start in range(0, T, chunk):
            k = min(chunk, T - start)
            env: dict[str, torch.Tensor] = {}
            if not self._encoder.static:
                spikes = self._encoder(x, k)
                counts, total = spikes.detach().abs().sum(0), spikes.detach().sum(0)
                self.input_spike_count = counts if start == 0 else self.input_spike_count + counts
                self._input_sum = total if start == 0 else self._input_sum + total
                env[self._placeholder] = spikes.flatten(0, 1)

            def fold(a: torch.fx.Node) -> torch.Tensor:
                if a.name in env:
                    return env[a.name]
                v = inv[a.name]
                return v if k == 1 else v.repeat(k, *([1] * (v.ndim - 1)))

            for op in self._body:
                if op.is_stepped:
                    src = op.node.args[0]
                    if src.name in env:
                        seq = env[src.name].unflatten(0, (k, batch))
                    else:
                        seq = inv[src.name].unsqueeze(0).expand(k, *inv[src.name].shape)
                    env[op.name] = op.fn.multi_step(seq).flatten(0, 1)
                else:
                    env[op.name] = self._call(op, fold)
                for name in op.free:
                    env.pop(name, None)
            for name in self._boundary:  # in place: one pass per step
                s = env[name] if k == 1 else env[name].unflatten(0, (k, batch)).sum(0)
                if name not in acc:
                    acc[name] = s.clone() if k == 1 else s
                else:
                    acc[name].add_(s)
        tenv = dict(inv)
        tenv.update({name: v / T for name, v in acc.items()})
        for op in self._tail:
            tenv[op.name] = self._call(op, lambda a: tenv[a.name])
        return torch.fx.node.map_arg(self._output_node.args[0], lambda a: tenv[a.name])

    def _call(self, op: _Op, lookup) -> torch.Tensor:
        args = torch.fx.node.map_arg(op.node.args, lookup)
        kwargs = torch.fx.node.map_arg(op.node.kwargs, lookup)
        if op.is_dropout:
            return self._dropout(op, args[0])
        return op.fn(*args, **kwargs)

    def _dropout(self, op: _Op, x: torch.Tensor) -> torch.Tensor:
        """Dropout with one mask per sample, shared by all time steps (and by the flow pass)."""
        if not (self.training and op.fn.p > 0):
            return x
        batch = self.last_input_shape[0]
        mask = self._dropout_masks.get(op.name)
        if mask is None:
            with torch.no_grad():
                mask = op.fn(torch.ones_like(x[:batch]))
            self._dropout_masks[op.name] = mask
        reps = x.shape[0] // batch
        return x * (mask if reps == 1 else mask.repeat(reps, *([1] * (mask.ndim - 1))))

    def forward_flow(self, x: torch.Tensor) -> torch.Tensor:
        """Accumulated-spiking-flow pass for fine-tuning: same value as :meth:`forward`, memory independent of T.

        Simulates ``num_steps`` steps without a graph while every neuron accumulates its output flow, then runs
        one differentiable pass in rate form: each spiking layer outputs its measured flow / T (detached) with the
        straight-through gradient ``1[input > 0]`` at its time-averaged input current. Biases count once in that
        pass, exactly as in the averaged simulation.

        Example::

            loss = loss_fn(snn.forward_flow(images), labels)
            loss.backward()

        Raises:
            ValueError: the network has time-stepped layers other than neurons (e.g. BNTT): their output depends on
                the step, so no rate form exists; train it with ``method="bptt"``.
        """
        self._plan()
        others = sorted({type(op.fn).__name__ for op in self._body if op.is_stepped and not op.is_neuron})
        if others:
            raise ValueError(
                f"accumulated spiking flow needs a rate form of every layer, but {', '.join(others)} changes with the "
                "time step; train this network with method='bptt' (backpropagation through time)."
            )
        meta_src, x = x, _plain(x)
        neurons = list(self.neurons().values())
        for n in neurons:
            n.record_flow = True
        try:
            with torch.no_grad():
                self._simulate(x)
        finally:
            for n in neurons:
                n.record_flow = False
                if n.acc_output is not None:
                    n.v = None  # leaky neurons: the recorded flow replaces the membrane in the rate pass
        inp = x if self._encoder.static else self._input_sum / self.num_steps
        env: dict[str, torch.Tensor] = {self._placeholder: inp}
        for op, free in zip(self._const + self._body + self._tail, self._flow_free):
            if op.is_neuron:
                env[op.name] = op.fn.flow(env[op.node.args[0].name])
            else:
                env[op.name] = self._call(op, lambda a: env[a.name])
            for name in free:
                env.pop(name, None)
        return _with_meta_of(meta_src, torch.fx.node.map_arg(self._output_node.args[0], lambda a: env[a.name]))

    def extra_repr(self) -> str:
        return f"num_steps={self.num_steps}, encoder={self._encoder!r}, chunk_size={self.chunk_size}"


def _plain(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a plain tensor (a ``MetaTensor`` without its metadata, same storage and autograd graph)."""
    return x.as_tensor() if isinstance(x, MetaTensor) else x


def _with_meta_of(x: torch.Tensor, out: Any) -> Any:
    """``out`` with the metadata of ``x`` where ``x`` is a ``MetaTensor`` and ``out`` a tensor (as an ANN's output
    would carry it); otherwise ``out`` unchanged."""
    if isinstance(x, MetaTensor) and isinstance(out, torch.Tensor) and not isinstance(out, MetaTensor):
        return convert_to_dst_type(out, x)[0]
    return out
