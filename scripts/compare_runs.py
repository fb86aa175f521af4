#!/usr/bin/env python3
"""Time-to-accuracy table for pipetrain runs.

Usage: compare_runs.py RUN_DIR [RUN_DIR ...] [--targets 2.5,2.2] [--plot out.png]

For each run directory (runs/<name>, with metrics.jsonl and config.yaml) prints the
schedule, training throughput, the first and last validation loss, and the wall time
and tokens at which the validation loss first reached each target. Without
--targets, the targets are the worst final validation loss and 0.15 and 0.3 above
it, so every run reaches all three. With --plot, draws validation
loss against wall time and against tokens (needs matplotlib).
"""
import argparse
import json
import math
import os
import re
import sys


def load(run_dir):
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    kind = "?"
    cfg = os.path.join(run_dir, "config.yaml")
    if os.path.exists(cfg):
        m = re.search(r"^schedule:\n(?:  .*\n)*?  kind: \"?([\w]+)", open(cfg).read(), re.M)
        if m:
            kind = m.group(1)
    evals = [r for r in rows if "val_loss" in r]
    steps = [r for r in rows if "loss" in r]
    return {"name": os.path.basename(os.path.normpath(run_dir)), "kind": kind, "evals": evals, "steps": steps}


def first_reach(evals, target):
    for r in evals:
        if r["val_loss"] <= target:
            return r
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--targets", default="")
    ap.add_argument("--plot", default="")
    args = ap.parse_args()
    runs = [load(d) for d in args.runs]
    runs = [r for r in runs if r["evals"]]
    if not runs:
        sys.exit("compare_runs: no run has validation losses (data.val unset?)")
    if args.targets:
        targets = [float(t) for t in args.targets.split(",")]
    else:
        worst_final = max(r["evals"][-1]["val_loss"] for r in runs)
        targets = [math.ceil((worst_final + d) * 1000) / 1000 for d in (0.3, 0.15, 0.0)]
    head = f"| run | schedule | steps | tokens | time s | tokens/s | val first | val last |"
    head += "".join(f" to {t:g}: time s / Mtok |" for t in targets)
    print(head)
    print("|" + "---|" * (8 + len(targets)))
    for r in runs:
        last = r["steps"][-1] if r["steps"] else {"step": 0, "tokens": 0, "time_s": 0}
        tps = last["tokens"] / last["time_s"] if last.get("time_s") else 0
        line = (f"| {r['name']} | {r['kind']} | {last['step']} | {last['tokens']} | {last['time_s']:.1f} | {tps:.0f} |"
                f" {r['evals'][0]['val_loss']:.4f} | {r['evals'][-1]['val_loss']:.4f} |")
        for t in targets:
            hit = first_reach(r["evals"], t)
            line += f" {hit['time_s']:.1f} / {hit['tokens'] / 1e6:.3f} |" if hit else " not reached |"
        print(line)
    if args.plot:
        try:
            import matplotlib
        except ImportError:
            sys.exit("compare_runs: --plot needs matplotlib (Debian: python3-matplotlib; run with /usr/bin/python3)")
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for r in runs:
            axes[0].plot([e["time_s"] for e in r["evals"]], [e["val_loss"] for e in r["evals"]], marker="o", label=r["name"])
            axes[1].plot([e["tokens"] / 1e6 for e in r["evals"]], [e["val_loss"] for e in r["evals"]], marker="o",
                         label=r["name"])
        axes[0].set_xlabel("wall time (s)")
        axes[1].set_xlabel("tokens (M)")
        for a in axes:
            a.set_ylabel("validation loss")
            a.grid(alpha=0.3)
        axes[1].legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
