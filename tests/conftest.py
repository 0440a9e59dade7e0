"""Shared fixtures: real hippocampus slices and a small ANN trained on them (once per test session); the camseq_snn
bundle's task module and a tiny folder of real CamSeq01 frames (for its two test files)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# One intra-op thread: on a 2-core machine shared with another process, 2 OpenMP threads measured 10-100x slower
# (busy-waiting threads); alone, 1 thread costs about 1.5x. Tests need predictable time more than peak speed.
torch.set_num_threads(1)
# Neuron updates run eager in the suite (no compile time per worker); the compiled kernel is tested against eager,
# bit for bit, in test_neurons.py.
os.environ.setdefault("MONAI_SNN_FUSED", "0")

# The longest modules, longest first (pytest --durations, 2026-12-05). ``make test`` runs the suite on every core with
# pytest-xdist, one module per worker at a time (``--dist loadfile``: module fixtures are built once); starting these
# first keeps one long module from running alone at the end.
LONGEST_FIRST = ("test_faults.py", "test_bundle_drive.py", "test_bundle_denoise.py", "test_conversion.py",
                 "test_bundle_hippocampus.py", "test_bundle_em.py", "test_bundle_camseq.py", "test_finetune.py",
                 "test_bundle_camseq_models.py")  # fmt: skip


def pytest_collection_modifyitems(items: list) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: test order within a module is kept

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MONAI_SNN_DATA", REPO.parent / "shared" / "data"))
HIPPO = DATA / "Task04_Hippocampus"
CAMSEQ = DATA / "CamSeq01_SegNet480"
CAMSEQ_BUNDLE = REPO / "bundles" / "camseq_snn"


def load_benchmark(name: str):
    """The module ``benchmarks/<name>.py`` (benchmarks are scripts, not a package), for the tests that keep them from
    rotting."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def require_data(path: Path) -> Path:
    """Real data is required: fail under CI, skip on a developer machine without it."""
    if not path.exists():
        msg = f"real data not found at {path} (set MONAI_SNN_DATA)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def load_slices(names: list[str], size=(56, 48)) -> tuple[torch.Tensor, torch.Tensor]:
    """Axis-0 slices of MSD hippocampus volumes, padded/cropped in-plane to ``size``, intensities scaled per
    volume to [0, 1], labels 1 and 2 merged. Only slices that contain hippocampus are kept."""
    import nibabel as nib
    from monai.transforms import ResizeWithPadOrCrop

    fit = ResizeWithPadOrCrop(spatial_size=(-1, *size))
    images, labels = [], []
    for name in names:
        img = np.asarray(nib.load(HIPPO / "imagesTr" / name).dataobj, dtype=np.float32)
        lab = np.asarray(nib.load(HIPPO / "labelsTr" / name).dataobj) > 0
        img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
        img = torch.as_tensor(np.asarray(fit(img[None])))[0]
        lab = torch.as_tensor(np.asarray(fit(lab[None].astype(np.float32))))[0]
        keep = lab.flatten(1).sum(1) > 0
        images.append(img[keep])
        labels.append(lab[keep])
    return torch.cat(images)[:, None], torch.cat(labels)[:, None]


@pytest.fixture(scope="session")
def hippo_slices():
    """(train_x, train_y, val_x, val_y): real MSD hippocampus slices, subject-disjoint train / validation."""
    require_data(HIPPO)
    names = sorted(p.name for p in (HIPPO / "imagesTr").glob("*.nii.gz"))
    rng = np.random.default_rng(0)
    rng.shuffle(names)
    tx, ty = load_slices(names[:24])
    vx, vy = load_slices(names[24:30])
    return tx, ty, vx, vy


@pytest.fixture(scope="session")
def trained_ann(hippo_slices):
    """A small ConvertibleUNet trained for a few epochs on real slices (BCE-Dice), about 20 s on 2 CPU cores (validation Dice about 0.8)."""
    from monai.losses import DiceCELoss

    from monai_snn.networks import ConvertibleUNet

    torch.manual_seed(0)
    tx, ty, _, _ = hippo_slices
    net = ConvertibleUNet(2, 1, 1, channels=(8, 16, 32, 64))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    loss_fn = DiceCELoss(sigmoid=True, lambda_ce=0.3, lambda_dice=0.7)
    g = torch.Generator().manual_seed(0)
    net.train()
    for _ in range(30):
        for idx in torch.randperm(len(tx), generator=g).split(32):
            opt.zero_grad()
            loss_fn(net(tx[idx]), ty[idx]).backward()
            opt.step()
    return net.eval()


def dice(logits: torch.Tensor, labels: torch.Tensor, threshold: float = 0.0) -> float:
    """Dice of the whole batch (pixels pooled), via MONAI's DiceMetric on binarised predictions."""
    from monai.metrics import compute_dice

    pred = (logits > threshold).float()
    d = compute_dice(pred.flatten(1)[None].transpose(0, 1).reshape(1, 1, -1), labels.reshape(1, 1, -1))
    return float(d.mean())


BCE_DICE = dict(sigmoid=True, lambda_ce=0.3, lambda_dice=0.7)
"""The hippocampus paper's BCE-Dice: ``monai.losses.DiceCELoss(**BCE_DICE)`` = 0.3 BCE + 0.7 Dice."""


def records(x: torch.Tensor, y: torch.Tensor, names: bool = False) -> list[dict]:
    """``{"image", "label"}`` dicts of a batch of slices; ``names``: images as MetaTensors with file names, as
    ``LoadImaged`` would give."""
    if names:
        from monai.data import MetaTensor

        return [
            {"image": MetaTensor(x[i], meta={"filename_or_obj": f"slice_{i:03d}.nii.gz"}), "label": y[i]}
            for i in range(len(x))
        ]
    return [{"image": x[i], "label": y[i]} for i in range(len(x))]


@pytest.fixture(scope="module")
def camseq():
    """The camseq_snn bundle's task module (scripts/camseq.py)."""
    sys.path.insert(0, str(CAMSEQ_BUNDLE))
    try:
        yield importlib.import_module("scripts.camseq")
    finally:
        sys.path.remove(str(CAMSEQ_BUNDLE))
        for name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def tiny_camseq(tmp_path_factory) -> Path:
    """A CamSeq01_SegNet480-layout folder with 6 real frames (symlinks)."""
    require_data(CAMSEQ)
    root = tmp_path_factory.mktemp("camseq") / "CamSeq01_SegNet480"
    names = sorted(p.name for p in (CAMSEQ / "images").glob("*.png"))
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
        for name in names[:4] + names[-2:]:
            os.symlink(CAMSEQ / sub / name, root / sub / name)
    return root
