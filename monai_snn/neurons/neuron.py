"""Spiking neurons: integrate-and-fire with soft reset, multi-threshold, leaky, signed (ternary) firing.

All neurons share one model. At each time step the membrane integrates the input, ``v = leak * v + x``, then
meets its thresholds from the highest to the lowest; at each level ``theta_k`` it fires at most one spike when
``v >= theta_k`` and subtracts ``theta_k`` (soft reset, "reset by subtraction"). The output of a step is the
threshold-weighted sum of its spikes, so an IF neuron outputs ``0`` or ``theta`` and a multi-threshold neuron with
levels (2, 1, 0.5, 0.25) outputs a multiple of 0.25 in ``[0, 3.75]``. With ``signed=True`` the neuron also fires
negative spikes when ``v <= -theta_k`` (ternary networks).

State (membrane potential, spike counts, accumulated flows) lives in plain attributes, never in ``state_dict``;
:func:`monai_snn.neurons.reset_states` resets a whole network in one call. Spike counts are summed over time and
over the batch (the first dimension), shape ``[1, *x.shape[1:]]``: what firing rates and the energy estimate need
(fan-out depends on the position, not on the sample), at a fraction of the memory of a per-sample count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn.modules import module as _nn_module

from monai_snn.neurons.fused import MAX_LEVELS, fused_failed, fused_update
from monai_snn.neurons.surrogate import Surrogate, make_surrogate
from monai_snn.neurons.temporal import TimeStepped

__all__ = ["SpikingNeuron", "IFNeuron", "MultiThresholdNeuron", "LIFNeuron"]


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    """Relative threshold levels as floats; raises a ``ValueError`` naming ``thresholds`` when they are unusable."""
    try:
        levels = tuple(float(t) for t in thresholds)
    except (TypeError, ValueError):
        raise ValueError(f"thresholds must be a sequence of numbers, got {thresholds!r}.") from None
    if len(levels) == 0:
        raise ValueError("thresholds must contain at least one value.")
    if any(not (t > 0 and math.isfinite(t)) for t in levels):
        raise ValueError(f"thresholds must all be positive and finite, got {levels}.")
    if any(a <= b for a, b in zip(levels, levels[1:])):
        raise ValueError(f"thresholds must be strictly descending (highest first), got {levels}.")
    return levels


class SpikingNeuron(TimeStepped):
    """A layer of integrate-and-fire neurons with one or several descending thresholds and soft reset.

    Args:
        thresholds: relative threshold levels, highest first; multiplied by ``v_threshold``.
        v_threshold: base threshold.
        initial_potential: the membrane starts at this fraction of the smallest threshold. ``0.0`` reproduces the
            papers; ``0.5`` turns the neuron's floor quantization into rounding.
        leak: membrane decay per step (``1.0``: IF, no leak; ``< 1``: LIF).
        signed: also fire negative spikes when ``v <= -theta`` (ternary networks).
        surrogate: surrogate gradient used when gradients flow: a name of
            :data:`~monai_snn.neurons.surrogate.SURROGATES` (``"triangle"``, ``"relative_triangle"``, ``"sigmoid"``)
            or a :class:`~monai_snn.neurons.surrogate.Surrogate`.
        detach_reset: do not backpropagate through the soft reset.
        count_spikes: count spikes per position (summed over the batch and time) for firing rates and the energy
            estimate. Counting adds a popcount of the fired levels and a per-element count to every step (about
            +40 % of a compiled multi-threshold update, +140 % eager: ``benchmarks/neuron_update.py``), so training
            loops that do not read rates may switch it off.
        record_flow: keep what spiking-flow fine-tuning needs (:meth:`flow`). Without leak nothing extra is
            stored: the accumulated output is recovered from the final membrane (soft reset conserves charge);
            with leak the output flow (threshold-weighted spikes summed over time) is accumulated.
        reset: ``"subtract"`` (soft reset, the default: the fired level is subtracted) or ``"zero"`` (hard reset:
            a neuron that fires ``v > theta`` goes back to 0). ``"zero"`` is the IF node of the Neuromorphic
            Intermediate Representation (NIR), which has no soft reset: :func:`monai_snn.export.nir_semantics`
            switches a network to it to measure what an NIR export costs. One threshold only, no gradients.

    Raises:
        ValueError: when ``thresholds`` is empty, not strictly descending or holds a non-positive or non-finite
            level, ``v_threshold`` is not positive and finite, ``initial_potential`` is not in ``[0, 1)`` or
            ``leak`` is not in ``(0, 1]``, ``reset`` is unknown or ``"zero"`` with several thresholds. The message
            names the parameter and its value. An unknown ``surrogate``
            name raises MONAI's ``look_up_option`` error listing the valid names.

    Example::

        neuron = SpikingNeuron(thresholds=(2.0, 1.0, 0.5, 0.25), initial_potential=0.5)
        out = torch.stack([neuron(x) for _ in range(8)]).mean(0)  # ~ x quantized to 0.25 steps
    """

    def __init__(
        self,
        thresholds: Sequence[float] = (1.0,),
        v_threshold: float = 1.0,
        initial_potential: float = 0.0,
        leak: float = 1.0,
        signed: bool = False,
        surrogate: str | Surrogate = "triangle",
        detach_reset: bool = False,
        count_spikes: bool = True,
        record_flow: bool = False,
        reset: str = "subtract",
    ) -> None:
        super().__init__()
        if not (v_threshold > 0 and math.isfinite(v_threshold)):
            raise ValueError(f"v_threshold must be positive and finite, got {v_threshold}.")
        if not 0.0 <= initial_potential < 1.0:
            raise ValueError(f"initial_potential must be in [0, 1), got {initial_potential}.")
        if not 0.0 < leak <= 1.0:
            raise ValueError(f"leak must be in (0, 1], got {leak}.")
        self.thresholds = _check_thresholds(thresholds)
        if reset not in ("subtract", "zero"):
            raise ValueError(f"reset must be 'subtract' or 'zero', got {reset!r}.")
        if reset == "zero" and len(self.thresholds) > 1:
            raise ValueError(
                f"reset='zero' (hard reset) is defined for one threshold, got thresholds {self.thresholds}."
            )
        self.reset_mode = reset
        self.v_threshold = float(v_threshold)
        self.initial_potential = float(initial_potential)
        self.leak = float(leak)
        self.signed = bool(signed)
        self.surrogate = make_surrogate(surrogate)
        self.detach_reset = bool(detach_reset)
        self.count_spikes = bool(count_spikes)
        self.record_flow = bool(record_flow)
        self.track_activity = False  # set by monai_snn.losses.ActivityRegularizedLoss
        # set by the simulator while it steps the network, for layers whose input tensor nothing reads after the
        # step (a fresh convolution output with one user, no hooks): the compiled update may write its output into it
        self.input_disposable = False
        self.flow_gradient = "relu"  # or "clip" (set by SpikingTrainer(flow_gradient=...)), see flow()
        self.reset()

    # ------------------------------------------------------------------ state
    @property
    def levels(self) -> tuple[float, ...]:
        """Absolute threshold levels (``thresholds * v_threshold``)."""
        return tuple(t * self.v_threshold for t in self.thresholds)

    @property
    def max_output(self) -> float:
        """Largest output of one step (the sum of the levels)."""
        return sum(self.levels)

    def reset(self) -> None:
        """Forget the membrane potential, spike counts and flows (start of a new sample)."""
        self.v: torch.Tensor | None = None
        self.spike_count = None
        self.acc_output: torch.Tensor | None = None
        self.activity: torch.Tensor | None = None  # differentiable output per step in smallest-level units
        self.num_steps = 0
        self._num_neurons = 0

    @property
    def spike_count(self) -> torch.Tensor | None:
        """Spikes per position since the last reset, summed over time and over the batch (``[1, *x.shape[1:]]``), or
        ``None`` when not counting. The compiled update counts per element (no reduction per step); the batch sum
        happens here, when the counts are read."""
        if self._spike_acc is not None:
            self._spike_total.add_(self._spike_acc.sum(0, keepdim=True))
            self._spike_acc = None
        return self._spike_total

    @spike_count.setter
    def spike_count(self, value: torch.Tensor | None) -> None:
        self._spike_total = value
        self._spike_acc = None

    @property
    def initial_value(self) -> float:
        """Membrane potential at the start of a sample (``initial_potential`` x the smallest level)."""
        return self.initial_potential * min(self.levels)

    def firing_rate(self) -> float:
        """Mean number of spikes per neuron and time step since the last reset (all levels counted)."""
        if self.spike_count is None or self.num_steps == 0 or self._num_neurons == 0:
            return 0.0
        return float(self.spike_count.sum()) / (self._num_neurons * self.num_steps)

    def _geometric(self) -> bool:
        levels = self.levels
        return all(abs(a / 2.0 - b) <= 1e-9 * a for a, b in zip(levels, levels[1:]))

    # ---------------------------------------------------------------- dynamics
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One time step: integrate ``x``, fire, soft-reset; returns the threshold-weighted spikes."""
        if self.v is None:
            self.v = torch.full_like(x, self.initial_value)
            self.spike_count = torch.zeros_like(x[:1], requires_grad=False) if self.count_spikes else None
            self._num_neurons = x.numel()
        elif self.v.shape != x.shape:
            raise RuntimeError(
                f"{type(self).__name__}: input shape {tuple(x.shape)} differs from the state shape "
                f"{tuple(self.v.shape)}; call monai_snn.neurons.reset_states(network) between samples."
            )
        if self.reset_mode == "zero":
            out = self._step_hard_reset(x)
        elif torch.is_grad_enabled() and (x.requires_grad or self.v.requires_grad):
            out = self._step_surrogate(x)
        elif self._geometric():
            out = self._step_quantized(x)
        else:
            out = self._step_levels(x)
        out = self._output(out)
        if self.record_flow and not self._flow_from_membrane():
            self._record_flow(out)
        self.num_steps += 1
        return out

    def _output(self, spikes: torch.Tensor) -> torch.Tensor:
        """What a step emits from its threshold-weighted spikes (the spikes themselves; subclasses may scale them)."""
        return spikes

    def _record_flow(self, out: torch.Tensor) -> None:
        """Add this step's output to the recorded flow that :meth:`flow` reads (when the membrane cannot give it)."""
        od = out.detach()
        self.acc_output = od.clone() if self.acc_output is None else self.acc_output.add_(od)

    def _flow_from_membrane(self) -> bool:
        """Whether :meth:`flow` can recover the output flow from the final membrane (no leak, halving levels)."""
        return self.leak == 1.0 and self._geometric() and self.reset_mode == "subtract"

    def _count(self, spikes: torch.Tensor) -> None:
        """Add this step's spikes (non-negative counts per element), summed over the batch, to ``spike_count``."""
        if self.spike_count is None:
            return
        # integer counts are summed as integers (converting them to float first costs more than the sum)
        self.spike_count.add_(spikes.sum(0, keepdim=True) if spikes.ndim > 1 else spikes.sum().reshape(1))

    def flow(self, x: torch.Tensor) -> torch.Tensor:
        """Rate-form pass of spiking-flow fine-tuning (after a simulation with ``record_flow=True``).

        The value is the neuron's accumulated output flow averaged over the simulated steps; the gradient is the
        straight-through, ReLU-like ``1[x > 0]`` at ``x``, the time-averaged input current (``x != 0`` for signed
        neurons); with ``flow_gradient = "clip"`` also ``0`` where ``x`` reaches :attr:`max_output`, the most a step
        can emit (the rate saturates: the clipped ReLU a QCFS ANN was trained with). Without leak and with halving
        levels the flow follows from charge conservation, ``sum_t out_t = T * x + v_0 - v_T``, rounded to the grid
        of the smallest level (every output is a multiple of it, and rounding stops float errors from growing
        through the layers): the final membrane is turned into the rate in place and nothing else is stored during
        the simulation. Otherwise (leak, other levels) the recorded flow is used. Either way the state is consumed
        and only a boolean mask is kept for the backward pass, so the memory of the pass is close to an ANN
        training step.

        Args:
            x: the time-averaged input current of this layer (computed by the rate-form pass of the network).
        """
        T = self.num_steps
        if T == 0 or (self.acc_output is None and (not self._flow_from_membrane() or self.v is None)):
            raise RuntimeError(f"{type(self).__name__}: no recorded flow; simulate with record_flow=True first.")
        if self.acc_output is not None:
            rate = self.acc_output.div_(T)
        else:
            if self.v.shape != x.shape:
                raise RuntimeError(
                    f"{type(self).__name__}: rate-pass input shape {tuple(x.shape)} differs from the simulated "
                    f"shape {tuple(self.v.shape)}."
                )
            lo = self.levels[-1]
            total = self.v.neg_().add_(self.initial_value).add_(x.detach(), alpha=T)  # sum of outputs
            rate = total.div_(lo).round_().mul_(lo).div_(T)
        self.acc_output = self.v = None
        upper = self.max_output if self.flow_gradient == "clip" else None
        out = _StraightThroughFlow.apply(x, rate, self.signed, upper)
        if self.track_activity:
            self.activity = self._activity(out)
        return out

    def _activity(self, out: torch.Tensor) -> torch.Tensor:
        """A step's output in units of the smallest level (what ``ActivityRegularizedLoss`` penalizes)."""
        return (out.abs() if self.signed else out) / self.levels[-1]

    def _integrate(self, x: torch.Tensor, inplace: bool) -> torch.Tensor:
        v = self.v
        if self.leak != 1.0:
            v = v.mul_(self.leak) if inplace else v * self.leak
        return v.add_(x) if inplace else v + x

    def _step_quantized(self, x: torch.Tensor) -> torch.Tensor:
        """Fast path without gradients for halving levels: greedy firing = clamped floor quantization.

        ``floor`` + ``clamp`` measured about 5x faster than ``(v >= theta).to(dtype)`` on CPU (no bool tensor), and
        the spike count uses an arithmetic popcount instead of a table lookup (integer indexing is slow).
        """
        fn = fused_update(x.device) if len(self.thresholds) <= MAX_LEVELS else None
        if fn is not None and not x.requires_grad:
            try:
                return self._step_fused(fn, x)
            except Exception as e:  # noqa: BLE001 - any compiler / runtime failure falls back to eager
                fused_failed(e)
        v = self._integrate(x, inplace=True)
        levels = self.levels
        lo, n = levels[-1], len(levels)
        qmax = float(2**n - 1)
        # v / lo in one in-place pass: multiplying by 1 / lo is exact when lo is a power of two (the converted
        # networks' 0.25), otherwise divide so that v == k * lo still lands exactly on level k
        exact = math.frexp(lo)[0] == 0.5
        if self.signed:
            a = v.abs()
            q = (a.mul_(1.0 / lo) if exact else a.div_(lo)).floor_().clamp_(max=qmax).mul_(torch.sign(v))
        elif lo == 1.0:
            q = torch.floor(v).clamp_(0.0, qmax)
        else:
            q = (torch.mul(v, 1.0 / lo) if exact else torch.div(v, lo)).floor_().clamp_(0.0, qmax)
        if self.spike_count is not None:
            mag = q.abs() if self.signed else q
            self._count(mag if n == 1 else _popcount(mag, n))
        out = q if lo == 1.0 else q.mul_(lo)  # q is not needed any more: scale it in place
        v.sub_(out)
        self.v = v
        return out

    def _step_fused(self, fn, x: torch.Tensor) -> torch.Tensor:
        """:meth:`_step_quantized` as one compiled kernel (:mod:`monai_snn.neurons.fused`); same values. The membrane
        and the per-element spike counts are updated in place; the output goes into ``x`` when the simulator marked
        this layer's input as read by nobody else (``input_disposable``), else into a new tensor."""
        consts = getattr(self, "_fused_consts", None)
        if consts is None or consts[0] != (self.levels, self.leak, x.dtype):
            n = len(self.levels)
            tensors = (torch.tensor(v, dtype=x.dtype) for v in (self.leak, self.levels[-1], float(2**n - 1)))
            consts = ((self.levels, self.leak, x.dtype), n, *tensors)
            self._fused_consts = consts
        _, n, leak, lo, qmax = consts
        update, update_into = fn
        if self._spike_total is None:
            args = (leak, lo, qmax, self.signed, None)
        else:  # per element, in the kernel; batch-summed when read (spike_count)
            if self._spike_acc is None:
                self._spike_acc = torch.zeros_like(x)
            args = (leak, lo, qmax, self.signed, self._spike_acc, n)
        if self.input_disposable and x.is_contiguous():
            update_into(self.v, x, *args)
            return x
        out = torch.empty_like(x)
        update(self.v, x, out, *args)
        return out

    def has_forward_hooks(self) -> bool:
        """Whether a forward hook (of this layer or global) may hold a step's input: the simulator then never lets
        the update write its output into the input."""
        return bool(
            self._forward_pre_hooks
            or self._forward_hooks
            or getattr(_nn_module, "_global_forward_pre_hooks", None)
            or getattr(_nn_module, "_global_forward_hooks", None)
        )

    def _step_hard_reset(self, x: torch.Tensor) -> torch.Tensor:
        """One threshold, hard reset (NIR's IF): fire where ``v > theta`` (strictly), then set ``v`` to 0 there."""
        if torch.is_grad_enabled() and (x.requires_grad or self.v.requires_grad):
            raise NotImplementedError(
                f"{type(self).__name__}: reset='zero' has no surrogate gradient; train with reset='subtract'."
            )
        v = self._integrate(x, inplace=True)
        theta = self.levels[0]
        spikes = v.gt(theta).to(v.dtype)
        if self.signed:
            spikes.sub_(v.lt(-theta).to(v.dtype))
        if self.spike_count is not None:
            self._count(spikes.abs() if self.signed else spikes)
        self.v = v.mul_(1.0 - spikes.abs())
        return spikes.mul_(theta)

    def _step_levels(self, x: torch.Tensor) -> torch.Tensor:
        """Level-by-level firing without gradients (any descending thresholds)."""
        spikes, _, out, v = _fire_levels(self._integrate(x, inplace=True), self.levels, self.signed)
        if self.spike_count is not None:
            self._count(_spike_count(spikes))
        self.v = v
        return out

    def _step_surrogate(self, x: torch.Tensor) -> torch.Tensor:
        """Level-by-level firing with surrogate gradients (BPTT), as one autograd function per step.

        The function saves only the integrated membrane and recomputes the level chain in its backward pass, so a
        step keeps one tensor per layer for backpropagation instead of one per level (a quarter of the memory with
        four levels). Gradients are those of the plain level loop (tested against it).
        """
        u = self._integrate(x, inplace=False)
        out, v, spikes = _SurrogateStep.apply(
            u, self.levels, self.surrogate, self.signed, self.detach_reset, self.spike_count is not None
        )
        if spikes is not None:
            self._count(spikes)
        self.v = v
        if self.track_activity:  # running mean over the steps of this sample
            a, n = self._activity(out), self.num_steps
            self.activity = a if self.activity is None else self.activity * (n / (n + 1)) + a / (n + 1)
        return out

    def extra_repr(self) -> str:
        s = f"thresholds={self.thresholds}, v_threshold={self.v_threshold:g}"
        s += f", initial_potential={self.initial_potential}"
        if self.leak != 1.0:
            s += f", leak={self.leak}"
        if self.signed:
            s += ", signed=True"
        if self.reset_mode != "subtract":
            s += f", reset={self.reset_mode!r}"
        return s


