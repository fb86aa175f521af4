#!/usr/bin/env bash
# CI fuzz smoke (ctest fuzz_smoke, labels cpu and fuzz): builds only the fuzz targets
# (clang, ASan+UBSan) in BUILD_DIR and runs each for SECONDS (default 5) from the
# committed seed corpus, so every seed and regression input is replayed and a short
# mutation run follows. Without clang it fails and says how to install it.
#   tests/fuzz/fuzz_smoke.sh SOURCE_DIR BUILD_DIR [SECONDS]
# Long runs: scripts/fuzz.sh (docs/reliability.md records them).
set -euo pipefail
src="${1:?usage: fuzz_smoke.sh SOURCE_DIR BUILD_DIR [SECONDS]}"
build="${2:?usage: fuzz_smoke.sh SOURCE_DIR BUILD_DIR [SECONDS]}"
seconds="${3:-5}"

if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz_smoke: FAILED: clang++ is not installed; run scripts/install_deps.sh (Debian: clang libclang-rt-14-dev)" >&2
  exit 1
fi
rm -rf "$build/fuzz-work"  # start from the seed corpus only
FUZZ_BUILD_DIR="$build" FUZZ_WORK="$build/fuzz-work" FUZZ_JOBS="${FUZZ_JOBS:-2}" \
  bash "$src/scripts/fuzz.sh" "$seconds"
