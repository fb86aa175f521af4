#!/usr/bin/env bash
# The device-resident step (model/stage_model.h, memory contract), checked without a GPU.
# PIPETRAIN_TEST_DEVICE_SPACE=1 makes the CPU backend report host_memory() == false
# (model/stage_model_factory.cc), so every caller treats params/grads as device memory
# as on CUDA: the host reaches them only through counted transfers, and collectives that
# cannot take device memory (MPI) are staged through host buffers; =nccl also lets the
# data-parallel sum take device memory, as the NCCL collectives do. Checked:
#  1. each case runs normally and in device space and matches bitwise: loss, grad norm and
#     val loss columns of metrics.jsonl and every final parameter file (run.save_params);
#  2. transfers inside the steps (summary.json step_transfer_floats, summed over ranks):
#     none in any normal run; none in device space unless a collective must be staged:
#     pp=1, the asynchronous kinds without tied embeddings (paci, pipedream, rpd, and localsgd,
#     whose average of the copies runs on the backend), and dp=2 (pp=1 and pp=2,
#     1f1b and pipedream) with device data sums make none; the tied 1f1b at pp=2 stages
#     exactly its wte gradient exchange, 4 * steps * |wte| floats (a download and an
#     upload on each of the two ranks);
#  3. replay of device-space runs (paci, rpd), and 5 steps + checkpoint + --resume auto + 5 steps in
#     device space equal 10 straight normal steps.
# Usage: device_step_test.sh PIPETRAIN SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
device_space_setup
steps=4
saved_run_common $steps 2
common+=(--set training.microbatches=4)

switch_took_effect() {  # switch_took_effect NAME MODE(0|1|nccl): in the device-space runs, and only there
  local name=$1 mode=$2 notices
  notices=$(grep -c "test switch: device space" "$work/$name.log" || true)
  if [ "$mode" != 0 ]; then
    [ "$notices" -ge 1 ] || { echo "FAIL $name: the test switch did not take effect"; cat "$work/$name.log"; exit 1; }
  else
    [ "$notices" = 0 ] || { echo "FAIL $name: test switch active in a normal run"; exit 1; }
  fi
}

space_train() {  # space_train NAME MODE(0|1|nccl) NP [args...]: must succeed
  local name=$1 mode=$2 np=$3
  shift 3
  PIPETRAIN_TEST_DEVICE_SPACE=$mode train "$name" "$np" "$@"
  switch_took_effect "$name" "$mode"
}

moved() {  # moved NAME: summary.json step_transfer_floats
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["step_transfer_floats"])' "$runs/$1/summary.json"
}

expect_moved() {  # expect_moved NAME FLOATS
  [ "$(moved "$1")" = "$2" ] || fail "$1: $(moved "$1") floats moved between host and backend in the steps, expected $2"
}

same() {  # same REF NAME: bitwise metrics columns (steps and evals) and parameters
  same_metrics "$1" "$2" all_columns
  same_params "$1" "$2"
  echo "ok   $2 == $1 ($(all_columns "$1" | wc -l) metrics lines, $params_checked parameter tensors, bitwise;" \
       "$(moved "$2") floats moved in the steps)"
}

case_pair() {  # case_pair NAME MODE NP [args...]: normal vs device space; the normal run moves nothing
  local name=$1 mode=$2 np=$3
  shift 3
  space_train "$name" 0 "$np" "$@"
  expect_moved "$name" 0
  space_train "${name}_dev" "$mode" "$np" "$@"
  same "$name" "${name}_dev"
}

