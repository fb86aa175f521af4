#!/usr/bin/env bash
# The time split on a device backend (app/time_accounting.h, ActionSpan::device): the
# compute categories are the device's time on each action (timed events around it), not
# the host's issue time, and the categories still partition each rank's wall time.
# On the emulator the kernels run lazily, when the host waits (runtime.cc): a host-timed
# forward would be its launches only (forward_s + backward_s near 0, the work landing in
# other_s or step_s); device-timed, they carry the emulated kernels' time.
#   1. pp=1 cuda: forward_s + backward_s >= 20 % of wall_s in every step, and
#      forward_s + ... + other_s == wall_s (to 1e-6 relative);
#   2. pp=2 1f1b (mpi transport): the same partition per rank, and each rank's compute
#      > 0; rank 0's send_s is not its forward (the copy out waits for the forward's
#      kernels on the host: that time is compute), so send_s < forward_s;
#   3. timing changes no result: losses and parameters equal run.time_accounting=false;
#   4. trace.json (run.trace_steps) marks every compute span "clock": "device", no other.
# Usage: time_split_test.sh PIPETRAIN_CUDA_EMU SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
mpi_setup
make_corpus 64
common=(--set "data.train=$work/data/train_*.bin" --set run.out_dir="$runs" --set run.save_params=true
        --set runtime.backend=cuda --set model.n_layer=2 --set training.steps=3)
check() {  # check NAME MIN_COMPUTE_FRACTION SEND_BELOW_FORWARD
  python3 - "$runs/$1/metrics.jsonl" "$2" "$3" <<'PY'
import json, sys
path, min_frac, send_check = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1"
kinds = ["forward_s", "backward_s", "backward_input_s", "backward_weight_s", "wait_s", "send_s", "reduce_s",
         "step_s", "other_s"]
rows = [json.loads(l) for l in open(path) if '"time_split"' in l]
assert rows, f"FAIL {path}: no time_split"
for r in rows:
    t = r["time_split"]
    for rank in range(len(t["wall_s"])):
        wall = t["wall_s"][rank]
        parts = sum(t.get(k, [0] * len(t["wall_s"]))[rank] for k in kinds)
        compute = sum(t[k][rank] for k in kinds[:4])
        assert abs(parts - wall) <= 1e-5 * wall, f"FAIL step {r['step']} rank {rank}: parts {parts} != wall {wall}"
        assert compute >= min_frac * wall, f"FAIL step {r['step']} rank {rank}: compute {compute} < {min_frac} of {wall}"
        if send_check and rank == 0:
            assert t["send_s"][0] < t["forward_s"][0], f"FAIL step {r['step']}: send_s {t['send_s'][0]} >= forward_s"
    print(f"ok   step {r['step']}: " + ", ".join(f"{k} {t[k]}" for k in ("forward_s", "backward_s", "send_s", "wall_s")))
PY
}
train pp1 direct
check pp1 0.2 0
train pp1_untimed direct --set run.time_accounting=false
same_run pp1_untimed pp1 3
train pp2 2 --set parallel.pp=2 --set runtime.transport=mpi --set run.trace_steps=3
check pp2 0.01 1
# 4. the trace marks the compute spans as device intervals ("clock": "device"), and only those
python3 - "$runs/pp2/trace.json" <<'PY'
import json, sys
events = [e for e in json.load(open(sys.argv[1]))["traceEvents"] if e.get("ph") == "X"]
compute = [e for e in events if e["name"][0] in "FB"]
others = [e for e in events if e["name"][0] not in "FB"]
assert compute and others, "FAIL trace: no compute or no other spans"
bad = [e["name"] for e in compute if e["args"].get("clock") != "device"]
assert not bad, f"FAIL trace: compute spans without the device clock: {bad[:5]}"
bad = [e["name"] for e in others if "clock" in e["args"]]
assert not bad, f"FAIL trace: host spans marked device: {bad[:5]}"
print(f"ok   trace: {len(compute)} compute spans on the device clock, {len(others)} host spans")
PY
echo "time_split_test: all passed"
