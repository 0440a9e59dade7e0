"""ANN -> SNN conversion: convergence, normalization invariances, short-T behaviour, bad input."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn

from monai_snn.conversion import NORMALIZATIONS, Normalization, connection_wise, convert_to_snn, trace_ann
from monai_snn.networks import ConvertibleUNet, SpikingSimulator
from monai_snn.neurons import LIFNeuron

from conftest import dice


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@torch.no_grad()
def outputs(snn: SpikingSimulator, x: torch.Tensor) -> torch.Tensor:
    return snn(x)


# 1. convergence at long T --------------------------------------------------------------------------------------
@pytest.mark.parametrize("neuron", ["if", "multi_threshold"])
def test_converges_to_ann_2d_real(trained_ann, hippo_slices, neuron):
    _, _, vx, _ = hippo_slices
    x = vx[:12]
    with torch.no_grad():
        y = trained_ann(x)
    snn = convert_to_snn(trained_ann, [vx[12:44]], percentile=100, neuron=neuron, num_steps=512, encoding="static")
    assert isinstance(snn, SpikingSimulator)
    assert rel_err(outputs(snn, x), y) < 0.02


@pytest.mark.parametrize("neuron", ["if", "multi_threshold", "multi_level_rate"])
def test_converges_to_ann_3d(neuron):
    torch.manual_seed(0)
    ann = ConvertibleUNet(3, 1, 2, channels=(4, 8, 16)).eval()
    x = torch.rand(2, 1, 16, 16, 8)
    with torch.no_grad():
        y = ann(x)
    snn = convert_to_snn(ann, [x], percentile=100, neuron=neuron, num_steps=512)
    assert outputs(snn, x).shape == y.shape
    assert rel_err(outputs(snn, x), y) < 0.02


def test_ann_is_not_modified(trained_ann, hippo_slices):
    before = copy.deepcopy(trained_ann.state_dict())
    convert_to_snn(trained_ann, [hippo_slices[2][:8]], normalization="threshold_balancing", num_steps=4)
    for k, v in trained_ann.state_dict().items():
        assert torch.equal(v, before[k])
    assert any(isinstance(m, nn.ReLU) for m in trained_ann.modules())


# 2. function-preserving rescaling -------------------------------------------------------------------------------
def rescale_skip_producer(ann: ConvertibleUNet, factor: float) -> ConvertibleUNet:
    """Scale the last conv of level 0 (its output feeds the pool and the top skip connection) by ``factor`` and
    divide the matching input channels of both consumers: the ANN computes the same function."""
    out = copy.deepcopy(ann)
    c0 = out.channels[0]
    with torch.no_grad():
        out.encoder[0][2].weight.mul_(factor)
        out.encoder[0][2].bias.mul_(factor)
        out.encoder[1][0].weight.div_(factor)
        out.decoder[-1][0].weight[:, :c0].div_(factor)  # cat([skip, up]): the skip is the first part
    return out


def test_rescaling_invariance_connection_vs_layer(trained_ann, hippo_slices):
    _, _, vx, _ = hippo_slices
    x, calib = vx[:16], [vx[16:48]]
    scaled = rescale_skip_producer(trained_ann, 1 / 8)
    with torch.no_grad():
        y = trained_ann(x)
        assert torch.allclose(scaled(x), y, atol=1e-4)
    kw = dict(percentile=99.9, neuron="multi_threshold", num_steps=32)
    conn = outputs(convert_to_snn(trained_ann, calib, normalization="connection", **kw), x)
    conn_s = outputs(convert_to_snn(scaled, calib, normalization="connection", **kw), x)
    assert rel_err(conn_s, conn) < 1e-3
    layer = outputs(convert_to_snn(trained_ann, calib, normalization="layer", **kw), x)
    layer_s = outputs(convert_to_snn(scaled, calib, normalization="layer", **kw), x)
    assert rel_err(layer_s, layer) > 0.1  # layer-wise depends on how the ANN happens to be scaled...
    assert rel_err(layer_s, y) > 1.2 * rel_err(layer, y)  # ...and here degrades further
    assert rel_err(layer, y) > 10 * rel_err(conn, y)


def test_every_channel_of_every_part_is_scaled():
    torch.manual_seed(0)
    ann = ConvertibleUNet(2, 1, 1, channels=(3, 5, 7)).eval()
    x = torch.rand(4, 1, 16, 16)
    snn = convert_to_snn(ann, [x], normalization="connection", percentile=100)
    scales = snn.metadata["scales"]
    inputs = snn.metadata["synapse_inputs"]
    outputs_ = snn.metadata["synapse_outputs"]
    checked = 0
    for name, blocks in inputs.items():
        w_ann = ann.get_submodule(name).weight
        w_snn = snn.network.get_submodule(name).weight
        in_dim = 0 if isinstance(ann.get_submodule(name), nn.ConvTranspose2d) else 1
        lam_out = 1.0 if outputs_[name] is None else scales[outputs_[name]]
        expected = torch.empty(w_ann.shape[in_dim])
        for start, size, source in blocks:
            expected[start : start + size] = (1.0 if source is None else scales[source]) / lam_out
        shape = [1] * w_ann.ndim
        shape[in_dim] = -1
        assert torch.allclose(w_snn, w_ann * expected.reshape(shape), rtol=1e-5), name
        if len(blocks) > 1:  # a concatenation: the last channel of each part must carry its part's scale
            checked += 1
            for start, size, source in blocks:
                last = (w_snn.narrow(in_dim, start + size - 1, 1) / w_ann.narrow(in_dim, start + size - 1, 1))
                assert torch.allclose(last, torch.tensor(scales[source] / lam_out), rtol=1e-5), (name, source)
    assert checked == 2  # both decoder levels read a concatenation


# 3. short T -------------------------------------------------------------------------------------------------
def test_short_T_multi_threshold_and_half_potential(trained_ann, hippo_slices):
    _, _, vx, vy = hippo_slices
    calib = [vx[::4]]
    with torch.no_grad():
        y = trained_ann(vx)
    errs, dices = {}, {}
    for neuron in ("if", "multi_threshold"):
        for v0 in (0.0, 0.5):
            snn = convert_to_snn(trained_ann, calib, neuron=neuron, initial_potential=v0, num_steps=16)
            out = outputs(snn, vx)
            errs[neuron, v0], dices[neuron, v0] = rel_err(out, y), dice(out, vy)
    assert errs["multi_threshold", 0.0] < errs["if", 0.0]
    assert errs["multi_threshold", 0.5] < errs["if", 0.5]
    assert errs["if", 0.5] < errs["if", 0.0]
    assert errs["multi_threshold", 0.5] < errs["multi_threshold", 0.0]
    ann_dice = dice(y, vy)
    assert dices["multi_threshold", 0.5] > ann_dice - 0.02  # within 2 Dice points at T = 16
    assert dices["multi_threshold", 0.5] > dices["if", 0.0]


def test_num_steps_changeable_and_chunking_identical(trained_ann, hippo_slices):
    x = hippo_slices[2][:6]
    for encoding in ("static", "poisson_binary"):
        snn = convert_to_snn(trained_ann, [x], num_steps=8, encoding=encoding)
        ref = outputs(snn, x)
        for chunk in (2, 3, 8):
            snn.chunk_size = chunk
            assert torch.allclose(outputs(snn, x), ref, atol=1e-6), (encoding, chunk)
    snn.num_steps = 3
    assert outputs(snn, x).shape == ref.shape
    with pytest.raises(ValueError, match="num_steps"):
        snn.num_steps = 0


def test_meta_tensor_input_runs_plain_and_keeps_its_metadata(trained_ann, hippo_slices):
    """MONAI pipelines hand MetaTensors to the network: the simulation runs on the plain tensor (so the compiled
    neuron update works and no step pays for metadata), the readout and the flow pass carry the input's meta."""
    from monai.data import MetaTensor

    from monai_snn.neurons import set_fused_update
    from monai_snn.neurons.fused import _STATE

    x = hippo_slices[2][:2]
    snn = convert_to_snn(trained_ann, [x], num_steps=4)
    meta = MetaTensor(x.clone(), meta={"filename_or_obj": "case_7.nii.gz"})
    ref = outputs(snn, x)
    try:
        set_fused_update("auto")
        out = outputs(snn, meta)
        assert not _STATE["failed"]  # the MetaTensor did not reach the compiled kernel
    finally:
        set_fused_update(False)  # the suite runs eager (MONAI_SNN_FUSED=0 in conftest)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "case_7.nii.gz"
    assert torch.allclose(out.as_tensor(), ref, atol=1e-6)
    flow = snn.forward_flow(meta.clone().requires_grad_(True))
    assert isinstance(flow, MetaTensor) and flow.requires_grad and torch.allclose(flow.as_tensor(), ref, atol=1e-5)


