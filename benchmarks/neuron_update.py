"""What a neuron update costs next to the ReLU it replaces, and what that does to the whole simulation.

On the shipped hippocampus ANN (``bundles/hippocampus_snn/models/ann.pt``), converted as the bundle does
(multi-threshold, connection-wise, its percentile, ``v0 = 0.5``) and as the textbook IF recipe (layer-wise,
99.9th percentile), with a batch of the bundle's calibration slices, one thread:

1. **Per layer**: one time step of every spiking layer of the U-Net on its own input shape, summed over the layers:
   a ReLU (what the ANN does there), the eager update, the compiled update (:mod:`monai_snn.neurons.fused`) writing
   a new output, and writing it into the input (what the simulator does when the input is a convolution output
   nothing else reads); with and without spike counting. Inputs are the layers' real input currents.
2. **Whole network**: SNN / (T x ANN forward) for eager and compiled updates, with and without spike counting.
3. **Inside the passes**: the same compiled simulation split into its neuron updates and everything else, per time
   step, against the ANN's ReLUs and the rest of its forward (the updates timed on the instances, not by hooks,
   which would stop them writing into their inputs).

Every case runs once per round, rounds interleaved (the machines are shared and noisy), medians; times are the
thread's CPU time (``time.thread_time``), which a busy machine disturbs far less than wall-clock (a process that
waits for a core accrues none), and wall-clock beside it for the whole network.

Usage::

    python benchmarks/neuron_update.py --save            # benchmarks/neuron_update_results.txt
    python benchmarks/neuron_update.py --batch 4 --steps 2 --repeats 1   # smoke (tests)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from peers import _bundle, shipped_ann  # noqa: E402 - the same shipped ANN and calibration slices as the peers table


def _interleaved(cases: dict, repeats: int) -> tuple[dict, dict]:
    """Median thread-CPU and wall seconds of each case, every case once per round. A case may return the CPU
    seconds of the part it wants timed (then its wall time is that too)."""
    cpu: dict = {k: [] for k in cases}
    wall: dict = {k: [] for k in cases}
    for fn in cases.values():
        fn()  # warm-up (and compilation)
    for _ in range(repeats):
        for k, fn in cases.items():
            c0, w0 = time.thread_time(), time.perf_counter()
            own = fn()
            cpu[k].append(time.thread_time() - c0 if own is None else own)
            wall[k].append(time.perf_counter() - w0 if own is None else own)
    return {k: statistics.median(v) for k, v in cpu.items()}, {k: statistics.median(v) for k, v in wall.items()}


def _layer_inputs(snn, x: torch.Tensor) -> list[tuple[torch.nn.Module, torch.Tensor]]:
    """Each spiking layer with its input current at the first time step."""
    seen: list = []
    hooks = [
        n.register_forward_pre_hook(lambda m, a: seen.append((m, a[0].detach().clone())) if m.num_steps == 0 else None)
        for n in snn.neurons().values()
    ]
    try:
        with torch.no_grad():
            snn(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def per_layer(snn, x: torch.Tensor, repeats: int) -> list[str]:
    """Table 1: one step of every spiking layer, summed over the layers, in ms and relative to ReLU."""
    from monai_snn.neurons import reset_states, set_fused_update

    layers = _layer_inputs(snn, x)

    def step_all(mode: str, count: bool):
        def run() -> float:
            set_fused_update(mode.startswith("compiled"))
            spent = 0.0
            with torch.no_grad():
                for neuron, inp in layers:
                    if mode == "relu":
                        c0 = time.thread_time()
                        torch.relu(inp)
                        spent += time.thread_time() - c0
                        continue
                    reset_states(neuron)
                    neuron.count_spikes = count
                    neuron(inp)  # first step: allocates the membrane (not timed)
                    cur = inp.clone() if mode == "compiled, into input" else inp
                    neuron.input_disposable = mode == "compiled, into input"
                    try:
                        c0 = time.thread_time()
                        neuron(cur)
                        spent += time.thread_time() - c0
                    finally:
                        neuron.input_disposable = False
            return spent

        return run

    modes = ["relu", "eager", "compiled", "compiled, into input"]  # compiled: eager with a warning if it cannot
    rows = []
    try:
        for count in (False, True):
            cases = {mode: step_all(mode, count) for mode in modes if not (mode == "relu" and count)}
            rows.append((count, _interleaved(cases, repeats)[0]))
    finally:
        set_fused_update(os.environ.get("MONAI_SNN_FUSED", "auto"))  # back to the process default
    relu = rows[0][1]["relu"]
    lines = [
        f"Per layer: the second time step of each of the {len(layers)} spiking layers on its real input (first "
        "step's current, batch as below), summed over the layers; thread CPU time, median (the compiled update "
        "counts per element and sums over the batch once per forward pass, not timed here)",
        "",
        "| neuron | spike counting | update | ms per step (all layers) | / ReLU |",
        "|---|---|---|---|---|",
        f"| ReLU (the ANN) | - | - | {relu * 1e3:.2f} | 1.00 |",
    ]
    for count, cpu in rows:
        for mode, t in cpu.items():
            if mode != "relu":
                lines.append(
                    f"| {snn.neuron_name} | {'on' if count else 'off'} | {mode} | {t * 1e3:.2f} | {t / relu:.2f} |"
                )
    return lines


def in_situ(ann, snn, x: torch.Tensor, num_steps: int, repeats: int) -> tuple[float, float, float, float]:
    """Thread CPU seconds inside the real forward passes: the ANN's ReLUs and the rest of its forward, the SNN's
    neuron updates (compiled, spike counting as set) and the rest of its simulation, per time step; medians."""
    relus = [m for m in ann.modules() if isinstance(m, torch.nn.ReLU)]
    start: dict[int, float] = {}
    spent = [0.0]

    def pre(m, a):
        start[id(m)] = time.thread_time()

    def post(m, a, o):
        spent[0] += time.thread_time() - start[id(m)]

    hooks = [h for m in relus for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]
    neurons = list(snn.neurons().values())

    def timed(step):  # on the instance, not a hook: a hook would stop the update writing into its input
        def run(seq):
            c0 = time.thread_time()
            out = step(seq)
            spent[0] += time.thread_time() - c0
            return out

        return run

    for n in neurons:
        n.multi_step = timed(n.multi_step)
    snn.num_steps = num_steps
    rows: dict[str, list[float]] = {"ann_act": [], "ann_rest": [], "snn_act": [], "snn_rest": []}
    try:
        with torch.no_grad():
            for r in range(repeats + 1):
                for name, net in (("ann", ann), ("snn", snn)):
                    spent[0] = 0.0
                    c0 = time.thread_time()
                    net(x)
                    total = time.thread_time() - c0
                    if r:  # the first round warms up
                        steps = 1 if name == "ann" else num_steps
                        rows[f"{name}_act"].append(spent[0] / steps)
                        rows[f"{name}_rest"].append((total - spent[0]) / steps)
    finally:
        for h in hooks:
            h.remove()
        for n in neurons:
            del n.multi_step
    return tuple(statistics.median(rows[k]) for k in ("ann_act", "ann_rest", "snn_act", "snn_rest"))


def whole_network(ann, snns: dict, x: torch.Tensor, steps: list[int], repeats: int) -> list[str]:
    """Table 2: SNN / (T x ANN forward), eager and compiled updates, spike counting off and on; table 3: where the
    compiled simulation's time goes, inside the real passes."""
    from monai_snn.neurons import set_fused_update

    lines = [
        "Whole network: SNN / (T x ANN forward), thread CPU time (wall-clock in brackets), median of interleaved "
        "rounds",
        "",
        "| T | network | spike counting | eager | compiled |",
        "|---|---|---|---|---|",
    ]
    for T in steps:
        for name, snn in snns.items():
            snn.num_steps = T
            for count in (False, True):
                snn.count_spikes = count

                def run(mode, s=snn):
                    def go():
                        set_fused_update(mode)
                        with torch.no_grad():
                            s(x)

                    return go

                def run_ann():
                    with torch.no_grad():
                        ann(x)

                try:
                    cpu, wall = _interleaved({"ann": run_ann, False: run(False), True: run(True)}, repeats)
                finally:
                    set_fused_update(os.environ.get("MONAI_SNN_FUSED", "auto"))  # back to the process default
                cells = [f"{cpu[m] / (T * cpu['ann']):.2f} ({wall[m] / (T * wall['ann']):.2f})" for m in (False, True)]
                lines.append(f"| {T} | {name} | {'on' if count else 'off'} | " + " | ".join(cells) + " |")
                print(lines[-1], flush=True)
    T = steps[0]
    lines += [
        "",
        f"Inside the passes (T = {T}, compiled, spike counting off): ms per time step of the neuron updates against "
        "the ANN's ReLUs, and of everything else (convolutions, pooling, concatenations, the simulator's loop; the "
        "SNN runs its static first layer and its affine tail once per pass) against the rest of the ANN's forward",
        "",
        "| network | ReLUs (ANN) | neuron updates (SNN) | ratio | rest of the ANN | rest of the SNN step | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    set_fused_update(True)
    try:
        for name, snn in snns.items():
            snn.count_spikes = False
            a_act, a_rest, s_act, s_rest = in_situ(ann, snn, x, T, repeats)
            lines.append(
                f"| {name} | {a_act * 1e3:.2f} | {s_act * 1e3:.2f} | {s_act / a_act:.2f} | {a_rest * 1e3:.2f} | "
                f"{s_rest * 1e3:.2f} | {s_rest / a_rest:.2f} |"
            )
            print(lines[-1], flush=True)
    finally:
        set_fused_update(os.environ.get("MONAI_SNN_FUSED", "auto"))
    return lines


def main(argv=None) -> list[str]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, nargs="+", default=[8, 32])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--save", action="store_true")
    args = p.parse_args(argv)

    from monai_snn.conversion import convert_to_snn
    from monai_snn.conversion.io import load_settings

    torch.set_num_threads(1)
    torch.manual_seed(0)
    ann, cal_x = shipped_ann(_bundle())
    x = cal_x.repeat((args.batch + len(cal_x) - 1) // len(cal_x), 1, 1, 1)[: args.batch]
    s = load_settings(ROOT / "bundles/hippocampus_snn/models/converted.json")
    snns = {
        f"MT, connection, p{s['percentile']:g}, v0 = {s['initial_potential']:g}": convert_to_snn(
            ann, [cal_x], neuron="multi_threshold", thresholds=s["thresholds"], normalization=s["normalization"],
            percentile=s["percentile"], initial_potential=s["initial_potential"], num_steps=args.steps[0],
        ),
        "IF, layer, p99.9, v0 = 0": convert_to_snn(
            ann, [cal_x], neuron="if", normalization="layer", percentile=99.9, initial_potential=0.0,
            num_steps=args.steps[0],
        ),
    }  # fmt: skip
    for name, snn in snns.items():
        snn.neuron_name = name.split(",")[0]
    lines = [
        "# Neuron update cost (benchmarks/neuron_update.py)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, torch "
        f"{torch.__version__}, python {sys.version.split()[0]}, 1 thread. Shipped hippocampus ANN (fold 0), batch "
        f"{len(x)} of the bundle's calibration slices ({tuple(x.shape[2:])}), {args.repeats} rounds.",
        "",
    ]
    for snn in snns.values():
        lines += per_layer(snn, x, args.repeats) + [""]
        print("\n".join(lines[-8:]), flush=True)
    lines += whole_network(ann, snns, x, args.steps, args.repeats)
    if args.save:
        (ROOT / "benchmarks" / "neuron_update_results.txt").write_text("\n".join(lines) + "\n")
    return lines


if __name__ == "__main__":
    main()
