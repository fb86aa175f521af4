#!/usr/bin/env bash
# Training with every other stream eager (PIPETRAIN_EMU_STREAMS, runtime.cc): a lazy stream
# beside an eager one shows a missing wait before a write (one stage's stream overwriting
# a buffer another stream's queued work still reads), which lazy streams alone can hide.
# Each run is compared bitwise (losses, grad norms, data, parameters) with the all-lazy run:
#   1. two stages on one rank, two streams (interleaved_1f1b, chunks 2, transport local),
#      with the first-created stream eager (eager-odd), then the second (eager-even);
#   2. the same in bf16 (the persistent bf16 weight copies, the flash attention);
#   3. pp=2 1f1b over mpi (pinned host staging of the boundaries) with every stream eager.
# Usage: eager_streams_test.sh PIPETRAIN_CUDA_EMU SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
mpi_setup
make_corpus 64
steps=4
common=(--set "data.train=$work/data/train_*.bin" --set run.out_dir="$runs" --set run.save_params=true
        --set runtime.backend=cuda --set model.n_layer=2 --set training.microbatches=4 --set training.steps=$steps)
two_stages=(--set schedule.kind=interleaved_1f1b --set schedule.chunks=2 --set runtime.transport=local)
bf16=(--set runtime.precision=bf16 --set model.n_embd=64)

train chunks2 direct "${two_stages[@]}"
train chunks2_bf16 direct "${two_stages[@]}" "${bf16[@]}"
for parity in odd even; do
  PIPETRAIN_EMU_STREAMS=eager-$parity train "chunks2_$parity" direct "${two_stages[@]}"
  same_run chunks2 "chunks2_$parity" "$steps"
  PIPETRAIN_EMU_STREAMS=eager-$parity train "chunks2_bf16_$parity" direct "${two_stages[@]}" "${bf16[@]}"
  same_run chunks2_bf16 "chunks2_bf16_$parity" "$steps"
done
train pp2 2 --set parallel.pp=2 --set runtime.transport=mpi
PIPETRAIN_EMU_STREAMS=eager train pp2_eager 2 --set parallel.pp=2 --set runtime.transport=mpi
same_run pp2 pp2_eager "$steps"
echo "eager_streams_test: all passed"
