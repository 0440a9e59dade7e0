"""Neuron dynamics: soft reset, multi-threshold quantization, initial potential, state handling, surrogates."""

from __future__ import annotations

import functools

import pytest
import torch

from monai_snn.neurons import (
    NEURON_TYPES,
    NEURONS,
    SURROGATES,
    IFNeuron,
    LIFNeuron,
    MultiThresholdNeuron,
    RelativeTriangleSurrogate,
    SpikingNeuron,
    Surrogate,
    TriangleSurrogate,
    make_neuron,
    make_surrogate,
    reset_states,
    surrogate_from_name,
)


def run(neuron: SpikingNeuron, x: torch.Tensor, steps: int) -> torch.Tensor:
    neuron.reset()
    return torch.stack([neuron(x) for _ in range(steps)])


def test_if_soft_reset_rate_matches_input():
    x = torch.linspace(0, 1, 101)
    out = run(IFNeuron(), x, 200)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    # soft reset: after T steps, T * x - (spikes) stays in [0, 1): floor quantization of the rate
    assert torch.allclose(out.sum(0), torch.floor(200 * x + 1e-4), atol=1.0)
    assert (out.mean(0) - x).abs().max() <= 1 / 200 + 1e-6


def test_multi_threshold_one_step_is_quantized_relu():
    x = torch.linspace(-1, 5, 601)
    out = run(MultiThresholdNeuron(), x, 1)[0]
    expected = torch.clamp(torch.floor(x / 0.25) * 0.25, 0.0, 3.75)
    assert torch.equal(out, expected)


def test_fast_path_equals_level_by_level():
    torch.manual_seed(0)
    x = torch.randn(4, 8, 16) * 1.5
    for kw in [dict(), dict(signed=True), dict(initial_potential=0.5), dict(leak=0.9)]:
        fast = MultiThresholdNeuron(**kw)
        slow = MultiThresholdNeuron(**kw)
        slow._geometric = lambda: False  # force the generic level loop
        a, b = run(fast, x, 12), run(slow, x, 12)
        assert torch.allclose(a, b), kw
        assert torch.equal(fast.spike_count, slow.spike_count), kw


def test_initial_potential_turns_floor_into_rounding():
    x = torch.full((1000,), 0.7)
    zero = run(IFNeuron(initial_potential=0.0), x, 4).mean(0)
    half = run(IFNeuron(initial_potential=0.5), x, 4).mean(0)
    assert torch.allclose(zero, torch.tensor(0.5))  # floor(2.8) / 4
    assert torch.allclose(half, torch.tensor(0.75))  # round(2.8) / 4
    mt = MultiThresholdNeuron(initial_potential=0.5)
    run(mt, x, 1)
    assert mt.v is not None and mt.initial_potential * 0.25 == 0.125


def test_signed_firing_and_spike_counts():
    x = torch.tensor([[-0.6, 0.0, 0.6]])
    n = IFNeuron(signed=True)
    out = run(n, x, 10)
    assert out[..., 0].min() == -1 and out[..., 2].max() == 1 and out[..., 1].abs().sum() == 0
    assert n.spike_count.tolist() == [[6.0, 0.0, 6.0]]
    assert n.firing_rate() == pytest.approx(12 / 30)
    # counts are summed over the batch (first) dimension; the rate is per neuron of every sample
    run(n, torch.cat([x, x, -x]), 10)
    assert n.spike_count.tolist() == [[18.0, 0.0, 18.0]]
    assert n.firing_rate() == pytest.approx(36 / 90)


def test_lif_leaks():
    x = torch.full((1,), 0.3)
    assert run(LIFNeuron(leak=0.5), x, 50).sum() == 0  # 0.3 / (1 - 0.5) = 0.6 < 1: never fires
    assert run(IFNeuron(), x, 50).sum() > 0


def test_state_not_in_state_dict_and_one_call_resets():
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), IFNeuron(), torch.nn.Linear(4, 4), MultiThresholdNeuron())
    net(torch.rand(2, 4))
    assert set(net.state_dict()) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert net[1].v is not None and net[3].v is not None
    reset_states(net)
    assert net[1].v is None and net[3].v is None and net[3].num_steps == 0
    with pytest.raises(RuntimeError, match="reset_states"):
        net[1](torch.rand(2, 4))
        net[1](torch.rand(3, 4))


