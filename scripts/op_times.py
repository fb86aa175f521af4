#!/usr/bin/env python3
"""Per-op GPU time of CUDA runs, from PIPETRAIN_OP_TIMES files (model/cuda/op_timer.h).

Usage: scripts/op_times.py FILE [--top N] [--per-rank]
Each line of FILE is one CUDA backend's sums ({"rank", "device", "ops": {name: {calls, ms}}}).
Prints a markdown table of the ops by total time, summed over every line (every rank and
stage of the run), or one table per rank with --per-rank: calls, total ms, mean µs per
call and share of the timed total. The times bracket each op's kernels and cuBLASLt calls
on the backend's stream; time between ops (host gaps, other streams, the optimizer's
kernels) is not in them.
"""
import argparse
import json
import sys
from collections import defaultdict


def table(ops, top):
    total = sum(t["ms"] for t in ops.values())
    rows = sorted(ops.items(), key=lambda kv: -kv[1]["ms"])
    out = ["| op | calls | total ms | mean µs | share |", "|---|---|---|---|---|"]
    for name, t in rows[:top] if top else rows:
        mean_us = 1000.0 * t["ms"] / t["calls"] if t["calls"] else 0.0
        share = 100.0 * t["ms"] / total if total > 0 else 0.0
        out.append(f"| {name} | {t['calls']} | {t['ms']:.2f} | {mean_us:.1f} | {share:.1f} % |")
    if top and len(rows) > top:
        rest = sum(t["ms"] for _, t in rows[top:])
        out.append(f"| ({len(rows) - top} more) | | {rest:.2f} | | {100.0 * rest / total if total else 0:.1f} % |")
    out.append(f"| **timed total** | {sum(t['calls'] for t in ops.values())} | {total:.2f} | | 100 % |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description="Per-op GPU time from PIPETRAIN_OP_TIMES files.")
    ap.add_argument("file")
    ap.add_argument("--top", type=int, default=0, help="rows to print (0: all)")
    ap.add_argument("--per-rank", action="store_true", help="one table per rank")
    a = ap.parse_args()
    groups = defaultdict(lambda: defaultdict(lambda: {"calls": 0, "ms": 0.0}))
    try:
        lines = [json.loads(l) for l in open(a.file) if l.strip()]
    except (OSError, ValueError) as e:
        sys.exit(f"op_times: cannot read {a.file}: {e}")
    if not lines:
        sys.exit(f"op_times: {a.file} holds no op times (was PIPETRAIN_OP_TIMES set for a cuda run?)")
    for r in lines:
        key = r.get("rank", -1) if a.per_rank else "all"
        for name, t in r["ops"].items():
            groups[key][name]["calls"] += t["calls"]
            groups[key][name]["ms"] += t["ms"]
    for key in sorted(groups, key=str):
        if a.per_rank:
            print(f"\nrank {key}:\n")
        print(table(groups[key], a.top))


if __name__ == "__main__":
    main()
