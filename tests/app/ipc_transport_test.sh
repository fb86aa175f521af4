#!/usr/bin/env bash
# runtime.transport=ipc on the CPU: with the cpu backend the ipc transport runs its
# protocol over POSIX shared memory (pipeline/transport_ipc.cc, ipc_memory_shm.cc), the
# stand-in of CUDA IPC. Short training runs over ipc must equal the same runs over mpi
# bit for bit (losses, grad norms, val losses, data and every final parameter):
#   1f1b pp=2; interleaved_1f1b pp=2 x 2 chunks (the wrap-around channel); zb_h1 pp=2 with
#   emulated device memory (PIPETRAIN_TEST_DEVICE_SPACE=1: device boundary buffers go to
#   the transport directly); 1f1b dp=2 x pp=2 (one ipc transport per pipeline group);
#   paci pp=2 (asynchronous, with its version record).
# Also: the log names the ipc transport; no shared-memory object is left in /dev/shm. (The
# selection rules, one host, are transport_select_test's.)
# Usage: ipc_transport_test.sh PIPETRAIN SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
device_space_setup
saved_run_common 4 2
common+=(--set training.microbatches=4)
shm_before=$(ls /dev/shm | grep -c '^pipetrain-ipc-' || true)

pair() {  # pair NAME NP [args...]: the run over mpi and over ipc, bitwise equal
  local name=$1 np=$2
  shift 2
  train "${name}_mpi" "$np" --set runtime.transport=mpi "$@"
  train "${name}_ipc" "$np" --set runtime.transport=ipc "$@"
  grep -q "transport ipc (requested ipc; the cpu backend shares host memory" "$work/${name}_ipc.log" ||
    { cat "$work/${name}_ipc.log"; fail "${name}_ipc: the log does not name the ipc transport"; }
  same_metrics "${name}_mpi" "${name}_ipc" all_columns
  same_params "${name}_mpi" "${name}_ipc"
  same_versions "${name}_mpi" "${name}_ipc"
  echo "ok   ${name}: ipc == mpi ($(all_columns "${name}_mpi" | wc -l) metrics lines, $params_checked parameter tensors, bitwise)"
}

pair 1f1b 2 --set parallel.pp=2 --set schedule.kind=1f1b
pair interleaved 2 --set parallel.pp=2 --set schedule.kind=interleaved_1f1b --set schedule.chunks=2
PIPETRAIN_TEST_DEVICE_SPACE=1 pair zb_h1_dev 2 --set parallel.pp=2 --set schedule.kind=zb_h1
grep -q "test switch: device space" "$work/zb_h1_dev_ipc.log" || fail "zb_h1_dev: the device-space switch did not take effect"
pair dp2pp2 4 --set parallel.dp=2 --set parallel.pp=2 --set schedule.kind=1f1b
pair paci 2 --set parallel.pp=2 --set schedule.kind=paci --set model.tie_embeddings=false

shm_after=$(ls /dev/shm | grep -c '^pipetrain-ipc-' || true)
[ "$shm_after" = "$shm_before" ] || { ls /dev/shm; fail "shared-memory objects left in /dev/shm"; }
echo "ok   no shared-memory object left behind"
echo "PASS"
