#!/usr/bin/env bash
# Issue #13's GPU acceptance in one command: an N-stage pipeline (default 4) on ONE GPU
# through CUDA MPS (scripts/mps_pipeline.sh), measured against `pipetrain plan --costs`:
#   1. `pipetrain bench` on the same N MPS ranks writes the cost file (costs.json);
#   2. `pipetrain plan --costs` predicts the time per update of 1f1b, bfpp (2 chunks),
#      paci_flush (1F1B-flush) and paci;
#   3. a short training run of each (order: 1f1b, paci_flush, paci, bfpp) measures it: the
#      median over the steps after the first SEGMENT of tokens_per_step / tokens_per_s
#      (sync: each step's wall time; async: the time per update of its drained segment,
#      schedule.drain_every = SEGMENT, the same segment plan predicts);
#      The schedules of --ipc (default 1f1b) run a second time right after, over
#      runtime.transport=ipc (CUDA IPC device-to-device copies between the MPS ranks;
#      the cpu rehearsal: POSIX shared memory) instead of mpi (host staging);
#   4. writes OUTDIR/mps_pipeline.md: measured/predicted per schedule, PACI vs 1F1B-flush
#      throughput ratio (measured and predicted) and time to a target training loss (the
#      loss 1f1b's smoothed curve has at 60% of its steps), mpi vs ipc time per update
#      (which transport is faster, and whether the losses are bitwise equal), the machine
#      and the commands.
# Every schedule runs the config with model.tie_embeddings=false (the asynchronous ones
# keep per-stage weight versions and cannot share wte) and no validation.
# Stages that do not fit in MPS_STUDY_BUDGET_S (default 450 s; the runs are timed out at the
# budget) are skipped and listed; with a binary missing it is built first, inside the budget.
#
# Usage: scripts/mps_study.sh [OPTIONS] OUTDIR
#   --backend cuda|cpu  cuda (default): MPS on one GPU (plain mpirun, said in the report, when
#                       the MPS control daemon is missing); cpu: the rehearsal without a GPU,
#                       plain mpirun on the CPU backend (no MPS)
#   --config PATH       default configs/gpt2_124m.yaml
#   --np N              pipeline ranks (parallel.pp), default 4
#   --steps N           training steps per schedule, default 30
#   --segment N         warm-up steps left out of the median = the async drain_every, default 10
#   --precision P       fp32 (default) | bf16 for the bench, plan and training runs (the cost
#                       file records it; plan refuses costs of another precision)
#   --data GLOB         training shards (default: the config's data.train when it matches
#                       files, else README.md + docs/*.md prepared with the byte tokenizer)
#   --set KEY=VALUE     passed to every bench, plan and train (repeatable)
#   --binary PATH       pipetrain (default BUILD_DIR/pipetrain; BUILD_DIR defaults to
#                       build-gpu with cuda, build with cpu)
#   --ipc LIST          schedules (comma-separated) also trained over the ipc transport,
#                       default 1f1b; none: only mpi
# Environment: MPS_STUDY_BUDGET_S, MPS_STUDY_ITERS (bench repetitions, default 10), PYTHON
# (python3), NVIDIA_SMI, MPS_CONTROL, MPIRUN (tools, as in scripts/mps_pipeline.sh).
# Exit: 0 every stage ran or was skipped for time (listed), 1 a stage failed, 2 bad
# arguments, 3 --backend cuda without a GPU.
#   scripts/mps_study.sh runs/mps_study                       # on a GPU machine
#   scripts/mps_study.sh --backend cpu --config configs/cpu_paci.yaml --np 2 runs/mps_rehearsal
set -uo pipefail
prog=mps_study
usage() { sed -n '24,46p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "$prog: $*" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
invocation=$(printf '%q ' "$0" "$@")

backend=cuda config=$root/configs/gpt2_124m.yaml np=4 steps=30 segment=10 precision=fp32 data="" bin="" outdir="" ipc=1f1b
sets=()
while [ $# -gt 0 ]; do
  case $1 in
    --backend | --config | --np | --steps | --segment | --precision | --data | --set | --binary | --ipc)
      [ $# -ge 2 ] || die "$1 needs a value" ;;
  esac
  case $1 in
    --backend) backend=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --np) np=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --segment) segment=$2; shift 2 ;;
    --precision) precision=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --set) sets+=(--set "$2"); shift 2 ;;
    --binary) bin=$2; shift 2 ;;
    --ipc) ipc=$2; shift 2 ;;
    -h | --help) usage ;;
    -*) echo "$prog: unknown option '$1'" >&2; usage ;;
    *) [ -z "$outdir" ] || die "one OUTDIR only (got '$outdir' and '$1')"; outdir=$1; shift ;;
  esac