@pytest.mark.parametrize("neuron", ["if", "multi_threshold"])
def test_compiled_simulation_equals_eager_bit_for_bit(trained_ann, hippo_slices, neuron):
    """The compiled update (membrane and spike counts in place, the output written into the convolution output it
    consumes, the readout accumulated in place) gives the eager simulation's readout and spike counts exactly, step by
    step and with steps folded into the batch, and leaves the caller's input and the neurons' flags as they were."""
    from monai_snn.neurons import set_fused_update
    from monai_snn.neurons.fused import _STATE

    x = hippo_slices[2][:4]
    snn = convert_to_snn(trained_ann, [x], neuron=neuron, initial_potential=0.5, num_steps=6)
    x_before = x.clone()
    results = {}
    try:
        for mode in (False, True):
            set_fused_update(mode)
            for chunk in (1, 3):
                snn.chunk_size = chunk
                with torch.no_grad():
                    out = snn(x)
                counts = [n.spike_count.clone() for n in snn.neurons().values()]
                results[mode, chunk] = (out, counts)
        assert not _STATE["failed"]
    finally:
        set_fused_update(False)  # the suite runs eager (MONAI_SNN_FUSED=0 in conftest)
    # every neuron but the first (whose input is the static first layer, reused each step) may overwrite its input
    assert 0 < len(snn._disposable_inputs) < len(snn.neurons())
    assert not any(n.input_disposable for n in snn.neurons().values())
    assert torch.equal(x, x_before)
    # a hook that keeps a layer's input (threshold balancing does) sees the input, not the output written over it
    neuron = snn._disposable_inputs[-1]
    seen = []
    handle = neuron.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    try:
        set_fused_update(True)
        snn.chunk_size = 1
        with torch.no_grad():
            snn(x)
    finally:
        set_fused_update(False)
        handle.remove()
    assert len(seen) == snn.num_steps and all(bool((s_ < 0).any()) for s_ in seen)  # currents, not spikes (>= 0)
    ref_out, ref_counts = results[False, 1]
    assert ref_out.abs().sum() > 0 and sum(float(c.sum()) for c in ref_counts) > 0
    for key, (out, counts) in results.items():
        assert torch.equal(out, ref_out), key
        assert all(torch.equal(a, b) for a, b in zip(counts, ref_counts)), key


