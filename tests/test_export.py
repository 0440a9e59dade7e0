"""TorchScript export: the ANN scripted, a spiking network traced at its T; the bundle command on shipped models."""

from __future__ import annotations

import pytest
import torch

from monai_snn.bundle import load_model
from monai_snn.conversion import convert_to_snn
from monai_snn.export import export_torchscript
from monai_snn.export.__main__ import main
from monai_snn.networks import ConvertibleUNet
from tests.conftest import REPO


def test_ann_scripted_and_snn_traced_at_fixed_t(tmp_path):
    torch.manual_seed(0)
    ann = ConvertibleUNet(2, 1, 2, (4, 8, 16)).eval()
    x = torch.rand(2, 1, 32, 32)
    ts_ann = export_torchscript(ann, x, tmp_path / "ann.ts")
    assert isinstance(ts_ann, torch.jit.ScriptModule)
    snn = convert_to_snn(ann, [x], num_steps=4, initial_potential=0.5)
    export_torchscript(snn, x, tmp_path / "snn.ts")
    assert snn.count_spikes  # restored after tracing
    loaded = torch.jit.load(str(tmp_path / "snn.ts"))
    other = torch.rand(3, 1, 48, 40)  # another batch and spatial size
    with torch.no_grad():
        torch.testing.assert_close(loaded(other), snn(other), rtol=0, atol=1e-6)
        snn.num_steps = 8  # T is baked into the trace: the exported model still runs 4 steps
        assert not torch.allclose(loaded(other), snn(other))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        export_torchscript(lambda t: t, x)


def test_snn_trace_with_compiled_updates_on(tmp_path):
    """A trace cannot record the compiled neuron update: export traces eager updates and leaves the compiled mode
    on (and unbroken) for the rest of the process."""
    import warnings

    from monai_snn.neurons import set_fused_update
    from monai_snn.neurons.fused import _STATE

    torch.manual_seed(0)
    ann = ConvertibleUNet(2, 1, 1, (4, 8, 16)).eval()
    x = torch.rand(2, 1, 32, 32)
    snn = convert_to_snn(ann, [x], neuron="if", num_steps=3)
    try:
        set_fused_update(True)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # no "compiled neuron update failed"
            traced = export_torchscript(snn, x)
        assert _STATE["mode"] == "on" and not _STATE["failed"]
        with torch.no_grad():
            torch.testing.assert_close(traced(x), snn(x), rtol=0, atol=1e-6)
        assert not _STATE["failed"]  # the compiled update ran after the export
    finally:
        set_fused_update(False)  # the suite runs eager (MONAI_SNN_FUSED=0 in conftest)


def test_bundle_command_exports_the_shipped_snn(tmp_path, capsys):
    out = main(["--bundle_root", str(REPO / "bundles" / "em_snn"), "--network", "finetuned", "--out",
                str(tmp_path / "em.ts")])  # fmt: skip
    assert "T=8" in capsys.readouterr().out
    models = {"finetuned": str(REPO / "bundles" / "em_snn" / "models" / "model.pt")}
    snn = load_model("finetuned", models, ConvertibleUNet(2, 1, 1, (16, 32, 64, 128), dropout=0.1))
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(out))(x), snn(x), rtol=0, atol=1e-5)
    with pytest.raises(SystemExit, match="Unsupported option 'bogus'.*'finetuned'"):
        main(["--bundle_root", str(REPO / "bundles" / "em_snn"), "--network", "bogus", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="define no key 'colour'"):
        main(["--bundle_root", str(REPO / "bundles" / "denoise_snn"), "--set", "colour=true", "--out", str(tmp_path)])
