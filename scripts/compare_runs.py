#!/usr/bin/env python3
"""Time-to-accuracy table for pipetrain runs (fields: docs/metrics.md).

Usage: compare_runs.py RUN_DIR [RUN_DIR ...] [--targets 2.5,2.2] [--plot out.png]
                       [--bubbles] [--markdown-only]

For each run directory (runs/<name>: metrics.jsonl, config.yaml, summary.json) prints the
schedule, steps, tokens, wall time (run clock, restarts summed), simulated time
(sim_time), training throughput, final validation loss, peak activation slots and
restarts, and for each target validation loss the wall time, simulated time and tokens
at which it was first reached (a resumed run's metrics.jsonl holds its whole history).
Targets: --targets, else the runs' training.target_val_losses when they all agree, else
the worst final validation loss and 0.15 and 0.3 above it, so every run reaches all
three. --bubbles adds a table of each run's measured bubble per rank beside the planned
one (summary.json's time_split_total and planned_bubble_measured_costs). --plot draws
validation loss against wall time, simulated time and tokens (needs matplotlib).
"""
import argparse
import json
import math
import os
import re
import sys


def config_value(text, section, key):
    m = re.search(rf"^{section}:\n(?:  .*\n)*?  {key}: \"?([^\"\n]*)", text, re.M)
    return m.group(1).strip() if m else None


def load(run_dir):
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    cfg_path = os.path.join(run_dir, "config.yaml")
    cfg = open(cfg_path).read() if os.path.exists(cfg_path) else ""
    summary_path = os.path.join(run_dir, "summary.json")
    summary = json.load(open(summary_path)) if os.path.exists(summary_path) else {}
    targets = config_value(cfg, "training", "target_val_losses")
    return {"name": os.path.basename(os.path.normpath(run_dir)),
            "kind": config_value(cfg, "schedule", "kind") or summary.get("schedule", "?"),
            "evals": [r for r in rows if r.get("val_loss") is not None],
            "steps": [r for r in rows if "loss" in r],
            "summary": summary,
            "targets": json.loads(targets) if targets and targets.startswith("[") else []}


def first_reach(evals, target):
    return next((r for r in evals if r["val_loss"] <= target), None)


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def tta_table(runs, targets):
    head = ("| run | schedule | steps | tokens | time s | sim time | tokens/s | final val | peak slots | restarts |"
            + "".join(f" to {t:g}: time s / sim / Mtok |" for t in targets))
    lines = [head, "|" + "---|" * (10 + len(targets))]
    for r in runs:
        last = r["steps"][-1] if r["steps"] else {"step": 0, "tokens": 0, "time_s": 0}
        s = r["summary"]
        time_s = s.get("time_s", last.get("time_s"))
        tps = last["tokens"] / time_s if time_s else 0
        slots = max((x["peak_slots"] for x in r["steps"] if "peak_slots" in x), default=None)
        line = (f"| {r['name']} | {r['kind']} | {last['step']} | {last['tokens']} | {time_s:.1f} |"
                f" {fmt(last.get('sim_time'), 'g')} | {tps:.0f} | {r['evals'][-1]['val_loss']:.4f} |"
                f" {fmt(slots, 'd')} | {s.get('restarts', 0)} |")
        for t in targets:
            hit = first_reach(r["evals"], t)
            line += (f" {hit['time_s']:.1f} / {fmt(hit.get('sim_time'), 'g')} / {hit['tokens'] / 1e6:.3f} |"
                     if hit else " not reached |")
        lines.append(line)
    return lines


def bubble_table(runs):
    lines = ["| run | schedule | rank | measured bubble | planned (sim costs) | planned (measured costs) |"
             " compute s | wait s | step s | reduce s | wall s |", "|" + "---|" * 11]
    for r in runs:
        t = r["summary"].get("time_split_total")
        if not t:
            continue
        planned = t.get("planned_bubble", [])
        at_measured = r["summary"].get("planned_bubble_measured_costs", [])
        pp = len(planned) or 1
        for w, b in enumerate(t["bubble"]):
            compute = sum(t[k][w] for k in ("forward_s", "backward_s", "backward_input_s", "backward_weight_s"))
            p = planned[w % pp] if planned else None
            q = at_measured[w % pp] if at_measured else None
            lines.append(f"| {r['name']} | {r['kind']} | {w} | {b:.3f} | {fmt(p, '.3f')} | {fmt(q, '.3f')} |"
                         f" {compute:.2f} | {t['wait_s'][w]:.2f} | {t['step_s'][w]:.2f} | {t['reduce_s'][w]:.2f} |"
                         f" {t['wall_s'][w]:.2f} |")
    return lines


def plot(runs, path):
    try:
        import matplotlib
    except ImportError:
        sys.exit("compare_runs: --plot needs matplotlib (Debian: python3-matplotlib; run with /usr/bin/python3)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    unit = next((r["summary"].get("sim_time_unit") for r in runs if r["summary"].get("sim_time_unit")), "unit")
    for r in runs:
        e = r["evals"]
        y = [x["val_loss"] for x in e]
        axes[0].plot([x["time_s"] for x in e], y, marker="o", ms=3, label=r["name"])
        if all("sim_time" in x for x in e):
            axes[1].plot([x["sim_time"] for x in e], y, marker="o", ms=3, label=r["name"])
        axes[2].plot([x["tokens"] / 1e6 for x in e], y, marker="o", ms=3, label=r["name"])
    axes[0].set_xlabel("wall time, run clock (s)")
    axes[1].set_xlabel("simulated time (%s)" % ("s" if unit == "s" else "unit costs: F = 1, B = 2"))
    axes[2].set_xlabel("tokens (M)")
    for a in axes:
        a.set_ylabel("validation loss")
        a.grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--targets", default="")
    ap.add_argument("--plot", default="")
    ap.add_argument("--bubbles", action="store_true")
    args = ap.parse_args()
    runs = [r for r in map(load, args.runs) if r["evals"]]
    if not runs:
        sys.exit("compare_runs: no run has validation losses (data.val unset?)")
    if args.targets:
        targets = [float(t) for t in args.targets.split(",")]
    elif runs[0]["targets"] and all(r["targets"] == runs[0]["targets"] for r in runs):
        targets = runs[0]["targets"]
    else:
        worst_final = max(r["evals"][-1]["val_loss"] for r in runs)
        targets = [math.ceil((worst_final + d) * 1000) / 1000 for d in (0.3, 0.15, 0.0)]
    print("\n".join(tta_table(runs, targets)))
    if args.bubbles:
        print()
        print("\n".join(bubble_table(runs)))
    if args.plot:
        plot(runs, args.plot)


if __name__ == "__main__":
    main()
