"""Denoising task code of the ``denoise_snn`` bundle (``bundles/denoise_snn/scripts``) and the generic
``monai_snn.inferers.ResidualInferer``: noise seeding, PSNR / SSIM on known cases, the residual readout (ANN and
SNN, padding), grey / colour handling, bad inputs, the output files.

Real-data cases read ``$MONAI_SNN_DATA/{BSD68,CBSD68,Train400,CBSD_train}`` (a few images each).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator
from PIL import Image

from monai_snn.bundle import load_scripts
from monai_snn.conversion import convert_to_snn
from monai_snn.inferers import ResidualInferer
from monai_snn.networks import ConvertibleUNet
from tests.conftest import DATA, REPO, require_data

_SCRIPTS = load_scripts(REPO / "bundles" / "denoise_snn")
dn = _SCRIPTS.denoise
ev = _SCRIPTS.evaluation


# ----------------------------------------------------------------------------------------------------- noise


def test_fixed_noise_same_seed_same_noise():
    img = torch.full((1, 16, 16), 0.5)
    a = dn.FixedGaussianNoised("image", sigma=25, seed=3)({"image": img.clone(), "name": "x"})["image"]
    b = dn.FixedGaussianNoised("image", sigma=25, seed=3)({"image": img.clone(), "name": "x"})["image"]
    other_name = dn.FixedGaussianNoised("image", sigma=25, seed=3)({"image": img.clone(), "name": "y"})["image"]
    other_seed = dn.FixedGaussianNoised("image", sigma=25, seed=4)({"image": img.clone(), "name": "x"})["image"]
    assert torch.equal(a, b) and not torch.equal(a, other_name) and not torch.equal(a, other_seed)
    big = dn.FixedGaussianNoised("image", sigma=50, seed=0)({"image": torch.zeros(1, 256, 256), "name": "z"})["image"]
    assert float(big.std() * 255) == pytest.approx(50, rel=0.03)  # sigma on the [0, 255] scale
    assert float(big.max()) > 0.4 and float(big.min()) < -0.4  # not clipped


def test_noise_does_not_depend_on_order_or_process():
    seeds = [dn.noise_seed(n, 25.0, 0) for n in ("test001", "test002", "test001")]
    assert seeds[0] == seeds[2] != seeds[1]
    assert dn.noise_seed("test001", 25.0) != dn.noise_seed("test001", 15.0)


def test_blind_training_noise_per_patch(tmp_path):
    root = require_data(DATA / "Train400")
    item = dn.denoise_datalist(root)[0]
    patches = dn.train_transforms(False, (32, 32), 16, sigma_max=55)(item)
    sigmas = [float((p["image"] - p["label"]).std() * 255) for p in patches]
    assert len(patches) == 16 and patches[0]["image"].shape == (1, 32, 32)
    assert 0 <= min(sigmas) and max(sigmas) <= 55 * 1.25 and max(sigmas) - min(sigmas) > 10  # drawn per patch
    with pytest.raises(ValueError, match="sigma_max"):
        dn.train_transforms(False, (32, 32), 2, sigma_max=300)


@pytest.mark.parametrize("bad", [-1, 256, "a", float("nan")])
def test_sigma_outside_range_is_an_error(bad):
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        dn.FixedGaussianNoised("image", sigma=bad)


# --------------------------------------------------------------------------------------------- PSNR / SSIM


def _score(pred: torch.Tensor, label: torch.Tensor) -> dict[str, float]:
    """Scores of one [0, 1]-scaled prediction through the bundle's postprocessing and metric handlers."""
    data = [{"image": label, "label": label, "pred": pred}]

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return pred[None]

    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=DataLoader(data, batch_size=1), network=Fixed(),
        postprocessing=dn.eval_postprocessing(), key_val_metric={"psnr": dn.denoise_metrics(names=["psnr"])["psnr"]},
        additional_metrics={"ssim": dn.denoise_metrics(names=["ssim"])["ssim"]},
    )  # fmt: skip
    evaluator.run()
    return evaluator.state.metrics


