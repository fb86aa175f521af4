#!/usr/bin/env bash
# scripts/gpu_check.sh on a machine without a GPU, with stand-ins (label cpu):
#  1. a bad command line exits 2 with the usage;
#  2. nvidia-smi listing no GPU: exit 3 and a summary that says so, nothing built or run;
#  3. a stand-in GPU whose gpu tests come back "Skipped": the check FAILS (exit 1) naming
#     the skip, and still benchmarks and writes the summary; a gpu test that hangs is
#     stopped at GPU_CHECK_TESTS_S, named as a failure, and the benchmark still runs;
#  4. all stand-ins passing: exit 0; summary.md holds the table with every batch and the
#     pipetrain / torch.compile ratio computed from the stand-ins' rates, and the per-op
#     table of the profile run (PIPETRAIN_OP_TIMES) at the largest batch;
#  5. the MPS study stage (scripts/mps_study.sh): called last with the binary, the prepared
#     data and the rest of the budget; its reserve GPU_CHECK_MPS_S stops the benchmarks
#     early (but not the first batch's pipetrain and torch.compile runs, the acceptance
#     ratio); under 90 s left it is skipped and listed; GPU_CHECK_MPS=0 leaves it out; a
#     failing study fails the check.
# Stand-ins: nvidia-smi, ctest (on PATH), a pipetrain binary (BUILD_DIR, GPU_CHECK_SKIP_BUILD),
# a python wrapper (PYTHON) that answers for scripts/bench/torch_gpt2_gpu.py and the MPS
# study (MPS_STUDY), which records its arguments and budget.
# Usage: gpu_check_cli_test.sh SOURCE_DIR
set -euo pipefail
src=$1
work=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
stand=$work/bin
mkdir -p "$stand" "$work/build"

# 1. arguments
rc=0; bash "$src/scripts/gpu_check.sh" >"$work/usage.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] && grep -q "usage: scripts/gpu_check.sh OUTDIR" "$work/usage.log" || fail "no argument: exit $rc"
rc=0; bash "$src/scripts/gpu_check.sh" --fast >"$work/usage.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] && grep -q "unknown option --fast" "$work/usage.log" || fail "unknown option: exit $rc"
rc=0; GPU_CHECK_PRECISION=fp16 bash "$src/scripts/gpu_check.sh" "$work/prec" >"$work/usage.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] && grep -q "GPU_CHECK_PRECISION must be bf16, fp32 or tf32, got 'fp16'" "$work/usage.log" ||
  fail "bad GPU_CHECK_PRECISION: exit $rc"

# 2. no GPU
cat >"$stand/nvidia-smi" <<'SH'
#!/bin/sh
exit 9
SH
chmod +x "$stand/nvidia-smi"
rc=0; PATH="$stand:$PATH" bash "$src/scripts/gpu_check.sh" "$work/nogpu" >"$work/nogpu.log" 2>&1 || rc=$?
[ "$rc" -eq 3 ] || { cat "$work/nogpu.log"; fail "no GPU: exit $rc, expected 3"; }
grep -q "no GPU visible" "$work/nogpu/summary.md" || fail "no GPU: summary does not say so"
[ ! -e "$work/nogpu/build.log" ] || fail "no GPU: it built anyway"

# 3 and 4. a stand-in GPU
cat >"$stand/nvidia-smi" <<'SH'
#!/bin/sh
case "$1" in
  -L) echo "GPU 0: NVIDIA H200 (UUID: GPU-00000000-0000-0000-0000-000000000000)" ;;
  *) echo "NVIDIA H200, 570.00, 143771 MiB, 9.0" ;;
