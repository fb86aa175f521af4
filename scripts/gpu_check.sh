#!/usr/bin/env bash
# The first and only command of a short GPU window (about 8 minutes on one H100/H200):
#   1. prints the GPU, the driver and the libraries it finds (env.txt);
#   2. builds pipetrain and the gpu tests (scripts/gpu_targets.py) with every core (build.log);
#   3. runs the gpu-labelled tests, and FAILS (not skips) when nvidia-smi sees a GPU that
#      CUDA cannot use (gpu_tests.log); tests/app/gpu_train_test.sh is one of them;
#   4. benchmarks pipetrain (configs/gpt2_124m.yaml, pp=1, m=1) against the project's PyTorch
#      reference scripts/bench/torch_gpt2_gpu.py (same model, batch, sequence length and
#      optimizer; bf16 torch.compile and eager) at B in {8, 16, 32}, T = 1024 (bench.jsonl);
#   4b. profiles one more short pipetrain run at the largest batch with PIPETRAIN_OP_TIMES
#      (model/cuda/op_timer.h): every backend op's GPU time, as a table (scripts/op_times.py)
#      in summary.md and op_times.md, so the window ends with where the step's time goes;
#   5. issue #13's MPS pipeline study, scripts/mps_study.sh (4 ranks on the GPU through MPS:
#      bench, plan --costs, 1f1b/bfpp/paci_flush/paci runs, measured vs predicted, and 1f1b
#      once more over runtime.transport=ipc: CUDA IPC vs mpi host staging, which is faster), into
#      OUTDIR/mps (its report: OUTDIR/mps/mps_pipeline.md), with what is left of the budget;
#   6. writes summary.md and every log into OUTDIR.
# Benchmarks left when GPU_CHECK_BUDGET_S (default 480) minus the MPS study's reserve
# GPU_CHECK_MPS_S (default 240) is spent are skipped and listed, except the first batch's
# pipetrain and torch.compile runs (the 1.1x ratio) and the profile run, which always run; the MPS study then gets the
# rest of GPU_CHECK_BUDGET_S, runs when at least 90 s remain (else it is listed as skipped)
# and skips and lists what does not fit in it. GPU_CHECK_MPS=0 leaves it out (no reserve).
#
#   scripts/gpu_check.sh OUTDIR
# Environment: BUILD_DIR (default build-gpu), PYTHON (default python3), GPU_CHECK_BATCHES
# ("32 16 8": in this order, so a short budget cuts the small batches, not the 1.1x target's), GPU_CHECK_STEPS (pipetrain and torch steps per run, default 12; the first 4
# are warm-up), GPU_CHECK_SKIP_BUILD=1 (use BUILD_DIR as it is), GPU_CHECK_BUDGET_S,
# GPU_CHECK_MPS (1), GPU_CHECK_MPS_S (240), MPS_STUDY (the study script, for tests),
# GPU_CHECK_TESTS_S (240: the gpu tests stop there, named as a failure, and the benchmark runs),
# GPU_CHECK_PRECISION (pipetrain's benchmark precision: bf16 (default; the bf16 GEMMs and flash
# attention), fp32, or tf32 = fp32 with runtime.tf32: true).
# Exit: 0 every check passed, 1 a check failed, 2 bad arguments, 3 no GPU visible.
set -uo pipefail
usage() { echo "usage: scripts/gpu_check.sh OUTDIR" >&2; exit 2; }
[ $# -eq 1 ] || usage
case "$1" in -h|--help) usage ;; -*) echo "gpu_check: unknown option $1" >&2; usage ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1" || { echo "gpu_check: cannot create $1" >&2; exit 2; }
out=$(cd "$1" && pwd)
build=${BUILD_DIR:-$root/build-gpu}
py=${PYTHON:-python3}
batches=${GPU_CHECK_BATCHES:-32 16 8}  # the acceptance batch first: the budget may cut the last
steps=${GPU_CHECK_STEPS:-12}
budget=${GPU_CHECK_BUDGET_S:-480}
tests_cap=${GPU_CHECK_TESTS_S:-240}
case "$tests_cap" in '' | *[!0-9]*) echo "gpu_check: GPU_CHECK_TESTS_S must be a whole number of seconds, got '$tests_cap'" >&2; exit 2 ;; esac
precision=${GPU_CHECK_PRECISION:-bf16}
case "$precision" in
  bf16 | fp32) precision_args=(--set runtime.precision="$precision") ;;
  tf32) precision_args=(--set runtime.precision=fp32 --set runtime.tf32=true) ;;
  *) echo "gpu_check: GPU_CHECK_PRECISION must be bf16, fp32 or tf32, got '$precision'" >&2; exit 2 ;;