def test_psnr_known_case_peak_255_and_clipping():
    label = torch.full((1, 32, 32), 100 / 255)
    got = _score(label + 10 / 255, label)  # every pixel off by 10 on the [0, 255] scale: MSE 100
    assert got["psnr"] == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-3)
    assert got["ssim"] < 1.0
    white = torch.ones(1, 32, 32)
    assert _score(white * 1.5, white)["psnr"] > 80  # clipped to 255 before the score: a perfect image
    assert _score(label, label)["ssim"] == pytest.approx(1.0, abs=1e-4)


# ---------------------------------------------------------------------------------------------- residual


def test_residual_inferer_returns_input_minus_output_with_padding():
    net = ConvertibleUNet(2, 1, 1, channels=(4, 8, 16))
    x = torch.rand(2, 1, 21, 30)
    out = ResidualInferer(divisor=4)(x, net)
    padded = torch.nn.functional.pad(x, (0, 2, 0, 3), mode="reflect")
    assert out.shape == x.shape
    assert torch.allclose(out, x - net(padded)[..., :21, :30], atol=1e-6)
    with pytest.raises(ValueError, match="out_channels == in_channels"):
        ResidualInferer()(torch.rand(1, 1, 8, 8), ConvertibleUNet(2, 1, 2, channels=(4, 8)))
    with pytest.raises(ValueError, match="divisor"):
        ResidualInferer(divisor=0)


def test_residual_readout_of_the_snn_is_the_averaged_output_potential():
    torch.manual_seed(0)
    ann = ConvertibleUNet(2, 3, 3, channels=(4, 8)).eval()
    x = torch.rand(2, 3, 16, 16)
    snn = convert_to_snn(ann, [x], num_steps=4)
    inferer = ResidualInferer(divisor=2)
    with torch.no_grad():
        assert torch.allclose(inferer(x, snn), x - snn(x), atol=1e-6)  # snn(x): the head averaged over T
        snn.num_steps = 64
        err_long = float((inferer(x, snn) - inferer(x, ann)).abs().mean())
        snn.num_steps = 2
        err_short = float((inferer(x, snn) - inferer(x, ann)).abs().mean())
    assert err_long < err_short  # the quantization error of the readout shrinks with T


# ------------------------------------------------------------------------------------------- grey / colour


def test_grey_and_colour_data_sets_load_channel_first():
    grey = dn.denoise_datalist(require_data(DATA / "BSD68"))
    colour = dn.denoise_datalist(require_data(DATA / "CBSD68"), color=True)
    assert len(grey) == len(colour) == 68 and grey[0]["name"] == "test001"
    g = dn.eval_transforms(False, 25)(grey[0])
    c = dn.eval_transforms(True, 25)(colour[0])
    assert g["image"].shape == (1, 481, 321) and c["label"].shape[0] == 3
    assert 0.0 <= float(g["label"].min()) and float(g["label"].max()) <= 1.0
    with pytest.raises(ValueError, match=r"1 channel \(grey\).*colour data set BSD68 needs 3 channels"):
        dn.denoise_datalist(DATA / "BSD68", color=True)
    split = dn.train_val_split(dn.denoise_datalist(require_data(DATA / "CBSD_train"), color=True, check=False), 5)
    assert len(split["train"]) == 195 and len(split["val"]) == 5
    assert not {i["name"] for i in split["train"]} & {i["name"] for i in split["val"]}


