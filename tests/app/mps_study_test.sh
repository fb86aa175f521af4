#!/usr/bin/env bash
# scripts/mps_study.sh (issue #13's one-command GPU acceptance) rehearsed on the CPU
# (labels cpu, mpi):
#  1. bad command lines exit 2 naming the problem;
#  2. --backend cuda where nvidia-smi lists no GPU: exit 3, a report saying so, nothing run;
#  3. end to end on tiny_test.yaml, 4 CPU ranks: exit 0; the report has a row of numbers for
#     each of 1f1b, bfpp, paci_flush and paci; its measured/predicted equals measured over
#     predicted and the PACI ratios equal the rows' ratios (the report's arithmetic); the
#     predictions equal what `pipetrain plan --costs` prints for the listed command; 1f1b
#     reaches the target (its own loss at 60% of its steps) by that step; 1f1b and bfpp
#     end on the same loss (one synchronous update rule); the commands are listed; 1f1b ran a
#     second time over runtime.transport=ipc (the shared-memory stand-in on the CPU), its
#     row in the transport table has numbers, and its losses equal the mpi run's bitwise;
#  4. a budget of 0 s, into the OUTDIR of 3: the bench and the schedules are listed as
#     skipped, exit 0, and no row shows the earlier run's numbers;
#  5. --backend cuda with stand-ins for nvidia-smi (a GPU), the MPS daemon and mpirun (which
#     runs the real mpirun with runtime.backend=cpu): bench and the 4 runs go through
#     scripts/mps_pipeline.sh on 4 MPS ranks of 25 %, the report names the GPU and has
#     numbers; the ipc run goes through mps_pipeline.sh --transport ipc; without the MPS
#     daemon the ranks run under plain mpirun and the report says so; --ipc none runs no ipc;
#     an ipc run refused (stand-in error) fails the study, and the report quotes the error.
# Usage: mps_study_test.sh PIPETRAIN SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
script="$src/scripts/mps_study.sh"

expect_exit() {  # expect_exit NAME RC PATTERN CMD...
  local name=$1 want=$2 pattern=$3 rc=0
  shift 3
  "$@" >"$work/$name.out" 2>&1 || rc=$?
  [ "$rc" = "$want" ] || { cat "$work/$name.out"; fail "$name: exit $rc, expected $want"; }
  grep -q -- "$pattern" "$work/$name.out" || { cat "$work/$name.out"; fail "$name: message lacks '$pattern'"; }
  echo "ok: $name (exit $rc)"
}
expect_exit no_outdir 2 "OUTDIR is required" bash "$script" --backend cpu
expect_exit bad_backend 2 "--backend must be cuda or cpu (got 'tpu')" bash "$script" --backend tpu "$work/o"
expect_exit bad_np 2 "--np must be an integer >= 2" bash "$script" --np 1 "$work/o"
expect_exit short_steps 2 "--steps must be an integer >= 2 x --segment = 20" bash "$script" --steps 12 "$work/o"
expect_exit bad_precision 2 "--precision must be bf16 or fp32" bash "$script" --precision fp8 "$work/o"
expect_exit unknown 2 "unknown option '--fast'" bash "$script" --fast "$work/o"
expect_exit two_outdirs 2 "one OUTDIR only" bash "$script" "$work/a" "$work/b"
expect_exit missing_value 2 "--config needs a value" bash "$script" "$work/o" --config
expect_exit bad_ipc 2 "--ipc: 'gpipe' is not one of 1f1b, paci_flush, paci, bfpp (or none)" bash "$script" --ipc 1f1b,gpipe "$work/o"

printf '#!/bin/sh\nexit 9\n' >"$work/no-gpu-smi"
chmod +x "$work/no-gpu-smi"
expect_exit no_gpu 3 "no GPU visible" env NVIDIA_SMI="$work/no-gpu-smi" bash "$script" --binary "$bin" "$work/nogpu"
grep -q "lists no GPU; nothing was run" "$work/nogpu/mps_pipeline.md" || fail "no GPU: the report does not say so"
[ ! -e "$work/nogpu/bench.log" ] || fail "no GPU: it ran the bench anyway"

