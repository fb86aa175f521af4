#!/usr/bin/env bash
# scripts/mps_pipeline.sh, the one-GPU N-stage pipeline through CUDA MPS.
# Usage: mps_pipeline_test.sh PIPETRAIN SOURCE_DIR cli|gpu
#   cli (label cpu): argument errors, and a clear message with a nonzero exit when the
#       NVIDIA tools are missing (forced with NVIDIA_SMI / MPS_CONTROL pointing nowhere,
#       and, on a machine without nvidia-smi, also with the defaults); no GPU needed.
#   gpu (label gpu): without a usable GPU prints "no usable GPU: ..." and exits 0 (ctest
#       reports it skipped); with one, trains a tiny 4-stage 1F1B pipeline on the CUDA
#       backend as 4 MPS ranks and checks that it finished every step over mpi; then the
#       same over ipc (CUDA IPC between the MPS clients).
set -uo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
mode=$3
script="$src/scripts/mps_pipeline.sh"

# expect_error NAME PATTERN CMD...: CMD must exit nonzero, printing PATTERN.
expect_error() {
  local name=$1 pattern=$2
  shift 2
  "$@" >"$work/$name.out" 2>&1
  local rc=$?
  [ "$rc" != 0 ] || { cat "$work/$name.out"; fail "$name: exit status 0, expected an error"; }
  grep -q -- "$pattern" "$work/$name.out" || { cat "$work/$name.out"; fail "$name: message lacks '$pattern'"; }
  echo "ok: $name (exit $rc): $(head -1 "$work/$name.out")"
}

if [ "$mode" = cli ]; then
  expect_error no_np "-np N is required" "$script" -- --config x
  expect_error bad_np "-np N is required" "$script" -np 0 -- --config x
  expect_error no_train_args "no pipetrain train arguments" "$script" -np 2
  expect_error bad_percent "--sm-percent must be an integer in 1..100" "$script" -np 2 --sm-percent 150 -- --config x
  expect_error bad_command "--command must be train or bench (got 'plan')" "$script" -np 2 --command plan -- --config x
  expect_error bad_transport "--transport must be mpi or ipc (got 'nccl')" "$script" -np 2 --transport nccl -- --config x
  expect_error unknown_arg "unknown argument '--bogus'" "$script" -np 2 --bogus -- --config x
  expect_error no_nvidia_smi "nvidia-smi-missing not found: CUDA MPS needs an NVIDIA GPU" \
    env NVIDIA_SMI="$work/nvidia-smi-missing" "$script" -np 2 --binary "$bin" -- --config x
  expect_error no_mps_control "mps-control-missing not found" \
    env NVIDIA_SMI=true MPS_CONTROL="$work/mps-control-missing" "$script" -np 2 --binary "$bin" -- --config x
  # A GPU tool that exists but sees no GPU: the `nvidia-smi -L` check must stop it.
  printf '#!/bin/sh\necho "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver." >&2\nexit 9\n' \
    >"$work/fake-smi"
  chmod +x "$work/fake-smi"
  expect_error smi_fails "fake-smi -L' failed" \
    env NVIDIA_SMI="$work/fake-smi" MPS_CONTROL=true "$script" -np 2 --binary "$bin" -- --config x
  # The whole flow with stand-ins for nvidia-smi, the MPS control daemon and mpirun,
  # which record what they were given: a private MPS daemon started and told to quit,
  # the SM share, the mpirun line, and the training's exit status passed through.
  fake=$work/fake
  mkdir -p "$fake"
  printf '#!/bin/sh
echo "GPU 0: Fake GPU (UUID: GPU-0000)"
' >"$fake/smi"
  cat >"$fake/mps" <<'MPS'
#!/bin/sh
if [ "${1:-}" = -d ]; then
  echo "start pipe=$CUDA_MPS_PIPE_DIRECTORY log=$CUDA_MPS_LOG_DIRECTORY" >>"$FAKE_LOG"
  touch "$CUDA_MPS_PIPE_DIRECTORY/control"
else
  read -r cmd
  echo "command $cmd" >>"$FAKE_LOG"
  [ "$cmd" = quit ] && rm -f "$CUDA_MPS_PIPE_DIRECTORY/control"
fi
MPS
  cat >"$fake/mpirun" <<'RUN'
