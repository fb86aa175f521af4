#!/usr/bin/env bash
# PIPETRAIN_OP_TIMES (model/cuda/op_timer.h) on the CUDA backend, run by the emulator:
#  1. the losses and grad norms of a timed run are bitwise those of an untimed one (the
#     events change no result);
#  2. every op is counted once per call, whatever nests: 2 steps x 2 micro-batches of the
#     tiny model (n_layer 2, n_embd 64, bf16 on real bf16 storage, one classifier chunk)
#     give per micro-batch 2 attention forwards and backwards, 3 plain forward GEMMs per
#     block + the head's = 7, 1 fused fc + GELU per block, 3 plain input-gradient GEMMs
#     per block + the head's dlnf = 7, 1 fused DGELU per block, 4 weight-gradient GEMMs per
#     block + the head's = 9, one cross-entropy forward and one backward (the kept logits:
#     no recomputation, so no extra head GEMM);
#  3. every time is >= 0 and their total > 0; scripts/op_times.py prints the table.
# Usage: op_times_test.sh PIPETRAIN_CUDA_EMU SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
make_corpus 64
common=(--set "data.train=$work/data/train_*.bin" --set run.out_dir="$runs" --set runtime.backend=cuda
        --set model.n_layer=2 --set model.n_embd=64 --set runtime.precision=bf16 --set training.microbatches=2
        --set training.steps=2)
train plain direct
PIPETRAIN_OP_TIMES="$work/times.jsonl" train timed direct
[ "$(step_columns plain)" = "$(step_columns timed)" ] || fail "timing changed the losses or grad norms"
echo "ok   timed run bitwise equal to the untimed one"
python3 - "$work/times.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) == 1, f"FAIL: {len(lines)} lines, expected one (one backend)"
ops = lines[0]["ops"]
mb = 2 * 2  # steps x micro-batches
expect = {"attention_forward_typed": 2, "attention_backward_typed": 2, "matmul_forward_typed": 7,
          "matmul_forward_gelu_typed": 2, "matmul_backward_input_typed": 7,
          "matmul_backward_input_dgelu_typed": 2, "matmul_backward_weight_typed": 9,
          "crossentropy_forward_typed": 1, "crossentropy_backward_typed": 1}
for name, per_mb in expect.items():
    got = ops.get(name, {}).get("calls")
    assert got == per_mb * mb, f"FAIL: {name}: {got} calls, expected {per_mb} per micro-batch x {mb}"
assert all(t["ms"] >= 0 for t in ops.values()), "FAIL: a negative time"
assert sum(t["ms"] for t in ops.values()) > 0, "FAIL: no time recorded"
print(f"ok   {len(ops)} ops, call counts as derived, total {sum(t['ms'] for t in ops.values()):.1f} ms (emulated)")
PY
python3 "$src/scripts/op_times.py" "$work/times.jsonl" --top 5 >"$work/table.md" || fail "op_times.py failed"
grep -q "^| attention_forward_typed | 8 | " "$work/table.md" || { cat "$work/table.md"; fail "op_times.py table"; }
cat "$work/table.md"
echo "PASS"