esac
SH
cat >"$stand/ctest" <<'SH'
#!/bin/sh
echo "      Start  1: model_cuda_ops_test"
echo "1/2 Test #1: model_cuda_ops_test ....   Passed    0.50 sec"
echo "      Start  2: gpu_train_test"
[ -z "$STANDIN_HANG" ] || { sleep 300; echo "the hung test went on"; }
if [ -n "$STANDIN_SKIP" ]; then echo "2/2 Test #2: gpu_train_test ...***Skipped   0.01 sec"; echo "no usable GPU: stand-in"
else echo "2/2 Test #2: gpu_train_test ....   Passed   30.00 sec"; fi
SH
# pipetrain stand-in: prepare writes a shard; train writes metrics.jsonl at a rate of 1000*B tok/s.
cat >"$work/build/pipetrain" <<'SH'
#!/bin/sh
cmd=$1; shift
if [ "$cmd" = prepare ]; then
  while [ $# -gt 0 ]; do [ "$1" = --out ] && mkdir -p "$2" && : >"$2/train_000000.bin"; shift; done; exit 0
fi
out=""; name=""; B=""
while [ $# -gt 0 ]; do
  case "$2" in run.out_dir=*) out=${2#run.out_dir=} ;; run.name=*) name=${2#run.name=} ;;
    training.micro_batch_size=*) B=${2#training.micro_batch_size=} ;;
    runtime.precision=*) echo "${2#runtime.precision=}" >>"$(dirname "$0")/precisions.txt" ;; esac
  shift
done
mkdir -p "$out/$name"
[ -z "$PIPETRAIN_OP_TIMES" ] || echo "{\"rank\": -1, \"device\": 0, \"ops\": {\"attention_forward_typed\": {\"calls\": 5, \"ms\": 10.0}, \"matmul_forward_typed\": {\"calls\": 10, \"ms\": 30.0}}}" >>"$PIPETRAIN_OP_TIMES"
for s in 1 2 3 4 5 6 7 8; do echo "{\"step\":$s,\"loss\":5.0,\"tokens_per_s\":$((1000 * B))}"; done >"$out/$name/metrics.jsonl"
SH
# python stand-in: torch runs at 800*B (compile) and 500*B (eager) tok/s; everything else is python3.
cat >"$stand/python-standin" <<'SH'
#!/bin/sh
case "$1" in
  *torch_gpt2_gpu.py)
    B=$3; mode=$7
    rate=$((500 * B)); [ "$mode" = compile ] && rate=$((800 * B))
    echo "{\"impl\": \"torch-$mode\", \"dtype\": \"bf16\", \"batch\": $B, \"seq\": 1024, \"tokens_per_s\": $rate}" ;;
  *) exec python3 "$@" ;;
