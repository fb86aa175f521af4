#!/usr/bin/env bash
# Time accounting end to end under mpirun (docs/metrics.md), 1f1b at pp=4 unless said:
#  1. sim_time of every metrics line is the closed form of the list that ran: 1f1b with unit
#     costs drains in (m + S - 1)·3 units per update, so step n is at n·(m + S - 1)·3, the
#     evaluation after step n too, and summary.json's sim_time is the last line's. The
#     planned bubble beside the measured one is (S - 1)/(m + S - 1).
#  2. time_split: per step and world rank, every category >= 0, their sum <= wall_s, bubble =
#     1 - compute / wall_s; summary.json's totals are the sums of the per-step values.
#  3. TTA across a resume (acceptance 1): a run resumed at step 5 with targets crossed before
#     and after the restart (and one never crossed) has summary.json targets equal to those
#     recomputed from its metrics.jsonl (the whole history: the first run's lines up to the
#     checkpoint and its own), restarts = 1, the same crossing steps, tokens and sim_time as
#     the uninterrupted run, and the same sim_time on every line.
#  4. The trace (acceptance 2): valid trace-event JSON, one named process per rank, every
#     span's pid a rank, every send flow with exactly one matching receive flow on the
#     receiving stage's rank and no receive without its send; scripts/trace_png.py draws it.
#  5. training.sim_costs: sim_time in seconds from a `pipetrain bench` cost file; another
#     model shape is refused naming the key.
#  6. Asynchronous pipedream: sim_time never decreases, the summary equals the last line,
#     and the time splits cover every update.
# Usage: time_accounting_test.sh PIPETRAIN SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
mpi_setup
make_corpus 128
common=(--set "data.train=$work/data/train_*.bin" --set "data.val=$work/data/val_*.bin" --set run.out_dir="$runs"
        --set training.steps=10 --set training.eval_every=1 --set training.eval_batches=2
        --set checkpoint.every_steps=5 --set checkpoint.keep_last=0 --set parallel.pp=4)

train straight 4 --set run.trace_steps=3
python3 - "$runs/straight" <<'PY' || fail "sim_time or time_split"
import json, sys
d = sys.argv[1]
rows = [json.loads(l) for l in open(d + "/metrics.jsonl")]
s = json.load(open(d + "/summary.json"))
m, S = 8, 4
unit = (m + S - 1) * 3
for r in rows:
    assert r["sim_time"] == r["step"] * unit, (r["step"], r["sim_time"])
assert s["sim_time"] == rows[-1]["sim_time"] and s["sim_time_unit"] == "unit", s
compute = ["forward_s", "backward_s", "backward_input_s", "backward_weight_s"]
kinds = compute + ["wait_s", "send_s", "reduce_s", "step_s", "other_s"]
total = {k: [0.0] * S for k in kinds + ["wall_s"]}
for r in (r for r in rows if "loss" in r):
    t = r["time_split"]
    assert r["split_updates"] == 1
    for w in range(S):
        assert all(t[k][w] >= 0 for k in kinds), t
        assert sum(t[k][w] for k in kinds) <= t["wall_s"][w] * (1 + 1e-5) + 1e-5, t
        busy = sum(t[k][w] for k in compute)
        assert abs(t["bubble"][w] - (1 - busy / t["wall_s"][w])) < 1e-4, t
        assert abs(t["planned_bubble"][w] - (S - 1) / (m + S - 1)) < 1e-5, t
        for k in total: total[k][w] += t[k][w]
tt = s["time_split_total"]
for k in total:
    for w in range(S):
        assert abs(tt[k][w] - total[k][w]) <= 1e-4 * max(1.0, total[k][w]), (k, w, tt[k][w], total[k][w])
assert all(x > 0 for x in tt["eval_s"]) and all(x > 0 for x in tt["checkpoint_s"]), tt
print(f"ok   sim_time = step x {unit} on {len(rows)} lines; time_split of {S} ranks consistent; "
      f"measured bubble {[round(x, 3) for x in tt['bubble']]} vs planned {tt['planned_bubble'][0]:.3f}")
PY

# Targets: the straight run's val_loss after step 3 (crossed before the restart) and after
# step 8 (after it), and one no run reaches.
targets=$(python3 - "$runs/straight/metrics.jsonl" <<'PY'
import json, sys
v = {r["step"]: r["val_loss"] for r in map(json.loads, open(sys.argv[1])) if "val_loss" in r}
print(f"[{v[3]!r}, {v[8]!r}, 0.5]")
PY
)
train straight_t 4 --set "training.target_val_losses=$targets"
resume_copy straight resumed 4 --set "training.target_val_losses=$targets"
python3 - "$runs/straight_t" "$runs/resumed" <<'PY' || fail "TTA summary"
import json, sys
def load(d):
    return [json.loads(l) for l in open(d + "/metrics.jsonl")], json.load(open(d + "/summary.json"))
def recompute(rows, targets):
    out = []
    for t in targets:
        hit = next((r for r in rows if "val_loss" in r and r["val_loss"] is not None and r["val_loss"] <= t), None)
        out.append({"target_val_loss": t, "reached": False} if hit is None else
                   {"target_val_loss": t, "reached": True, "step": hit["step"], "tokens": hit["tokens"],
                    "time_s": hit["time_s"], "sim_time": hit["sim_time"], "val_loss": hit["val_loss"]})
    return out
(ref_rows, ref), (rows, s) = load(sys.argv[1]), load(sys.argv[2])
targets = [t["target_val_loss"] for t in s["targets"]]
assert len(targets) == 3, s
for name, rr, ss in (("straight", ref_rows, ref), ("resumed", rows, s)):
    assert ss["targets"] == recompute(rr, targets), (name, ss["targets"], recompute(rr, targets))