make_corpus 64
steps=12 segment=4
rc=0
MPS_STUDY_ITERS=3 bash "$script" --backend cpu --config "$cfg" --np 4 --steps $steps --segment $segment \
  --precision fp32 --binary "$bin" --data "$work/data/train_*.bin" "$work/study" >"$work/study.log" 2>&1 || rc=$?
[ "$rc" = 0 ] || { cat "$work/study.log"; fail "the CPU rehearsal exited with $rc"; }
python3 - "$work/study" "$src" $steps <<'PY' || fail "the report is incomplete or inconsistent"
import re, subprocess, sys
out, src, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
md = open(f"{out}/mps_pipeline.md").read()
num = r"([0-9]+(?:\.[0-9]+)?)"
rows = {}
for name in ["1f1b", r"bfpp \(2 chunks\)", r"paci_flush \(1F1B-flush\)", "paci"]:
    m = re.search(rf"^\| {name} \| {num} \| {num} \| {num} \| (yes|no) \| {num} \| {num} \| {num} \| {num} \|$", md, re.M)
    assert m, f"no row of numbers for {name}:\n{md}"
    rows[name.split(" ")[0].replace("\\", "")] = [float(x) if x not in ("yes", "no") else x for x in m.groups()]
for name, (pred, meas, ratio, within, *_rest) in rows.items():
    assert abs(meas / pred - ratio) <= 1e-3 * ratio + 5e-4, (name, meas, pred, ratio)
    assert within == ("yes" if abs(meas / pred - 1) <= 0.10 else "no") or abs(abs(ratio - 1) - 0.10) < 1e-3, name
# The predictions are what plan prints for the command the report lists.
cmds = md.split("# what it ran:\n")[1].split("```")[0].strip().splitlines()
plans = [c for c in cmds if " plan " in c]
assert len(plans) == 4 and sum(" train " in c for c in cmds) == 5 and sum(" bench " in c for c in cmds) == 1, cmds
ipc_trains = [c for c in cmds if " train " in c and "runtime.transport=ipc" in c]
assert len(ipc_trains) == 1 and "schedule.kind=1f1b" in ipc_trains[0] and "run.name=1f1b_ipc" in ipc_trains[0], cmds
assert sum("runtime.transport=mpi" in c for c in cmds if " train " in c or " bench " in c) == 5, cmds
m = re.search(rf"^\| 1f1b \| {num} \| {num} \| {num} \| (ipc|mpi|equal) \| yes \|$", md, re.M)
assert m and "vs ipc (POSIX shared memory, the CPU stand-in of CUDA IPC)" in md, f"no transport row for 1f1b:\n{md}"
mpi_ms, ipc_ms, ratio = map(float, m.groups()[:3])
assert mpi_ms == rows["1f1b"][1] and abs(ipc_ms / mpi_ms - ratio) <= 1e-3 * ratio + 5e-4, (mpi_ms, ipc_ms, ratio)
assert m.group(4) == ("ipc" if ratio < 1 else "mpi" if ratio > 1 else "equal"), m.group(0)
for c in plans:
    kind = re.search(r"schedule.kind=(\w+)", c).group(1)
    # Paths in the listed commands are relative to the repository root.
    text = subprocess.run(c, shell=True, cwd=src, capture_output=True, text=True, check=True).stdout
    p = float(re.search(r"^predicted (?:step time|time per update): ([0-9.]+) ms", text, re.M).group(1))
    assert abs(p - rows[kind][0]) <= 5e-4, (kind, p, rows[kind][0])
at = round(0.6 * steps)
assert rows["1f1b"][6] <= at, f"1f1b reaches its own 60% loss at step {rows['1f1b'][6]} > {at}"
assert rows["1f1b"][5] == rows["bfpp"][5], "1f1b and bfpp end on different losses"
m = re.search(rf"throughput ratio paci / paci_flush measured {num}, predicted {num}; "
              rf"time to the target loss paci_flush / paci {num} \({num} s vs {num} s\)", md)
