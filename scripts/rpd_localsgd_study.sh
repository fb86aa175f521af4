#!/usr/bin/env bash
# PipeDream vs PipeDream-LR vs LocalSGD vs RPD at equal simulated time (algorithms.md §5.4
# protocol), on CPU: for S in {4, 8} pipeline stages each method trains the same tiny GPT
# (byte vocabulary, L = 8 blocks, C = 64, 4 heads, B = 4 sequences of T = 64 tokens per
# micro-batch, ~0.45 M parameters, untied embeddings) on the quickstart corpus with the same
# seed, data order and optimizer (AdamW, constant lr after 20 warm-up updates), one update per
# micro-batch (training.microbatches = 1), for the most updates whose simulated timeline fits in
# the budget T (`pipetrain plan --time-budget T`, unit costs F = 1, B = 2, the units of
# metrics.jsonl's sim_time). PipeDream-LR is pipedream with schedule.pipedream.lr_correction:
# stagewise, its T_corr half of its updates. LocalSGD runs its defaults (M = S copies, averaged
# every 2 updates) with training.microbatches = S: an update is one micro-batch per copy, the
# same per-copy step as the others' one micro-batch. A method whose schedule.kind build/pipetrain
# does not know is skipped with a message (and a "not run" row). Then scripts/rpd_localsgd_plot.py
# draws training loss vs simulated time (one panel per S) and the table, and the section between
# the study markers of docs/results/rpd_localsgd.md is rewritten (the rest of it is kept).
#
#   scripts/rpd_localsgd_study.sh          # BUDGET=4800; pipedream and pipedream_lr: ~3 min on 2 cores
#   METHODS="pipedream pipedream_lr" STAGES=4 scripts/rpd_localsgd_study.sh
#   KEEP=1 scripts/rpd_localsgd_study.sh   # reuse the complete runs in OUT, run only the missing
#
# Environment: BUDGET (simulated time units), STAGES, METHODS (schedule kinds, plus
# pipedream_lr), LR, BIN, OUT, DOC, KEEP. Needs build/pipetrain, mpirun, the byte shards of
# scripts/quickstart.sh (made here from data_cache/corpus when missing: scripts/get_corpus.sh)
# and matplotlib at /usr/bin/python3.
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=${BUDGET:-4800}
STAGES=${STAGES:-4 8}
METHODS=${METHODS:-pipedream pipedream_lr localsgd rpd rpd_uniform}
LR=${LR:-1e-3}
BIN=${BIN:-build/pipetrain}
OUT=${OUT:-runs/rpd_localsgd_study}
DOC=${DOC:-docs/results/rpd_localsgd.md}
PY=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1

if ! compgen -G "data_cache/sotu_byte/train_*.bin" >/dev/null; then
  bash scripts/get_corpus.sh
  "$BIN" prepare --tokenizer byte --input data_cache/corpus/*.txt --out data_cache/sotu_byte
fi
mkdir -p "$OUT"
model=(--config configs/quickstart.yaml --set model.n_layer=8 --set model.n_embd=64 --set model.n_head=4
       --set model.max_seq_len=64 --set model.tie_embeddings=false --set training.micro_batch_size=4
       --set training.seq_len=64 --set training.microbatches=1 --set training.eval_every=0
       --set training.eval_batches=16 --set training.log_every=500 --set training.max_seconds=0
       --set "training.target_val_losses=[]" --set optimizer.lr="$LR" --set optimizer.lr_schedule=constant
       --set optimizer.warmup_steps=20 --set checkpoint.every_steps=0 --set schedule.drain_every=0
       --set runtime.threads=1 --set runtime.progress=off --set run.out_dir="$OUT" --set run.overwrite=true)

run_method() {  # run_method METHOD S: plan the budget, then train; or write METHOD_sS.skipped
  local method=$1 S=$2 kind=$1 name=${1}_s$2 extra=() u
  [ "$method" = pipedream_lr ] && kind=pipedream && extra=(--set schedule.pipedream.lr_correction=stagewise)
  [ "$method" = localsgd ] && extra=(--set training.microbatches="$S")  # one micro-batch per copy and update
  # rpd: the PipeDream surrogate (PD's order of active stages and its exact global delays);
  # rpd_uniform: uniform stage and delays in [0, min(delta, k)], delta = PD's max S^2 - S/2.
  [ "$method" = rpd ] && extra=(--set schedule.rpd.stage_sampling=pipedream
    --set schedule.rpd.delay_sampling=pipedream --set schedule.rpd.max_delay=$((S * S - S / 2)))
  [ "$method" = rpd_uniform ] && kind=rpd && extra=(--set schedule.rpd.max_delay=$((S * S - S / 2)))
  rm -f "$OUT/$name.skipped"
  if ! "$BIN" plan "${model[@]}" --set parallel.pp="$S" --set schedule.kind="$kind" "${extra[@]}" \
      --time-budget "$BUDGET" --trace "$OUT/$name.plan_trace.json" >"$OUT/$name.plan" 2>&1; then
    if grep -q "schedule.kind '$kind' is not one of" "$OUT/$name.plan"; then
      echo "rpd_localsgd_study: skipping $method at S=$S: $BIN does not know schedule.kind $kind yet"
      echo "$BIN does not know schedule.kind $kind yet" >"$OUT/$name.skipped"
      return 0
    fi
    cat "$OUT/$name.plan" >&2
    echo "rpd_localsgd_study: pipetrain plan failed for $method at S=$S (above)" >&2
    exit 1
  fi
  u=$(sed -n 's/^time budget fit: .* updates=\([0-9]*\) .*/\1/p' "$OUT/$name.plan")
  [ "$method" = pipedream_lr ] && extra+=(--set schedule.pipedream.lr_correction_steps=$(((u + 1) / 2)))
  if [ "${KEEP:-0}" = 1 ] && [ -f "$OUT/$name/summary.json" ]; then return 0; fi
  echo "rpd_localsgd_study: $method at S=$S: $u updates fit in $BUDGET"
  mpirun -np "$S" -x OPENBLAS_NUM_THREADS=1 "$BIN" train "${model[@]}" --set parallel.pp="$S" \
    --set schedule.kind="$kind" "${extra[@]}" --set training.steps="$u" --set run.name="$name" \
    >"$OUT/$name.log" 2>&1 || { echo "rpd_localsgd_study: $name failed, see $OUT/$name.log" >&2; exit 1; }
}