esac
mps_on=${GPU_CHECK_MPS:-1}
mps_reserve=0
[ "$mps_on" = 0 ] || mps_reserve=${GPU_CHECK_MPS_S:-240}
mps_study=${MPS_STUDY:-$root/scripts/mps_study.sh}
mps_status="not run (GPU_CHECK_MPS=0)"
profile_status=""
start=$(date +%s)
failed=()
summary="$out/summary.md"
elapsed() { echo $(( $(date +%s) - start )); }
note() { echo "[gpu_check $(elapsed)s] $*" | tee -a "$out/progress.log"; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

# ---- 1. what this machine has ----
{
  echo "date: $(date -u +%FT%TZ)  host: $(hostname)  cores: $(nproc)"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1
  else
    echo "nvidia-smi: not found"
  fi
  command -v nvcc >/dev/null 2>&1 && nvcc --version | tail -1 || echo "nvcc: not found"
  for lib in libcudart libcublasLt libcusolver libnccl liblapacke libopenblas libyaml-cpp; do
    path=$(ldconfig -p 2>/dev/null | awk -v l="$lib.so" 'index($1, l) == 1 { print $NF; exit }')
    echo "$lib: ${path:-not found}"
  done
  command -v mpirun >/dev/null 2>&1 && mpirun --version 2>&1 | head -1 || echo "mpirun: not found"
  "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())" 2>&1 | tail -1
  cmake --version 2>&1 | head -1
} >"$out/env.txt"
cat "$out/env.txt"
gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU'); fi
if [ "$gpus" -eq 0 ]; then
  printf '# gpu_check: no GPU visible\n\nnvidia-smi lists no GPU on this machine; nothing was run.\n' >"$summary"
  echo "gpu_check: no GPU visible (nvidia-smi lists none); see $summary" >&2
  exit 3
fi

# ---- 2. build ----
if [ "${GPU_CHECK_SKIP_BUILD:-0}" != 1 ]; then
  note "building in $build with $(nproc) jobs"
  # Not the host CUDA emulator (tests/cuda_emu): CI's stand-in for the GPU that is here.
  # Only what the checks run (scripts/gpu_targets.py: pipetrain and the gpu tests' executables),
  # not the CPU tests: cold, 137 of the 243 build steps and 175 of 336 job-seconds (2-core machine).
  if ! { cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPIPETRAIN_CUDA=ON -DPIPETRAIN_CUDA_EMU=OFF &&
         targets=$("$py" "$root/scripts/gpu_targets.py" "$build") && echo "targets:" $targets &&
         cmake --build "$build" -j "$(nproc)" -- $targets; } >"$out/build.log" 2>&1; then
    failed+=("build")
    tail -30 "$out/build.log"
  fi
fi
bin="$build/pipetrain"

# ---- 3. gpu tests (a skip with a GPU present is a failure) ----
if [ -x "$bin" ]; then
  note "ctest -L gpu (at most $tests_cap s)"
  # A hung test (a kernel that never ends holds no deadline of ours) must not take the
  # window: the tests stop at GPU_CHECK_TESTS_S, the benchmark runs anyway. timeout
  # signals its whole process group: ctest, mpirun and the ranks.
  rc=0
  (cd "$build" && timeout -k 10 "$tests_cap" ctest -L gpu --output-on-failure --timeout 600) >"$out/gpu_tests.log" 2>&1 ||
    rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    running=$(grep -o "Start *[0-9]*: [A-Za-z0-9_]*" "$out/gpu_tests.log" | tail -1 | sed 's/.*: //')
    failed+=("gpu tests stopped after GPU_CHECK_TESTS_S=$tests_cap s in ${running:-?}")
  elif [ "$rc" -ne 0 ]; then
    failed+=("gpu tests")
  fi
  if grep -q "Skipped\|no usable GPU" "$out/gpu_tests.log"; then
    failed+=("gpu tests skipped although nvidia-smi lists $gpus GPU(s)")
    grep "Skipped\|no usable GPU" "$out/gpu_tests.log" | head -5
  fi
fi

# ---- 4. benchmark: pipetrain vs the PyTorch reference ----
bench="$out/bench.jsonl"
: >"$bench"
skipped_bench=()
over_budget() { [ "$(elapsed)" -ge $((budget - mps_reserve)) ]; }
pipetrain_run() {  # pipetrain_run B NAME: a short pp=1 training run (log: OUTDIR/NAME.log)
  local B=$1 dir="$out/runs" name=$2
  mkdir -p "$dir"
  timeout 300 "$bin" train --config "$root/configs/gpt2_124m.yaml" --overwrite \
    --set "data.train=$out/data/train_*.bin" --set data.val= --set training.steps="$steps" \
    --set training.micro_batch_size="$B" --set training.microbatches=1 --set training.seq_len=1024 \
    --set runtime.backend=cuda --set runtime.progress=off --set run.out_dir="$dir" --set run.name="$name" \
    "${precision_args[@]}" >"$out/$name.log" 2>&1
}
pipetrain_rate() {  # pipetrain_rate B: one JSON line from a short pp=1 training run
  local B=$1 dir="$out/runs" name="bench_b$1"
  pipetrain_run "$B" "$name" || { failed+=("pipetrain B=$B"); return; }
  "$py" - "$dir/$name/metrics.jsonl" "$B" "$precision" <<'PY' >>"$bench"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
rate = statistics.median(r["tokens_per_s"] for r in rows[4:])
print(json.dumps({"impl": "pipetrain", "dtype": sys.argv[3], "batch": int(sys.argv[2]), "seq": 1024,
                  "tokens_per_s": round(rate, 1), "final_loss": rows[-1]["loss"]}))
PY
}
torch_rate() {  # torch_rate B MODE
  timeout 300 "$py" "$root/scripts/bench/torch_gpt2_gpu.py" --batch "$1" --seq 1024 --mode "$2" --dtype bf16 \
    --steps "$steps" --warmup 4 >"$out/torch_$2_b$1.log" 2>&1 || { failed+=("torch $2 B=$1"); return; }
  tail -1 "$out/torch_$2_b$1.log" >>"$bench"
}
if [ -x "$bin" ]; then
  mkdir -p "$out/data"
  cat "$root"/README.md "$root"/docs/*.md >"$out/data/text.txt"  # throughput does not depend on the tokens
  "$bin" prepare --tokenizer byte --input "$out/data/text.txt" --out "$out/data" >"$out/prepare.log" 2>&1 ||
    failed+=("prepare")
  first_b=${batches%% *}
  for B in $batches; do
    for what in pipetrain compile eager; do
      # The first batch's pipetrain and torch.compile runs are the acceptance ratio: never cut.
      if over_budget && ! { [ "$B" = "$first_b" ] && [ "$what" != eager ]; }; then
        skipped_bench+=("$what B=$B")
        continue
      fi
      note "bench $what B=$B"
      if [ "$what" = pipetrain ]; then pipetrain_rate "$B"; else torch_rate "$B" "$what"; fi
    done
  done
  # 4b. where the step's time goes: every op's GPU time at the largest batch (a short run,
  # never cut: with the acceptance ratio it is what the next optimization needs)
  top_b=$(printf '%s\n' $batches | sort -n | tail -1)
  note "profile B=$top_b (PIPETRAIN_OP_TIMES)"
  rm -f "$out/op_times.jsonl"
  if PIPETRAIN_OP_TIMES="$out/op_times.jsonl" pipetrain_run "$top_b" "profile_b$top_b" &&
     "$py" "$root/scripts/op_times.py" "$out/op_times.jsonl" --top 25 >"$out/op_times.md" 2>&1; then
    profile_status="B=$top_b, $steps steps ($out/op_times.jsonl, runs/profile_b$top_b)"
  else
    failed+=("profile B=$top_b")
  fi
fi

# ---- 5. issue #13: the N-stage pipeline through MPS, measured vs plan --costs ----
if [ "$mps_on" != 0 ] && [ -x "$bin" ]; then
  mps_left=$((budget - $(elapsed)))
  if [ "$mps_left" -lt 90 ]; then
    mps_status="skipped: $mps_left s of GPU_CHECK_BUDGET_S left (it needs 90)"
  else
    note "MPS pipeline study (scripts/mps_study.sh, $mps_left s)"
    if MPS_STUDY_BUDGET_S=$mps_left PYTHON=$py bash "$mps_study" --binary "$bin" --data "$out/data/train_*.bin" "$out/mps" \
      >"$out/mps_study.log" 2>&1; then
      mps_status="ran: mps/mps_pipeline.md"
    else
      mps_status="FAILED (mps_study.log, mps/mps_pipeline.md)"
      failed+=("mps study")
      tail -20 "$out/mps_study.log"
    fi
  fi
fi

# ---- 6. summary ----
"$py" - "$bench" "$out/env.txt" "$summary" "$(elapsed)" "${failed[*]:-}" "${skipped_bench[*]:-}" "$mps_status" \
  "$precision" "$profile_status" "$out/op_times.md" <<'PY'
import json, os, sys
bench, env, path, secs, failed, skipped, mps, precision, profile, op_times = sys.argv[1:11]
rows = [json.loads(l) for l in open(bench) if l.strip().startswith("{")]
rate = {(r.get("impl"), r.get("batch")): r.get("tokens_per_s") for r in rows if "tokens_per_s" in r}
lines = ["# gpu_check summary", "", "```", open(env).read().strip(), "```", "",
         f"Total time: {secs} s. Result: {'FAILED: ' + failed if failed else 'every check passed'}.", ""]
if skipped:
    lines += [f"Skipped for time (GPU_CHECK_BUDGET_S): {skipped}.", ""]
lines += ["| B | pipetrain tok/s | torch.compile tok/s | torch eager tok/s | pipetrain / compile |",
          "|---|---|---|---|---|"]
for b in sorted({k[1] for k in rate}):
    p, c, e = rate.get(("pipetrain", b)), rate.get(("torch-compile", b)), rate.get(("torch-eager", b))
    ratio = f"{p / c:.3f}" if p and c else "n/a"
    lines.append(f"| {b} | {p or 'n/a'} | {c or 'n/a'} | {e or 'n/a'} | {ratio} |")
lines += ["", f"T = 1024; pipetrain {precision} (configs/gpt2_124m.yaml, pp=1, m=1); torch bf16 autocast "
          "(scripts/bench/torch_gpt2_gpu.py). Logs beside this file.", ""]
if profile and os.path.exists(op_times):
    lines += [f"Per-op GPU time (PIPETRAIN_OP_TIMES, {profile}; events around each backend op, "
              "so a little slower than the benchmark; scripts/op_times.py):", "", open(op_times).read().strip(), ""]
lines += [f"MPS pipeline study (issue #13, scripts/mps_study.sh): {mps}."]
open(path, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
[ ${#failed[@]} -eq 0 ] || { echo "gpu_check: FAILED: ${failed[*]}" >&2; exit 1; }
echo "gpu_check: every check passed ($(elapsed) s); summary in $summary"
