#!/usr/bin/env bash
# Cost of time accounting (run.time_accounting: per-action timing, the per-step gather of
# the split, and metrics' time_split): the quickstart model trained with it on and off,
# alternating on/off ROUNDS times so machine load hits both alike; prints the median
# and the fastest seconds per step (time_s differences, after WARMUP steps) of each, the
# overhead of the medians, and the accounting's own measured share of the "on" runs
# (summary.json: accounting_s / wall_s, the largest over ranks).
#
#   scripts/bench_time_accounting.sh                # pp=1 and pp=4 1f1b, 3 rounds of 15 steps
#   ROUNDS=5 STEPS=20 LAYOUTS="4" scripts/bench_time_accounting.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-15}
WARMUP=${WARMUP:-3}
LAYOUTS=${LAYOUTS:-"1 4"}
BIN=${BIN:-build/pipetrain}
OUT=${BENCH_OUT_DIR:-runs/bench_time_accounting}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1
# REPORT_ONLY=1: only the table, from the runs already in OUT.
[ "${REPORT_ONLY:-0}" = 1 ] || rm -rf "$OUT"
for pp in $LAYOUTS; do
  [ "${REPORT_ONLY:-0}" = 1 ] && break
  for round in $(seq "$ROUNDS"); do
    for on in true false; do
      mpirun -np "$pp" -x OPENBLAS_NUM_THREADS=1 "$BIN" train --config configs/quickstart.yaml \
        --set parallel.pp="$pp" --set schedule.kind=1f1b --set runtime.threads=1 --set runtime.progress=off \
        --set training.steps="$STEPS" --set training.eval_every=0 --set data.val="" \
        --set run.time_accounting=$on --set run.out_dir="$OUT" --set run.name="pp${pp}_${on}_$round" >/dev/null
    done
  done
done
python3 - "$OUT" "$LAYOUTS" "$WARMUP" <<'PY'
import glob, json, os, statistics, sys
out, layouts, warmup = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
print("| layout | time accounting | median s/step | fastest s/step | per-run medians | accounting_s / wall_s |")
print("|---|---|---|---|---|---|")
for pp in layouts:
    med = {}
    for on in ("true", "false"):
        per_run, fastest, share = [], [], []
        for d in sorted(glob.glob(f"{out}/pp{pp}_{on}_*")):
            t = [r["time_s"] for r in map(json.loads, open(os.path.join(d, "metrics.jsonl"))) if "loss" in r]
            dt = [b - a for a, b in zip(t[warmup:], t[warmup + 1:])]
            per_run.append(statistics.median(dt))
            fastest.append(min(dt))
            tt = json.load(open(os.path.join(d, "summary.json"))).get("time_split_total", {})
            if "accounting_s" in tt:
                share.append(max(a / w for a, w in zip(tt["accounting_s"], tt["wall_s"])))
        med[on] = statistics.median(per_run)
        print(f"| pp={pp} 1f1b | {'on' if on == 'true' else 'off'} | {med[on]:.4f} | {min(fastest):.4f} | "
              f"{', '.join(f'{x:.4f}' for x in per_run)} | {f'{100 * max(share):.3f}%' if share else '-'} |")
    print(f"| pp={pp} 1f1b | on / off - 1 | {100 * (med['true'] / med['false'] - 1):+.2f}% | | | |")
PY
