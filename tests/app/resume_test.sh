#!/usr/bin/env bash
# Acceptance of checkpoint/resume (docs/checkpoints.md), end to end under mpirun:
#  1. 10 steps straight == 5 steps + resume + 5 steps, bitwise (loss, grad norm,
#     data hash columns and every parameter file), for pp=1 and every sync
#     schedule at pp=4 (gpipe, 1f1b, interleaved_1f1b v=2, bfpp v=2, zb_h1) and the
#     asynchronous ones (paci, pipedream, pipedream_2bw, paci_flush, amdp, localsgd; checkpoints
#     are drain points), version records included; and dp=2 x pp=2 for 1f1b and paci.
#  2. A rank SIGKILLed while writing step_10 leaves step_5 usable; --resume auto
#     skips the partial step_10 with a warning and the continuation is exact.
#  3. A flipped byte, a truncated file, a changed config: a clear error naming the
#     file and the mismatch, exit 1, and neither the checkpoint nor the run's
#     metrics are modified.
#  4. pp=4 -> pp=2 and pp=1 (and 1f1b -> zb_h1) load bitwise-identical parameters
#     and continue bitwise like the uninterrupted run (no loss jump).
#  5. SIGTERM to the ranks / SIGUSR1 to mpirun: a complete checkpoint and exit 0.
# Usage: resume_test.sh PIPETRAIN SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
export PIPETRAIN_TEST_CRASH_IN_CHECKPOINT=""
mpi_setup PIPETRAIN_TEST_CRASH_IN_CHECKPOINT
make_corpus 128
common=(--set "data.train=$work/data/train_*.bin" --set run.out_dir="$runs" --set run.save_params=true
        --set training.steps=10 --set checkpoint.every_steps=5 --set checkpoint.keep_last=0)

fails() {  # fails NAME EXPECTED_TEXT... -- [train args]: must exit 1 and print every EXPECTED_TEXT
  local name=$1
  shift
  local expect=()
  while [ "$1" != "--" ]; do expect+=("$1"); shift; done
  shift
  local rc=0
  "$bin" train --config "$cfg" "${common[@]}" --set run.name="$name" "$@" >"$work/$name.err" 2>&1 || rc=$?
  [ "$rc" = 1 ] || { echo "FAIL $name: exit code $rc, expected 1"; cat "$work/$name.err"; exit 1; }
  for e in "${expect[@]}"; do
    grep -qF -- "$e" "$work/$name.err" || { echo "FAIL $name: message lacks '$e'"; cat "$work/$name.err"; exit 1; }
  done
  echo "ok   $name: $(grep -m1 'error' "$work/$name.err")"
}

same() {  # same REF NAME: bitwise metrics columns (10 steps), parameters and version records
  same_run "$1" "$2" 10
}

# A second run that starts from a copy of REF's step_5 checkpoint and metrics.
resume() {  # resume REF NAME NP [args...]
  resume_copy "$@"
  grep -q '"restarts": *1' "$runs/$2/summary.json" || { echo "FAIL $2: summary.json restarts"; cat "$runs/$2/summary.json"; exit 1; }
}

