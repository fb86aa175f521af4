#!/usr/bin/env bash
# runtime.transport=ipc with runtime.backend=cuda on the emulator: the ipc transport
# (pipeline/transport_ipc.cc) over CUDA IPC (pipeline/ipc_memory_cuda.cc, unchanged) with
# runtime.cc's memfd-backed cudaIpc*, both ranks on one emulated GPU as under MPS. Each run
# is bitwise equal (losses, grad norms, data, every parameter) to the same run over mpi:
#   1. pp=2 1f1b, interleaved_1f1b (chunks 2), zb_h1, paci, and 1f1b in bf16;
#   2. 1f1b with the stage streams eager (eager-odd, eager-even).
# Usage: ipc_train_test.sh PIPETRAIN_CUDA_EMU SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
mpi_setup
make_corpus 64
steps=4
common=(--set "data.train=$work/data/train_*.bin" --set run.out_dir="$runs" --set run.save_params=true
        --set runtime.backend=cuda --set model.n_layer=2 --set training.microbatches=4 --set training.steps=$steps
        --set parallel.pp=2)
pair() { transport_pair ipc "$1" 2 "${@:2}"; }  # NAME [ARGS...]: over ipc == over mpi
pair pp2
grep -q "requested ipc; CUDA IPC" "$work/pp2.log" || fail "pp2: the ipc transport is not over CUDA IPC"
pair interleaved --set schedule.kind=interleaved_1f1b --set schedule.chunks=2 --set model.n_layer=4
pair zb --set schedule.kind=zb_h1
pair paci --set schedule.kind=paci --set model.tie_embeddings=false
pair bf16 --set runtime.precision=bf16 --set model.n_embd=64
for parity in odd even; do
  PIPETRAIN_EMU_STREAMS=eager-$parity train "eager_$parity" 2 --set runtime.transport=ipc
  same_run pp2_mpi "eager_$parity" "$steps"
done
echo "ipc_train_test: all passed"
