"""Simulation speed of the converted spiking U-Net versus its ANN and versus step-by-step baselines.

Prints a markdown table for the 2D hippocampus U-Net (channels 16-128, input 56 x 48, batch 26):

* ``ANN fwd``: one ANN forward pass;
* ``SNN chunk=k``: :class:`monai_snn.networks.SpikingSimulator` (static input computed once, affine readout once
  on the averaged spikes, ``k`` time steps folded into the batch per chunk);
* ``naive``: the whole network every time step, first layer and readout included (as the reference code does);
* ``spikingjelly``: the same network with spikingjelly's ``IFNode`` (soft reset) stepped the same way, if
  ``pip install --no-deps spikingjelly`` worked in this environment;
* ``multi-threshold``: the default simulator with multi-threshold neurons (2, 1, 0.5, 0.25), with and without spike
  counting (a per-step popcount of the fired levels), with the compiled neuron update (the default where a C++
  compiler is found, :mod:`monai_snn.neurons.fused`) and eager, and given a MONAI ``MetaTensor`` (what a MONAI
  pipeline hands the network; simulated as a plain tensor, so it should cost what the plain input costs).

Each case runs in a fresh process (peak RSS is per case); times are medians. Ratios are only comparable within one
run: the machines are shared and noisy.

Usage::

    python benchmarks/simulation.py                 # T = 8, 32, 200
    python benchmarks/simulation.py --steps 8 32 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch


def build(case: str, T: int, chunk: int):
    from monai_snn.conversion import convert_to_snn
    from monai_snn.networks import ConvertibleUNet

    torch.manual_seed(0)
    ann = ConvertibleUNet(2, 1, 1, channels=(16, 32, 64, 128), bias=True).eval()
    x = torch.rand(26, 1, 56, 48)
    if case == "ann":
        return lambda: ann(x)
    neuron = "multi_threshold" if case.startswith("snn_mt") else "if"
    snn = convert_to_snn(ann, [x], neuron=neuron, num_steps=T, chunk_size=chunk, initial_potential=0.5)
    snn.count_spikes = case != "snn_mt_nocount"
    if case == "snn_mt_eager":
        from monai_snn.neurons import set_fused_update

        set_fused_update(False)
    if case == "snn_mt_meta":
        from monai.data import MetaTensor

        xm = MetaTensor(x)
        return lambda: snn(xm)
    if case.startswith("snn"):
        return lambda: snn(x)
    gm = snn.network
    if case == "spikingjelly":
        from spikingjelly.activation_based import functional, neuron  # noqa: F401 (optional)

        for name, m in list(gm.named_modules()):
            if type(m).__name__ == "IFNeuron":
                parent, _, leaf = name.rpartition(".")
                owner = gm.get_submodule(parent) if parent else gm
                setattr(owner, leaf, neuron.IFNode(v_threshold=1.0, v_reset=None, step_mode="s"))

        def run_sj():
            functional.reset_net(gm)
            out = 0
            for _ in range(T):
                out = out + gm(x)
            return out / T

        return run_sj

    def run_naive():  # whole network per step, as the reference code
        snn.reset()
        out = 0
        for _ in range(T):
            out = out + gm(x)
        return out / T

    return run_naive


def measure(case: str, T: int, chunk: int, repeats: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        fn = build(case, T, chunk)
    except ImportError as e:
        return {"error": f"not installed ({e.name})"}
    times = []
    with torch.inference_mode():
        fn()  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"ms": 1000 * statistics.median(times), "peak_mb": (peak - base) / 1024}


def run_case(case: str, T: int, chunk: int, repeats: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--case", case, "--T", str(T), "--chunk", str(chunk), "--repeats", str(repeats)]
    cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="+", default=[8, 32, 200])
    p.add_argument("--chunks", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (1 on a shared machine)")
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--T", type=int, help=argparse.SUPPRESS)
    p.add_argument("--chunk", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.case:
        print(json.dumps(measure(args.case, args.T, args.chunk, args.repeats, args.threads)))
        return

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"threads {args.threads}, load average {os.getloadavg()[0]:.1f}; U-Net 16-128, 2D 56x48, batch 26, "
        "IF neurons unless named, static input"
    )
    ann = run_case("ann", 1, 1, max(5, args.repeats), args.threads)
    print(f"ANN forward: {ann['ms']:.1f} ms (peak +{ann['peak_mb']:.0f} MB)\n")
    print("| T | case | ms | SNN / (T x ANN fwd) | peak RSS delta (MB) |")
    print("|---|---|---|---|---|")
    for T in args.steps:
        reps = args.repeats if T <= 32 else 1
        cases = [("snn", c) for c in args.chunks if c <= T]
        if T <= 32:
            cases.append(("snn", T))  # all T steps folded into the batch
        cases += [("naive", 1), ("spikingjelly", 1), ("snn_mt", 1), ("snn_mt_eager", 1), ("snn_mt_nocount", 1),
                  ("snn_mt_meta", 1)]
        for case, chunk in dict.fromkeys(cases):
            r = run_case(case, T, chunk, reps, args.threads)
            label = {
                "snn": f"monai_snn chunk={chunk}" + (" (all T folded)" if chunk == T and T > 1 else ""),
                "snn_mt": "monai_snn multi-threshold, chunk=1 (compiled update)",
                "snn_mt_eager": "monai_snn multi-threshold, chunk=1, eager update",
                "snn_mt_nocount": "monai_snn multi-threshold, chunk=1, count_spikes=False",
                "snn_mt_meta": "monai_snn multi-threshold, chunk=1, MetaTensor input",
            }.get(case, case)
            if "error" in r:
                print(f"| {T} | {label} | {r['error']} | | |")
                continue
            print(f"| {T} | {label} | {r['ms']:.0f} | {r['ms'] / (T * ann['ms']):.2f} | {r['peak_mb']:.0f} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
