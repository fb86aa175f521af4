#!/usr/bin/env bash
# scripts/gpu_targets.py on this build (label cpu): what scripts/gpu_check.sh builds in a GPU
# window must hold every executable that a gpu-labelled test runs, and nothing else but
# pipetrain.
#  1. it lists exactly pipetrain and the build-dir executables on the "Test command:" lines
#     of `ctest -L gpu -N -V` (read here from ctest's text output, not the JSON the script
#     reads), so a gpu test's executable is never missing and no cpu-only test is built;
#  2. pipetrain is listed, config_test (a cpu test) is not;
#  3. ninja accepts the list as targets (a dry run);
#  4. a freshly configured build folder, nothing built (gpu_check.sh's case), gives the same list;
#  5. a folder that is not a configured build: exit 2 naming it.
# Usage: gpu_targets_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1
build=$(cd "$2" && pwd -P)
fail() { echo "FAIL: $*"; exit 1; }
list=$(python3 "$src/scripts/gpu_targets.py" "$build") || fail "gpu_targets.py failed"
echo "$list"

# 1 and 2. exactly pipetrain and the gpu tests' executables
expected=$( { echo pipetrain
  cd "$build" && ctest -L gpu -N -V | sed -n 's/^.*Test command: //p' | tr -d '"' | tr ' ' '\n' |
    while read -r w; do
      w=$(realpath -m "$w")
      case "$w" in "$build"/*) [ -f "$w" ] && [ -x "$w" ] && echo "${w#"$build"/}" ;; esac
    done; } | sort -u)
echo "expected from ctest -L gpu -N -V: $(echo $expected)"
[ "$list" = "$expected" ] || { diff <(echo "$expected") <(echo "$list") || true; fail "gpu_targets.py lists other targets (diff above)"; }
printf '%s\n' "$list" | grep -qx pipetrain || fail "pipetrain is not listed"
printf '%s\n' "$list" | grep -q "tests/app/config_test" && fail "a cpu-only test is listed"

# 3. ninja builds them (dry run)
# shellcheck disable=SC2086
ninja -C "$build" -n $list >/dev/null || fail "ninja rejects the targets"

# 4. the same list from a fresh build folder (configured, nothing built: the first call of
#    a GPU window), where ctest's JSON has no command for an executable not built yet
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
cmake -S "$src" -B "$fresh" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPIPETRAIN_CUDA_EMU=OFF >"$fresh.log" 2>&1 ||
  { cat "$fresh.log"; fail "configuring a fresh build folder"; }
rm -f "$fresh.log"
fresh_list=$(python3 "$src/scripts/gpu_targets.py" "$fresh") || fail "gpu_targets.py failed on a fresh folder"
[ "$fresh_list" = "$list" ] || { diff <(echo "$list") <(echo "$fresh_list") || true; fail "a fresh build folder lists other targets (diff above)"; }

# 5. not a build
rc=0; python3 "$src/scripts/gpu_targets.py" "$src/docs" 2>"$build/gpu_targets_test.err" >/dev/null || rc=$?
[ "$rc" -eq 2 ] && grep -q "is not a configured Ninja build" "$build/gpu_targets_test.err" ||
  fail "a folder that is not a build: exit $rc"
echo "gpu_targets_test: all passed"