def test_ternary_encoding_end_to_end(trained_ann, hippo_slices):
    x = hippo_slices[2][:8]
    snn = convert_to_snn(trained_ann, [x], num_steps=8, encoding="poisson_ternary")
    assert outputs(snn, 2 * x - 1).shape == x.shape
    with pytest.raises(ValueError, match="binary Poisson"):
        convert_to_snn(trained_ann, [x], num_steps=2, encoding="poisson_binary")(2 * x - 1)


def test_threshold_balancing_runs_and_is_close_at_long_T(trained_ann, hippo_slices):
    x = hippo_slices[2][:4]
    with torch.no_grad():
        y = trained_ann(x)
    snn = convert_to_snn(trained_ann, [x], normalization="threshold_balancing", percentile=100, num_steps=128)
    assert rel_err(outputs(snn, x), y) < 0.1
    assert len(snn.metadata["scales"]) == len(snn.neurons())


# bad input --------------------------------------------------------------------------------------------------
class MaxPoolNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.down = nn.MaxPool2d(2)
        self.head = nn.Conv2d(4, 1, 1)

    def forward(self, x):
        return self.head(self.down(self.act(self.conv(x))))


def test_max_pooling_is_named():
    with pytest.raises(ValueError, match=r"'down' \(MaxPool2d\).*average pooling"):
        trace_ann(MaxPoolNet())