done
[ -n "$outdir" ] || { echo "$prog: OUTDIR is required" >&2; usage; }
case $backend in cuda | cpu) ;; *) die "--backend must be cuda or cpu (got '$backend')" ;; esac
[ -f "$config" ] || die "--config '$config' is not a file"
[[ $np =~ ^[1-9][0-9]*$ ]] && [ "$np" -ge 2 ] || die "--np must be an integer >= 2 (got '$np')"
[[ $segment =~ ^[1-9][0-9]*$ ]] || die "--segment must be a positive integer (got '$segment')"
[[ $steps =~ ^[1-9][0-9]*$ ]] && [ "$steps" -ge $((2 * segment)) ] ||
  die "--steps must be an integer >= 2 x --segment = $((2 * segment)) (got '$steps'): the median leaves the first segment out"
case $precision in bf16 | fp32) ;; *) die "--precision must be bf16 or fp32 (got '$precision')" ;; esac
[ "$ipc" = none ] && ipc=""
for s in ${ipc//,/ }; do
  case $s in 1f1b | paci_flush | paci | bfpp) ;; *) die "--ipc: '$s' is not one of 1f1b, paci_flush, paci, bfpp (or none)" ;; esac
done
ipc=" ${ipc//,/ } "  # " 1f1b paci ": membership by " $s "
budget=${MPS_STUDY_BUDGET_S:-450}
[[ $budget =~ ^[0-9]+$ ]] || die "MPS_STUDY_BUDGET_S must be a whole number of seconds (got '$budget')"
iters=${MPS_STUDY_ITERS:-10}
py=${PYTHON:-python3}
mkdir -p "$outdir" || die "cannot create $outdir"
out=$(cd "$outdir" && pwd)
config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")
start=$(date +%s)
elapsed() { echo $(($(date +%s) - start)); }
left() { echo $((budget - $(elapsed))); }
note() { echo "[$prog $(elapsed)s] $*" | tee -a "$out/progress.log"; }
failed=() skipped=()
mps=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
: >"$out/commands.txt"
: >"$out/progress.log"
rm -rf "$out/runs" "$out"/predicted_*.txt "$out/costs.json"  # a rerun into OUTDIR must not report an earlier run