def test_surrogate_gradients():
    u = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.5], requires_grad=True)
    s = TriangleSurrogate(alpha=0.3).spike(u, 1.0)
    s.sum().backward()
    assert s.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert torch.allclose(u.grad, 0.3 * torch.clamp(1 - (u.detach() - 1).abs(), min=0))
    u.grad = None
    RelativeTriangleSurrogate().spike(u, 2.0).sum().backward()
    assert torch.allclose(u.grad, torch.clamp(1 - ((u.detach() - 2) / 2).abs(), min=0))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(thresholds=(1.0, 2.0)), "descending"),
        (dict(thresholds=(1.0, 0.0)), "positive"),
        (dict(thresholds=(1.0, -0.5)), "positive"),
        (dict(thresholds=()), "at least one"),
        (dict(v_threshold=0.0), "v_threshold"),
        (dict(initial_potential=1.5), "initial_potential"),
        (dict(leak=0.0), "leak"),
    ],
)
def test_bad_neuron_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpikingNeuron(**kwargs)


def test_make_neuron():
    assert isinstance(make_neuron("if"), IFNeuron)
    assert make_neuron("multi_threshold", thresholds=(4, 2, 1)).levels == (4.0, 2.0, 1.0)
    assert make_neuron("lif", leak=0.8).leak == 0.8
    with pytest.raises(ValueError, match=r"neuron: Unsupported option 'izhikevich'.*'multi_threshold'"):
        make_neuron("izhikevich")


def assert_near_miss_rejected(make, near_miss: str, closest: str, registry: dict) -> None:
    """MONAI's look_up_option error: the closest registered name and every valid name."""
    with pytest.raises(ValueError, match=f"did you mean '{closest}'") as err:
        make(near_miss)
    for name in registry:
        assert repr(name) in str(err.value), name


def test_neuron_registry():
    assert NEURON_TYPES is NEURONS  # the former name is the same registry
    for name, factory in NEURONS.items():
        extra = {"num_channels": 2} if name == "real_spike" else {}  # per-channel amplitudes need the channels
        neuron = make_neuron(name, thresholds=(2.0, 1.0), initial_potential=0.5, **extra)
        built = factory if isinstance(factory, type) else SpikingNeuron  # a function factory builds some neuron
        assert isinstance(neuron, built) and neuron.initial_potential == 0.5, name
    assert_near_miss_rejected(make_neuron, "multi_treshold", "multi_threshold", NEURONS)


def test_surrogate_registry(monkeypatch):
    assert surrogate_from_name is make_surrogate  # the former name still works
    for name, factory in SURROGATES.items():
        assert isinstance(make_surrogate(name), factory), name
        assert isinstance(SpikingNeuron(surrogate=name).surrogate, factory), name
    custom = TriangleSurrogate(alpha=0.3)
    assert make_surrogate(custom) is custom
    assert_near_miss_rejected(make_surrogate, "sigmiod", "sigmoid", SURROGATES)
    with pytest.raises(ValueError, match=r"(?s)surrogate: By 'triangel'.*'relative_triangle'"):
        SpikingNeuron(surrogate="triangel")
    # registering is one line, and a partial of an IF class still drops ``thresholds``
    monkeypatch.setitem(SURROGATES, "steep_sigmoid", functools.partial(SURROGATES["sigmoid"], alpha=10.0))
    monkeypatch.setitem(NEURONS, "signed_if", functools.partial(IFNeuron, signed=True))
    neuron = make_neuron("signed_if", thresholds=(2.0, 1.0), surrogate="steep_sigmoid")
    assert neuron.signed and neuron.thresholds == (1.0,) and neuron.surrogate.alpha == 10.0
    assert isinstance(neuron.surrogate, Surrogate)


@pytest.mark.parametrize(
    "make",
    [
        lambda: IFNeuron(initial_potential=0.5),
        lambda: MultiThresholdNeuron(initial_potential=0.5, v_threshold=0.7),
        lambda: MultiThresholdNeuron(signed=True),
        lambda: LIFNeuron(leak=0.8),
    ],
)
def test_flow_value_is_the_mean_output(make):
    """The rate pass returns the time-averaged output (from the final membrane without leak, from the recorded
    flow with leak) and passes gradients where the mean input current is positive (non-zero when signed)."""
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(13, 4, 3, 5, generator=gen)
    n = make()
    n.record_flow = True
    with torch.no_grad():
        mean_out = torch.stack([n(x) for x in xs]).mean(0)
    assert (n.acc_output is not None) == (not n._flow_from_membrane())
    x_bar = xs.mean(0).requires_grad_()
    rate = n.flow(x_bar)
    torch.testing.assert_close(rate, mean_out, rtol=0, atol=1e-5)
    assert n.v is None and n.acc_output is None  # state consumed
    rate.sum().backward()
    expected = (x_bar != 0) if n.signed else (x_bar > 0)
    assert torch.equal(x_bar.grad, expected.float())
    with pytest.raises(RuntimeError, match="no recorded flow"):
        n.flow(x_bar)


