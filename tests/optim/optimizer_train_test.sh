#!/usr/bin/env bash
# The optimizers through the binary (configs/tiny_test.yaml, CPU, 10 steps), for
# optimizer.kind nadamw and basis_rotation (update_freq 3, so bases refresh before and
# after the checkpoint):
#  1. the loss falls: step 10's loss is below step 1's by more than 0.2;
#  2. 5 steps + checkpoint + resume + 5 steps == 10 steps straight, bitwise (losses,
#     grad norms, data hashes, every parameter file): the optimizer state, bases and
#     statistics included, is saved and loaded by name;
#  3. basis_rotation at pp=2 (1f1b, mpirun) == pp=1 bitwise: the refresh stagger follows
#     tensor names, not the pipeline layout.
# Usage: optimizer_train_test.sh PIPETRAIN SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
mpi_setup
make_corpus 64
common=(--set "data.train=$work/data/train_*.bin" --set run.out_dir="$runs" --set run.save_params=true
        --set training.steps=10 --set checkpoint.every_steps=5 --set checkpoint.keep_last=0
        --set optimizer.basis_rotation.update_freq=3)

loss_falls() {  # loss_falls NAME
  python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
loss = {r["step"]: r["loss"] for r in rows if "loss" in r}
first, last = loss[min(loss)], loss[max(loss)]
print(f"     {sys.argv[2]}: loss {first:.4f} -> {last:.4f}")
sys.exit(0 if last < first - 0.2 else 1)
' "$runs/$1/metrics.jsonl" "$1" || fail "$1: the loss did not fall by 0.2 in 10 steps"
}

for kind in nadamw basis_rotation; do
  train "$kind" direct --set optimizer.kind=$kind --set runtime.transport=local
  loss_falls "$kind"
  resume_copy "$kind" "$kind.resumed" direct --set optimizer.kind=$kind --set runtime.transport=local
  same_run "$kind" "$kind.resumed" 10
done
train basis_rotation.pp2 2 --set optimizer.kind=basis_rotation --set parallel.pp=2
same_run basis_rotation basis_rotation.pp2 10
echo "PASS optimizer_train_test"