for S in $STAGES; do
  for method in $METHODS; do run_method "$method" "$S"; done
done
# Training wall time of the runs of the table, summed (KEEP=1 keeps earlier runs' times).
summaries=()
for S in $STAGES; do
  for method in $METHODS; do
    if [ -f "$OUT/${method}_s$S/summary.json" ]; then summaries+=("$OUT/${method}_s$S/summary.json"); fi
  done
done
minutes=$("$PY" -c 'import json, sys; print(round(sum(json.load(open(p))["time_s"] for p in sys.argv[1:]) / 60, 1))' \
  "${summaries[@]}")
png=${DOC%.md}.png
"$PY" scripts/rpd_localsgd_plot.py "$OUT" --budget "$BUDGET" --stages "$STAGES" --methods "$METHODS" \
  --plot "$png" >"$OUT/table.md"
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')

section() {
  cat <<EOF
<!-- rpd_localsgd_study: begin (written by scripts/rpd_localsgd_study.sh; edits here are replaced) -->
## Loss at equal simulated time (algorithms.md §5.4)

Produced by \`scripts/rpd_localsgd_study.sh\` (BUDGET=$BUDGET, STAGES="$STAGES", METHODS="$METHODS",
LR=$LR) on $(date -u +%Y-%m-%d) ($cpu, $(nproc) cores shared with other work); the runs
trained for $minutes min of wall time in all. Every method trains the same tiny GPT (byte vocabulary, L = 8, C = 64, 4 heads,
B = 4, T = 64, untied embeddings) on the quickstart corpus (\`data_cache/sotu_byte\`) from the
same seed and data order with AdamW, lr $LR constant after 20 warm-up updates, grad clip 1
per stage, one update per micro-batch (\`training.microbatches: 1\`), at \`parallel.pp\` = S.
Each gets the most updates whose simulated timeline fits in $BUDGET units
(\`pipetrain plan --time-budget $BUDGET\`: unit costs F = 1, B = 2, free communication; the
makespan of U updates is ≤ $BUDGET and that of U + 1 is not), so the rows differ in how much
data a method processes in the same simulated time. \`pipedream_lr\` is \`pipedream\` with
\`schedule.pipedream.lr_correction: stagewise\` and T_corr = half its updates. \`localsgd\` runs
M = S copies, averaged (parameters and Adam state) every 2 updates; its update is one
micro-batch per copy (\`training.microbatches: S\`), so its updates count S micro-batches each
(compare tokens). \`rpd\` is the stale block-SGD reference replaying PipeDream (its order of
active stages and its exact global read delays, capped at δ = S² − S/2); \`rpd_uniform\` draws the
active stage uniformly and each block's delay uniformly in [0, min(δ, k)], δ = S² − S/2. An rpd
update runs one micro-batch through the whole chain (forward through every stage, backward down to
the active one) and changes one block only, where a PipeDream update changes all S blocks; rpd is a
reference for the theory, not a schedule to run fast. The last validation loss is over 16 held-out micro-batches after the last
update (of copy 0, which equals every copy after the final average).

$(grep -v '^plot:' "$OUT/table.md")

![training loss vs simulated time, one panel per S](${png##*/})

(Training loss averaged over a window of $BUDGET/40 simulated units ending at each update;
the dashed line is the budget.)

Command: \`${STUDY_COMMAND:-scripts/rpd_localsgd_study.sh}\`.
<!-- rpd_localsgd_study: end -->
EOF
}
section >"$OUT/section.md"
"$PY" - "$DOC" "$OUT/section.md" <<'PY'
import re, sys
doc, new = open(sys.argv[1]).read(), open(sys.argv[2]).read().rstrip("\n")
pat = re.compile(r"<!-- rpd_localsgd_study: begin.*?<!-- rpd_localsgd_study: end -->", re.S)
doc = pat.sub(lambda m: new, doc) if pat.search(doc) else doc.rstrip("\n") + "\n\n" + new + "\n"
open(sys.argv[1], "w").write(doc)
PY
echo "rpd_localsgd_study: wrote the study section of $DOC and ${png}"
