#!/usr/bin/env bash
# Measured vs predicted pipeline step time on the CPU:
#   1. `pipetrain bench` under mpirun -np PP writes the cost file (per-block, embedding,
#      head F/Bx/Bw, p2p latency/bandwidth, optimizer per parameter);
#   2. `pipetrain plan --costs` predicts the step time of each schedule from it;
#   3. a short training run of each schedule on PP ranks measures the step time
#      (median over the steps after SKIP warm-up steps of tokens_per_step / tokens_per_s,
#      the trainer's per-step wall time in metrics.jsonl);
# and prints measured, predicted and their ratio. A benchmark command, not a test: the
# result depends on the machine and on what else runs on it (the load average is printed).
#
#   scripts/bench_pipeline_cpu.sh                                  # quickstart model, pp=2, 1f1b and bfpp
#   CONFIG=configs/tiny_test.yaml SCHEDULES=1f1b STEPS=100 scripts/bench_pipeline_cpu.sh
#   CONFIG=configs/cpu_paci.yaml SCHEDULES="paci_flush paci" scripts/bench_pipeline_cpu.sh  # asynchronous:
#     time per update of one drained segment of STEPS updates (the trainer logs the segment's mean)
#
# Env: CONFIG (configs/quickstart.yaml), PP (2), SCHEDULES ("1f1b bfpp"; bfpp runs with
# schedule.chunks=CHUNKS, default 2), STEPS (40), SKIP (5), ITERS (20, bench repetitions),
# BUILD_DIR (build), OUT (runs/bench_pipeline_cpu), PIPETRAIN_SKIP_BUILD=1 to use the binary as is.
# Training data: data_cache/sotu_byte shards when present, else a synthetic byte corpus
# (the step time does not depend on the text).
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${CONFIG:-configs/quickstart.yaml}
PP=${PP:-2}
SCHEDULES=${SCHEDULES:-"1f1b bfpp"}
CHUNKS=${CHUNKS:-2}
STEPS=${STEPS:-40}
SKIP=${SKIP:-5}
ITERS=${ITERS:-20}
BUILD_DIR=${BUILD_DIR:-build}
OUT=${OUT:-runs/bench_pipeline_cpu}
BIN="$BUILD_DIR/pipetrain"
export OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --oversubscribe -np "$PP")

# CPU that other processes took while a command ran, in % of the machine (all cores):
# /proc/stat busy time over the run minus the command's own user+sys (its children included).
# The prediction assumes the ranks have their cores to themselves; this says how far that held.
busy_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
run_measured() {  # run_measured LOGFILE cmd...; prints the interference line to stdout
  local log=$1; shift
  local b0 t0 t1 b1 own
  b0=$(busy_jiffies); t0=$(date +%s.%N)
  local TIMEFORMAT='%U %S'
  own=$( { time "$@" >"$log" 2>&1; } 2>&1 ) || { cat "$log"; exit 1; }
  t1=$(date +%s.%N); b1=$(busy_jiffies)
  python3 -c "
import os, sys
b0, b1, t0, t1 = map(float, sys.argv[1:5]); u, s = map(float, sys.argv[5].split())
hz, n = os.sysconf('SC_CLK_TCK'), os.cpu_count()
other = max(0.0, (b1 - b0) / hz - (u + s))
print(f'   wall {t1 - t0:.1f} s; this command used {u + s:.1f} CPU-s; other processes used {other:.1f} CPU-s'
      f' = {100 * other / ((t1 - t0) * n):.0f}% of the {n} cores')" "$b0" "$b1" "$t0" "$t1" "$own"
}