# --- 1. straight vs resumed, every schedule ---
declare -A layout=(
  [pp1]="1"
  [gpipe]="4 --set parallel.pp=4 --set schedule.kind=gpipe"
  [1f1b]="4 --set parallel.pp=4 --set schedule.kind=1f1b"
  [interleaved]="4 --set parallel.pp=4 --set schedule.kind=interleaved_1f1b --set schedule.chunks=2"
  [bfpp]="4 --set parallel.pp=4 --set schedule.kind=bfpp --set schedule.chunks=2"
  [zb_h1]="4 --set parallel.pp=4 --set schedule.kind=zb_h1"
  # Asynchronous schedules drain at every checkpoint (step 5), so the straight run
  # and the resumed one compute the same thing.
  [paci]="4 --set parallel.pp=4 --set schedule.kind=paci --set model.tie_embeddings=false"
  [pipedream]="4 --set parallel.pp=4 --set schedule.kind=pipedream --set model.tie_embeddings=false"
  [pipedream_2bw]="4 --set parallel.pp=4 --set schedule.kind=pipedream_2bw --set model.tie_embeddings=false"
  [paci_flush]="4 --set parallel.pp=4 --set schedule.kind=paci_flush --set model.tie_embeddings=false"
  # AMDP: stage replicas; the owner's copy (pipeline 0) is saved, every replica loads it.
  [amdp]="4 --set parallel.pp=4 --set schedule.kind=amdp --set model.tie_embeddings=false"
  # LocalSGD: 4 copies averaged every 5 updates; a checkpoint (a drain, after an average) holds one
  # model, pipeline 0's copy, and every copy loads it.
  [localsgd]="4 --set parallel.pp=4 --set schedule.kind=localsgd --set model.tie_embeddings=false --set schedule.localsgd.local_steps=5"
  # Data parallel: replicas save their shard of the checkpoint once (dp rank 0) and all load it.
  [dp2_1f1b]="4 --set parallel.dp=2 --set parallel.pp=2 --set schedule.kind=1f1b"
  [dp2_paci]="4 --set parallel.dp=2 --set parallel.pp=2 --set schedule.kind=paci --set model.tie_embeddings=false"
)
for s in pp1 gpipe 1f1b interleaved bfpp zb_h1 paci pipedream pipedream_2bw paci_flush amdp localsgd dp2_1f1b dp2_paci; do
  # shellcheck disable=SC2086
  train "$s" ${layout[$s]}
  # shellcheck disable=SC2086
  resume "$s" "${s}_res" ${layout[$s]}
  same "$s" "${s}_res"
done

# --- 2. SIGKILL while writing step_10: step_5 stays usable, step_10 is skipped ---
rc=0
PIPETRAIN_TEST_CRASH_IN_CHECKPOINT=10 $mpirun -np 4 "$bin" train --config "$cfg" "${common[@]}" --set run.name=crash \
  --set parallel.pp=4 >"$work/crash.log" 2>&1 || rc=$?
[ "$rc" != 0 ] || { echo "FAIL crash: the crash hook did not fire"; exit 1; }
[ -f "$runs/crash/checkpoints/step_5/DONE" ] && [ ! -f "$runs/crash/checkpoints/step_10/DONE" ] ||
  { echo "FAIL crash: expected complete step_5 and partial step_10"; ls -R "$runs/crash/checkpoints"; exit 1; }
ls "$runs/crash/checkpoints/step_10/"*.tmp >/dev/null || { echo "FAIL crash: no half-written tmp file"; exit 1; }
train crash 4 --set parallel.pp=4 --resume auto
grep -q "skipping .*step_10: no DONE marker" "$work/crash.log" || { echo "FAIL crash: no warning about step_10"; cat "$work/crash.log"; exit 1; }
grep -q "resumed from .*step_5 at step 5" "$work/crash.log" || { echo "FAIL crash: did not resume from step_5"; exit 1; }
same 1f1b crash
echo "ok   SIGKILL while writing: partial step_10 skipped with a warning, step_5 resumed exactly"

# --- 4. layout-independent: pp=4 (1f1b) -> pp=2, pp=1, zb_h1 ---
ck="$runs/1f1b/checkpoints/step_5"
train load_pp4 4 --set parallel.pp=4 --resume "$ck" --set training.steps=5  # loads, runs no step, saves params
for t in "load_pp2 2 --set parallel.pp=2" "load_pp1 1"; do
  # shellcheck disable=SC2086
  train $t --resume "$ck" --set training.steps=5
  same_params load_pp4 "${t%% *}"
done
echo "ok   pp=4 checkpoint loads bitwise-identical parameters under pp=2 and pp=1"
resume 1f1b to_pp2 2 --set parallel.pp=2
same 1f1b to_pp2
resume 1f1b to_pp1 1
same 1f1b to_pp1
resume 1f1b to_zb 4 --set parallel.pp=4 --set schedule.kind=zb_h1
same 1f1b to_zb
resume interleaved inter_to_pp2 2 --set parallel.pp=2
same 1f1b inter_to_pp2

