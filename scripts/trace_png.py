#!/usr/bin/python3
"""Draw a pipetrain run trace (run_dir/trace.json, run.trace_steps) as a PNG timeline.

One row per rank (trace-event pid), one bar per measured span coloured by category
(compute kinds F / B / Bx / Bw each their own colour, waiting, sends, reductions, optimizer,
evaluation, checkpoint); with --arrows, a thin line from each send to its receive.

  /usr/bin/python3 scripts/trace_png.py runs/NAME/trace.json out.png [--steps A:B] [--arrows]

--steps A:B keeps the spans of steps A..B (1-based, inclusive; eval/checkpoint spans of
step B included). Needs matplotlib (Debian: python3-matplotlib).
"""
import argparse
import json
import re
import sys

COLOURS = {"F": "#4c72b0", "B": "#dd8452", "Bx": "#c44e52", "Bw": "#8172b3", "wait": "#d9d9d9",
           "send": "#55a868", "reduce": "#937860", "step": "#da8bc3", "eval": "#8c8c8c",
           "checkpoint": "#ccb974"}


def colour_key(e):
    """Compute spans by action kind (the name's leading letters: F, B, Bx, Bw), others by category."""
    return re.match(r"[A-Za-z]+", e["name"]).group(0) if e["cat"] == "compute" else e["cat"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("png")
    ap.add_argument("--steps", default="", help="A:B, 1-based inclusive")
    ap.add_argument("--arrows", action="store_true", help="draw send -> receive lines")
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        sys.exit("trace_png.py: matplotlib is missing (apt-get install python3-matplotlib)")
    events = json.load(open(a.trace))["traceEvents"]
    lo, hi = (int(x) for x in a.steps.split(":")) if a.steps else (None, None)
    keep = lambda e: lo is None or lo <= e.get("args", {}).get("step", lo) <= hi
    names = {e["pid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    spans = [e for e in events if e["ph"] == "X" and keep(e)]
    if not spans:
        sys.exit("trace_png.py: no spans in the selected steps")
    t0 = min(e["ts"] for e in spans)
    fig, ax = plt.subplots(figsize=(14, 0.6 * len(names) + 1.6))
    for e in spans:
        ax.barh(e["pid"], e["dur"] / 1e3, left=(e["ts"] - t0) / 1e3, height=0.8,
                color=COLOURS.get(colour_key(e), "#000000"), linewidth=0)
    if a.arrows:
        start = {e["id"]: e for e in events if e["ph"] == "s"}
        t1 = max(e["ts"] + e["dur"] for e in spans)
        for f in (e for e in events if e["ph"] == "f" and e["id"] in start):
            s = start[f["id"]]
            if t0 <= s["ts"] <= t1 and t0 <= f["ts"] <= t1:
                ax.plot([(s["ts"] - t0) / 1e3, (f["ts"] - t0) / 1e3], [s["pid"], f["pid"]], color="k", lw=0.3)
    ax.set_yticks(sorted(names))
    ax.set_yticklabels([names[p] for p in sorted(names)])
    ax.invert_yaxis()
    ax.set_xlabel("ms since the first shown span (measured, rank clocks aligned at start)")
    used = sorted({colour_key(e) for e in spans}, key=list(COLOURS).index)
    ax.legend(handles=[Patch(color=COLOURS[k], label=k) for k in used], ncol=len(used), loc="upper center",
              bbox_to_anchor=(0.5, -0.25 if len(names) < 4 else -0.12), fontsize=8, frameon=False)
    ax.set_title(a.title or a.trace)
    fig.tight_layout()
    fig.savefig(a.png, dpi=120)


if __name__ == "__main__":
    main()
