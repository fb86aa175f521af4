#!/usr/bin/python3
"""Training loss against simulated time for the runs of scripts/rpd_localsgd_study.sh.

Usage: rpd_localsgd_plot.py OUT_DIR --budget T --stages "4 8" --methods "pipedream pipedream_lr ..."
                            [--plot out.png] [--window W]

OUT_DIR holds one run directory per (method, S), named METHOD_sS (runs/<name>: metrics.jsonl,
config.yaml, summary.json; fields in docs/metrics.md), or a file METHOD_sS.skipped whose first
line says why that method did not run. Prints a markdown table, one row per (S, method):
updates (= micro-batches at m = 1), tokens, the simulated time of the last update, the mean
training loss over the last 10% of the budget, the final validation loss and the wall time.
--plot draws the training loss, averaged over a window of W simulated time units (default
T / 40) ending at each update, against simulated time: one panel per S, one line per method
(needs matplotlib: /usr/bin/python3 on Debian).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_runs import load  # noqa: E402  (the run reader shared with the TTA study)


def smoothed(steps, window):
    """(sim_time, mean loss of the updates in (sim_time - window, sim_time]) per update."""
    out, lo, total = [], 0, 0.0
    for hi, r in enumerate(steps):
        total += r["loss"]
        while steps[lo]["sim_time"] <= r["sim_time"] - window:
            total -= steps[lo]["loss"]
            lo += 1
        out.append((r["sim_time"], total / (hi - lo + 1)))
    return out


def row(S, method, run, budget):
    steps = run["steps"]
    last = steps[-1]
    tail = [r["loss"] for r in steps if r["sim_time"] > 0.9 * budget] or [last["loss"]]
    final_val = run["evals"][-1]["val_loss"] if run["evals"] else None
    return (f"| {S} | {method} | {run['kind']} | {last['step']} | {last['tokens']} | {last['sim_time']:g} | "
            f"{sum(tail) / len(tail):.4f} | {'-' if final_val is None else format(final_val, '.4f')} | "
            f"{run['summary'].get('time_s', last['time_s']):.1f} |")


def table(out_dir, stages, methods, budget):
    lines = ["| S | method | schedule.kind | updates | tokens | sim time of the last update | "
             "train loss, last 10% of the budget | final val loss | wall s |", "|" + "---|" * 9]
    runs = {}
    for S in stages:
        for method in methods:
            base = os.path.join(out_dir, f"{method}_s{S}")
            if os.path.exists(base + ".skipped"):
                why = open(base + ".skipped").readline().strip()
                lines.append(f"| {S} | {method} | *not run* | - | - | - | - | - | {why} |")
                continue
            run = load(base)
            if not run["steps"]:
                sys.exit(f"rpd_localsgd_plot: {base} has no update lines")
            runs[(S, method)] = run
            lines.append(row(S, method, run, budget))
    return lines, runs


def plot(runs, stages, methods, budget, window, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(stages), figsize=(6.5 * len(stages), 4.2), squeeze=False)
    for ax, S in zip(axes[0], stages):
        for method in methods:
            run = runs.get((S, method))
            if run is None:
                continue
            xy = smoothed(run["steps"], window)
            ax.plot([x for x, _ in xy], [y for _, y in xy], lw=1.2, label=f"{method} ({len(xy)} updates)")
        ax.axvline(budget, color="grey", lw=0.8, ls="--")
        ax.set_title(f"S = {S} pipeline stages")
        ax.set_xlabel("simulated time (unit costs: F = 1, B = 2)")
        ax.set_ylabel(f"training loss (mean over {window:g} units)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--budget", type=float, required=True)
    ap.add_argument("--stages", required=True)
    ap.add_argument("--methods", required=True)
    ap.add_argument("--plot", default="")
    ap.add_argument("--window", type=float, default=0)
    a = ap.parse_args()
    stages, methods = [int(s) for s in a.stages.split()], a.methods.split()
    lines, runs = table(a.out_dir, stages, methods, a.budget)
    print("\n".join(lines))
    if a.plot:
        plot(runs, stages, methods, a.budget, a.window or a.budget / 40, a.plot)


if __name__ == "__main__":
    main()