def test_unsupported_module_is_named():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sigmoid(), nn.Conv2d(4, 1, 1))
    with pytest.raises(ValueError, match=r"'1' \(Sigmoid\) is not supported"):
        convert_to_snn(net, [torch.rand(1, 1, 8, 8)])


def test_batch_norm_is_folded_with_a_log_line(caplog):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 1))
    net.train()
    for _ in range(5):
        net(torch.rand(8, 1, 8, 8))  # fill running statistics
    net.eval()
    x = torch.rand(4, 1, 8, 8)
    with caplog.at_level(logging.INFO, logger="monai_snn.conversion.graph"):
        snn = convert_to_snn(net, [x], percentile=100, num_steps=256)
    assert "folded batch norm '1' into convolution '0'" in caplog.text
    with torch.no_grad():
        assert rel_err(snn(x), net(x)) < 0.02
    assert isinstance(net[1], nn.BatchNorm2d)  # the user's network keeps its batch norm


def test_batch_norm_not_after_conv():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 1))
    with pytest.raises(ValueError, match="batch norm can only be folded"):
        trace_ann(net.eval())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(thresholds=(1.0, 2.0)), "descending"),
        (dict(thresholds=(1.0, 0.0)), "positive"),
        (dict(percentile=0), r"percentile must be in \(0, 100\]"),
        (dict(percentile=100.5), r"percentile must be in \(0, 100\]"),
        (dict(normalization="global"), r"normalization: Unsupported option 'global'.*'threshold_balancing'"),
        (dict(neuron="lif2"), r"(?s)neuron: By 'lif2', did you mean 'lif'\?.*'multi_threshold'"),
        (dict(encoding="latency"), r"encoding: Unsupported option 'latency'.*'poisson_binary'"),
        (dict(surrogate="sigmiod"), r"(?s)surrogate: By 'sigmiod', did you mean 'sigmoid'\?.*'triangle'"),
        (dict(num_steps=0), "num_steps"),
        (dict(neuron="lif", leak=0), r"leak must be in \(0, 1\], got 0"),
        (dict(neuron="lif", leak=1.5), r"leak must be in \(0, 1\], got 1.5"),
        (dict(neuron="if", leak=0.9), r"leak=0.9 needs a leaky neuron \(neuron='lif'\)"),
    ],
)
def test_bad_parameters(kwargs, match):
    ann = ConvertibleUNet(2, 1, 1, channels=(2, 4))
    with pytest.raises(ValueError, match=match):
        convert_to_snn(ann, [torch.rand(1, 1, 8, 8)], **kwargs)


def test_empty_or_wrong_calibration_data():
    ann = ConvertibleUNet(2, 1, 1, channels=(2, 4))
    with pytest.raises(ValueError, match="calibration_data is empty"):
        convert_to_snn(ann, [])
    with pytest.raises(ValueError, match="without an 'image' key"):
        convert_to_snn(ann, [{"label": torch.rand(1, 1, 8, 8)}])
    snn = convert_to_snn(ann, [{"image": torch.rand(1, 1, 8, 8)}])  # MONAI-style dict batches work
    assert snn(torch.rand(1, 1, 8, 8)).shape == (1, 1, 8, 8)


def test_wrong_input_shape():
    ann = ConvertibleUNet(2, 3, 1, channels=(2, 4))
    snn = convert_to_snn(ann, [torch.rand(1, 3, 8, 8)], num_steps=2)
    with pytest.raises(ValueError, match="expected 3 input channel"):
        snn(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="2 spatial dimensions"):
        snn(torch.rand(1, 3, 8, 8, 8))
    with pytest.raises(ValueError, match="divisible by 2"):
        snn(torch.rand(1, 3, 9, 8))