#!/bin/sh
echo "mpirun $* | pct=$CUDA_MPS_ACTIVE_THREAD_PERCENTAGE pipe=$CUDA_MPS_PIPE_DIRECTORY gpu=$CUDA_VISIBLE_DEVICES" >>"$FAKE_LOG"
[ -e "$CUDA_MPS_PIPE_DIRECTORY/control" ] || echo "mps-not-running" >>"$FAKE_LOG"
exit "$FAKE_RC"
RUN
  chmod +x "$fake/smi" "$fake/mps" "$fake/mpirun"
  mkdir -p "$work/tmp"
  flow() {  # flow RC ARGS...: runs the script with the stand-ins; the training exits RC
    local want=$1
    shift
    : >"$work/fake.log"
    env -u CUDA_VISIBLE_DEVICES TMPDIR="$work/tmp" FAKE_LOG="$work/fake.log" FAKE_RC="$want" NVIDIA_SMI="$fake/smi" \
      MPS_CONTROL="$fake/mps" MPIRUN="$fake/mpirun" "$script" "$@" >"$work/flow.out" 2>&1
    local rc=$?
    [ "$rc" = "$want" ] || { cat "$work/flow.out" "$work/fake.log"; fail "flow: exit $rc, expected the training's $want"; }
    ls -A "$work/tmp" | grep -q . && { ls -la "$work/tmp"; fail "flow: the MPS work directory was left behind"; }
    return 0
  }
  flow 0 -np 4 --binary "$bin" -- --config my.yaml --set training.steps=3
  log=$(cat "$work/fake.log")
  grep -q "^start pipe=$work/tmp/pipetrain-mps\..*/pipe log=$work/tmp/pipetrain-mps\..*/log" "$work/fake.log" ||
    { echo "$log"; fail "the MPS daemon was not started with private pipe/log directories"; }
  grep -q "^mpirun --oversubscribe -np 4 .*-x CUDA_MPS_PIPE_DIRECTORY .*-x CUDA_MPS_ACTIVE_THREAD_PERCENTAGE .*$bin train --config my.yaml --set training.steps=3 --set runtime.transport=mpi | pct=25 pipe=$work/tmp/pipetrain-mps\..*/pipe gpu=0\$" "$work/fake.log" ||
    { echo "$log"; fail "unexpected mpirun line or environment"; }
  grep -q "mps-not-running" "$work/fake.log" && { echo "$log"; fail "mpirun ran while MPS was not running"; }
  [ "$(tail -1 "$work/fake.log")" = "command quit" ] || { echo "$log"; fail "the MPS daemon was not told to quit last"; }
  echo "ok: flow -np 4: private MPS daemon, 25 % of the SMs, mpirun line, quit"
  flow 3 -np 3 --sm-percent 50 --gpu 2 --binary "$bin" -- --config my.yaml
  grep -q "| pct=50 .* gpu=2\$" "$work/fake.log" || { cat "$work/fake.log"; fail "--sm-percent/--gpu not applied"; }
  [ "$(tail -1 "$work/fake.log")" = "command quit" ] || { cat "$work/fake.log"; fail "MPS not stopped after a failed run"; }
  echo "ok: flow with a failing training: exit status 3 passed through, MPS stopped"
  flow 0 -np 4 --command bench --binary "$bin" -- --config my.yaml --iters 5
  grep -q "^mpirun --oversubscribe -np 4 .*$bin bench --config my.yaml --iters 5 --set runtime.transport=mpi | pct=25 " \
    "$work/fake.log" || { cat "$work/fake.log"; fail "--command bench: unexpected mpirun line"; }
  [ "$(tail -1 "$work/fake.log")" = "command quit" ] || { cat "$work/fake.log"; fail "MPS not stopped after bench"; }
  echo "ok: flow --command bench: pipetrain bench on 4 MPS ranks"
  flow 0 -np 2 --transport ipc --binary "$bin" -- --config my.yaml
  grep -q "^mpirun --oversubscribe -np 2 .*$bin train --config my.yaml --set runtime.transport=ipc | pct=50 " \
    "$work/fake.log" || { cat "$work/fake.log"; fail "--transport ipc: unexpected mpirun line"; }
  echo "ok: flow --transport ipc: the ranks run runtime.transport=ipc"
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    expect_error this_machine_has_no_gpu "nvidia-smi not found" "$script" -np 2 --binary "$bin" -- --config x
  fi
  echo "PASS"
  exit 0
fi

[ "$mode" = gpu ] || fail "mode must be cli or gpu, got '$mode'"
command -v nvidia-smi >/dev/null 2>&1 || { echo "no usable GPU: nvidia-smi not found"; exit 0; }
nvidia-smi -L >/dev/null 2>&1 || { echo "no usable GPU: nvidia-smi -L failed"; exit 0; }
command -v nvidia-cuda-mps-control >/dev/null 2>&1 || { echo "no usable GPU: nvidia-cuda-mps-control not found"; exit 0; }

make_corpus 64
mps_run() {  # mps_run TRANSPORT: a 5-step 4-rank 1F1B run over MPS into runs/mps_TRANSPORT
  local t=$1 rc=0
  TMPDIR="$work" "$script" -np 4 --transport "$t" --binary "$bin" -- --config "$cfg" \
    --set "data.train=$work/data/train_*.bin" --set run.out_dir="$runs" --set run.name="mps_$t" \
    --set parallel.pp=4 --set schedule.kind=1f1b --set runtime.backend=cuda --set training.steps=5 \
    >"$work/run_$t.log" 2>&1 || rc=$?
  cat "$work/run_$t.log"
  [ "$rc" = 0 ] || fail "mps_pipeline.sh --transport $t exited with $rc"
  grep -q "transport $t" "$work/run_$t.log" || fail "the run did not report the $t transport"
  grep -q "backend cuda" "$work/run_$t.log" || fail "the run did not report the cuda backend"
  steps=$(grep -c '"step":' "$runs/mps_$t/metrics.jsonl")
  [ "$steps" -ge 5 ] || fail "$t: metrics.jsonl holds $steps step records, expected 5"
  [ -f "$runs/mps_$t/summary.json" ] || fail "$t: no summary.json"
  ls -d "$work"/pipetrain-mps.* 2>/dev/null && fail "the MPS work directory was not removed"
  return 0
}
mps_run mpi
mps_run ipc
# The transport only moves bytes: the same losses and grad norms, bit for bit.
same_metrics mps_mpi mps_ipc
echo "PASS: 4-rank 1F1B over MPS finished $steps steps over mpi and over ipc, bitwise equal"
