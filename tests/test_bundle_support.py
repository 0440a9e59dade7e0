"""Generic bundle support: model selection by name (``--network``) and the input lists of inference configs."""

from __future__ import annotations

import json

import pytest
import torch

from monai_snn.bundle import input_items, load_model, model_kind
from monai_snn.conversion import convert_with_settings, save_snn, snn_settings
from monai_snn.networks import ConvertibleUNet


@pytest.fixture()
def models(tmp_path):
    torch.manual_seed(0)
    ann = ConvertibleUNet(2, 1, 1, channels=(4, 8)).eval()
    torch.save(ann.state_dict(), tmp_path / "ann.pt")
    (tmp_path / "ann.json").write_text(json.dumps({"args": {"channels": [4, 8]}}))
    settings = snn_settings(percentile=99.0, num_steps=3)
    save_snn(convert_with_settings(ann, [torch.rand(2, 1, 16, 16)], settings), tmp_path / "model.pt", settings)
    return ann, {"ann": tmp_path / "ann.pt", "finetuned": tmp_path / "model.pt", "converted": tmp_path / "no.pt"}


def test_load_model_by_name(models):
    ann, paths = models
    arch = ConvertibleUNet(2, 1, 1, channels=(4, 8))
    x = torch.rand(2, 1, 16, 16)
    assert model_kind(paths["ann"]) == "ann" and model_kind(paths["finetuned"]) == "snn"
    assert torch.equal(load_model("ann", paths, arch)(x), ann(x))
    snn = load_model("finetuned", paths, arch)
    assert snn.num_steps == 3 and load_model("finetuned", paths, arch, num_steps=5).num_steps == 5
    assert not any(p.data_ptr() == q.data_ptr() for p, q in zip(arch.parameters(), snn.parameters()))
    with pytest.raises(ValueError, match="did you mean 'finetuned'"):
        load_model("finetund", paths, arch)
    with pytest.raises(FileNotFoundError, match="'converted' model not found"):
        load_model("converted", paths, arch)
    with pytest.raises(ValueError, match="is an ANN"):
        load_model("ann", paths, arch, num_steps=4)


def test_input_items_file_folder_datalist(tmp_path):
    for n in ("b.png", "a.png", ".hidden.png", "c.txt"):
        (tmp_path / n).write_bytes(b"x")
    seen = []
    assert input_items(tmp_path, (".png",), check=seen.append) == [
        {"image": str(tmp_path / "a.png")}, {"image": str(tmp_path / "b.png")}]  # fmt: skip
    assert [p.name for p in seen] == ["a.png", "b.png"]
    (tmp_path / "dl.json").write_text(json.dumps(["a.png", {"image": str(tmp_path / "b.png")}]))
    assert [it["image"] for it in input_items(tmp_path / "dl.json", (".png",))] == [
        str(tmp_path / "a.png"), str(tmp_path / "b.png")]  # fmt: skip
    (tmp_path / "bad.json").write_text(json.dumps({"other": []}))
    with pytest.raises(ValueError, match="none of the item lists"):
        input_items(tmp_path / "bad.json", (".png",))
