#!/usr/bin/env bash
# The NCCL transport and all-reducer (pipeline/transport_nccl.cc, unchanged) on the
# emulator: NCCL's calls served over MPI by tests/cuda_emu/nccl_host.cc, one emulated GPU
# per rank (PIPETRAIN_EMU_DEVICES). Each run is compared bitwise (losses, grad norms, data,
# every parameter) with the same run over the mpi transport and MPI sums:
#   1. pp=2 1f1b, interleaved_1f1b (chunks 2), zb_h1 (split backward), paci (asynchronous),
#      and 1f1b in bf16, over runtime.transport=nccl (the log must say nccl);
#   2. 1f1b with the stage streams eager (PIPETRAIN_EMU_STREAMS=eager-odd, eager-even):
#      the channel streams' waits for the producer and for the previous reader;
#   3. dp=2: the gradient sums on the device over NCCL (one GPU per rank) against MPI
#      (the two ranks on one GPU, which NCCL refuses: the log says why it uses MPI);
#   4. dp=2 x pp=2 on 4 GPUs (transport auto: nccl; sums nccl) against one GPU (mpi);
#   5. runtime.transport=nccl with two pipeline ranks on one GPU is refused, naming the key.
# Usage: nccl_train_test.sh PIPETRAIN_CUDA_EMU SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
mpi_setup
make_corpus 64
steps=4
common=(--set "data.train=$work/data/train_*.bin" --set run.out_dir="$runs" --set run.save_params=true
        --set runtime.backend=cuda --set model.n_layer=2 --set training.microbatches=4 --set training.steps=$steps)
says() {  # says NAME TEXT: the run's log has the line
  grep -q "$2" "$work/$1.log" || { echo "FAIL $1: its log does not say '$2'"; cat "$work/$1.log"; exit 1; }
}
pair() {  # pair NAME NP [ARGS...]: NAME over nccl (a GPU per rank) == NAME_mpi over mpi, bitwise
  PIPETRAIN_EMU_DEVICES=$2 transport_pair nccl "$@"
}

# 1. pipeline schedules
pair pp2 2 --set parallel.pp=2
pair interleaved 2 --set parallel.pp=2 --set schedule.kind=interleaved_1f1b --set schedule.chunks=2 --set model.n_layer=4
pair zb 2 --set parallel.pp=2 --set schedule.kind=zb_h1
pair paci 2 --set parallel.pp=2 --set schedule.kind=paci --set model.tie_embeddings=false
pair bf16 2 --set parallel.pp=2 --set runtime.precision=bf16 --set model.n_embd=64

# 2. eager stage streams
for parity in odd even; do
  PIPETRAIN_EMU_STREAMS=eager-$parity PIPETRAIN_EMU_DEVICES=2 train "eager_$parity" 2 --set parallel.pp=2 \
    --set runtime.transport=nccl
  same_run pp2_mpi "eager_$parity" "$steps"
done

# 3. data-parallel sums
PIPETRAIN_EMU_DEVICES=2 train dp2 2 --set parallel.dp=2
says dp2 "data-parallel sums over nccl (every data-parallel rank has a GPU of its own)"
PIPETRAIN_EMU_DEVICES=1 train dp2_shared 2 --set parallel.dp=2
says dp2_shared "data-parallel sums over mpi (data-parallel ranks 0 and 1 share GPU"
same_run dp2_shared dp2 "$steps"

# 4. dp=2 x pp=2
PIPETRAIN_EMU_DEVICES=4 train dp2pp2 4 --set parallel.dp=2 --set parallel.pp=2 --set runtime.transport=auto
says dp2pp2 "pipetrain: transport nccl (auto"
PIPETRAIN_EMU_DEVICES=1 train dp2pp2_shared 4 --set parallel.dp=2 --set parallel.pp=2 --set runtime.transport=auto
says dp2pp2_shared "pipetrain: transport mpi (auto"
same_run dp2pp2_shared dp2pp2 "$steps"

# 5. a shared GPU refused by name
if PIPETRAIN_EMU_DEVICES=1 run_train refused 2 --set parallel.pp=2 --set runtime.transport=nccl; then
  fail "runtime.transport=nccl on one shared GPU ran"
fi
says refused "key 'runtime.transport': nccl needs a GPU of its own for every pipeline rank"
echo "nccl_train_test: all passed"
