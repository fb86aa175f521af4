#!/usr/bin/env bash
# Host-side costs of a training step on the CUDA backend, counted by the emulator
# (tests/cuda_emu/README.md, "Host costs"): each process of pipetrain_cuda_emu appends
# its totals to $PIPETRAIN_EMU_COUNTS at exit, so runs of 3, 6 and 9 steps of one config
# give the per-step costs of the windows 3->6 and 6->9 by difference. pp=1, tiny config
# with n_layer 2, in fp32 with microbatches 2 and 4 and in bf16 (n_embd 64). Asserted per
# step of both windows:
#   - no allocator call: cudaMalloc/cudaFree, cudaMallocHost/cudaFreeHost,
#     cudaMallocAsync/cudaFreeAsync are 0 (workspaces, slots, stashes and the upload
#     staging ring reach their size in the first steps);
#   - host waits (device_syncs + stream_syncs + event_syncs + sync_copies) at most 4 and
#     equal for microbatches 2 and 4. The ones that remain are the two reads the host
#     needs each step, each a device->pageable-host cudaMemcpyAsync (a synchronous copy)
#     followed by CudaBackend::copy_bytes' cudaStreamSynchronize (there a no-op wait, needed
#     where the destination is pinned):
#       1. the gradient's sums of squares (StageModel::grad_sums_of_squares): the global
#          norm, hence the clip factor, is combined on the host across ranks;
#       2. the step's losses (take_losses, one download of every micro-batch's): logged.
#     Before the upload staging ring each micro-batch's tokens and targets upload waited for
#     the stream (2 stream syncs and 2 sync copies per micro-batch), and the tied embedding's
#     reduction synchronized both (here the same) models: 14 per step at microbatches 2,
#     22 at 4;
#   - kernel launches, library calls (cuBLASLt) the same in both windows (a steady state).
# These runs leave the time split off (run.time_accounting=false); one more with it on
# must add exactly one event synchronize per step (its device marks read once per segment).
# Also pp=2 (1f1b, transport mpi, 2 ranks) per rank: printed, not asserted (the boundary
# transfers' waits depend on the schedule).
# Usage: host_costs_test.sh PIPETRAIN_CUDA_EMU SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
mpi_setup PIPETRAIN_EMU_COUNTS
make_corpus 64
common=(--set "data.train=$work/data/train_*.bin" --set run.out_dir="$runs" --set runtime.backend=cuda
        --set model.n_layer=2 --set runtime.transport=mpi --set run.time_accounting=false)

counts() {  # counts NAME NP STEPS [ARGS...]: the run's totals in $work/NAME.jsonl
  local name=$1 np=$2 steps=$3
  shift 3
  rm -f "$work/$name.jsonl"
  PIPETRAIN_EMU_COUNTS="$work/$name.jsonl" train "$name" "$np" --set training.steps="$steps" "$@"
}

per_step() {  # per_step LABEL NP [ARGS...]: counts for 3, 6, 9 steps, table and checks
  local label=$1 np=$2
  shift 2
  local s
  for s in 3 6 9; do counts "${label}_$s" "$np" "$s" "$@"; done
  python3 - "$work" "$label" "$np" <<'PY'
import json, sys
work, label, np = sys.argv[1], sys.argv[2], sys.argv[3]
def load(steps):
    rows = [json.loads(l) for l in open(f"{work}/{label}_{steps}.jsonl")]
    return {r["rank"]: r for r in rows}
runs = {s: load(s) for s in (3, 6, 9)}
ranks = sorted(runs[3])
assert len(ranks) == (1 if np == "direct" else int(np)), f"FAIL {label}: count lines for ranks {ranks}"
keys = [k for k in runs[3][ranks[0]] if k != "rank"]
waits = ("device_syncs", "stream_syncs", "event_syncs", "sync_copies")
allocs = ("mallocs", "frees", "host_allocs", "host_frees", "stream_allocs")
out = {}
for r in ranks:
    for a, b in ((3, 6), (6, 9)):
        d = {k: (runs[b][r][k] - runs[a][r][k]) / (b - a) for k in keys}
        d["host_waits"] = sum(d[k] for k in waits)
        out[(r, a, b)] = d
cols = keys + ["host_waits"]
print(f"{label}: per step")
print("  rank window " + " ".join(f"{c:>13}" for c in cols))
for (r, a, b), d in out.items():
    print(f"  {r:>4} {a}->{b}   " + " ".join(f"{d[c]:>13g}" for c in cols))
json.dump({f"{r}:{a}-{b}": d for (r, a, b), d in out.items()}, open(f"{work}/{label}.per_step.json", "w"))
PY
}

check_pp1() {  # check_pp1 LABEL: the assertions of the header on a pp=1 table
  python3 - "$work/$1.per_step.json" "$1" <<'PY'
import json, sys
d, label = json.load(open(sys.argv[1])), sys.argv[2]
w1, w2 = d["-1:3-6"], d["-1:6-9"]
for w in (w1, w2):
    for k in ("mallocs", "frees", "host_allocs", "host_frees", "stream_allocs"):
        assert w[k] == 0, f"FAIL {label}: {w[k]:g} {k} per step (expected 0 in steady state)"
    assert w["host_waits"] <= 4, f"FAIL {label}: {w['host_waits']:g} host waits per step (at most 4: the grad-norm and loss reads)"
for k in ("launches", "library_calls", "host_waits"):
    assert w1[k] == w2[k], f"FAIL {label}: {k} per step {w1[k]:g} (steps 3-6) != {w2[k]:g} (steps 6-9)"
print(f"ok   {label}: {w1['host_waits']:g} host waits, 0 allocator calls, {w1['launches']:g} launches per step")
PY
}

per_step fp32_m2 direct --set training.microbatches=2
check_pp1 fp32_m2
per_step fp32_m4 direct --set training.microbatches=4
check_pp1 fp32_m4
python3 - "$work/fp32_m2.per_step.json" "$work/fp32_m4.per_step.json" <<'PY'
import json, sys
a, b = (json.load(open(p))["-1:3-6"] for p in sys.argv[1:])
assert a["host_waits"] == b["host_waits"], \
    f"FAIL: host waits per step grow with the micro-batches: {a['host_waits']:g} at 2, {b['host_waits']:g} at 4"
print(f"ok   host waits per step independent of the micro-batches ({a['host_waits']:g} at 2 and 4)")
PY
# The time split's cost (run.time_accounting, default on): reading its device marks is one
# event synchronize per stage per segment (after the losses' read, where the stream has
# drained; the grad-norm read follows), and nothing else.
per_step fp32_m2_timed direct --set training.microbatches=2 --set run.time_accounting=true
python3 - "$work/fp32_m2.per_step.json" "$work/fp32_m2_timed.per_step.json" <<'PY'
import json, sys
for w in ("-1:3-6", "-1:6-9"):
    a, b = (json.load(open(p))[w] for p in sys.argv[1:])
    for k in a:
        want = a[k] + (1 if k in ("event_syncs", "host_waits") else 0)
        assert b[k] == want, f"FAIL timed {w}: {k} {b[k]:g} per step, expected {want:g} (untimed {a[k]:g})"
print("ok   the time split adds one event synchronize per step (one stage), nothing else")
PY
per_step bf16_m2 direct --set training.microbatches=2 --set runtime.precision=bf16 --set model.n_embd=64
check_pp1 bf16_m2
per_step fp32_pp2 2 --set training.microbatches=2 --set parallel.pp=2 --set schedule.kind=1f1b
echo "PASS"
