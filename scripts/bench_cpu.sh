#!/usr/bin/env bash
# CPU training throughput: pipetrain's CPU backend vs PyTorch CPU on the
# quickstart model (configs/quickstart.yaml: byte vocab 256, L=4, C=128, NH=4,
# T=128, B=8, m=8 micro-batches per step), like with like: one process, pp=1,
# fp32, AdamW with the same hyper-parameters and clipping, the same thread
# count for both (OpenBLAS and torch intra-op threads), the same number of
# timed steps after the same warm-up, on the same token shard. Each round runs
# pipetrain then PyTorch back to back, so load from other processes on the
# machine hits both sides alike; the summary is the median over rounds.
#
#   scripts/bench_cpu.sh                      # 3 rounds of 20 steps (5 warm-up), 2 threads
#   ROUNDS=5 STEPS=30 THREADS=1 scripts/bench_cpu.sh
#
# Needs what scripts/install_deps.sh installs (python3-torch included); fetches
# the corpus, builds pipetrain (BUILD_DIR, default build) and writes the byte
# shards when they are missing. Set PIPETRAIN_SKIP_BUILD=1 to use an existing
# binary as is.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
STEPS=${STEPS:-20}
WARMUP=${WARMUP:-5}
THREADS=${THREADS:-2}
BUILD_DIR=${BUILD_DIR:-build}
PY=/usr/bin/python3  # Debian's python3-torch lives here, not in a pyenv on PATH
OUT_DIR=${BENCH_OUT_DIR:-runs}
SHARDS="data_cache/sotu_byte/train_*.bin"

if [ "$STEPS" -le "$WARMUP" ]; then echo "bench_cpu: STEPS must exceed WARMUP" >&2; exit 1; fi
"$PY" -c "import torch" 2>/dev/null || { echo "bench_cpu: $PY has no torch (scripts/install_deps.sh installs python3-torch)" >&2; exit 1; }

if [ "${PIPETRAIN_SKIP_BUILD:-0}" != "1" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD_DIR" --target pipetrain -j "$(nproc)" >/dev/null
fi
if ! compgen -G "$SHARDS" >/dev/null; then
  bash scripts/get_corpus.sh
  "$BUILD_DIR/pipetrain" prepare --tokenizer byte --input data_cache/corpus/*.txt --out data_cache/sotu_byte
fi

# Both sides get the same OpenBLAS thread count; torch's OpenMP pool is set by
# torch.set_num_threads inside the script. torch runs with OMP_WAIT_POLICY=passive
# by default: with GNU OpenMP's default spin-waiting, a loaded 2-core machine
# (other builds running) cut torch's throughput up to 20x in our measurements,
# which would flatter pipetrain. TORCH_OMP_WAIT_POLICY=active restores the default.
export OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
TORCH_OMP_WAIT_POLICY=${TORCH_OMP_WAIT_POLICY:-passive}

# Median tokens/s of pipetrain's metrics.jsonl, leaving out the warm-up steps.
pipetrain_rate() {
  "$PY" - "$1" "$WARMUP" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"tokens_per_s"' in l]
rates = [r["tokens_per_s"] for r in rows[int(sys.argv[2]):]]
print(f"{statistics.median(rates):.1f}")
PY
}

mkdir -p "$OUT_DIR"
results=()
for ((r = 1; r <= ROUNDS; ++r)); do
  rm -rf "$OUT_DIR/bench_cpu"  # each round is a fresh run of the same name
  "$BUILD_DIR/pipetrain" train --config configs/quickstart.yaml \
    --set parallel.pp=1 --set parallel.dp=1 --set training.steps="$STEPS" \
    --set training.max_seconds=0 --set training.log_every="$STEPS" --set data.val= \
    --set runtime.progress=off --set runtime.threads="$THREADS" \
    --set run.out_dir="$OUT_DIR" --set run.name=bench_cpu >"$OUT_DIR/bench_cpu.log" 2>&1 ||
    { cat "$OUT_DIR/bench_cpu.log" >&2; exit 1; }
  pt=$(pipetrain_rate "$OUT_DIR/bench_cpu/metrics.jsonl")
  th=$(OMP_WAIT_POLICY=$TORCH_OMP_WAIT_POLICY "$PY" scripts/bench/torch_cpu_gpt2.py --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" \
        --data "$SHARDS" --json | "$PY" -c 'import json, sys; print("%.1f" % json.load(sys.stdin)["tokens_per_s_median"])')
  results+=("$pt,$th")
  echo "bench_cpu: round $r/$ROUNDS: pipetrain $pt tok/s, torch $th tok/s" >&2
done

# The summary table (the heredoc is the program, so the rounds come as arguments).
"$PY" - "$ROUNDS" "$STEPS" "$WARMUP" "$THREADS" "${results[@]}" <<'PY'
import statistics, subprocess, sys
rounds, steps, warmup, threads = sys.argv[1:5]
rows = [tuple(map(float, a.split(","))) for a in sys.argv[5:]]
torch_version = subprocess.run(["/usr/bin/python3", "-c", "import torch; print(torch.__version__)"],
                               capture_output=True, text=True).stdout.strip()
print(f"quickstart model, B=8 T=128 m=8 (8192 tokens/step), pp=1, fp32, AdamW, {threads} threads, "
      f"{int(steps) - int(warmup)} timed steps after {warmup} warm-up, {rounds} rounds; torch {torch_version}")
print("tokens/s: median over the timed steps of each run; ratio = pipetrain / torch")
print(f"{'round':>5} | {'pipetrain tok/s':>15} | {'torch tok/s':>11} | {'ratio':>6}")
for i, (p, t) in enumerate(rows, 1):
    print(f"{i:>5} | {p:>15.0f} | {t:>11.0f} | {p / t:>5.2f}x")
pm = statistics.median(p for p, _ in rows)
tm = statistics.median(t for _, t in rows)
rm = statistics.median(p / t for p, t in rows)
print(f"{'med':>5} | {pm:>15.0f} | {tm:>11.0f} | {rm:>5.2f}x")
print(f"spread: pipetrain {min(p for p, _ in rows):.0f}-{max(p for p, _ in rows):.0f}, "
      f"torch {min(t for _, t in rows):.0f}-{max(t for _, t in rows):.0f}, "
      f"ratio {min(p / t for p, t in rows):.2f}-{max(p / t for p, t in rows):.2f}")
PY
