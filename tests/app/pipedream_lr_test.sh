#!/usr/bin/env bash
# PipeDream-LR (schedule.pipedream.lr_correction: stagewise, optim/lr_schedule.h) end to end:
# configs/tiny_test.yaml, pipedream at pp=4 under mpirun, an update per micro-batch (m = 1),
# 10 updates, a checkpoint at 5.
#  1. the correction acts: only stages 0 and 1 are corrected (n_s = 4, 3; stage 2's factor is
#     1^x, stage 3 keeps one version), and micro-batches 1-4 pass both before their first
#     update (S = 4 in flight), so steps 1-4 equal the uncorrected run's losses and every
#     later step differs; the loss falls;
#  2. T_corr = 1 (no update is corrected: u >= 1) and m = 4 (n_s = (4-s)/4 <= 1: no stage
#     keeps a second version) equal the uncorrected runs bitwise;
#  3. 5 updates + checkpoint + resume + 5 == 10 straight, bitwise: the correction depends
#     only on each stage's checkpointed version;
#  4. resuming that checkpoint without the correction is refused, naming the key;
#  5. `pipetrain replay` re-executes the corrected run bit for bit (it takes the same lr).
# Usage: pipedream_lr_test.sh PIPETRAIN SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
mpi_setup
make_corpus 64
common=(--set "data.train=$work/data/train_*.bin" --set run.out_dir="$runs" --set run.save_params=true
        --set training.steps=10 --set checkpoint.every_steps=5 --set checkpoint.keep_last=0
        --set parallel.pp=4 --set schedule.kind=pipedream --set model.tie_embeddings=false
        --set training.microbatches=1 --set optimizer.lr=3e-3)
lr=(--set schedule.pipedream.lr_correction=stagewise --set schedule.pipedream.lr_correction_steps=8)

train plain 4
train corrected 4 "${lr[@]}"
python3 - "$runs/plain/metrics.jsonl" "$runs/corrected/metrics.jsonl" <<'PY' || fail "the correction does not act as expected"
import json, sys
a, b = ({r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r} for p in sys.argv[1:])
assert sorted(a) == sorted(b) == list(range(1, 11)), (sorted(a), sorted(b))
assert all(a[s] == b[s] for s in range(1, 5)), ("steps 1-4 precede every corrected update", a, b)
same = [s for s in range(5, 11) if a[s] == b[s]]
assert not same, ("losses equal to the uncorrected run at steps", same)
assert b[10] < b[1] - 0.1, ("the corrected loss does not fall", b[1], b[10])
print(f"ok   corrected: loss {b[1]:.4f} -> {b[10]:.4f} (uncorrected {a[10]:.4f}); steps 1-4 equal, 5-10 differ")
PY
train t1 4 --set schedule.pipedream.lr_correction=stagewise --set schedule.pipedream.lr_correction_steps=1
same_run plain t1 10
train plain_m4 4 --set training.microbatches=4
train corrected_m4 4 "${lr[@]}" --set training.microbatches=4
same_run plain_m4 corrected_m4 10

resume_copy corrected corrected_res 4 "${lr[@]}"
same_run corrected corrected_res 10

mkdir -p "$runs/refused/checkpoints"
cp -r "$runs/corrected/checkpoints/step_5" "$runs/refused/checkpoints/"
rc=0
run_train refused 4 --resume auto || rc=$?
[ "$rc" = 1 ] || { echo "FAIL refused: exit $rc, expected 1"; cat "$work/refused.log"; exit 1; }
grep -q "schedule.pipedream.lr_correction" "$work/refused.log" ||
  { echo "FAIL refused: the message does not name the key"; cat "$work/refused.log"; exit 1; }
echo "ok   resuming a corrected checkpoint without the correction is refused"
"$bin" replay --run "$runs/corrected" >"$work/replay.log" 2>&1 || { cat "$work/replay.log"; fail "replay of corrected"; }
grep -q "bit for bit" "$work/replay.log" || { cat "$work/replay.log"; fail "replay of corrected is not exact"; }
echo "ok   replay of the corrected run: bit for bit"
echo "PASS pipedream_lr_test"