assert m, md
meas, pred, ttt, tf, tp = map(float, m.groups())
f, p = rows["paci_flush"], rows["paci"]
assert abs(meas - f[1] / p[1]) <= 2e-3 * meas, (meas, f[1] / p[1])
assert abs(pred - f[0] / p[0]) <= 2e-3 * pred, (pred, f[0] / p[0])
# Times are printed to 1 ms: the ratio of the printed times is within their rounding of the printed ratio.
assert (tf, tp) == (f[7], p[7]) and abs(ttt - tf / tp) <= ttt * (5e-4 / tf + 5e-4 / tp) + 5e-4, (ttt, tf, tp)
assert re.search(rf"Target training loss {num}: the 1f1b run's loss at step {at} of {steps} \(60%\)", md), md
assert "Machine: CPU:" in md and "every stage ran" in md, md
print("ok: report rows", {k: v[:3] for k, v in rows.items()})
PY
echo "ok: CPU rehearsal end to end: every row has numbers, consistent with plan and with itself"

rc=0
MPS_STUDY_BUDGET_S=0 bash "$script" --backend cpu --config "$cfg" --np 2 --steps $steps --segment $segment \
  --binary "$bin" --data "$work/data/train_*.bin" "$work/study" >"$work/nobudget.log" 2>&1 || rc=$?
[ "$rc" = 0 ] || { cat "$work/nobudget.log"; fail "budget 0: exit $rc, expected 0 (skips are not failures)"; }
grep -q "^Skipped for time .*: bench (out of time); 1f1b (no cost file); paci_flush (no cost file); paci (no cost file); bfpp (no cost file)\.$" \
  "$work/study/mps_pipeline.md" || { cat "$work/study/mps_pipeline.md"; fail "budget 0: the skips are not listed"; }
[ "$(grep -c '^| [a-z_0-9]* .*| n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |$' "$work/study/mps_pipeline.md")" = 4 ] ||
  { cat "$work/study/mps_pipeline.md"; fail "budget 0: a row shows numbers (of the earlier run?)"; }
echo "ok: budget 0: bench and every schedule listed as skipped"

fake=$work/fake
mkdir -p "$fake"
cat >"$fake/smi" <<'SH'
#!/bin/sh
case "$1" in -L) echo "GPU 0: Stand-in GPU (UUID: GPU-0000)" ;; *) echo "Stand-in GPU, 570.00, 143771 MiB" ;; esac
SH
cat >"$fake/mps" <<'SH'
#!/bin/sh
if [ "${1:-}" = -d ]; then echo "mps start" >>"$FAKE_LOG"; else read -r cmd; echo "mps $cmd" >>"$FAKE_LOG"; fi
SH
cat >"$fake/mpirun" <<'SH'
#!/bin/bash
# The CPU stands in for the GPU: the same command line with runtime.backend=cpu.
args=()
for a in "$@"; do args+=("${a/runtime.backend=cuda/runtime.backend=cpu}"); done
echo "mpirun pct=${CUDA_MPS_ACTIVE_THREAD_PERCENTAGE:-none} ${args[*]}" >>"$FAKE_LOG"
if [ -n "${FAKE_IPC_REFUSED:-}" ] && [[ " ${args[*]} " == *runtime.transport=ipc* ]]; then
  echo "pipetrain: error: ipc transport: pipeline rank 1 could not open what pipeline rank 0 shares over cuda IPC: refused"
  exit 1
