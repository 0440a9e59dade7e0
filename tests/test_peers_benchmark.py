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
    assert len(speed) == 1 and all(float(c.split("(")[0]) > 0 for c in speed[0].strip("| \n").split("|")[2:])


def test_neuron_update_benchmark_runs_on_real_slices():
    """benchmarks/neuron_update.py at a tiny size: both tables, every neuron mode, positive times."""
    require_data(HIPPO)
    bench = load_benchmark("neuron_update")
    lines = bench.main(["--batch", "2", "--steps", "2", "--repeats", "1"])
    layer_rows = [ln for ln in lines if ln.startswith("| MT |") or ln.startswith("| IF |")]
    modes = {tuple(c.strip() for c in ln.split("|")[1:4]) for ln in layer_rows}
    assert {("MT", "off", "eager"), ("IF", "on", "eager")} <= modes
    assert all(float(ln.split("|")[4]) > 0 for ln in layer_rows)
    whole = [ln for ln in lines if ln.startswith("| 2 |")]
    assert len(whole) == 4  # two networks x spike counting off / on
    assert all(float(c.split("(")[0]) > 0 for ln in whole for c in ln.strip("| \n").split("|")[3:])
    # where the compiled simulation's time goes, inside the passes: both networks, positive times and ratios
    inside = [ln for ln in lines if ln.startswith("| MT, ") or ln.startswith("| IF, ")]
    assert len(inside) == 2 and all(float(c) > 0 for ln in inside for c in ln.strip("| \n").split("|")[1:])
