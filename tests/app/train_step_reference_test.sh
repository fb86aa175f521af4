#!/usr/bin/env bash
# Acceptance: whole training steps and evaluations of `pipetrain train` equal an
# independent float64 PyTorch reference (tests/reference/train_step_reference.py):
# per step loss, grad_norm, lr and data; the final parameters per tensor after K AdamW
# steps with gradient accumulation, global-norm clipping (on some steps, off on
# others, or disabled), the decay groups (biases, LayerNorms, wpe never decayed; wte
# per optimizer.decay_embeddings; the untied head decayed), warm-up + cosine lr; and
# val_loss at step 0 and K as the mean over eval_batches distinct validation batches.
# Usage: train_step_reference_test.sh PIPETRAIN SOURCE_DIR cpu|mpi
#   cpu  pp=1: decay_embeddings false and true (clipping mixed), one step, untied without
#        clipping, pipedream (one stage: no delay, so it trains as the reference).
#   mpi  pp=4 under mpirun: 1f1b (train and eval; equal to pp=1 bitwise), pipedream
#        (eval only: asynchronous, untied).
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
mode=$3
make_corpus 64
# Every value the reference uses, given to both sides (the reference assumes no default).
# eps = 1e-3 keeps the float32/float64 bound of Adam's direction small (see the reference's
# "Tolerances"); grad_clip 1.6 lies between this run's step norms (1.5 to 1.7 after step 1,
# 4.5 at step 1), so clipping engages on some steps and not others.
keys=(model.vocab_size=256 model.max_seq_len=16 model.n_layer=8 model.n_head=2 model.n_embd=32
      "data.train=$work/data/train_*.bin" "data.val=$work/data/val_*.bin" data.shuffle=false
      training.steps=6 training.micro_batch_size=2 training.seq_len=16 training.microbatches=4
      training.eval_batches=4 training.eval_every=0
      optimizer.lr=1e-2 optimizer.min_lr_ratio=0.1 optimizer.lr_schedule=cosine optimizer.warmup_steps=2
      optimizer.beta1=0.9 optimizer.beta2=0.95 optimizer.eps=1e-3 optimizer.weight_decay=0.5 optimizer.grad_clip=1.6)
common=(--set run.out_dir="$runs" --set run.save_params=true)
for kv in "${keys[@]}"; do common+=(--set "$kv"); done

# Initial parameters: one update with lr 1e-30 (the reference checks the lr and explains the bound).
init_params() {  # init_params NAME NP TIED
  train "$1" "$2" --set model.tie_embeddings="$3" --set optimizer.lr=1e-30 --set optimizer.warmup_steps=0 \
    --set optimizer.weight_decay=0 --set training.steps=1 --set training.microbatches=1 --set data.val=
}

# reference CHECKS NAME INIT [KEY=VALUE...]: the run NAME (trained with the same KEY=VALUE overrides) against the reference.
reference() {
  local checks=$1 name=$2 init=$3
  shift 3
  echo "== $name ($checks)"
  /usr/bin/python3 "$src/tests/reference/train_step_reference.py" "$checks" "$runs/$name" "$runs/$init/params" \
    "${keys[@]}" "$@" || fail "$name differs from the float64 reference (lines above)"
}

# train_keys NAME NP KEY=VALUE...: trains NAME with the overrides (expect_clipping is the reference's alone).
train_keys() {
  local name=$1 np=$2 sets=() kv
  shift 2
  for kv in "$@"; do [[ $kv == expect_clipping=* ]] || sets+=(--set "$kv"); done
  train "$name" "$np" "${sets[@]}"
}

# checked_run CHECKS NAME NP INIT KEY=VALUE...: trains NAME with the overrides, then compares it.
checked_run() {
  local checks=$1 name=$2 np=$3 init=$4
  shift 4
  train_keys "$name" "$np" "$@"
  reference "$checks" "$name" "$init" "$@"
}

if [ "$mode" = cpu ]; then
  init_params init_tied direct true
  init_params init_untied direct false
  for de in false true; do
    checked_run train,eval "decay_emb_$de" direct init_tied model.tie_embeddings=true optimizer.decay_embeddings=$de \
      expect_clipping=mixed
  done
  # The parameters after step 1 (clipped; warm-up makes its lr independent of training.steps).
  checked_run train one_step direct init_tied model.tie_embeddings=true optimizer.decay_embeddings=true \
    training.steps=1 expect_clipping=any
  checked_run train,eval untied_no_clip direct init_untied model.tie_embeddings=false optimizer.decay_embeddings=true \
    optimizer.grad_clip=0 expect_clipping=none
  # pipedream on one stage has no delay: its STEP actions (self-clipped per stage) must train as the reference.
  checked_run train,eval pp1_pipedream direct init_untied schedule.kind=pipedream model.tie_embeddings=false \
    optimizer.decay_embeddings=false expect_clipping=mixed
  echo "ok: pp=1 runs equal the float64 reference (decay_embeddings false/true with clipping on some steps, step 1," \
    "untied unclipped, pipedream)"
elif [ "$mode" = mpi ]; then
  mpi_setup
  init_params init_tied direct true
  init_params init_untied direct false
  pp4=(model.tie_embeddings=true optimizer.decay_embeddings=true expect_clipping=mixed)
  checked_run train,eval pp4_1f1b 4 init_tied parallel.pp=4 schedule.kind=1f1b "${pp4[@]}"
  train_keys pp1_1f1b direct "${pp4[@]}"
  same_metrics pp1_1f1b pp4_1f1b all_columns  # and pp=4 equals pp=1 bitwise (losses, norms, val_loss)
  checked_run eval pp4_pipedream 4 init_untied parallel.pp=4 schedule.kind=pipedream model.tie_embeddings=false \
    optimizer.decay_embeddings=false expect_clipping=any
  echo "ok: pp=4 1f1b equals the float64 reference and pp=1 bitwise; val_loss of pp=4 pipedream is the reference mean"
else
  fail "mode must be cpu or mpi, got '$mode'"
fi
