#!/usr/bin/env bash
# Sanitizer runs of the CPU build (gcc; the CUDA backend is left out):
#   1. ASan + UBSan (UB aborts): builds everything in $SAN_DIR/asan and runs the
#      cpu-labelled tests, then the mpi-labelled ones (SANITIZE_MPI=0 skips them).
#   2. TSan: builds the threaded local-transport tests (executor_local_test and any
#      transport_local* test) in $SAN_DIR/tsan and runs them.
# Prints how long each part took; exits non-zero on any sanitizer report or failure.
#   scripts/sanitize.sh            SAN_DIR (default build-sanitize), JOBS (default nproc),
#                                  CTEST_ARGS (extra ctest arguments, e.g. "-R config_test")
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
san="${SAN_DIR:-$root/build-sanitize}"
jobs="${JOBS:-$(nproc)}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p "$san"
t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - $1 )) s"; }

configure() {  # configure DIR FLAGS
  cmake -S "$root" -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPIPETRAIN_CUDA=OFF \
    -DCMAKE_CXX_FLAGS_RELEASE="-O1 -g1 -fno-omit-frame-pointer $2" \
    -DCMAKE_EXE_LINKER_FLAGS="$2" >"$1.configure.log" 2>&1 || { cat "$1.configure.log" >&2; exit 1; }
}

# Leaks inside the MPI, OpenBLAS and hwloc libraries at exit are theirs, not ours. They
# are matched by library name, which needs full stacks: fast_unwind_on_malloc=0
# (the frame-pointer unwinder stops inside libmpi and misnames the module).
cat >"$san/lsan.supp" <<'SUPP'
leak:libmpi
leak:libopen-pal
leak:libopen-rte
leak:libhwloc
leak:libevent
leak:libopenblas
leak:libpmix
SUPP
export ASAN_OPTIONS="detect_leaks=1:fast_unwind_on_malloc=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$san/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"

status=0
# ---- 1. ASan + UBSan ----
t=$(date +%s)
configure "$san/asan" "-fsanitize=address,undefined -fno-sanitize-recover=undefined"
cmake --build "$san/asan" -j "$jobs"
echo "sanitize: ASan+UBSan build took $(elapsed "$t")"
t=$(date +%s)
(cd "$san/asan" && ctest --output-on-failure -j "$jobs" -L cpu -LE fuzz ${CTEST_ARGS:-}) || status=1
echo "sanitize: ASan+UBSan cpu tests took $(elapsed "$t")"
if [ "${SANITIZE_MPI:-1}" = "1" ]; then
  t=$(date +%s)
  (cd "$san/asan" && ctest --output-on-failure -j "$jobs" -L mpi ${CTEST_ARGS:-}) || status=1
  echo "sanitize: ASan+UBSan mpi tests took $(elapsed "$t")"
fi

# ---- 2. TSan on the threaded local transport ----
t=$(date +%s)
configure "$san/tsan" "-fsanitize=thread"
tsan_targets=$(cmake --build "$san/tsan" --target help | sed -n 's/^\(executor_local_test\|transport_local[A-Za-z0-9_]*\):.*/\1/p' | sort -u)
cmake --build "$san/tsan" -j "$jobs" --target $tsan_targets
echo "sanitize: TSan build ($(echo $tsan_targets)) took $(elapsed "$t")"
t=$(date +%s)
(cd "$san/tsan" && ctest --output-on-failure -R "^(executor_local_test|transport_local.*)$" ${CTEST_ARGS:-}) || status=1
echo "sanitize: TSan tests took $(elapsed "$t")"

echo "sanitize: total $(elapsed "$t0"); $([ $status -eq 0 ] && echo PASSED || echo FAILED)"
exit $status