def _fire_levels(
    u: torch.Tensor, levels: Sequence[float], signed: bool
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Greedy firing from the highest level: spikes and membranes before each level, output and final membrane."""
    spikes, membranes = [], []
    v, out = u, torch.zeros_like(u)
    for theta in levels:
        s = (v >= theta).to(u.dtype)
        if signed:
            s = s - (v <= -theta).to(u.dtype)
        membranes.append(v)
        spikes.append(s)
        v = v - theta * s
        out = out + theta * s
    return spikes, membranes, out, v


def _spike_count(spikes: list[torch.Tensor]) -> torch.Tensor:
    """Spikes per element over all levels (signed spikes counted by magnitude)."""
    count = spikes[0].abs()
    for s in spikes[1:]:
        count.add_(s.abs())
    return count


class _SurrogateStep(torch.autograd.Function):
    """One multi-level firing step ``u -> (output, membrane after reset)`` with surrogate gradients.

    Forward: the greedy level loop; also returns the number of spikes per element (not differentiable; ``None``
    unless ``count``).
    Backward: the level loop's chain rule in reverse, with ``ds/du`` from the surrogate (``g(u, theta) +
    g(-u, theta)`` when signed) and no gradient through the reset when ``detach_reset``. Only ``u`` is saved.
    """

    @staticmethod
    def forward(ctx, u, levels, surrogate, signed, detach_reset, count):  # type: ignore[override]
        ctx.save_for_backward(u)
        ctx.levels, ctx.surrogate, ctx.signed, ctx.detach_reset = levels, surrogate, signed, detach_reset
        spikes, _, out, v = _fire_levels(u, levels, signed)
        if not count:
            return out, v, None
        counts = _spike_count(spikes)
        ctx.mark_non_differentiable(counts)
        return out, v, counts

    @staticmethod
    def backward(ctx, grad_out, grad_v, _grad_count):  # type: ignore[override]
        (u,) = ctx.saved_tensors
        _, membranes, _, _ = _fire_levels(u, ctx.levels, ctx.signed)
        g_out = torch.zeros_like(u) if grad_out is None else grad_out
        g_u = torch.zeros_like(u) if grad_v is None else grad_v
        for theta, v in zip(reversed(ctx.levels), reversed(membranes)):
            ds = ctx.surrogate.grad(v, theta)
            if ctx.signed:
                ds = ds + ctx.surrogate.grad(-v, theta)
            g_s = theta * g_out if ctx.detach_reset else theta * (g_out - g_u)
            g_u = g_u + g_s * ds
        return g_u, None, None, None, None, None


class _StraightThroughFlow(torch.autograd.Function):
    """Value: the measured rate; gradient: ``grad * 1[x > 0]`` (``1[x != 0]`` when signed), and with ``upper``
    also ``0`` where the input current reaches the largest output of a step (the rate saturates there)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x: torch.Tensor, rate: torch.Tensor, signed: bool, upper: float | None
    ) -> torch.Tensor:
        mask = x != 0 if signed else x > 0
        if upper is not None:
            mask &= (x.abs() if signed else x) < upper
        ctx.save_for_backward(mask)
        return rate.detach()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return grad * mask, None, None, None