assert s["restarts"] == 1 and ref["restarts"] == 0, (s["restarts"], ref["restarts"])
steps = [t.get("step") for t in s["targets"]]
assert steps[0] <= 5 < steps[1] and not s["targets"][2]["reached"], steps
for a, b in zip(ref["targets"], s["targets"]):
    assert all(a.get(k) == b.get(k) for k in ("reached", "step", "tokens", "sim_time", "val_loss")), (a, b)
assert [(r["step"], r["sim_time"]) for r in rows] == [(r["step"], r["sim_time"]) for r in ref_rows]
times = [r["time_s"] for r in rows]
assert all(b >= a for a, b in zip(times, times[1:])), times
print(f"ok   targets across a resume: steps {steps}, time_s {[t.get('time_s') for t in s['targets']]}, "
      f"sim_time {[t.get('sim_time') for t in s['targets']]}, equal to metrics.jsonl")
PY

python3 - "$runs/straight/trace.json" <<'PY' || fail "trace"
import json, sys
ev = json.load(open(sys.argv[1]))["traceEvents"]
names = {e["pid"]: e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "process_name"}
assert sorted(names) == [0, 1, 2, 3], names
spans = [e for e in ev if e["ph"] == "X"]
assert {e["pid"] for e in spans} == set(names) and all(e["dur"] >= 0 for e in spans)
assert {e["args"]["step"] for e in spans} <= {0, 1, 2, 3}, "spans beyond run.trace_steps"
sends = [e for e in ev if e["ph"] == "s"]
recvs = [e for e in ev if e["ph"] == "f"]
ids = [e["id"] for e in sends]
assert len(set(ids)) == len(ids) and sends, "flow ids are not unique"
by_id = {}
for f in recvs:
    assert f["id"] not in by_id, f"two receives of flow {f['id']}"
    by_id[f["id"]] = f
for s in sends:
    f = by_id.pop(s["id"], None)
    assert f is not None, f"send without receive: {s}"
    assert f["name"] == s["name"] and f["bp"] == "e" and abs(f["pid"] - s["pid"]) == 1, (s, f)
    assert f["pid"] == s["pid"] + (1 if s["name"] == "act" else -1), (s, f)
assert not by_id, f"receives without a send: {list(by_id.values())[:3]}"
# 3 steps of 1f1b, m = 8, 4 stages: 3 boundaries x 8 micro-batches x 2 directions per step
assert len(sends) == 3 * 3 * 8 * 2, len(sends)
print(f"ok   trace: {len(names)} ranks, {len(spans)} spans, {len(sends)} send->receive arrows matched")
PY
if /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
  /usr/bin/python3 "$src/scripts/trace_png.py" "$runs/straight/trace.json" "$work/trace.png" --arrows --steps 2:3 \
    || fail "trace_png.py"
  [ "$(head -c 4 "$work/trace.png" | od -An -c | tr -d ' ')" = "211PNG" ] || fail "trace_png.py wrote no PNG"
  echo "ok   trace_png.py"
fi

# training.sim_costs: a cost file of `pipetrain bench` makes sim_time seconds on the bench's
# machine: unit "s", the same positive makespan per synchronous step; a file of another
# model shape is refused naming the key.
$mpirun -np 2 "$bin" bench --config "$cfg" --set "data.train=$work/data/train_*.bin" --set run.out_dir="$runs" \
  --iters 2 --warmup 1 --out "$work/costs.json" >"$work/bench.log" 2>&1 || { cat "$work/bench.log"; fail "bench"; }
train costed 4 --set training.sim_costs="$work/costs.json" --set training.steps=3 --set checkpoint.every_steps=0
python3 - "$runs/costed" <<'PY' || fail "sim_time from a cost file"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl") if '"loss"' in l]
s = json.load(open(sys.argv[1] + "/summary.json"))
per_step = rows[0]["sim_time"]
assert s["sim_time_unit"] == "s" and 0 < per_step < 10, (s["sim_time_unit"], per_step)
for r in rows:
    assert abs(r["sim_time"] - r["step"] * per_step) <= 1e-6 * r["sim_time"], (r["step"], r["sim_time"], per_step)
print(f"ok   sim_time from a cost file: {per_step * 1e3:.3f} ms per step")
PY
run_train wrong_shape direct --set training.sim_costs="$work/costs.json" --set model.n_embd=64 --set parallel.pp=1 \
  && fail "a cost file of another shape was accepted"
grep -q "model.n_embd" "$work/wrong_shape.log" || { cat "$work/wrong_shape.log"; fail "shape error lacks the key"; }
echo "ok   a cost file of another model shape is refused: $(grep -m1 error "$work/wrong_shape.log" | cut -c1-120)"

# Asynchronous: sim_time along a pipedream run (several updates per segment).
train async 4 --set schedule.kind=pipedream --set model.tie_embeddings=false --set training.eval_every=0 --set checkpoint.every_steps=0
python3 - "$runs/async" <<'PY' || fail "async sim_time"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
s = json.load(open(sys.argv[1] + "/summary.json"))
sim = [r["sim_time"] for r in rows]
assert all(b >= a for a, b in zip(sim, sim[1:])) and sim[-1] > sim[0], sim
assert s["sim_time"] == rows[-1]["sim_time"], (s["sim_time"], rows[-1])
split = [r for r in rows if "time_split" in r]
assert sum(r["split_updates"] for r in split) == 10, split
print(f"ok   pipedream sim_time {sim}")
PY
