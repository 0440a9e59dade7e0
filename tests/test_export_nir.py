"""NIR export: exact round trip through a second simulator (norse via nirtorch), refusals, the hard-reset neuron."""

from __future__ import annotations

import warnings

import pytest
import torch

from monai_snn.conversion import convert_to_snn
from monai_snn.export import NIRExportError, NIRSimulator, nir_semantics, to_nir, write_nir
from monai_snn.export.__main__ import main
from monai_snn.networks import ConvertibleUNet
from monai_snn.neurons import IFNeuron, MultiThresholdNeuron
from tests.conftest import REPO, dice


def _quiet_export(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return to_nir(*args, **kwargs)


def test_hard_reset_neuron_by_hand():
    soft, hard = IFNeuron(v_threshold=1.0), IFNeuron(v_threshold=1.0, reset="zero")
    xs = [0.6, 0.6, 0.6, 0.4, 0.4]
    with torch.no_grad():
        out_soft = [float(soft(torch.tensor([x]))) for x in xs]
        out_hard = [float(hard(torch.tensor([x]))) for x in xs]
    assert out_soft == [0.0, 1.0, 0.0, 1.0, 0.0]  # 0.6, 1.2 -> 0.2, 0.8, 1.2 -> 0.2, 0.6
    assert out_hard == [0.0, 1.0, 0.0, 0.0, 1.0]  # 0.6, 1.2 -> 0, 0.6, 1.0 (not > 1), 1.4 -> 0
    with pytest.raises(ValueError, match="reset='zero'.*one threshold"):
        MultiThresholdNeuron(reset="zero")
    with pytest.raises(ValueError, match="reset must be"):
        IFNeuron(reset="soft")
    with pytest.raises(NotImplementedError, match="reset='zero'"):
        IFNeuron(reset="zero")(torch.ones(2, requires_grad=True))


def test_round_trip_is_exact_and_skips_and_transposed_convs_survive(tmp_path):
    torch.manual_seed(0)
    ann = ConvertibleUNet(2, 2, 3, (4, 8, 16), dropout=0.1).eval()
    x = torch.rand(3, 2, 32, 24)
    snn = convert_to_snn(ann, [x], neuron="if", num_steps=6, initial_potential=0.5).eval()
    with pytest.warns(UserWarning, match="soft reset exported as NIR's reset to 0"):
        graph = write_nir(snn, tmp_path / "m.nir", (2, 32, 24))
    assert sorted(graph.metadata["approximations"]) == [
        "initial potential 0.5 x theta exported as 0 (NIR has no initial state)",
        "soft reset exported as NIR's reset to 0",
    ]
    kinds = {type(n).__name__ for n in graph.nodes.values()}
    assert kinds == {"Input", "Output", "Conv2d", "IF"}  # no pooling, transposed conv or concatenation node left
    # the two decoder blocks' first convolutions each take two synapse blocks (skip + up path)
    assert sum(1 for k in graph.nodes if k.startswith("decoder_0_1__from__")) == 2
    assert graph.metadata["pixel_shuffle"] == 4
    loaded = NIRSimulator(tmp_path / "m.nir")
    assert loaded.num_steps == 6
    with torch.no_grad():
        ref = nir_semantics(snn)(x)
        out = loaded(x)
        assert not torch.allclose(ref, snn(x))  # the NIR semantics do differ from ours
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"exported for inputs \(2, 32, 24\)"):
        loaded(torch.rand(1, 2, 32, 32))


def test_refusals_name_the_cause():
    torch.manual_seed(0)
    ann = ConvertibleUNet(2, 1, 1, (4, 8)).eval()
    x = torch.rand(2, 1, 16, 16)
    with pytest.raises(TypeError, match="convert the ANN first"):
        to_nir(ann, (1, 16, 16))
    mt = convert_to_snn(ann, [x], neuron="multi_threshold", num_steps=4)
    with pytest.raises(NIRExportError, match=r"layer 'encoder.0.1' is a multi-threshold neuron.*neuron='if'"):
        to_nir(mt, (1, 16, 16))
    poisson = convert_to_snn(ann, [x], neuron="if", num_steps=4, encoding="poisson_binary")
    with pytest.raises(NIRExportError, match="only static input"):
        to_nir(poisson, (1, 16, 16))
    snn = convert_to_snn(ann, [x], neuron="if", num_steps=4)
    with pytest.raises(NIRExportError, match=r"input_shape \(1, 15, 16\) does not fit.*divisible by 2"):
        _quiet_export(snn, (1, 15, 16))
    with pytest.raises(NIRExportError, match=r"\(C, H, W\)"):
        to_nir(snn, (16, 16))
    snn3d = convert_to_snn(ConvertibleUNet(3, 1, 1, (4, 8)).eval(), [torch.rand(1, 1, 8, 8, 8)], neuron="if")
    with pytest.raises(NIRExportError, match="3D"):
        to_nir(snn3d, (1, 8, 8))


def test_round_trip_on_real_slices(trained_ann, hippo_slices):
    """The small U-Net trained on real hippocampus slices (4 levels, IF, layer-wise): file -> norse == ours."""
    tx, _, vx, vy = hippo_slices
    snn = convert_to_snn(trained_ann, [tx[:64]], neuron="if", normalization="layer", percentile=99.9,
                         initial_potential=0.0, num_steps=16).eval()  # fmt: skip
    graph = _quiet_export(snn, tuple(vx.shape[1:]))
    assert graph.metadata["pixel_shuffle"] == 8  # the decoder runs on the bottleneck's grid
    x, y = vx[:8], vy[:8]
    with torch.no_grad():
        ours = nir_semantics(snn)(x)
        theirs = NIRSimulator(graph)(x)
    # equal up to float rounding: the synapse blocks sum in another order, and with a hard reset a neuron whose
    # membrane lands within rounding of its threshold can flip one spike; such ties are rare
    assert float(((ours - theirs).abs() > 1e-4).float().mean()) < 1e-3
    assert dice(theirs, (ours > 0).float()) > 0.999  # the same masks
    assert dice(theirs, y) > 0.2  # a real (if coarse: hard reset at T = 16) segmentation, not an empty mask


def test_bundle_command_refuses_what_nir_cannot_express(tmp_path):
    with pytest.raises(SystemExit, match="multi-threshold neuron"):
        main(["--bundle_root", str(REPO / "bundles" / "hippocampus_snn"), "--network", "converted",
              "--out", str(tmp_path / "h.nir")])  # fmt: skip
    with pytest.raises(SystemExit, match="convert the ANN first"):
        main(["--bundle_root", str(REPO / "bundles" / "hippocampus_snn"), "--network", "ann",
              "--out", str(tmp_path / "h.nir")])  # fmt: skip
