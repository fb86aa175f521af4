#!/usr/bin/env bash
# schedule.kind: rpd (Randomized PipeDream, algorithms.md §5.3) end to end under mpirun -np 4:
#  1. 10 global updates of the tiny model (pp = 4, delta = 3, uniform draws, AdamW, evaluation
#     and a checkpoint at step 5) train with finite losses; each update applies exactly one
#     block's gradient in the version record (one record per stage and update, one applied);
#     sim_time grows with every update; other drain points update the same blocks.
#  2. 5 steps + resume from step_5 + 5 steps == 10 straight, bitwise (losses, grad norms, data,
#     parameters, version record): the draws are a pure function of (run.seed, update).
#  3. `pipetrain replay` (update by update from the record) equals the run's parameters bitwise,
#     also for PipeDream's replayed order (stage_sampling / delay_sampling: pipedream).
#  4. dp = 2 x pp = 2 trains and resumes bitwise (gradients summed over the replicas of the drawn
#     block only).
#  5. Configs rpd cannot honour are refused naming the key.
# Usage: rpd_run_test.sh PIPETRAIN SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
mpi_setup
make_corpus 128
common=(--set "data.train=$work/data/train_*.bin" --set "data.val=$work/data/val_*.bin" --set training.eval_every=5
        --set training.eval_batches=2 --set run.out_dir="$runs" --set run.save_params=true
        --set training.steps=10 --set checkpoint.every_steps=5 --set checkpoint.keep_last=0
        --set schedule.kind=rpd --set model.tie_embeddings=false --set training.microbatches=1
        --set schedule.rpd.max_delay=3)

# --- 1. trains; one applied gradient per update; sim_time increases ---
train rpd 4 --set parallel.pp=4
python3 - "$runs/rpd" <<'PY' || fail "rpd: metrics or version record"
import json, math, sys
d = sys.argv[1]
steps = [json.loads(l) for l in open(d + "/metrics.jsonl") if '"loss"' in l]
assert [r["step"] for r in steps] == list(range(1, 11)), "expected steps 1..10"
assert all(math.isfinite(r["loss"]) for r in steps), "non-finite loss"
sim = [r["sim_time"] for r in steps]
assert all(b > a for a, b in zip(sim, sim[1:])), "sim_time must grow every update: %s" % sim
recs = [json.loads(l) for l in open(d + "/versions.jsonl")]
assert len(recs) == 40, "one record per (update, stage): %d" % len(recs)
for k in range(10):
    mine = [r for r in recs if r["mb"] == k]
    applied = [r for r in mine if r["applied"] >= 0]
    assert sorted(r["stage"] for r in mine) == [0, 1, 2, 3], "update %d: stages" % k
    assert len(applied) == 1, "update %d applies %d blocks" % (k, len(applied))
    s = applied[0]["stage"]
    for r in mine:  # backward (input gradients) from the loss down to s only
        assert (r["backward"] >= 0) == (r["stage"] >= s), "update %d stage %d backward" % (k, r["stage"])
print("ok   rpd: 10 updates, one block each, sim_time", sim[-1])
PY
grep -q '"val_loss"' "$runs/rpd/metrics.jsonl" || fail "rpd: no evaluation at the drain points"

# Draws are keyed by the global update, not the segment: draining every 3 steps (instead of at
# 5) updates the same block at every step.
train drains 4 --set parallel.pp=4 --set schedule.drain_every=3
applied_stages() {
  python3 -c 'import json,sys; print(*[r["stage"] for r in sorted((json.loads(l) for l in open(sys.argv[1])), key=lambda r: r["mb"]) if r["applied"] >= 0])' "$runs/$1/versions.jsonl"
}
[ "$(applied_stages rpd)" = "$(applied_stages drains)" ] || fail "drains: blocks $(applied_stages drains) != $(applied_stages rpd)"
echo "ok   drains: the same blocks ($(applied_stages rpd)) whatever the drain points"

# --- 2. resume == straight ---
resume_copy rpd rpd_res 4 --set parallel.pp=4
same_run rpd rpd_res 10

# --- 3. replay ---
"$bin" replay --run "$runs/rpd" >"$work/replay.log" 2>&1 || { cat "$work/replay.log"; fail "replay failed"; }
grep -q "equal the run's bit for bit" "$work/replay.log" || { cat "$work/replay.log"; fail "replay did not match"; }
echo "ok   replay: $(cat "$work/replay.log")"

# PipeDream's own order of updates and delays (delta >= S^2 - S/2 = 14): trains and replays bitwise.
train pd 4 --set parallel.pp=4 --set schedule.rpd.stage_sampling=pipedream --set schedule.rpd.delay_sampling=pipedream \
  --set schedule.rpd.max_delay=14
"$bin" replay --run "$runs/pd" >"$work/replay_pd.log" 2>&1 || { cat "$work/replay_pd.log"; fail "replay of pd failed"; }
grep -q "equal the run's bit for bit" "$work/replay_pd.log" || { cat "$work/replay_pd.log"; fail "pd replay did not match"; }
echo "ok   pipedream-order run replayed bit for bit"

# --- 4. dp = 2 x pp = 2 ---
train dp2 4 --set parallel.dp=2 --set parallel.pp=2
resume_copy dp2 dp2_res 4 --set parallel.dp=2 --set parallel.pp=2
same_run dp2 dp2_res 10

# --- 5. refused configs ---
refused() {  # refused NAME TEXT [args...]
  local name=$1 text=$2
  shift 2
  if run_train "$name" direct "$@"; then fail "$name: should have been refused"; fi
  grep -qF -- "$text" "$work/$name.log" || { cat "$work/$name.log"; fail "$name: message lacks '$text'"; }
  echo "ok   $name refused: $text"
}
refused accumulation "training.microbatches" --set training.microbatches=4
refused tied "model.tie_embeddings" --set model.tie_embeddings=true
refused sampling "schedule.rpd.stage_sampling = 'random' is not one of: uniform, cyclic, pipedream" \
  --set schedule.rpd.stage_sampling=random
refused other_kind "schedule.rpd.* (max_delay, stage_sampling, delay_sampling) applies to schedule.kind: rpd only" \
  --set schedule.kind=pipedream
