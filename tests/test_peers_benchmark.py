"""The peers benchmark on a tiny real subset (one volume, T = 2), so that it cannot rot."""

from __future__ import annotations

from tests.conftest import HIPPO, load_benchmark, require_data


def test_peers_benchmark_runs_and_ranks_the_converters():
    require_data(HIPPO)
    peers = load_benchmark("peers")
    lines = peers.main(["--num_volumes", "1", "--steps", "2", "--timing_steps", "2", "--repeats", "1",
                        "--threads", "1", "--batch", "8"])  # fmt: skip
    rows = {ln.split("|")[1].strip(): ln for ln in lines if ln.startswith("| ours") or ln.startswith("| spiking")}
    assert set(rows) >= {"ours IF, layer, p99.9, v0 = 0", "spikingjelly RateCoding 99.9 %"}
    dice = {k: float(v.split("|")[2]) for k, v in rows.items()}
    mt = next(k for k in dice if k.startswith("ours MT"))
    # at T = 2 the multi-threshold converter already segments; one-threshold IF converters do not yet
    assert dice[mt] > dice["ours IF, layer, p99.9, v0 = 0"] + 0.2
    assert dice[mt] > dice["spikingjelly RateCoding 99.9 %"] + 0.2
    speed = [ln for ln in lines if ln.startswith("| 1 | 2 |")]
    assert len(speed) == 1 and all(float(c) > 0 for c in speed[0].strip("| \n").split("|")[2:])
