#!/usr/bin/env bash
# The host/device hook call sites are complete (model/stage_model.h, host/device
# contract), checked without a GPU. PIPETRAIN_TEST_SEPARATE_HOST_MIRRORS=1 makes the
# CPU backend report host_memory() == false (model/stage_model_factory.cc), so the
# stage model keeps separate host mirrors of params/grads and every
# sync_params_to_device() / sync_grads_to_host() really copies, as on CUDA. A caller
# that writes params() or reads grads() without its hook then computes with stale
# values, and the run differs from the normal one. Each case below runs normally and
# with the switch and must match bitwise: loss, grad norm and val loss columns of
# metrics.jsonl and every final parameter file (run.save_params).
# Cases: pp=1; 1f1b and zb_h1 at pp=2; dp=2 x pp=2 1f1b; paci and pipedream at pp=2, amdp
# (zero_owner) at pp=4, localsgd and rpd at pp=2; 1f1b 5 steps + checkpoint + --resume auto + 5 steps vs 10
# straight; and `pipetrain replay` of the mirrored paci and rpd runs.
# Usage: host_mirror_test.sh PIPETRAIN SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
export PIPETRAIN_TEST_SEPARATE_HOST_MIRRORS=0
mpi_setup PIPETRAIN_TEST_SEPARATE_HOST_MIRRORS
make_corpus 64
common=(--set "data.train=$work/data/train_*.bin" --set "data.val=$work/data/val_*.bin" --set run.out_dir="$runs"
        --set run.save_params=true --set training.steps=4 --set training.eval_every=2 --set training.eval_batches=2
        --set training.microbatches=4)

switch_took_effect() {  # switch_took_effect NAME MIRROR(0|1): in the mirrored runs, and only there
  local name=$1 mirror=$2 notices
  notices=$(grep -c "test switch: separate host mirrors" "$work/$name.log" || true)
  if [ "$mirror" = 1 ]; then
    [ "$notices" -ge 1 ] || { echo "FAIL $name: the test switch did not take effect"; cat "$work/$name.log"; exit 1; }
  else
    [ "$notices" = 0 ] || { echo "FAIL $name: test switch active in a normal run"; exit 1; }
  fi
}

mirror_train() {  # mirror_train NAME MIRROR(0|1) NP [args...]: must succeed
  local name=$1 mirror=$2 np=$3
  shift 3
  PIPETRAIN_TEST_SEPARATE_HOST_MIRRORS=$mirror train "$name" "$np" "$@"
  switch_took_effect "$name" "$mirror"
}

same() {  # same REF NAME: bitwise metrics columns (steps and evals) and parameters
  same_metrics "$1" "$2" all_columns
  same_params "$1" "$2"
  echo "ok   $2 == $1 ($(all_columns "$1" | wc -l) metrics lines, $params_checked parameter tensors, bitwise)"
}

case_pair() {  # case_pair NAME NP [args...]: normal vs mirrored
  local name=$1 np=$2
  shift 2
  mirror_train "$name" 0 "$np" "$@"
  mirror_train "${name}_mirror" 1 "$np" "$@"
  same "$name" "${name}_mirror"
}

async=(--set model.tie_embeddings=false)
case_pair pp1 1
case_pair 1f1b 2 --set parallel.pp=2 --set schedule.kind=1f1b
case_pair zb_h1 2 --set parallel.pp=2 --set schedule.kind=zb_h1
case_pair dp2pp2 4 --set parallel.dp=2 --set parallel.pp=2 --set schedule.kind=1f1b
case_pair paci 2 --set parallel.pp=2 --set schedule.kind=paci "${async[@]}"
case_pair pipedream 2 --set parallel.pp=2 --set schedule.kind=pipedream --set training.microbatches=1 "${async[@]}"
# pp=4: two bidirectional pipelines, so the replica all-reduce and the owner broadcast run too.
case_pair amdp 4 --set parallel.pp=4 --set schedule.kind=amdp "${async[@]}"
# LocalSGD: two copies per rank, their average written on the host (sync_params_to_device).
case_pair localsgd 2 --set parallel.pp=2 --set schedule.kind=localsgd "${async[@]}"
# rpd: stale snapshots swapped in for forwards, input-gradient-only backwards, one block stepped.
case_pair rpd 2 --set parallel.pp=2 --set schedule.kind=rpd --set training.microbatches=1 --set schedule.rpd.max_delay=2 \
  "${async[@]}"

# Replay of the mirrored paci run, itself with the switch (replay swaps parameter
# versions on the host: sync_params_to_device at every swap).
PIPETRAIN_TEST_SEPARATE_HOST_MIRRORS=1 "$bin" replay --run "$runs/paci_mirror" >"$work/replay.log" 2>&1 ||
  { echo "FAIL: replay of paci_mirror"; cat "$work/replay.log"; exit 1; }
grep -q "bit for bit" "$work/replay.log" || { echo "FAIL: replay did not report an exact match"; cat "$work/replay.log"; exit 1; }
grep -q "test switch: separate host mirrors" "$work/replay.log" || { echo "FAIL: switch not active in replay"; exit 1; }
echo "ok   replay of paci_mirror: bit for bit"
PIPETRAIN_TEST_SEPARATE_HOST_MIRRORS=1 "$bin" replay --run "$runs/rpd_mirror" >"$work/replay_rpd.log" 2>&1 ||
  { echo "FAIL: replay of rpd_mirror"; cat "$work/replay_rpd.log"; exit 1; }
grep -q "bit for bit" "$work/replay_rpd.log" || { echo "FAIL: rpd replay did not report an exact match"; cat "$work/replay_rpd.log"; exit 1; }
echo "ok   replay of rpd_mirror: bit for bit"

# Resume: 10 steps straight (normal) vs 5 steps + checkpoint + --resume auto + 5 steps,
# both halves with the switch (checkpoint save and load through the mirrors).
ck=(--set parallel.pp=2 --set schedule.kind=1f1b --set training.steps=10 --set training.eval_every=5
    --set checkpoint.every_steps=5 --set checkpoint.keep_last=0)
mirror_train res_ref 0 2 "${ck[@]}"
mirror_train res_mirror 1 2 "${ck[@]}"
same res_ref res_mirror
PIPETRAIN_TEST_SEPARATE_HOST_MIRRORS=1 resume_copy res_mirror res_resumed 2 "${ck[@]}"
switch_took_effect res_resumed 1
same res_ref res_resumed
echo "ok: every hook call site is exercised with separate host mirrors and changes nothing"
