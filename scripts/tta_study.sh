#!/usr/bin/env bash
# Time-to-accuracy study on CPU: every schedule that `pipetrain keys` lists for
# schedule.kind trains the quickstart model (configs/quickstart.yaml, untied embeddings so
# the asynchronous schedules can run it too) on the same data with the same seed, at pp=2
# (chunks=2 for interleaved_1f1b and bfpp: 4 stages of one block each), then 1f1b at pp=4
# on the quickstart model as configured (tied) with a trace, for the measured-vs-planned bubble; scripts/compare_runs.py makes the table
# and the plots, scripts/bench_time_accounting.sh the cost of the accounting, and the
# whole is written to docs/results/tta_cpu.md (+ tta_cpu.png, tta_cpu_trace_1f1b_pp4.png).
#
#   scripts/tta_study.sh                         # 60 steps per schedule
#   STEPS=30 SCHEDULES="1f1b gpipe" scripts/tta_study.sh
#   COSTS=costs_gpu.json scripts/tta_study.sh    # sim_time = predicted time on the bench's machine (s)
#
# COSTS: a `pipetrain bench` cost file of this model shape (training.sim_costs); the
# sim-time columns are then the predicted seconds on the machine that measured it.
# TARGETS=a,b,c: the target validation losses of the table (default: compare_runs.py's).
# BENCH_ROUNDS=0 skips the accounting-cost bench. KEEP=1 keeps the runs (and the bench)
# already complete in OUT and runs only the missing ones (delete a run's folder to redo it). Needs build/pipetrain, mpirun, the byte
# shards of scripts/quickstart.sh and matplotlib at /usr/bin/python3.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-60}
EVAL_EVERY=${EVAL_EVERY:-10}
BIN=${BIN:-build/pipetrain}
OUT=${OUT:-runs/tta_study}
DOC=${DOC:-docs/results/tta_cpu.md}
COSTS=${COSTS:-}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
PY=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1
# Every name of the schedule.kind line ("a | b | c" groups) of `pipetrain keys`.
SCHEDULES=${SCHEDULES:-$("$BIN" keys | python3 -c '
import re, sys
line = next(l for l in sys.stdin if l.startswith("schedule.kind "))
print(" ".join(n for g in re.findall(r"[a-z0-9_]+(?:\s*\|\s*[a-z0-9_]+)+", line) for n in re.split(r"\s*\|\s*", g)))')}
common=(--config configs/quickstart.yaml --set model.tie_embeddings=false --set runtime.threads=1
        --set runtime.progress=off --set training.steps="$STEPS" --set training.eval_every="$EVAL_EVERY"
        --set training.max_seconds=0 --set "training.target_val_losses=[]" --set checkpoint.every_steps=0 --set run.out_dir="$OUT" --set run.overwrite=true)
[ -n "$COSTS" ] && common+=(--set training.sim_costs="$COSTS")
mkdir -p "$OUT" "$(dirname "$DOC")"

runs=()
for kind in $SCHEDULES; do
  chunks=1
  case $kind in interleaved_1f1b|bfpp) chunks=2 ;; esac
  runs+=("$OUT/$kind")
  if [ "${KEEP:-0}" = 1 ] && [ -f "$OUT/$kind/summary.json" ]; then continue; fi
  echo "tta_study: $kind (pp=2, chunks=$chunks, $STEPS steps)"
  mpirun -np 2 -x OPENBLAS_NUM_THREADS=1 "$BIN" train "${common[@]}" --set parallel.pp=2 --set schedule.kind="$kind" \
    --set schedule.chunks=$chunks --set run.name="$kind" >"$OUT/$kind.log" 2>&1 \
    || { echo "tta_study: $kind failed, see $OUT/$kind.log" >&2; exit 1; }
done
if [ "${KEEP:-0}" != 1 ] || [ ! -f "$OUT/1f1b_pp4/summary.json" ]; then
  echo "tta_study: 1f1b at pp=4 with a trace"
  mpirun -np 4 -x OPENBLAS_NUM_THREADS=1 "$BIN" train "${common[@]}" --set parallel.pp=4 --set schedule.kind=1f1b \
    --set model.tie_embeddings=true --set run.trace_steps=4 --set run.name=1f1b_pp4 >"$OUT/1f1b_pp4.log" 2>&1
fi
base=${DOC%.md}
"$PY" scripts/compare_runs.py "${runs[@]}" ${TARGETS:+--targets "$TARGETS"} --plot "$base.png" >"$OUT/table.md"
"$PY" scripts/compare_runs.py "$OUT/1f1b_pp4" "$OUT/1f1b" --bubbles | sed -n '/measured bubble/,$p' >"$OUT/bubbles.md"
"$PY" scripts/trace_png.py "$OUT/1f1b_pp4/trace.json" "${base}_trace_1f1b_pp4.png" --steps 3:3 --arrows \
  --title "configs/quickstart.yaml, 1F1B, pp=4 on CPU: step 3 as measured"
bench="(not run: BENCH_ROUNDS=0)"
if [ "$BENCH_ROUNDS" -gt 0 ]; then
  [ "${KEEP:-0}" = 1 ] && [ -d "$OUT/bench" ] && export REPORT_ONLY=1
  bench=$(ROUNDS=$BENCH_ROUNDS BIN=$BIN BENCH_OUT_DIR="$OUT/bench" scripts/bench_time_accounting.sh 2>/dev/null | grep '^|')
fi
sim_unit="unit costs (F = 1, B = 2; communication, steps and reductions free)"
[ -n "$COSTS" ] && sim_unit="seconds predicted from the cost file $COSTS (training.sim_costs)"
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')

cat >"$DOC" <<EOF
# Time to accuracy on CPU: every schedule, measured time and simulated time

Produced by \`scripts/tta_study.sh\` (STEPS=$STEPS, EVAL_EVERY=$EVAL_EVERY${TARGETS:+, TARGETS=$TARGETS}${COSTS:+, COSTS=$COSTS}) on
$(date -u +%Y-%m-%d) ($cpu, $(nproc) cores shared with other work). Every schedule of
\`pipetrain keys\` trains the quickstart model (L=4, C=128, byte vocabulary, B=8, T=128,
m=8; embeddings untied so that the asynchronous schedules can run it) from the same seed
on the same tokens at pp=2 (interleaved_1f1b and bfpp: 2 chunks per rank). Fields:
[docs/metrics.md](../metrics.md). Sim time is the makespan of the action lists that
actually ran, in $sim_unit.

## Time to target validation loss

$(cat "$OUT/table.md" | grep -v '^plot:')

Time is the run clock (wall seconds); sim time is machine-independent, so it separates
what a schedule does from this machine's noise; tokens separate both from the schedule's
statistical efficiency (asynchronous schedules use stale weights).

![validation loss vs wall time, simulated time and tokens](tta_cpu.png)

## Measured bubble of 1f1b beside the planned one

$(cat "$OUT/bubbles.md")

Rows \`1f1b_pp4\` are 1f1b at pp=4 (4 ranks, the quickstart model as configured, tied
embeddings), rows \`1f1b\` the pp=2 run of the table above. *Measured bubble*
is each rank's idle fraction over the run (1 − compute / wall, \`time_split_total\`);
*planned (sim costs)* is what \`pipetrain plan\` predicts with unit costs,
(S − 1)/(m + S − 1) = 3/11 = 0.273 at pp=4; *planned (measured costs)* simulates the same
list with the mean F and B this run measured on each stage.

Why they differ: (1) the stages do not cost the same. The last stage carries the LM head
and the loss and the first the embedding, and a CPU backward is not exactly twice its
forward, so the ranks wait on the slowest stage: replanning the same list with the
per-stage costs this run measured lands close to the measured bubble (compare the last
two bubble columns), so most of the gap to the unit plan is the stages' unequal costs. The last rank, the slowest, idles least; the others idle more than the
unit plan says. (2) The unit plan counts communication, the optimizer step and the
gradient reductions as free. Here they are the \`wait\`, \`step\` and \`reduce\` columns:
the STEP's global-norm all-reduce and the tied/data-parallel reductions are waits for the
slowest rank at the flush, and every receive includes the copy through MPI. (3) On a CPU
with fewer free cores than ranks, ranks share cores: a rank's compute stretches while
another rank computes, and "waiting" includes time its peer was descheduled, so the
measured compute and bubble both carry this machine's contention; on one GPU per rank (3)
disappears and (1) and (2) remain.

![1F1B at pp=4, measured](tta_cpu_trace_1f1b_pp4.png)

(One row per rank; F blue, B orange, waiting grey, reductions brown, optimizer pink;
lines join each send to its receive. \`runs/tta_study/1f1b_pp4/trace.json\` opens in
ui.perfetto.dev.)

## Cost of the time accounting

$bench

\`run.time_accounting: true\` (the default) against \`false\`, quickstart model, 1f1b,
seconds per step over rounds alternating on and off (\`scripts/bench_time_accounting.sh\`).
The two step-time figures are what the issue asks for, but on this shared machine the
per-run medians of the *same* setting spread far more than any overhead (see the
per-run column), so their ratio is noise in either direction. The direct measure is the
last column: the trainer's own accounting work after each step (split, world all-gather
of one small array per rank, JSON), as a share of the step time on the worst rank. The
rest of the cost is two steady_clock reads per executed action inside the executor
(at most 6m + 3 spans per rank per 1F1B step, about 100 reads for m = 8: microseconds
against steps of about a second), so time accounting costs far below the 2 % budget.

Command: \`${STUDY_COMMAND:-scripts/tta_study.sh}\` (environment: STEPS, EVAL_EVERY, SCHEDULES, TARGETS, COSTS,
BENCH_ROUNDS, KEEP).
EOF
echo "tta_study: wrote $DOC"
