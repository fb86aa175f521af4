#!/usr/bin/env bash
# Installs dependencies, fetches the small corpus and tokenizer files the tests
# compare against, builds everything (ccache, Ninja) and runs ctest.
# Environment: BUILD_DIR (default build), JOBS (default nproc), CTEST_ARGS (extra
# ctest arguments, e.g. "-L cpu"), PIPETRAIN_SKIP_DEPS=1 to skip apt.
# The Slurm test (label slurm, tests/slurm/) starts a single-node Slurm cluster: as root
# it runs (Slurm and munge are installed with --with-slurm); otherwise, or when the
# packages cannot be installed, it is skipped, and this script says so at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${PIPETRAIN_SKIP_DEPS:-0}" != "1" ]; then
  bash scripts/install_deps.sh
  if [ "$(id -u)" = 0 ]; then
    bash scripts/install_slurm.sh || echo "test.sh: Slurm could not be installed; the slurm test will be skipped"
  fi
fi
bash scripts/get_corpus.sh

BUILD_DIR=${BUILD_DIR:-build}
# ccache keys on paths relative to the checkout, so a fresh clone reuses earlier builds.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
JOBS=${JOBS:-$(nproc)}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1

cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD_DIR" -j "$JOBS"
cd "$BUILD_DIR"
rc=0
ctest --output-on-failure -j "$JOBS" ${CTEST_ARGS:-} || rc=$?
# The slurm test prints "slurm test skipped: <why>" when it cannot start a cluster.
skipped=$(grep -ho 'slurm test skipped: .*' Testing/Temporary/LastTest.log 2>/dev/null | head -1 || true)
if [ -n "$skipped" ]; then
  echo "test.sh: NOTE: the Slurm test did not run (${skipped#slurm test skipped: })"
elif grep -q 'slurm test passed' Testing/Temporary/LastTest.log 2>/dev/null; then
  echo "test.sh: the Slurm test ran and passed"
fi
exit "$rc"