fi
exec mpirun "${args[@]}"
SH
chmod +x "$fake"/*
cuda_study() {  # cuda_study NAME MPS_CONTROL [OPTIONS...]: the cuda path with the stand-ins
  local rc=0 name=$1 control=$2
  shift 2
  : >"$work/$name.fake"
  FAKE_LOG="$work/$name.fake" NVIDIA_SMI="$fake/smi" MPS_CONTROL=$control MPIRUN="$fake/mpirun" MPS_STUDY_ITERS=2 \
    bash "$script" --np 4 --steps 8 --segment 4 --precision fp32 --binary "$bin" --config "$cfg" \
    --data "$work/data/train_*.bin" "$@" "$work/$name" >"$work/$name.log" 2>&1 || rc=$?
  [ "$rc" = 0 ] || { cat "$work/$name.log"; fail "$name: exit $rc"; }
  for s in "1f1b" "bfpp (2 chunks)" "paci_flush (1F1B-flush)" "paci"; do
    grep -qE "^\| $(sed 's/[()]/\\&/g' <<<"$s") \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| (yes|no) \|" "$work/$name/mps_pipeline.md" ||
      { cat "$work/$name/mps_pipeline.md"; fail "$name: no row of numbers for $s"; }
  done
}
cuda_study mps "$fake/mps"
[ "$(grep -c '^mpirun pct=25 .* bench .*runtime.backend=cpu' "$work/mps.fake")" = 1 ] &&
  [ "$(grep -c '^mpirun pct=25 .* train .*runtime.backend=cpu' "$work/mps.fake")" = 5 ] &&
  [ "$(grep -c '^mpirun pct=25 .* train .*runtime.transport=ipc$' "$work/mps.fake")" = 1 ] &&
  [ "$(grep -c '^mps start' "$work/mps.fake")" = 6 ] && [ "$(grep -c '^mps quit' "$work/mps.fake")" = 6 ] ||
  { cat "$work/mps.fake"; fail "cuda: bench and 5 runs (one over ipc) were not each on 4 MPS ranks of 25 %"; }
grep -q "vs ipc (CUDA IPC device-to-device copies)" "$work/mps/mps_pipeline.md" ||
  { cat "$work/mps/mps_pipeline.md"; fail "cuda: no mpi vs ipc table"; }
grep -q "^- Machine: GPU: Stand-in GPU, 570.00, 143771 MiB; 4 MPS ranks x 25 % of the SMs" "$work/mps/mps_pipeline.md" ||
  { cat "$work/mps/mps_pipeline.md"; fail "cuda: the report does not name the GPU and MPS"; }
echo "ok: cuda path with stand-ins: bench and 5 runs (1f1b also over ipc) through mps_pipeline.sh, report with numbers"
cuda_study nomps "$work/no-mps-control" --ipc none
grep -q "^mps" "$work/nomps.fake" && fail "no MPS daemon: it was started anyway"
[ "$(grep -c '^mpirun pct=none ' "$work/nomps.fake")" = 5 ] || { cat "$work/nomps.fake"; fail "no MPS: not 5 plain mpiruns"; }
grep -q "runtime.transport=ipc" "$work/nomps.fake" && { cat "$work/nomps.fake"; fail "--ipc none: an ipc run"; }
grep -q "vs ipc" "$work/nomps/mps_pipeline.md" && fail "--ipc none: the report has a transport table"
grep -q "4 ranks time-sharing it WITHOUT MPS (.*no-mps-control not found)" "$work/nomps/mps_pipeline.md" ||
  fail "no MPS: the report does not say so"
echo "ok: cuda path without the MPS daemon: plain mpirun, said in the report"
# CUDA IPC refused between the MPS clients: the study fails, and its report says why.
rc=0
FAKE_IPC_REFUSED=1 FAKE_LOG="$work/refused.fake" NVIDIA_SMI="$fake/smi" MPS_CONTROL="$fake/mps" MPIRUN="$fake/mpirun" \
  MPS_STUDY_ITERS=2 bash "$script" --np 2 --steps 8 --segment 4 --binary "$bin" --config "$cfg" \
  --data "$work/data/train_*.bin" "$work/refused" >"$work/refused.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$work/refused.log"; fail "ipc refused: exit $rc, expected 1"; }
grep -q "^| 1f1b | [0-9.]* | n/a | n/a | n/a | n/a |$" "$work/refused/mps_pipeline.md" &&
  grep -q "^1f1b over ipc did not finish (train_1f1b_ipc.log): \`pipetrain: error: ipc transport: pipeline rank 1 could not open" \
    "$work/refused/mps_pipeline.md" && grep -q "FAILED: train 1f1b_ipc" "$work/refused/mps_pipeline.md" ||
  { cat "$work/refused/mps_pipeline.md"; fail "ipc refused: the report does not say so"; }
echo "ok: ipc refused: the study fails and the report quotes why"
echo "PASS"