def test_check_input_image_grey_colour_npy_and_bad_files(tmp_path):
    grey = np.full((9, 7), 100, np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "c.png")
    np.save(tmp_path / "n.npy", np.full((9, 7, 3), -12.5, np.float32))  # noise need not be clipped
    dn.check_input_image(tmp_path / "g.png", color=False)
    dn.check_input_image(tmp_path / "c.png", color=True)
    dn.check_input_image(tmp_path / "n.npy", color=True)
    with pytest.raises(ValueError, match=r"g\.png has 1 channel \(grey\) but the colour model expects 3 channels"):
        dn.check_input_image(tmp_path / "g.png", color=True)
    with pytest.raises(ValueError, match=r"n\.npy has 3 channels \(colour\) but the grey model expects 1 channel"):
        dn.check_input_image(tmp_path / "n.npy", color=False)
    nan = np.zeros((4, 4), np.float32)
    nan[1, 2] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(ValueError, match=r"nan\.npy holds 1 NaN"):
        dn.check_input_image(tmp_path / "nan.npy")
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"bad\.png is not a readable image"):
        dn.check_input_image(tmp_path / "bad.png")
    np.save(tmp_path / "4d.npy", np.zeros((2, 3, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"4d\.npy: expected a float array of shape H x W"):
        dn.check_input_image(tmp_path / "4d.npy")


def test_save_denoised_npy_and_png_in_the_input_shape(tmp_path):
    for shape, color in (((9, 7), False), ((9, 7, 3), True)):
        src = tmp_path / f"in{len(shape)}.npy"
        np.save(src, np.full(shape, 300.0, np.float32))  # out of range: clipped in the output
        d = dn.inference_transforms(color)({"image": str(src)})
        d["pred"] = d["image"] * 0.5
        dn.SaveDenoisedd("pred", tmp_path / "out")(d)
        arr = np.load(tmp_path / "out" / f"{src.stem}.npy")
        png = np.asarray(Image.open(tmp_path / "out" / f"{src.stem}.png"))
        assert arr.shape == png.shape == shape and arr.dtype == np.float32
        assert np.allclose(arr, 150.0) and png.dtype == np.uint8 and (png == 150).all()
    d = dn.inference_transforms(False)({"image": str(tmp_path / "out" / "in2.png")})
    d["pred"] = d["image"]
    with pytest.raises(ValueError, match="would overwrite its input"):
        dn.SaveDenoisedd("pred", tmp_path / "out")(d)


def test_evaluate_sigmas_merges_levels(tmp_path):
    root = require_data(DATA / "BSD68")
    items = dn.denoise_datalist(root)[:1]
    ann = ConvertibleUNet(2, 1, 1, channels=(4, 8, 16, 32))
    torch.save(ann.state_dict(), tmp_path / "ann.pt")
    from monai_snn.engines import SpikingEvaluator

    def factory(**kw):
        return SpikingEvaluator(device=torch.device("cpu"), inferer=ResidualInferer(divisor=8),
                                postprocessing=dn.eval_postprocessing(),
                                key_val_metric=dn.denoise_metrics(names=["psnr"]),
                                additional_metrics=dn.denoise_metrics(names=["ssim"]), **kw)  # fmt: skip

    m = ev.evaluate_sigmas(factory, items, False, (15, 50), {"ann": str(tmp_path / "ann.pt")}, ann, tmp_path / "e",
                           key_sigma=50)  # fmt: skip
    assert m["ann"]["psnr"] == m["ann"]["psnr_50"] and m["ann"]["psnr_15"] > m["ann"]["psnr_50"]
    assert (tmp_path / "e" / "sigma15" / "metrics.json").is_file() and m["info"]["sigmas"] == [15.0, 50.0]
    with pytest.raises(ValueError, match="key_sigma 25 must be one of"):
        ev.evaluate_sigmas(factory, items, False, (15,), {"ann": "x"}, ann, tmp_path)


def test_color_flag_from_the_command_line():
    assert dn.color_flag("false") is False and dn.color_flag("True") is True and dn.color_flag(1) is True
    assert dn.color_flag(False) is False
    with pytest.raises(ValueError, match="--color must be true .* or false .*got 'grey'"):
        dn.color_flag("grey")