# ---- the machine ----
if [ "$backend" = cuda ]; then
  smi=${NVIDIA_SMI:-nvidia-smi}
  machine=$("$smi" --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
  if ! "$smi" -L 2>/dev/null | grep -q '^GPU' || [ -z "$machine" ]; then
    printf '# MPS pipeline study: no GPU visible\n\n`%s -L` lists no GPU; nothing was run. Use --backend cpu for the rehearsal.\n' \
      "$smi" >"$out/mps_pipeline.md"
    echo "$prog: no GPU visible ($smi -L lists none); see $out/mps_pipeline.md" >&2
    exit 3
  fi
  if command -v "${MPS_CONTROL:-nvidia-cuda-mps-control}" >/dev/null 2>&1; then
    machine="GPU: $machine; $np MPS ranks x $((100 / np)) % of the SMs"
  else  # the numbers are still worth having from a scarce GPU window; the report says how they were made
    mps=0
    machine="GPU: $machine; $np ranks time-sharing it WITHOUT MPS (${MPS_CONTROL:-nvidia-cuda-mps-control} not found)"
  fi
  build=${BUILD_DIR:-$root/build-gpu}
else
  machine="CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, no GPU; $np ranks under plain mpirun"
  build=${BUILD_DIR:-$root/build}
fi
bin=${bin:-$build/pipetrain}
load0=$(cut -d' ' -f1-3 /proc/loadavg)
note "$machine; load average $load0"

# ---- the binary (built inside the budget when missing) ----
if [ ! -x "$bin" ]; then
  note "no $bin: building it"
  cuda_flag=OFF; [ "$backend" = cuda ] && cuda_flag=ON
  { cmake -S "$root" -B "$(dirname "$bin")" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPIPETRAIN_CUDA=$cuda_flag &&
    cmake --build "$(dirname "$bin")" --target pipetrain -j "$(nproc)"; } >"$out/build.log" 2>&1 ||
    { tail -20 "$out/build.log"; echo "$prog: the build failed (build.log)" >&2; exit 1; }
fi

# ---- training data ----
if [ -z "$data" ]; then
  data=$(sed -n 's/^  train: *\([^ #]*\).*/\1/p' "$config" | head -1)
  [[ $data = /* ]] || data=$root/$data
  compgen -G "$data" >/dev/null || data=""
fi
if [ -z "$data" ]; then  # the step time does not depend on the text; the loss falls on any text
  mkdir -p "$out/data"
  cat "$root"/README.md "$root"/docs/*.md >"$out/data/text.txt"
  "$bin" prepare --tokenizer byte --input "$out/data/text.txt" --out "$out/data" >"$out/prepare.log" 2>&1 ||
    { cat "$out/prepare.log"; echo "$prog: preparing the byte corpus failed" >&2; exit 1; }
  data="$out/data/train_*.bin"
fi

# ---- running pipetrain on the N ranks ----
record() { printf '%q ' "$@" >>"$out/commands.txt"; echo >>"$out/commands.txt"; }
launch() {  # launch LOG TRANSPORT SUBCOMMAND ARGS...: on N MPS ranks (cuda) or N CPU ranks, killed at the budget
  local log=$1 transport=$2 sub=$3 secs
  shift 3
  local cmd=("${MPIRUN:-mpirun}" --oversubscribe -np "$np" -x OPENBLAS_NUM_THREADS "$bin" "$sub" "$@"
             --set runtime.transport="$transport")
  [ "$backend" = cpu ] || [ "$mps" = 0 ] ||
    cmd=("$root/scripts/mps_pipeline.sh" -np "$np" --binary "$bin" --command "$sub" --transport "$transport" -- "$@")
  record "${cmd[@]}"
  secs=$(left)
  [ "$secs" -gt 0 ] || { echo "$prog: no time left in the budget" >"$log"; return 124; }
  timeout --kill-after=10 "$secs" "${cmd[@]}" >"$log" 2>&1
}
model_sets() {  # the keys every bench, plan and train of the study shares
  echo parallel.pp="$np" model.tie_embeddings=false runtime.backend="$backend" runtime.precision="$precision" \
    training.steps="$steps" training.max_seconds=0 runtime.progress=off data.val=
}
common=()
set_common() {
  common=(--config "$config")
  local kv
  for kv in $(model_sets); do common+=(--set "$kv"); done
  common+=("${sets[@]}")
}
kind_sets() {  # kind_sets SCHEDULE: the schedule's own keys
  case $1 in
    bfpp) echo schedule.kind=bfpp schedule.chunks=2 ;;
    paci | paci_flush) echo schedule.kind="$1" schedule.chunks=1 schedule.drain_every="$segment" ;;
    *) echo schedule.kind="$1" schedule.chunks=1 ;;
  esac
}
with_kind() { local kv; for kv in $(kind_sets "$1"); do printf '%s\n' --set "$kv"; done; }

# ---- 1. bench ----
set_common
bench_ok=0
note "pipetrain bench ($np ranks, $iters iterations)"
launch "$out/bench.log" mpi bench "${common[@]}" --iters "$iters" --out "$out/costs.json"
case $? in
  0) bench_ok=1 ;;
  124 | 137) skipped+=("bench (out of time)") ;;
  *) tail -20 "$out/bench.log"; failed+=("bench") ;;
esac

# ---- 2 and 3. plan and train each schedule ----
schedules="1f1b paci_flush paci bfpp"
last_run_s=0
train_run() {  # train_run SCHEDULE TRANSPORT: runs/SCHEDULE (mpi) or runs/SCHEDULE_ipc, unless it would not fit
  local s=$1 t=$2 name=$1 rc
  [ "$t" = mpi ] || name=${s}_$t
  # A run that would not fit (15% over the last one's wall time) is skipped, not started.
  if [ "$(left)" -le $((last_run_s * 115 / 100 + 5)) ]; then skipped+=("train $name"); return; fi
  note "train $s over $t ($steps steps; $(left) s of the budget left)"
  t0=$(date +%s)
  rm -rf "$out/runs/$name"
  launch "$out/train_$name.log" "$t" train "${common[@]}" "${ks[@]}" --set "data.train=$data" \
    --set training.log_every=1 --set run.out_dir="$out/runs" --set run.name="$name"
  rc=$?
  case $rc in
    0) ;;
    124 | 137) skipped+=("train $name (cut at the budget)") ;;
    *) tail -20 "$out/train_$name.log"; failed+=("train $name") ;;
  esac
  last_run_s=$(($(date +%s) - t0))
}
for s in $schedules; do
  [ "$bench_ok" = 1 ] || { skipped+=("$s (no cost file)"); continue; }
  mapfile -t ks < <(with_kind "$s")
  record "$bin" plan "${common[@]}" "${ks[@]}" --set run.out_dir="$out/runs" --costs "$out/costs.json" \
    --trace "$out/plan_$s.json"
  "$bin" plan "${common[@]}" "${ks[@]}" --set run.out_dir="$out/runs" --costs "$out/costs.json" \
    --trace "$out/plan_$s.json" >"$out/plan_$s.log" 2>&1 || { failed+=("plan $s"); continue; }
  sed -n 's/^predicted \(step time\|time per update\): \([0-9.]*\) ms.*/\2/p' "$out/plan_$s.log" >"$out/predicted_$s.txt"
  [ -s "$out/predicted_$s.txt" ] || { failed+=("plan $s printed no prediction"); continue; }
  train_run "$s" mpi
  [[ $ipc == *" $s "* ]] && train_run "$s" ipc
done

# ---- 4. the report ----
note "report"
machine="$machine; load average at the start $load0, at the end $(cut -d' ' -f1-3 /proc/loadavg)"
"$py" - "$out" "$steps" "$segment" "$np" "$precision" "$backend" "$machine" "$(elapsed)" "$budget" \
  "$config" "$(IFS=';'; echo "${failed[*]:-}")" "$(IFS=';'; echo "${skipped[*]:-}")" "$invocation" "$root" "$ipc" \
  <<'PY' || failed+=("report")
import json, os, statistics, sys
out, steps, seg, np_, prec, backend, machine, secs, budget, config, failed, skipped, invocation, root, ipc = sys.argv[1:16]
steps, seg = int(steps), int(seg)
labels = {"1f1b": "1f1b", "bfpp": "bfpp (2 chunks)", "paci_flush": "paci_flush (1F1B-flush)", "paci": "paci"}

def read_run(s):
    path = f"{out}/runs/{s}/metrics.jsonl"
    if not os.path.exists(path):
        return None
    rows = [json.loads(l) for l in open(path) if '"loss"' in l]
    if len(rows) < steps:
        return None
    per_step = rows[0]["tokens"] / rows[0]["step"]
    ms = [1e3 * per_step / r["tokens_per_s"] for r in rows[seg:]]
    w = max(1, steps // 10)  # trailing mean of w steps smooths the per-step training loss
    smooth = [statistics.fmean(r["loss"] for r in rows[max(0, i - w + 1):i + 1]) for i in range(len(rows))]
    return {"ms": statistics.median(ms), "tok_s": per_step * 1e3 / statistics.median(ms), "rows": rows,
            "smooth": smooth, "w": w}

def predicted(s):
    p = f"{out}/predicted_{s}.txt"
    return float(open(p).read().split()[0]) if os.path.exists(p) and open(p).read().strip() else None

runs = {s: read_run(s) for s in labels}
ipc_runs = {s: read_run(f"{s}_ipc") for s in ipc.split()}  # the --ipc schedules over runtime.transport=ipc
pred = {s: predicted(s) for s in labels}
at = max(1, round(0.6 * steps))
target = runs["1f1b"]["smooth"][at - 1] if runs["1f1b"] else None

def crossing(r):
    if r is None or target is None:
        return None
    for row, sm in zip(r["rows"], r["smooth"]):
        if sm <= target:
            return row
    return False

def f(x, fmt):
    return "n/a" if x is None else format(x, fmt)

L = ["# N-stage pipeline on one device: measured vs `pipetrain plan --costs`", "",
     f"- Machine: {machine}", f"- Backend: {backend}; precision {prec} (bench, plan and training); {np_} pipeline ranks (parallel.pp={np_})",
     f"- Config: `{os.path.relpath(config, root) if config.startswith(root + '/') else config}` "
     f"with model.tie_embeddings=false, no validation, {steps} steps per schedule",
     f"- Measured: median over steps {seg + 1}-{steps} of tokens per step / tokens_per_s (sync: each step's "
     f"wall time; async: the time per update of each drained segment of {seg} updates, schedule.drain_every={seg}, "
     f"which is the segment `plan` predicts)",
     f"- Total time: {secs} s of a {budget} s budget. Result: "
     + (f"FAILED: {failed.replace(';', '; ')}" if failed else "every stage ran" if not skipped else "ran, with stages skipped"), ""]
if skipped:
    L += [f"Skipped for time (MPS_STUDY_BUDGET_S) or for a missing cost file: {skipped.replace(';', '; ')}.", ""]
L += ["| schedule | predicted ms/update | measured ms/update | measured/predicted | within 10% | tokens/s | "
      "final loss | updates to target | time to target (s) |", "|---|---|---|---|---|---|---|---|---|"]
for s, lab in labels.items():
    r, p = runs[s], pred[s]
    ratio = r["ms"] / p if r and p else None
    c = crossing(r)
    reach = ("not reached" if c is False else "n/a") if not c else str(c["step"])
    tt = ("not reached" if c is False else "n/a") if not c else f"{c['time_s']:.3f}"
    L.append(f"| {lab} | {f(p, '.3f')} | {f(r and r['ms'], '.3f')} | {f(ratio, '.3f')} | "
             f"{'n/a' if ratio is None else 'yes' if abs(ratio - 1) <= 0.10 else 'no'} | {f(r and r['tok_s'], '.0f')} | "
             f"{f(r and r['rows'][-1]['loss'], '.4f')} | {reach} | {tt} |")
L.append("")
if target is not None:
    L += [f"Target training loss {target:.4f}: the 1f1b run's loss at step {at} of {steps} (60%), "
          f"as a trailing mean over {runs['1f1b']['w']} steps; each run's crossing is the first step whose "
          "trailing mean is at or below it, its time the run clock `time_s` (warm-up included; on CUDA an async "
          "step's time_s is when its work was issued).", ""]
rf, rp = runs["paci_flush"], runs["paci"]
meas = rf["ms"] / rp["ms"] if rf and rp else None
predr = pred["paci_flush"] / pred["paci"] if pred["paci_flush"] and pred["paci"] else None
cf, cp = crossing(rf), crossing(rp)
ttt = cf["time_s"] / cp["time_s"] if cf and cp else None
L += ["**PACI vs 1F1B-flush (paci_flush):** throughput ratio paci / paci_flush measured "
      f"{f(meas, '.3f')}, predicted {f(predr, '.3f')}; time to the target loss paci_flush / paci {f(ttt, '.3f')}"
      f" ({f(cf and cf['time_s'], '.3f')} s vs {f(cp and cp['time_s'], '.3f')} s).", ""]
if ipc_runs:
    how = "CUDA IPC device-to-device copies" if backend == "cuda" else "POSIX shared memory, the CPU stand-in of CUDA IPC"
    L += [f"## Transport: mpi (host staging) vs ipc ({how})", "",
          "| schedule | mpi ms/update | ipc ms/update | ipc / mpi | faster | same losses |", "|---|---|---|---|---|---|"]
    for s, b in ipc_runs.items():
        a = runs[s]
        ratio = b["ms"] / a["ms"] if a and b else None
        faster = "n/a" if ratio is None else "ipc" if ratio < 1 else "mpi" if ratio > 1 else "equal"
        same = "n/a" if not (a and b) else "yes" if [r["loss"] for r in a["rows"]] == [r["loss"] for r in b["rows"]] else "no"
        L.append(f"| {labels[s]} | {f(a and a['ms'], '.3f')} | {f(b and b['ms'], '.3f')} | {f(ratio, '.3f')} | {faster} | {same} |")
    L += ["", "Medians as in the first table (the ipc run right after the mpi one); same losses: every step's training "
          "loss bitwise equal, as it must be (a transport only moves bytes).", ""]
    for s, b in ipc_runs.items():  # why an ipc run has no numbers (e.g. CUDA IPC refused between MPS clients)
        log = f"{out}/train_{s}_ipc.log"
        why = [l.strip() for l in open(log, errors="replace") if "ipc" in l and ("error" in l.lower() or "fail" in l.lower())] \
            if b is None and os.path.exists(log) else []
        if why:
            L += [f"{s} over ipc did not finish (train_{s}_ipc.log): `{why[0][:400]}`", ""]
L += ["## Per-update times (ms, every step; the median leaves out the first segment)", ""]
def per_update(r):
    return " ".join(f"{1e3 * (r['rows'][0]['tokens'] / r['rows'][0]['step']) / x['tokens_per_s']:.1f}" for x in r["rows"])
L += [f"- {s}: " + per_update(r) for s, r in runs.items() if r]
L += [f"- {s} over ipc: " + per_update(r) for s, r in ipc_runs.items() if r]
bench_log = f"{out}/bench.log"
keep = ("machine", "component", "block", "stage_io", "embedding", "head", "whole model", "composition", "optimizer",
        "p2p", "single stage", "achieved", "MFU", "peak memory")
if os.path.exists(bench_log):
    L += ["", "## Bench (costs.json)", "", "```"] + [l.rstrip() for l in open(bench_log) if l.startswith(keep)] + ["```"]
L += ["", "## Commands", "", "```", "# the study (from the repository root):", invocation.strip(),
      "# what it ran:", open(f"{out}/commands.txt").read().strip().replace(root + "/", ""), "```",
      "", "Logs (bench.log, plan_*.log, train_*.log, runs/*/metrics.jsonl) beside this file."]
open(f"{out}/mps_pipeline.md", "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
[ ${#failed[@]} -eq 0 ] || { echo "$prog: FAILED: ${failed[*]}" >&2; exit 1; }
echo "$prog: done in $(elapsed) s; report in $out/mps_pipeline.md"