def test_dead_layer_gives_warning_not_nan():
    ann = ConvertibleUNet(2, 1, 1, channels=(2, 4))
    with torch.no_grad():
        ann.encoder[1][0].bias.fill_(-1e3)  # this ReLU never fires on the calibration data
    x = torch.rand(2, 1, 8, 8)
    with pytest.warns(UserWarning, match=r"layer 'encoder_1_1'.*all calibration activations are zero"):
        snn = convert_to_snn(ann, [x], num_steps=4)
    out = snn(x)
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p).all() for p in snn.parameters())


# registries -------------------------------------------------------------------------------------------------
def test_normalization_registry(monkeypatch):
    assert {"layer", "connection", "threshold_balancing", "clip", "none"} <= set(NORMALIZATIONS)
    torch.manual_seed(0)
    ann = ConvertibleUNet(2, 1, 1, channels=(2, 4)).eval()
    x = torch.rand(2, 1, 8, 8)
    for name in NORMALIZATIONS:
        if name == "clip":  # reads QCFS clipping levels: tests/test_qcfs.py
            with pytest.raises(ValueError, match="has no QCFS activation"):
                convert_to_snn(ann, None, normalization=name)
            continue
        snn = convert_to_snn(ann, None if name == "none" else [x], normalization=name, num_steps=2)
        assert snn.metadata["normalization"] == name
        assert len(snn.metadata["scales"]) == (0 if name == "none" else len(snn.neurons())), name
    with pytest.raises(ValueError, match="did you mean 'connection'") as err:
        convert_to_snn(ann, [x], normalization="conection")
    for name in NORMALIZATIONS:
        assert repr(name) in str(err.value), name
    # registering one is one line
    monkeypatch.setitem(NORMALIZATIONS, "connection_max", Normalization(ann=lambda g, b, _: connection_wise(g, b, 100)))
    custom = convert_to_snn(ann, [x], normalization="connection_max", num_steps=4)
    reference = convert_to_snn(ann, [x], normalization="connection", percentile=100, num_steps=4)
    assert custom.metadata["scales"] == reference.metadata["scales"]
    torch.testing.assert_close(outputs(custom, x), outputs(reference, x), rtol=0, atol=0)


# leaky neurons ----------------------------------------------------------------------------------------------
def test_lif_without_leak_is_exactly_if():
    torch.manual_seed(0)
    ann = ConvertibleUNet(2, 1, 2, channels=(4, 8)).eval()
    calib, x = [torch.rand(4, 1, 16, 16)], torch.rand(2, 1, 16, 16)
    ref = convert_to_snn(ann, calib, neuron="if", num_steps=16)
    lif = convert_to_snn(ann, calib, neuron="lif", leak=1.0, num_steps=16)
    assert all(isinstance(m, LIFNeuron) and m.leak == 1.0 for m in lif.neurons().values())
    assert lif.metadata["leak"] == 1.0 and lif.metadata["neuron"] == "lif"
    torch.testing.assert_close(outputs(lif, x), outputs(ref, x), rtol=0, atol=0)
    assert lif.firing_rates() == ref.firing_rates()


def test_multi_level_conversion_warns_and_has_a_dead_zone():
    """Multi-level neurons keep Feng et al.'s leak 0.25 and hard reset: conversion warns, and the converted neuron
    never fires below a normalized input of 0.45 (membrane limit 0.6 = x / (1 - 0.25)), where IF fires at rate x.
    A trained U-Net's activations are mostly that small: the DRIVE 'ML + FT' variant fired 0.1 % and scored F1 0."""
    torch.manual_seed(0)
    ann = ConvertibleUNet(2, 1, 2, channels=(4, 8)).eval()
    with pytest.warns(UserWarning, match=r"neuron='multi_level' keeps its direct-training dynamics.*multi_threshold"):
        snn = convert_to_snn(ann, [torch.rand(4, 1, 16, 16)], neuron="multi_level", num_steps=16)
    ml = next(iter(snn.neurons().values()))
    assert ml.leak == 0.25 and ml.hard_reset
    from monai_snn.neurons import IFNeuron, MultiLevelNeuron

    x = torch.tensor([0.3, 0.44, 0.5, 1.0])
    for neuron, expected in ((MultiLevelNeuron(), [0.0, 0.0, None, None]), (IFNeuron(), [0.3, 0.44, 0.5, 1.0])):
        neuron.reset()
        rate = sum(neuron(x) for _ in range(100)) / 100
        for r, e in zip(rate.tolist(), expected):
            assert r > 0 if e is None else r == pytest.approx(e, abs=0.011), (type(neuron).__name__, rate)