esac
SH
# MPS study stand-in: records "budget ARGS" in OUTDIR/../NAME.mps (NAME = OUTDIR's parent's name).
cat >"$stand/mps-study-standin" <<'SH'
#!/bin/sh
for last; do :; done
echo "budget=$MPS_STUDY_BUDGET_S $*" >"$(dirname "$last").mps"
mkdir -p "$last" && echo "# stand-in report" >"$last/mps_pipeline.md"
exit "${STANDIN_MPS_RC:-0}"
SH
chmod +x "$stand"/* "$work/build/pipetrain"
run_check() {  # run_check NAME: exit status of gpu_check with the stand-ins
  local rc=0
  PATH="$stand:$PATH" BUILD_DIR="$work/build" GPU_CHECK_SKIP_BUILD=1 PYTHON="$stand/python-standin" \
    MPS_STUDY="$stand/mps-study-standin" GPU_CHECK_STEPS=8 bash "$src/scripts/gpu_check.sh" "$work/$1" \
    >"$work/$1.log" 2>&1 || rc=$?
  return $rc
}
rc=0; STANDIN_SKIP=1 run_check skipped || rc=$?
[ "$rc" -eq 1 ] || { cat "$work/skipped.log"; fail "skipped gpu tests: exit $rc, expected 1"; }
grep -q "gpu tests skipped although nvidia-smi lists 1 GPU" "$work/skipped/summary.md" ||
  { cat "$work/skipped/summary.md"; fail "the summary does not name the skip"; }
# a hung gpu test: stopped at GPU_CHECK_TESTS_S and named; the benchmark still runs
t0=$(date +%s)
rc=0; STANDIN_HANG=1 GPU_CHECK_TESTS_S=2 run_check hung || rc=$?
[ "$rc" -eq 1 ] && [ $(( $(date +%s) - t0 )) -lt 60 ] || { cat "$work/hung.log"; fail "a hung test: exit $rc or not stopped"; }
grep -q "FAILED: gpu tests stopped after GPU_CHECK_TESTS_S=2 s in gpu_train_test" "$work/hung/summary.md" &&
  grep -q "^| 32 | 32000.0 | 25600 | " "$work/hung/summary.md" ||
  { cat "$work/hung/summary.md"; fail "a hung test: not named, or no benchmark after it"; }
! grep -q "the hung test went on" "$work/hung/gpu_tests.log" || fail "the hung test was not stopped"
rc=0; GPU_CHECK_TESTS_S=4m bash "$src/scripts/gpu_check.sh" "$work/cap" >"$work/usage.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] && grep -q "GPU_CHECK_TESTS_S must be a whole number of seconds, got '4m'" "$work/usage.log" ||
  fail "bad GPU_CHECK_TESTS_S: exit $rc"
rc=0; run_check ok || rc=$?
[ "$rc" -eq 0 ] || { cat "$work/ok.log"; fail "all passing: exit $rc, expected 0"; }
for B in 8 16 32; do
  grep -q "^| $B | $((1000 * B)).0 | $((800 * B)) | $((500 * B)) | 1.250 |$" "$work/ok/summary.md" ||
    { cat "$work/ok/summary.md"; fail "no correct row for B=$B"; }
done
grep -q "NVIDIA H200, 570.00" "$work/ok/summary.md" || fail "the summary does not show the GPU"
[ "$(sort -u "$work/build/precisions.txt")" = bf16 ] || fail "pipetrain did not benchmark bf16 by default"
grep -q "pipetrain bf16 (configs/gpt2_124m.yaml" "$work/ok/summary.md" || fail "the summary does not name the precision"
# 4b. the profile run at the largest batch: its op table (stand-in times) in the summary
grep -q "^Per-op GPU time (PIPETRAIN_OP_TIMES, B=32, 8 steps" "$work/ok/summary.md" &&
  grep -q "^| matmul_forward_typed | 10 | 30.00 | 3000.0 | 75.0 % |$" "$work/ok/summary.md" &&
  grep -q "^| attention_forward_typed | 5 | 10.00 | 2000.0 | 25.0 % |$" "$work/ok/summary.md" ||
  { cat "$work/ok/summary.md"; fail "no per-op table from the profile run"; }

# 5. the MPS study stage
read -r budget_arg args <"$work/ok.mps" || fail "the MPS study was not called"
left=${budget_arg#budget=}
[ "$left" -ge 90 ] && [ "$left" -le 480 ] || fail "MPS study budget $left, expected the rest of 480 s"
[ "$args" = "--binary $work/build/pipetrain --data $work/ok/data/train_*.bin $work/ok/mps" ] ||
  fail "MPS study arguments: $args"
grep -q "^MPS pipeline study (issue #13, scripts/mps_study.sh): ran: mps/mps_pipeline.md\.$" "$work/ok/summary.md" ||
  { cat "$work/ok/summary.md"; fail "the summary does not point at the MPS report"; }
rc=0; GPU_CHECK_BUDGET_S=200 GPU_CHECK_MPS_S=200 run_check reserve || rc=$?
[ "$rc" -eq 0 ] || { cat "$work/reserve.log"; fail "reserve: exit $rc"; }
grep -q "^Skipped for time (GPU_CHECK_BUDGET_S): eager B=32 pipetrain B=16 compile B=16 .* eager B=8\.$" \
  "$work/reserve/summary.md" || { cat "$work/reserve/summary.md"; fail "reserve: benchmarks not skipped"; }
grep -q "^| 32 | 32000.0 | 25600 | n/a | 1.250 |$" "$work/reserve/summary.md" &&
  grep -q "^Per-op GPU time (PIPETRAIN_OP_TIMES, B=32" "$work/reserve/summary.md" ||
  { cat "$work/reserve/summary.md"; fail "reserve: the B=32 pipetrain / torch.compile pair and the profile must run anyway"; }
[ -f "$work/reserve.mps" ] || fail "reserve: the MPS study did not run in its reserve"
rc=0; GPU_CHECK_BUDGET_S=60 run_check short || rc=$?
[ "$rc" -eq 0 ] || fail "short budget: exit $rc"
[ ! -e "$work/short.mps" ] || fail "short budget: the MPS study ran with under 90 s"
grep -q "^MPS pipeline study .*: skipped: [0-9]* s of GPU_CHECK_BUDGET_S left (it needs 90)\.$" "$work/short/summary.md" ||
  { cat "$work/short/summary.md"; fail "short budget: the skip is not listed"; }
rc=0; GPU_CHECK_MPS=0 GPU_CHECK_BUDGET_S=200 run_check off || rc=$?
[ "$rc" -eq 0 ] && [ ! -e "$work/off.mps" ] || fail "GPU_CHECK_MPS=0: exit $rc or the study ran"
grep -q "not run (GPU_CHECK_MPS=0)" "$work/off/summary.md" && ! grep -q "^Skipped" "$work/off/summary.md" ||
  { cat "$work/off/summary.md"; fail "GPU_CHECK_MPS=0: no reserve expected, every benchmark run"; }
rc=0; STANDIN_MPS_RC=1 run_check mpsfail || rc=$?
[ "$rc" -eq 1 ] && grep -q "FAILED: .*mps study" "$work/mpsfail/summary.md" ||
  { cat "$work/mpsfail/summary.md"; fail "a failing MPS study: exit $rc, expected 1 naming it"; }
echo "gpu_check_cli_test: all passed"
