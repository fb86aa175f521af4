#!/usr/bin/env bash
# Installs dependencies, fetches the small corpus and tokenizer files the tests
# compare against, builds everything (ccache, Ninja) and runs ctest.
# Environment: BUILD_DIR (default build), JOBS (default nproc), CTEST_ARGS (extra
# ctest arguments, e.g. "-L cpu"), PIPETRAIN_SKIP_DEPS=1 to skip apt.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${PIPETRAIN_SKIP_DEPS:-0}" != "1" ]; then
  bash scripts/install_deps.sh
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
ctest --output-on-failure -j "$JOBS" ${CTEST_ARGS:-}
