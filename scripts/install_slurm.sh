#!/usr/bin/env bash
# Installs Slurm and munge from Debian/Ubuntu packages: slurmctld, slurmd,
# slurm-client, munge and the PMIx library behind `srun --mpi=pmix` (the
# plugin, mpi_pmix.so, is in slurm-wlm-basic-plugins and dlopens libpmix.so,
# which is in libpmix-dev; libpmix2 holds the library itself).
# Used by tests/slurm/slurm_test.sh; also `scripts/install_deps.sh --with-slurm`.
#
# Idempotent: does nothing (no apt-get update) when everything is present.
# Run as root (or with sudo available). The packages' system services are NOT
# started: a policy-rc.d that denies service starts is in place during the
# installation unless the machine already has one. Nothing is configured:
# the test writes its own slurm.conf and munge key into a temporary directory.
# Exit status: 0 installed or present, 1 installation failed.
set -euo pipefail

packages=(slurmctld slurmd slurm-client munge libpmix2 libpmix-dev)

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_slurm: slurm and munge present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  # Exit 101 = "action forbidden": invoke-rc.d / deb-systemd-invoke start nothing.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT

echo "install_slurm: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install_slurm: done"
