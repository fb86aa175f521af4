#!/usr/bin/env bash
# Bucketed data-parallel all-reduce (pipeline/grad_buckets.h, runtime.dp_bucket_mb):
# with dp = 2 every gradient element is one IEEE addition a + b whatever the bucket, so a
# run with small buckets started during the backward equals the run with one bucket per
# stage started at ALLREDUCE_GRAD bit for bit (metrics and final parameters). Cases:
# dp=2 (pp=1), and pp=2 x dp=2 with 1f1b and zb_h1 (split backward: buckets start in Bw).
# Each bucketed run must report several buckets per stage and some started during the
# backward (otherwise the comparison would check nothing new). The dp2pp2_device case runs
# the CPU backend as emulated device memory whose data-parallel sums take it, as NCCL's do
# (PIPETRAIN_TEST_DEVICE_SPACE=nccl, tests/app/device_step_test.sh): the buckets then start
# from the gradient-ready hook's event path and must still start during the backward.
# Usage: dp_buckets_test.sh PIPETRAIN SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
device_space_setup
saved_run_common 3 3
common+=(--set training.microbatches=4 --set parallel.dp=2)

bucketed() {  # bucketed NAME: every stage logged > 1 bucket, and > 0 started during the backward
  local lines
  lines=$(grep "dp all-reduce of stage" "$work/$1.log" || true)
  [ -n "$lines" ] || fail "$1: no bucket plan logged"
  echo "$lines" | awk '{ for (i = 1; i <= NF; ++i) { if ($i ~ /^bucket/) n = $(i-1); if ($i == "started") e = $(i-1) }
                         if (n + 0 < 2 || e + 0 < 1) bad = 1 } END { exit bad }' ||
    { echo "$lines"; fail "$1: expected several buckets per stage, some started during the backward"; }
  echo "$lines" | sed "s/^/     $1: /"
}

case_pair() {  # case_pair NAME NP [args...]: one bucket vs small buckets
  local name=$1 np=$2
  shift 2
  train "${name}_one" "$np" --set runtime.dp_bucket_mb=0 "$@"
  train "${name}_small" "$np" --set runtime.dp_bucket_mb=0.02 "$@"
  bucketed "${name}_small"
  same_metrics "${name}_one" "${name}_small" all_columns
  same_params "${name}_one" "${name}_small"
  echo "ok   ${name}: small buckets == one bucket ($params_checked parameter tensors, bitwise)"
}

case_pair dp2 2 --set parallel.pp=1
case_pair dp2pp2_1f1b 4 --set parallel.pp=2 --set schedule.kind=1f1b
case_pair dp2pp2_zb_h1 4 --set parallel.pp=2 --set schedule.kind=zb_h1
PIPETRAIN_TEST_DEVICE_SPACE=nccl case_pair dp2pp2_device 4 --set parallel.pp=2 --set schedule.kind=1f1b