def _popcount(q: torch.Tensor, n: int) -> torch.Tensor:
    """Number of set bits of the integer-valued float tensor ``q`` in ``[0, 2**n)``: ``q - sum_k floor(q / 2**k)``.

    For ``n <= 8`` the identity runs on ``uint8`` shifts (about 3x faster than in floats on CPU: a quarter of the
    memory traffic); the result is ``uint8`` then.
    """
    if n <= 8:
        q8 = q.to(torch.uint8)
        count = q8.clone()
        tmp = torch.empty_like(q8)
        for k in range(1, n):
            count.sub_(torch.bitwise_right_shift(q8, k, out=tmp))
        return count
    count = q.clone()
    tmp = torch.empty_like(q)
    for k in range(1, n):
        torch.mul(q, 0.5**k, out=tmp).floor_()
        count.sub_(tmp)
    return count


class IFNeuron(SpikingNeuron):
    """Integrate-and-fire neuron with one threshold and soft reset.

    Args:
        v_threshold: firing threshold.
        kwargs: see :class:`SpikingNeuron`.

    Example::

        neuron = IFNeuron(v_threshold=1.0, initial_potential=0.5)
    """

    def __init__(self, v_threshold: float = 1.0, **kwargs) -> None:
        super().__init__(thresholds=(1.0,), v_threshold=v_threshold, **kwargs)