# --- 3. corruption, truncation, config mismatch: clear errors, nothing modified ---
bad="$runs/bad/checkpoints"
mkdir -p "$bad"
cp -r "$runs/pp1/checkpoints/step_5" "$runs/pp1/checkpoints/step_10" "$bad/"
cp "$runs/pp1/metrics.jsonl" "$runs/bad/metrics.jsonl"
python3 - "$bad/step_10/rank_0.ckpt" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 0x10; open(p, "wb").write(b)
PY
before=$(cd "$runs/bad" && find . -type f | sort | xargs md5sum)
fails bad "step_10/rank_0.ckpt" "checksum mismatch" -- --resume "$bad/step_10"
cp -r "$runs/pp1/checkpoints/step_5" "$work/trunc"
truncate -s 100000 "$work/trunc/rank_0.ckpt"
fails trunc "trunc/rank_0.ckpt" "truncated" -- --resume "$work/trunc"
fails seed "step_5/rank_0.ckpt" "config mismatch" "run.seed: checkpoint 1234, config 99" -- --resume "$bad/step_5" --set run.seed=99
fails batch "global batch" -- --resume "$bad/step_5" --set training.microbatches=4
cp -r "$runs/pp1/checkpoints/step_5" "$work/partial" && rm "$work/partial/DONE"
fails incomplete "partial: no DONE marker" -- --resume "$work/partial"
after=$(cd "$runs/bad" && find . -type f | sort | xargs md5sum)
[ "$before" = "$after" ] || { echo "FAIL: a failed resume modified the run directory"; exit 1; }
echo "ok   failed resumes left the checkpoints and metrics untouched"
# --resume auto skips the corrupted step_10 with a warning and resumes step_5 exactly.
train bad 1 --resume auto
grep -q "skipping .*step_10/rank_0.ckpt: payload checksum mismatch" "$work/bad.log" || { echo "FAIL bad: no warning"; cat "$work/bad.log"; exit 1; }
same pp1 bad

# --- 5. SIGTERM to the ranks, SIGUSR1 to mpirun: checkpoint + exit 0 ---
signal_test() {  # signal_test NAME SIGNAL TARGET(ranks|mpirun)
  local name=$1 sig=$2 target=$3
  $mpirun -np 4 "$bin" train --config "$cfg" "${common[@]}" --set run.name="$name" --set parallel.pp=4 \
    --set training.steps=100000 --set checkpoint.every_steps=0 >"$work/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 300); do
    [ -f "$runs/$name/metrics.jsonl" ] && [ "$(wc -l <"$runs/$name/metrics.jsonl")" -ge 3 ] && break
    sleep 0.1
  done
  local t0=$SECONDS
  if [ "$target" = mpirun ]; then kill -"$sig" "$pid"; else pkill -"$sig" -P "$pid"; fi
  local rc=0
  wait "$pid" || rc=$?
  [ "$rc" = 0 ] || { echo "FAIL $name: exit code $rc after SIG$sig"; cat "$work/$name.log"; exit 1; }
  [ $((SECONDS - t0)) -le 30 ] || { echo "FAIL $name: took $((SECONDS - t0)) s to stop"; exit 1; }
  local dir
  dir=$(ls -d "$runs/$name/checkpoints/step_"* | head -1)
  [ -f "$dir/DONE" ] && [ "$(ls "$dir"/rank_*.ckpt | wc -l)" = 4 ] || { echo "FAIL $name: no complete checkpoint"; exit 1; }
  local step=${dir##*step_}
  [ "$(step_columns "$name" | tail -1 | cut -d' ' -f1)" = "$step" ] || { echo "FAIL $name: metrics end != checkpoint step $step"; exit 1; }
  echo "ok   SIG$sig to $target: checkpoint step_$step complete, exit 0 within $((SECONDS - t0)) s"
}
signal_test sigterm TERM ranks
signal_test sigusr1 USR1 mpirun
echo "all resume checks passed"
