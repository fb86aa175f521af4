#!/usr/bin/env bash
# Installs pipetrain's build and test dependencies from Debian/Ubuntu packages.
# Idempotent: does nothing (no apt-get update) when everything is present.
# Run as root (or with sudo available). CUDA is optional and never installed here:
# when /usr/local/cuda/bin/nvcc exists the build also compiles the CUDA code.
# --with-slurm: also Slurm and munge (scripts/install_slurm.sh), for the slurm-labelled test.
set -euo pipefail

if [ "${1:-}" = --with-slurm ]; then
  bash "$(dirname "$0")/install_slurm.sh"
  shift
fi
[ $# -eq 0 ] || { echo "usage: install_deps.sh [--with-slurm]" >&2; exit 2; }

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

if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all dependencies present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install_deps: done"