def test_count_spikes_off_keeps_dynamics():
    x = torch.rand(2, 3, 4) * 3
    on, off = MultiThresholdNeuron(), MultiThresholdNeuron(count_spikes=False)
    assert torch.equal(run(on, x, 7), run(off, x, 7))
    assert off.spike_count is None and on.spike_count.shape == (1, 3, 4)


def _level_loop(n: SpikingNeuron, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain autograd level loop (what the fused BPTT step must reproduce, values and gradients)."""
    v = torch.full_like(xs[0], n.initial_value)
    outs = []
    for x in xs:
        v = v * n.leak + x
        out = torch.zeros_like(v)
        for theta in n.levels:
            s = n.surrogate.spike(v, theta)
            if n.signed:
                s = s - n.surrogate.spike(-v, theta)
            v = v - theta * (s.detach() if n.detach_reset else s)
            out = out + theta * s
        outs.append(out)
    return torch.stack(outs), v


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("surrogate", ["sigmoid", "triangle"])
@pytest.mark.parametrize(
    "make",
    [lambda **k: MultiThresholdNeuron(v_threshold=0.7, **k), lambda **k: IFNeuron(**k), lambda **k: LIFNeuron(leak=0.8, **k)],
)
def test_bptt_step_matches_level_loop(make, signed, detach_reset, surrogate):
    torch.manual_seed(0)
    xs = (torch.randn(7, 2, 3, 4, dtype=torch.float64) * 1.5).requires_grad_()
    w = torch.randn(7, 2, 3, 4, dtype=torch.float64)
    n = make(signed=signed, detach_reset=detach_reset, surrogate=surrogate, initial_potential=0.5)
    n.reset()
    outs = torch.stack([n(x) for x in xs])
    (grad,) = torch.autograd.grad((outs * w).sum() + 0.3 * n.v.sum(), xs)  # through outputs and the membrane
    ref_out, ref_v = _level_loop(n, xs)
    (ref_grad,) = torch.autograd.grad((ref_out * w).sum() + 0.3 * ref_v.sum(), xs)
    assert torch.equal(outs, ref_out) and ref_grad.abs().sum() > 0
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)
    if len(n.levels) == 1:  # one spike per non-zero output
        assert n.spike_count.sum() == ref_out.detach().ne(0).sum()


def test_bptt_without_spike_counting():
    """Switching counting off skips the count in the BPTT step; values and gradients stay the same."""
    xs = (torch.randn(5, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2).requires_grad_()
    results = []
    for count in (True, False):
        n = MultiThresholdNeuron(count_spikes=count)
        outs = torch.stack([n(x) for x in xs])
        results.append((outs, torch.autograd.grad(outs.sum(), xs)[0]))
        assert (n.spike_count is None) == (not count)
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"thresholds": (2.0, 1.0, 0.5, 0.25), "initial_potential": 0.5},  # the converted networks' neuron
        {"thresholds": (3.0, 1.5, 0.75), "signed": True, "leak": 0.9, "count_spikes": False},  # divide, leak, sign
        {"v_threshold": 0.7},  # IF: one level, divide
        {"signed": True},  # ternary IF
    ],
)
def test_compiled_update_equals_eager_bit_for_bit(kwargs):
    from monai_snn.neurons import set_fused_update
    from monai_snn.neurons.fused import _STATE, fused_update

    torch.manual_seed(0)
    xs = [torch.randn(3, 4, 6, 5) * 2 for _ in range(6)]
    outs = {}
    try:
        for mode in (False, True):
            set_fused_update(mode)
            n = SpikingNeuron(**kwargs)
            with torch.no_grad():
                ys = [n(x) for x in xs[:3]]
                mid = None if n.spike_count is None else n.spike_count.clone()  # read mid-sample: counting goes on
                ys += [n(x) for x in xs[3:]]
                outs[mode] = (ys, n.v.clone(), None if n.spike_count is None else n.spike_count.clone(), mid)
        assert fused_update(torch.device("cpu")) is not None and not _STATE["failed"]  # the kernel did run
    finally:
        set_fused_update(False)  # the suite runs eager (MONAI_SNN_FUSED=0 in conftest)
    (o0, v0, c0, m0), (o1, v1, c1, m1) = outs[False], outs[True]
    assert all(torch.equal(a, b) for a, b in zip(o0, o1))
    assert torch.equal(v0, v1)
    assert (c0 is None and c1 is None) or (torch.equal(c0, c1.to(c0.dtype)) and torch.equal(m0, m1))
    assert c0 is None or not torch.equal(c0, m0)  # the steps after the mid-sample read were counted too
    with pytest.raises(ValueError, match="fused update mode"):
        set_fused_update("fast")
