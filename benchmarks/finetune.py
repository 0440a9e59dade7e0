"""Cost of one spike-based fine-tuning iteration: accumulated spiking flow vs BPTT vs ANN training.

Prints a markdown table for the 2D hippocampus U-Net (``ConvertibleUNet(2, 1, 1, (16, 32, 64, 128))``, input
56 x 48, batch 26, multi-threshold neurons, static input, BCE-Dice loss, Adam):

* ``ANN``: one ANN training step (forward + backward + optimizer step);
* ``flow``: ``SpikingSimulator.forward_flow`` (``T`` steps without a graph, one rate-form pass) + backward + step;
* ``flow, no count``: the same with spike counting switched off (``SpikingTrainer(count_spikes=False)``);
* ``bptt``: ``SpikingSimulator.forward`` with gradients (``T`` steps unrolled) + backward + step.

The forward calls are the ones :class:`monai_snn.engines.SpikingTrainer` makes (through
:class:`monai_snn.engines.SpikingForwardInferer`). Each case runs in a fresh process with 2 threads; times are
medians over a few iterations after one warm-up iteration. Memory is measured in a second process: the peak RSS
(``ru_maxrss``) minus the RSS just before the first iteration, with ``MALLOC_MMAP_THRESHOLD_=65536`` (unless set),
so glibc maps every tensor of 64 kB or more on its own and returns it when freed (without it, memory freed by the
conversion before the measurement is reused from the heap and the RSS delta undercounts by a varying amount; with
it, every large allocation page-faults, which would distort the times). Cases whose memory, extrapolated linearly in ``T`` from the smaller ``T`` already
measured (plus a probe at half the smallest ``T``), exceeds ``--max-gb`` are skipped: BPTT at ``T=50`` alone needs
about 20 GB. The last column compares flow with its ideal cost, ``T`` ANN
forward passes (the simulation) plus one ANN training step (the rate-form pass); BPTT's ratio is in parentheses.
Ratios are only comparable within one run: the machines are shared and noisy.

Usage::

    python benchmarks/finetune.py                      # T = 10, 50, 200
    python benchmarks/finetune.py --steps 10 50 --quick
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch


def _rss_mb() -> float:
    """Current resident set size of this process, MB."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):  # not Linux: fall back to the peak so far
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def measure(case: str, T: int, repeats: int) -> dict:
    """One case in this process: ``case`` is ``"ann"``, ``"flow"``, ``"flow_nocount"`` or ``"bptt"``."""
    torch.set_num_threads(2)
    from monai.losses import DiceCELoss

    from monai_snn.conversion import convert_to_snn
    from monai_snn.engines import SpikingForwardInferer
    from monai_snn.networks import ConvertibleUNet

    torch.manual_seed(0)
    ann = ConvertibleUNet(2, 1, 1, channels=(16, 32, 64, 128))
    x = torch.rand(26, 1, 56, 48)
    y = (torch.rand(26, 1, 56, 48) > 0.8).float()
    loss_fn = DiceCELoss(sigmoid=True, lambda_ce=0.3, lambda_dice=0.7)
    result: dict = {}
    if case == "ann":
        net, forward = ann, ann
        with torch.no_grad():
            ann.eval()
            ann(x)
            fwd = []
            for _ in range(max(repeats, 5)):
                t0 = time.perf_counter()
                ann(x)
                fwd.append(time.perf_counter() - t0)
        result["fwd_ms"] = 1000 * statistics.median(fwd)
        ann.train()
    else:
        net = convert_to_snn(ann.eval(), [x[:4]], num_steps=T, initial_potential=0.0)
        inferer = SpikingForwardInferer(case.split("_")[0], count_spikes=case != "flow_nocount")
        net.train()

        def forward(inputs):
            return inferer(inputs, net)

    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step() -> None:
        optimizer.zero_grad()
        loss_fn(forward(x), y).backward()
        optimizer.step()

    gc.collect()
    base = _rss_mb()
    times = []
    for i in range(repeats + 1):  # the first iteration is a warm-up
        t0 = time.perf_counter()
        step()
        if i:
            times.append(time.perf_counter() - t0)
    result.update({"ms": 1000 * statistics.median(times), "peak_mb": _peak_mb() - base})
    if case not in ("ann", "flow_nocount"):
        result["rate"] = sum(net.firing_rates().values()) / len(net.firing_rates())
    return result


