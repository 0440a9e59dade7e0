"""Input encoders: static current, Poisson binary and ternary rate coding."""

from __future__ import annotations

import pytest
import torch

from monai_snn.encoding import ENCODERS, ENCODINGS, Encoder, PoissonEncoder, StaticEncoder, make_encoder


def test_static_is_a_view():
    x = torch.rand(2, 1, 4, 4)
    seq = StaticEncoder()(x, 5)
    assert seq.shape == (5, 2, 1, 4, 4) and seq.stride(0) == 0 and torch.equal(seq[3], x)


@pytest.mark.parametrize("signed", [False, True])
def test_poisson_rates_signs_and_seed(signed):
    lo = -1.0 if signed else 0.0
    x = torch.linspace(lo, 1.0, 21).repeat(2, 1)
    enc = PoissonEncoder(signed=signed, seed=3)
    enc.reset(x)
    steps = 4000
    spikes = enc(x, steps)
    allowed = {-1.0, 0.0, 1.0} if signed else {0.0, 1.0}
    assert set(spikes.unique().tolist()) <= allowed
    rate = spikes.abs().mean(0)
    # binomial sampling error: 4 standard deviations
    tol = 4 * torch.sqrt(x.abs() * (1 - x.abs()) / steps) + 1e-6
    assert ((rate - x.abs()).abs() <= tol).all()
    assert (spikes * torch.sign(x) >= 0).all()  # signs are right
    enc.reset(x)
    assert torch.equal(enc(x, 50), spikes[:50])  # same seed, same spikes
    other = PoissonEncoder(signed=signed, seed=4)
    other.reset(x)
    assert not torch.equal(other(x, 50), spikes[:50])


def test_poisson_range_errors():
    with pytest.raises(ValueError, match=r"binary Poisson encoding expects input in \[0, 1\]"):
        PoissonEncoder().reset(torch.tensor([-0.5, 0.5]))
    with pytest.raises(ValueError, match=r"ternary"):
        PoissonEncoder(signed=True).reset(torch.tensor([2.0]))
    with pytest.raises(ValueError, match=r"encoding: Unsupported option 'latency'.*'poisson_ternary'"):
        make_encoder("latency")


def test_encoder_registry():
    assert set(ENCODINGS) == set(ENCODERS) >= {"static", "poisson_binary", "poisson_ternary"}  # former names kept
    for name in ENCODERS:
        enc = make_encoder(name, seed=5)
        assert isinstance(enc, Encoder), name
        assert enc.static == (name == "static"), name
    assert make_encoder("poisson_ternary", seed=5).signed and make_encoder("poisson_ternary", seed=5).seed == 5
    assert not make_encoder("poisson_binary").signed
    custom = PoissonEncoder(seed=None)
    assert make_encoder(custom) is custom
    with pytest.raises(ValueError, match="did you mean 'poisson_binary'") as err:
        make_encoder("poisson_binry")
    for name in ENCODERS:
        assert repr(name) in str(err.value), name