untied=(--set model.tie_embeddings=false)
case_pair pp1 1 1
expect_moved pp1_dev 0
case_pair 1f1b 1 2 --set parallel.pp=2 --set schedule.kind=1f1b
wte=$(( $(stat -c %s "$runs/1f1b/params/0.bin") / 4 ))
expect_moved 1f1b_dev $(( 4 * steps * wte ))
case_pair zb_h1 1 2 --set parallel.pp=2 --set schedule.kind=zb_h1
case_pair dp2pp2 1 4 --set parallel.dp=2 --set parallel.pp=2 --set schedule.kind=1f1b
case_pair paci 1 2 --set parallel.pp=2 --set schedule.kind=paci "${untied[@]}"
expect_moved paci_dev 0
case_pair pipedream 1 2 --set parallel.pp=2 --set schedule.kind=pipedream --set training.microbatches=1 "${untied[@]}"
expect_moved pipedream_dev 0
# pp=4: two bidirectional pipelines, so the replica gather and the owner broadcast run (staged) too.
case_pair amdp 1 4 --set parallel.pp=4 --set schedule.kind=amdp "${untied[@]}"
# LocalSGD: two copies per rank, averaged at each round on the backend (StageModel::average).
case_pair localsgd 1 2 --set parallel.pp=2 --set schedule.kind=localsgd "${untied[@]}"
expect_moved localsgd_dev 0
# rpd: stale snapshots swapped in for forwards, input-gradient-only backwards, one block stepped.
case_pair rpd 1 2 --set parallel.pp=2 --set schedule.kind=rpd --set training.microbatches=1 --set schedule.rpd.max_delay=2 \
  "${untied[@]}"
expect_moved rpd_dev 0
# dp=2 with device data sums: the whole step stays on the backend.
case_pair dp2pp1 nccl 2 --set parallel.dp=2
expect_moved dp2pp1_dev 0
case_pair dp2pp2_1f1b nccl 4 --set parallel.dp=2 --set parallel.pp=2 --set schedule.kind=1f1b "${untied[@]}"
expect_moved dp2pp2_1f1b_dev 0
case_pair dp2pp2_pipedream nccl 4 --set parallel.dp=2 --set parallel.pp=2 --set schedule.kind=pipedream \
  --set training.microbatches=1 "${untied[@]}"
expect_moved dp2pp2_pipedream_dev 0

# Replay of the device-space paci run, itself in device space (host snapshots: explicit transfers).
PIPETRAIN_TEST_DEVICE_SPACE=1 "$bin" replay --run "$runs/paci_dev" >"$work/replay.log" 2>&1 ||
  { echo "FAIL: replay of paci_dev"; cat "$work/replay.log"; exit 1; }
grep -q "bit for bit" "$work/replay.log" || { echo "FAIL: replay did not report an exact match"; cat "$work/replay.log"; exit 1; }
grep -q "test switch: device space" "$work/replay.log" || { echo "FAIL: switch not active in replay"; exit 1; }
echo "ok   replay of paci_dev: bit for bit"
PIPETRAIN_TEST_DEVICE_SPACE=1 "$bin" replay --run "$runs/rpd_dev" >"$work/replay_rpd.log" 2>&1 ||
  { echo "FAIL: replay of rpd_dev"; cat "$work/replay_rpd.log"; exit 1; }
grep -q "bit for bit" "$work/replay_rpd.log" || { echo "FAIL: rpd replay did not report an exact match"; cat "$work/replay_rpd.log"; exit 1; }
echo "ok   replay of rpd_dev: bit for bit"

# Resume: 10 steps straight (normal) vs 5 steps + checkpoint + --resume auto + 5 steps,
# both halves in device space (checkpoint save and load through explicit transfers).
ck=(--set parallel.pp=2 --set schedule.kind=1f1b --set training.steps=10 --set training.eval_every=5
    --set checkpoint.every_steps=5 --set checkpoint.keep_last=0 "${untied[@]}")
space_train res_ref 0 2 "${ck[@]}"
space_train res_dev 1 2 "${ck[@]}"
same res_ref res_dev
expect_moved res_dev 0
PIPETRAIN_TEST_DEVICE_SPACE=1 resume_copy res_dev res_resumed 2 "${ck[@]}"
switch_took_effect res_resumed 1
same res_ref res_resumed
echo "ok: the device-resident step matches the host path bitwise and moves nothing it need not"