def _subprocess(case: str, T: int, repeats: int, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--case", case, "--T", str(T), "--repeats", str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**env, "PYTHONWARNINGS": "ignore"})
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"failed (exit code {out.returncode})"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_case(case: str, T: int, repeats: int, memory_only: bool = False) -> dict:
    """Memory from a process whose allocator returns freed tensors, times from a second, ordinary process."""
    mem = _subprocess(case, T, 1, {"MALLOC_MMAP_THRESHOLD_": "65536", **os.environ})
    if "error" in mem or memory_only:
        return mem
    result = _subprocess(case, T, repeats, dict(os.environ))
    if "error" not in result:
        result["peak_mb"] = mem["peak_mb"]
    return result


def _predict_mb(measured: dict[int, float], T: int) -> float | None:
    """Memory at ``T`` from the line through the smallest- and largest-T measurements (``None``: fewer than 2)."""
    if len(measured) < 2:
        return None
    ts = sorted(measured)
    t0, t1 = ts[0], ts[-1]
    slope = max(0.0, (measured[t1] - measured[t0]) / (t1 - t0))
    return measured[t1] + slope * (T - t1)


def _repeats(T: int, quick: bool) -> int:
    if quick:
        return 1
    return 3 if T <= 10 else 2 if T <= 50 else 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="+", default=None, help="time steps T (default 10 50 200)")
    p.add_argument("--quick", action="store_true", help="one measured iteration per case (default T: 10 50)")
    p.add_argument(
        "--max-gb", type=float, default=16.0, help="skip cases predicted to need more memory (at most 70%% of RAM)"
    )
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--T", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.case:
        print(json.dumps(measure(args.case, args.T, args.repeats)))
        return
    steps = args.steps or ([10, 50] if args.quick else [10, 50, 200])
    try:  # never more than 70 % of this machine's memory
        total_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        args.max_gb = min(args.max_gb, 0.7 * total_gb)
    except (ValueError, OSError, AttributeError):
        pass

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__}, threads 2, load average at start {os.getloadavg()[0]:.1f}; "
        "ConvertibleUNet(2, 1, 1, (16, 32, 64, 128)), 56x48, batch 26, multi-threshold neurons, static input, "
        "BCE-Dice, Adam\n"
    )
    ann = run_case("ann", 1, 1 if args.quick else 5)
    if "error" in ann:
        raise SystemExit(f"ANN case failed: {ann['error']}")
    print(f"ANN forward (no grad): {ann['fwd_ms']:.1f} ms; ANN training step: {ann['ms']:.1f} ms\n")
    print(
        "| T | method | ms / iteration | peak RSS delta (MB) | memory / ANN training "
        "| flow time / (T x ANN fwd + ANN fwd+bwd) |"
    )
    print("|---|---|---|---|---|---|")
    print(f"| - | ANN fwd+bwd+step | {ann['ms']:.0f} | {ann['peak_mb']:.0f} | 1.00 | - |")
    sys.stdout.flush()
    memory: dict[str, dict[int, float]] = {"flow": {}, "flow_nocount": {}, "bptt": {}}
    label = {"flow": "flow", "flow_nocount": "flow, no count", "bptt": "bptt"}
    for T in sorted(steps):
        ideal = T * ann["fwd_ms"] + ann["ms"]
        for method in memory:
            if len(memory[method]) == 1 and T > max(memory[method]):
                # a second, smaller T for the linear fit (memory only, not printed): extrapolating from a single
                # point could start a case that needs more memory than the machine has
                probe_t = max(1, min(memory[method]) // 2)
                probe = run_case(method, probe_t, 1, memory_only=True)
                if "error" not in probe:
                    memory[method][probe_t] = probe["peak_mb"]
            predicted = _predict_mb(memory[method], T)
            if predicted is not None and predicted > args.max_gb * 1024:
                print(f"| {T} | {label[method]} | skipped (predicted {predicted / 1024:.1f} GB) | | | |")
                continue
            r = run_case(method, T, _repeats(T, args.quick))
            if "error" in r:
                print(f"| {T} | {label[method]} | {r['error']} | | | |")
                continue
            memory[method][T] = r["peak_mb"]
            ratio = r["ms"] / ideal
            col = f"({ratio:.2f})" if method == "bptt" else f"{ratio:.2f}"
            mem = r["peak_mb"] / ann["peak_mb"]
            print(f"| {T} | {label[method]} | {r['ms']:.0f} | {r['peak_mb']:.0f} | {mem:.2f} | {col} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