def test_leaky_conversion_warns_loses_charge_and_fine_tunes():
    """With leak < 1 the membrane loses charge: on non-negative weights and inputs every layer's rate can only fall,
    so the readout is smaller than without leak; the flow pass gives the simulated value and gradients."""
    torch.manual_seed(0)
    ann = ConvertibleUNet(2, 1, 2, channels=(4, 8)).eval()
    with torch.no_grad():
        for p in ann.parameters():
            p.abs_()
    calib, x = [torch.rand(4, 1, 16, 16)], torch.rand(2, 1, 16, 16)
    full = outputs(convert_to_snn(ann, calib, neuron="lif", leak=1.0, num_steps=16), x)
    with pytest.warns(UserWarning, match=r"leak=0.9 < 1.*fall below the ANN's activations"):
        snn = convert_to_snn(ann, calib, neuron="lif", leak=0.9, num_steps=16)
    assert all(m.leak == 0.9 for m in snn.neurons().values())
    leaky = outputs(snn, x)
    assert torch.isfinite(leaky).all()
    assert (leaky <= full).all() and leaky.abs().mean() < 0.9 * full.abs().mean()
    snn.train()
    flow = snn.forward_flow(x)
    torch.testing.assert_close(flow, leaky, rtol=1e-5, atol=1e-4)
    flow.mean().backward()
    grads = [p.grad for p in snn.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_saved_snn_rebuilds_from_its_settings(tmp_path):
    """save_snn + build_snn: the rebuilt SNN (no calibration data) gives the saved SNN's output; settings carry T."""
    from monai_snn.conversion import build_snn, convert_with_settings, derived_settings, save_snn, snn_settings
    from monai_snn.networks import ConvertibleUNet

    torch.manual_seed(0)
    ann = ConvertibleUNet(2, 1, 1, channels=(4, 8)).eval()
    x = torch.rand(3, 1, 16, 16)
    settings = snn_settings(neuron="lif", thresholds=(1.0,), percentile=99.0, num_steps=5, leak=0.95, fold=2)
    with pytest.warns(UserWarning, match="leak"):
        snn = convert_with_settings(ann, [x], settings)
    save_snn(snn, tmp_path / "snn.pt", settings)
    with pytest.warns(UserWarning, match="leak"):
        rebuilt = build_snn(ConvertibleUNet(2, 1, 1, channels=(4, 8)), tmp_path / "snn.pt")
    assert rebuilt.num_steps == 5 and torch.allclose(rebuilt(x), snn(x))
    assert derived_settings(tmp_path / "snn.pt", num_steps=2)["leak"] == 0.95
    assert derived_settings(tmp_path / "snn.pt", num_steps=2)["num_steps"] == 2
    with pytest.raises(FileNotFoundError, match="settings file not found"):
        build_snn(ann, tmp_path / "missing.pt")


def test_convertible_unet_scripts_with_torchscript():
    """MONAI's ckpt_export scripts the bundles' ANNs: the U-Net (input check included) must compile and agree."""
    net = ConvertibleUNet(2, 1, 2, (4, 8, 16), dropout=0.1).eval()
    scripted = torch.jit.script(net)
    x = torch.rand(2, 1, 32, 24)
    torch.testing.assert_close(scripted(x), net(x))
    with pytest.raises(Exception, match=r"spatial size \[30, 24\] must be divisible by 4"):
        scripted(torch.rand(1, 1, 30, 24))
