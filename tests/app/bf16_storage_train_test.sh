#!/usr/bin/env bash
# Real bf16 storage of activations (model/bf16_storage_backend.h), checked without a GPU.
# PIPETRAIN_TEST_BF16_STORAGE=1 makes the CPU stage models in runtime.precision bf16 keep
# every bf16 activation and activation gradient as 2-byte bf16 behind handles that the
# host cannot dereference, every op staged through fp32 scratch, as the CUDA backend in
# bf16 does (model/stage_model_factory.cc). The stage model's dtype declarations (which
# tensors are bf16, their sizes and sub-pointers) are right exactly when this changes no
# result: each case runs in bf16 normally (fp32 containers) and with the switch, and the
# loss, grad norm and val loss columns of metrics.jsonl and every final parameter file
# must match bitwise. Cases: pp=1; pp=2 1f1b (fused backward, shared gradient buffers);
# pp=2 zb_h1 (split backward: gradients kept per slot from Bx to Bw); pp=2 pipedream
# (asynchronous, weight stashes).
# Usage: bf16_storage_train_test.sh PIPETRAIN SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
export PIPETRAIN_TEST_BF16_STORAGE=0
mpi_setup PIPETRAIN_TEST_BF16_STORAGE
make_corpus 64
common=(--set "data.train=$work/data/train_*.bin" --set "data.val=$work/data/val_*.bin" --set run.out_dir="$runs"
        --set run.save_params=true --set training.steps=4 --set training.eval_every=2 --set training.eval_batches=2
        --set training.microbatches=4 --set runtime.precision=bf16)

notices() { grep -c "test switch: bf16 storage" "$work/$1.log" || true; }

case_pair() {  # case_pair NAME NP [args...]: bf16 in fp32 containers vs real bf16 storage, bitwise
  local name=$1 np=$2
  shift 2
  PIPETRAIN_TEST_BF16_STORAGE=0 train "$name" "$np" "$@"
  [ "$(notices "$name")" = 0 ] || fail "$name: test switch active in a normal run"
  PIPETRAIN_TEST_BF16_STORAGE=1 train "${name}_bf16" "$np" "$@"
  [ "$(notices "${name}_bf16")" -ge 1 ] || { cat "$work/${name}_bf16.log"; fail "${name}_bf16: the switch did not take effect"; }
  same_metrics "$name" "${name}_bf16" all_columns
  same_params "$name" "${name}_bf16"
  echo "ok   ${name}_bf16 == $name ($(all_columns "$name" | wc -l) metrics lines, $params_checked parameter tensors, bitwise)"
}

untied=(--set model.tie_embeddings=false)
case_pair pp1 1
case_pair 1f1b 2 --set parallel.pp=2 --set schedule.kind=1f1b
case_pair zb_h1 2 --set parallel.pp=2 --set schedule.kind=zb_h1
case_pair pipedream 2 --set parallel.pp=2 --set schedule.kind=pipedream --set training.microbatches=1 "${untied[@]}"
echo "ok: real bf16 storage trains bitwise like bf16 values in fp32 containers"
