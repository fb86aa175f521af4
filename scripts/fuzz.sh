#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, ASan+UBSan) and runs each for
# SECONDS (default 600), one after another, starting from the committed seed corpus.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (targets default to all five)
# Environment: FUZZ_BUILD_DIR (default build-fuzz), FUZZ_WORK (default
# $FUZZ_BUILD_DIR/fuzz-work: grown corpora, logs, crash-* inputs), FUZZ_JOBS (build -j, default 2).
# Prints libFuzzer's final summary per target; exits non-zero when a target finds a
# crash, leak, timeout or violated property (the input is under $FUZZ_WORK/<target>/).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_config fuzz_token_shard fuzz_checkpoint fuzz_gpt2_encoder fuzz_gpt2_merges)
build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
work="${FUZZ_WORK:-$build/fuzz-work}"

if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz: clang++ not found; the fuzz targets need clang and its libFuzzer/sanitizer runtimes." >&2
  echo "fuzz: install them with scripts/install_deps.sh (Debian: clang libclang-rt-14-dev)." >&2
  exit 2
fi

start=$(date +%s)
mkdir -p "$build"
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DPIPETRAIN_FUZZ=ON -DPIPETRAIN_TESTS=OFF -DPIPETRAIN_CUDA=OFF >"$build/configure.log" 2>&1 ||
  { cat "$build/configure.log" >&2; exit 1; }
cmake --build "$build" -j "${FUZZ_JOBS:-2}" --target fuzz_targets
echo "fuzz: built in $(( $(date +%s) - start )) s"

failed=()
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/$t"
  [ -x "$bin" ] || { echo "fuzz: no target $t" >&2; exit 2; }
  mkdir -p "$work/$t/corpus"
  log="$work/$t/fuzz.log"
  echo "fuzz: $t for ${seconds} s (log $log)"
  rc=0
  # The grown corpus comes first (new inputs go there); the seed corpus is only read.
  "$bin" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2560 -print_final_stats=1 \
    -artifact_prefix="$work/$t/" "$work/$t/corpus" "$root/tests/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  grep -E "^#[0-9]+[[:space:]]+(INITED|DONE)|^Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb|ERROR:|property violated|SUMMARY:" "$log" |
    sed "s/^/  $t: /" || true
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    echo "fuzz: $t FAILED (exit $rc); inputs: $(ls "$work/$t" | grep -E '^(crash|leak|timeout|oom)-' | tr '\n' ' ')" >&2
  fi
done
echo "fuzz: ${#targets[@]} target(s), ${seconds} s each, total $(( $(date +%s) - start )) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in ${failed[*]}" >&2
  exit 1
fi