class MultiThresholdNeuron(SpikingNeuron):
    """Multi-threshold neuron of Spiking-UNet: descending thresholds, one spike per level per step.

    Args:
        thresholds: relative levels, highest first (default ``(2.0, 1.0, 0.5, 0.25)``), times ``v_threshold``.
        v_threshold: base threshold.
        kwargs: see :class:`SpikingNeuron`.

    Example::

        neuron = MultiThresholdNeuron(thresholds=(2.0, 1.0, 0.5, 0.25), initial_potential=0.5)
    """

    def __init__(
        self, thresholds: Sequence[float] = (2.0, 1.0, 0.5, 0.25), v_threshold: float = 1.0, **kwargs
    ) -> None:
        super().__init__(thresholds=thresholds, v_threshold=v_threshold, **kwargs)


class LIFNeuron(SpikingNeuron):
    """Leaky integrate-and-fire neuron, ``v = leak * v + x``, with soft reset.

    Used by direct-training baselines, and by ``convert_to_snn(..., neuron="lif", leak=...)``: with ``leak < 1``
    the membrane loses charge every step, so firing rates fall below the ANN's activations (approximate
    conversion); ``leak=1.0`` is exactly the IF neuron.

    Args:
        leak: membrane decay factor per step, in ``(0, 1]``.
        v_threshold: firing threshold.
        kwargs: see :class:`SpikingNeuron`.

    Example::

        neuron = LIFNeuron(leak=0.9, surrogate="sigmoid")
    """

    def __init__(self, leak: float = 0.9, v_threshold: float = 1.0, **kwargs) -> None:
        super().__init__(thresholds=kwargs.pop("thresholds", (1.0,)), v_threshold=v_threshold, leak=leak, **kwargs)
