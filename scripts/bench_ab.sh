#!/usr/bin/env bash
# Before/after throughput of two pipetrain binaries on the CPU bench of scripts/bench_cpu.sh
# (quickstart model, pp=1, same batch, AdamW), alternating A and B each round so that load
# from other processes hits both alike; prints each round and the medians.
#   scripts/bench_ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [STEPS]
# Needs the byte shards of scripts/bench_cpu.sh (data_cache/sotu_byte).
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:?usage: bench_ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [STEPS]}
b=${2:?usage: bench_ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [STEPS]}
rounds=${3:-5}
steps=${4:-20}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
rate() {  # rate BINARY: median tokens/s of the steps after the first 5
  rm -rf "$out/ab"
  "$1" train --config configs/quickstart.yaml --set parallel.pp=1 --set parallel.dp=1 \
    --set training.steps="$steps" --set training.max_seconds=0 --set data.val= --set runtime.progress=off \
    --set runtime.threads=2 --set run.out_dir="$out" --set run.name=ab >"$out/log" 2>&1 || { cat "$out/log" >&2; exit 1; }
  python3 -c "import json,statistics,sys; r=[json.loads(l)['tokens_per_s'] for l in open(sys.argv[1]) if 'loss' in l]; print(f'{statistics.median(r[5:]):.0f}')" "$out/ab/metrics.jsonl"
}
ra=() rb=()
for ((i = 1; i <= rounds; ++i)); do
  ra+=("$(rate "$a")")
  rb+=("$(rate "$b")")
  echo "round $i: A ${ra[-1]} tok/s  B ${rb[-1]} tok/s  (load $(cut -d' ' -f1 /proc/loadavg))"
done
python3 - "${ra[*]}" "${rb[*]}" <<'PY'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
ma, mb = statistics.median(a), statistics.median(b)
print(f"median: A {ma:.0f} tok/s, B {mb:.0f} tok/s, B/A = {mb / ma:.3f}")
PY
