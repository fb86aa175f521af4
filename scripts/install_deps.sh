#!/usr/bin/env bash
# Installs pipetrain's build and test dependencies from Debian/Ubuntu packages.
# Idempotent: does nothing (no apt-get update) when everything is present.
# Run as root (or with sudo available). CUDA is optional and never installed here:
# when /usr/local/cuda/bin/nvcc exists the build also compiles the CUDA code.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache git pkg-config
  openmpi-bin libopenmpi-dev
  libyaml-cpp-dev libcli11-dev
  libopenblas-dev liblapacke-dev
  libgtest-dev
  python3 python3-numpy python3-matplotlib python3-torch
)

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# node + npm: the reference GPT-2 tokenizer (npm gpt-3-encoder) and the corpus package.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# clang with its compiler-rt (libFuzzer, ASan/UBSan/TSan runtimes) for tests/fuzz and
# scripts/fuzz.sh: libclang-rt-N-dev of the distribution's default clang-N (Debian 12:
# clang-14, libclang-rt-14-dev). gcc's sanitizer runtimes (scripts/sanitize.sh) come
# with build-essential.
fuzzer_runtime_present() {
  command -v clang++ >/dev/null 2>&1 &&
    [ -e "$(clang++ -print-resource-dir 2>/dev/null)/lib/linux/libclang_rt.fuzzer-$(uname -m).a" ]
}
need_clang_rt=0
fuzzer_runtime_present || need_clang_rt=1
dpkg -s clang >/dev/null 2>&1 || missing+=(clang)

if [ ${#missing[@]} -eq 0 ] && [ "$need_clang_rt" -eq 0 ]; then
  echo "install_deps: all dependencies present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
if [ "$need_clang_rt" -eq 1 ]; then
  clang_major="$(apt-cache depends clang 2>/dev/null | sed -n 's/.*Depends: clang-\([0-9][0-9]*\)$/\1/p' | head -n 1)"
  if [ -z "$clang_major" ]; then
    echo "install_deps: cannot tell which clang-N the 'clang' package installs; install clang and libclang-rt-N-dev by hand" >&2
    exit 1
  fi
  missing+=("libclang-rt-${clang_major}-dev")
fi
echo "install_deps: installing ${missing[*]}"
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
if ! fuzzer_runtime_present; then
  echo "install_deps: clang++ still has no libFuzzer runtime (libclang_rt.fuzzer); check the clang installation" >&2
  exit 1
fi
echo "install_deps: done"