if [ "$STEPS" -le "$SKIP" ]; then echo "bench_pipeline_cpu: STEPS must exceed SKIP" >&2; exit 1; fi
if [ "${PIPETRAIN_SKIP_BUILD:-0}" != "1" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD_DIR" --target pipetrain -j "$(nproc)" >/dev/null
fi
mkdir -p "$OUT"

TRAIN_GLOB="data_cache/sotu_byte/train_*.bin"
if ! compgen -G "$TRAIN_GLOB" >/dev/null; then
  python3 tests/app/make_byte_corpus.py "$OUT/corpus.txt" 512
  "$BIN" prepare --tokenizer byte --input "$OUT/corpus.txt" --out "$OUT/data" >/dev/null
  TRAIN_GLOB="$OUT/data/train_*.bin"
fi

echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg) =="
echo "== 1. pipetrain bench ($PP ranks) =="
run_measured "$OUT/bench.log" "${MPIRUN[@]}" "$BIN" bench --config "$CONFIG" --set parallel.pp="$PP" --iters "$ITERS" \
  --out "$OUT/costs.json"
grep -v '^bench: ' "$OUT/bench.log"

summary=""
for sched in $SCHEDULES; do
  sets=(--set parallel.pp="$PP" --set schedule.kind="$sched")
  case "$sched" in bfpp | interleaved_1f1b) sets+=(--set schedule.chunks="$CHUNKS") ;; esac
  echo "== 2. pipetrain plan --costs ($sched) =="
  # Same steps and no validation as the training run below, so an asynchronous
  # schedule is planned as the one drained segment of STEPS updates it runs.
  "$BIN" plan --config "$CONFIG" "${sets[@]}" --set run.out_dir="$OUT/runs" --set data.val= \
    --set training.steps="$STEPS" --costs "$OUT/costs.json" --trace "$OUT/plan_$sched.json" >"$OUT/plan_$sched.log"
  sed -n '/^== layer split ==/,/^== actions/p' "$OUT/plan_$sched.log" | grep -v '^== actions'
  sed -n '/^== prediction from/,$p' "$OUT/plan_$sched.log" | grep -v '^trace:'
  # Synchronous kinds: "predicted step time"; asynchronous: "predicted time per update".
  predicted_ms=$(sed -n 's/^predicted \(step time\|time per update\): \([0-9.]*\) ms.*/\2/p' "$OUT/plan_$sched.log")
  [ -n "$predicted_ms" ] || { echo "bench_pipeline_cpu: plan printed no prediction" >&2; exit 1; }

  echo "== 3. training $STEPS steps ($sched, $PP ranks; load average before: $(cut -d' ' -f1-3 /proc/loadavg)) =="
  rm -rf "$OUT/runs/train_$sched"
  run_measured "$OUT/train_$sched.log" "${MPIRUN[@]}" "$BIN" train --config "$CONFIG" "${sets[@]}" \
    --set "data.train=$TRAIN_GLOB" --set data.val= --set training.steps="$STEPS" --set training.max_seconds=0 \
    --set training.log_every="$STEPS" --set run.out_dir="$OUT/runs" --set run.name="train_$sched" --set runtime.progress=off
  line=$(python3 - "$OUT/runs/train_$sched/metrics.jsonl" "$SKIP" "$predicted_ms" "$sched" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"tokens_per_s"' in l]
skip, predicted, sched = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
# The trainer's per-step wall time: tokens of the step / tokens_per_s of the step.
ms = [1e3 * (r["tokens"] / r["step"]) / r["tokens_per_s"] for r in rows[skip:]]
q = statistics.quantiles(ms, n=10)
med = statistics.median(ms)
print("   per-step ms:", " ".join(f"{x:.0f}" for x in ms), file=sys.stderr)
print(f"{sched}: measured median {med:.3f} ms (min {min(ms):.3f}, p10 {q[0]:.3f}, p90 {q[-1]:.3f}; {len(ms)} steps)"
      f" | predicted {predicted:.3f} ms | measured/predicted {med / predicted:.3f}")
PY
)
  echo "$line"
  summary+="$line"$'\n'
done
echo "== summary ($CONFIG, pp=$PP; load average after: $(cut -d' ' -f1-3 /proc/loadavg)) =="
printf "%s" "$summary"
