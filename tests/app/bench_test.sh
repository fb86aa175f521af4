#!/usr/bin/env bash
# `pipetrain bench` under mpirun -np 2 on the tiny config writes a complete cost file
# (every component time > 0, p2p latency and bandwidth > 0), and `pipetrain plan
# --costs` reads it and predicts a step time in ms; a cost file of another model shape
# and a damaged one are refused with the key named.
# Usage: bench_test.sh PIPETRAIN SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
mpi_setup

$mpirun -np 2 "$bin" bench --config "$cfg" --set run.out_dir="$runs" --set runtime.watchdog_seconds=120 --iters 5 --warmup 1 \
  --out "$work/costs.json" >"$work/bench.log" 2>"$work/bench.err" || { cat "$work/bench.log" "$work/bench.err"; fail "bench exited non-zero"; }
[ -s "$work/costs.json" ] || fail "no cost file written"
grep -q "MFU: n/a (unknown peak; pass --peak-tflops X)" "$work/bench.log" || { cat "$work/bench.log"; fail "no MFU fallback line on CPU"; }
grep -q "bench: measuring" "$work/bench.err" || fail "no progress on stderr"
python3 - "$work/costs.json" <<'PY' || fail "cost file content"
import json, sys
f = json.load(open(sys.argv[1]))
assert f["format"] == "pipetrain-costs" and f["version"] == 1, f
assert f["machine"]["ranks"] == 2 and f["machine"]["backend"] == "cpu", f["machine"]
m = f["model"]
assert (m["n_layer"], m["n_embd"], m["n_head"], m["vocab_size"], m["micro_batch_size"], m["seq_len"]) == (8, 32, 2, 256, 2, 16), m
for comp in ("block", "stage_io", "embedding", "head", "full_model"):
    for k in ("forward_s", "backward_input_s", "backward_weight_s"):
        v = f[comp][k]
        # An empty stage has no weight-gradient work at all: its Bw is the clock's own cost, >= 0.
        ok = v >= 0 if (comp, k) == ("stage_io", "backward_weight_s") else v > 0
        assert ok and v < 1.0, (comp, k, v)
assert f["p2p"]["latency_s"] > 0 and f["p2p"]["bandwidth_bytes_per_s"] > 0, f["p2p"]
assert f["optimizer"]["seconds_per_param"] > 0, f["optimizer"]
print("cost file ok")
PY

"$bin" plan --config "$cfg" --set parallel.pp=2 --set run.out_dir="$runs" --costs "$work/costs.json" >"$work/plan.log" \
  || { cat "$work/plan.log"; fail "plan --costs exited non-zero"; }
grep -Eq "^predicted step time: [0-9]+\.[0-9]+ ms  \(256 tokens/step -> [0-9]+ tokens/s\)" "$work/plan.log" \
  || { cat "$work/plan.log"; fail "no predicted step time in ms"; }
grep -Eq "^pipeline \(forwards, backwards, messages\): [0-9.]+ ms  bubble fraction: [0-9.]+%" "$work/plan.log" \
  || { cat "$work/plan.log"; fail "no pipeline time / bubble fraction"; }
# Without --costs the plan keeps its unit cost model.
"$bin" plan --config "$cfg" --set parallel.pp=2 --set run.out_dir="$runs" >"$work/plan_units.log"
grep -q "block-forward units" "$work/plan_units.log" || fail "plan without --costs lost the unit cost model"
grep -q "predicted step time:" "$work/plan_units.log" && fail "plan without --costs printed a measured prediction"

# Another model shape: refused, naming the key and saying to re-run bench.
if "$bin" plan --config "$cfg" --set model.n_embd=64 --costs "$work/costs.json" >"$work/shape.log" 2>&1; then
  fail "plan accepted a cost file of another model shape"
fi
grep -q "key 'model.n_embd'" "$work/shape.log" && grep -q "re-run \`pipetrain bench" "$work/shape.log" \
  || { cat "$work/shape.log"; fail "shape mismatch message"; }
# Costs measured in fp32 do not predict a bf16 run: refused, naming the key and both.
grep -q '"precision": "fp32", "tf32": false' "$work/costs.json" || fail "cost file does not record its precision"
if "$bin" plan --config "$cfg" --set runtime.precision=bf16 --costs "$work/costs.json" >"$work/prec.log" 2>&1; then
  fail "plan accepted fp32 costs for a bf16 config"
fi
grep -q "key 'measurement.precision': the costs were measured in fp32 but .* trains in bf16" "$work/prec.log" \
  || { cat "$work/prec.log"; fail "precision mismatch message"; }
# A newer format version: refused, naming the key.
sed 's/"version": 1/"version": 7/' "$work/costs.json" >"$work/v7.json"
if "$bin" plan --config "$cfg" --costs "$work/v7.json" >"$work/v7.log" 2>&1; then fail "plan accepted version 7"; fi
grep -q "v7.json: key 'version'" "$work/v7.log" || { cat "$work/v7.log"; fail "version message"; }
echo "ok: bench wrote a complete cost file; plan --costs predicts $(grep '^predicted step time' "$work/plan.log")"
