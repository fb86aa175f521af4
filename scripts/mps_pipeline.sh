#!/usr/bin/env bash
# A real N-stage pipeline on ONE GPU: N ranks share the GPU through CUDA MPS, each
# limited to P % of its SMs, and exchange activations over the mpi transport (host
# staging) or the ipc transport (CUDA IPC device-to-device copies); NCCL cannot put two
# ranks of one communicator on one GPU. See docs/transports.md.
#
# Usage: scripts/mps_pipeline.sh -np N [--sm-percent P] [--gpu I] [--binary PATH] [--command C] [--transport T] -- ARGS...
#   -np N          ranks (mpirun -np N); set parallel.pp (x parallel.dp) = N in ARGS
#   --sm-percent P CUDA_MPS_ACTIVE_THREAD_PERCENTAGE of every rank (default 100 / N)
#   --gpu I        the GPU to use when CUDA_VISIBLE_DEVICES is not set (default 0)
#   --binary PATH  pipetrain binary (default $PIPETRAIN_BINARY, else build/pipetrain)
#   --command C    pipetrain subcommand run on the N ranks: train (default) or bench
#   --transport T  runtime.transport of the ranks: mpi (default) or ipc
#   ARGS           arguments of `pipetrain C`, e.g. --config configs/quickstart.yaml
#                  --set runtime.backend=cuda; --set runtime.transport=T is appended.
# Example:
#   scripts/mps_pipeline.sh -np 4 -- --config configs/quickstart.yaml --set runtime.backend=cuda
#
# Starts a private MPS control daemon (pipe and log directories in a temporary
# directory, so it neither needs nor disturbs a system-wide one), runs
# `mpirun --oversubscribe -np N pipetrain C ARGS --set runtime.transport=T`,
# stops the daemon on every exit path and exits with that command's status.
# The tools it needs can be overridden for tests: NVIDIA_SMI, MPS_CONTROL, MPIRUN.
set -uo pipefail

prog=$(basename "$0")
usage() {
  sed -n '7,15p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
die() {
  echo "$prog: $*" >&2
  exit 2
}

np=""
sm=""
gpu=0
sub=train
transport=mpi
here=$(cd "$(dirname "$0")" && pwd)
bin=${PIPETRAIN_BINARY:-$here/../build/pipetrain}
while [ $# -gt 0 ]; do
  case $1 in
    -np | --np) [ $# -ge 2 ] || usage; np=$2; shift 2 ;;
    --sm-percent) [ $# -ge 2 ] || usage; sm=$2; shift 2 ;;
    --gpu) [ $# -ge 2 ] || usage; gpu=$2; shift 2 ;;
    --binary) [ $# -ge 2 ] || usage; bin=$2; shift 2 ;;
    --command) [ $# -ge 2 ] || usage; sub=$2; shift 2 ;;
    --transport) [ $# -ge 2 ] || usage; transport=$2; shift 2 ;;
    --) shift; break ;;
    -h | --help) usage ;;
    *) echo "$prog: unknown argument '$1' (pipetrain arguments go after --)" >&2; usage ;;
  esac
done
[[ $np =~ ^[1-9][0-9]*$ ]] || die "-np N is required, a positive integer (got '${np}')"
case $sub in train | bench) ;; *) die "--command must be train or bench (got '$sub')" ;; esac
case $transport in mpi | ipc) ;; *) die "--transport must be mpi or ipc (got '$transport')" ;; esac
[ $# -gt 0 ] || die "no pipetrain $sub arguments after --; e.g. -- --config configs/quickstart.yaml"
if [ -z "$sm" ]; then
  sm=$((100 / np))
  [ "$sm" -ge 1 ] || sm=1
fi
[[ $sm =~ ^[1-9][0-9]*$ ]] && [ "$sm" -le 100 ] || die "--sm-percent must be an integer in 1..100 (got '$sm')"
[[ $gpu =~ ^[0-9]+$ ]] || die "--gpu must be a device index (got '$gpu')"

nvidia_smi=${NVIDIA_SMI:-nvidia-smi}
mps_control=${MPS_CONTROL:-nvidia-cuda-mps-control}
mpirun=${MPIRUN:-mpirun}
command -v "$nvidia_smi" >/dev/null 2>&1 ||
  die "$nvidia_smi not found: CUDA MPS needs an NVIDIA GPU with its driver (nvidia-smi); on a machine without one, run the pipeline on the CPU backend with plain mpirun"
command -v "$mps_control" >/dev/null 2>&1 ||
  die "$mps_control not found: install the NVIDIA driver utilities that provide the CUDA MPS control daemon"
command -v "$mpirun" >/dev/null 2>&1 || die "$mpirun not found: install Open MPI (scripts/install_deps.sh)"
[ -x "$bin" ] || die "pipetrain binary '$bin' not found or not executable; build it (cmake ... -DPIPETRAIN_CUDA=ON) or pass --binary"
gpus=$("$nvidia_smi" -L 2>&1) || die "'$nvidia_smi -L' failed, so no GPU can be used: $gpus"
[ -n "$gpus" ] || die "'$nvidia_smi -L' lists no GPU"

export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-$gpu}
work=$(mktemp -d "${TMPDIR:-/tmp}/pipetrain-mps.XXXXXX") || die "mktemp failed"
export CUDA_MPS_PIPE_DIRECTORY=$work/pipe CUDA_MPS_LOG_DIRECTORY=$work/log
export CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=$sm
mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"

mps_started=0
stop_mps() {
  if [ "$mps_started" = 1 ]; then
    echo quit | "$mps_control" >/dev/null 2>&1 || echo "$prog: warning: stopping the MPS daemon failed (logs: $CUDA_MPS_LOG_DIRECTORY)" >&2
    # The daemon removes its pipe when it has exited; give it a few seconds.
    for _ in $(seq 50); do
      [ -e "$CUDA_MPS_PIPE_DIRECTORY/control" ] || break
      sleep 0.1
    done
    mps_started=0
  fi
  rm -rf "$work"
}
trap stop_mps EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$mps_control" -d || die "could not start the MPS control daemon (logs: $CUDA_MPS_LOG_DIRECTORY)"
mps_started=1
echo "$prog: MPS on GPU $CUDA_VISIBLE_DEVICES, $np ranks x $sm % of the SMs each" >&2

if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
"$mpirun" --oversubscribe -np "$np" \
  -x CUDA_VISIBLE_DEVICES -x CUDA_MPS_PIPE_DIRECTORY -x CUDA_MPS_LOG_DIRECTORY -x CUDA_MPS_ACTIVE_THREAD_PERCENTAGE \
  -x OPENBLAS_NUM_THREADS \
  "$bin" "$sub" "$@" --set runtime.transport="$transport"
rc=$?
[ "$rc" = 0 ] || echo "$prog: pipetrain $sub exited with status $rc" >&2
exit "$rc"
