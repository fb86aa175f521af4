# shellcheck shell=bash
# The preemption logic shared by the batch scripts in scripts/slurm/ (docs/slurm.md).
# Sourced by the batch shell, never executed. The batch script itself must set
#   trap 'pt_stop=usr1' USR1; trap 'pt_stop=${pt_stop:-term}' TERM
# as its FIRST command (before sourcing this file): Slurm may signal the batch shell
# at any moment after it starts, and an untrapped SIGUSR1 kills it (the job would
# end FAILED, not requeued).
#
# Two stop requests:
#   SIGUSR1 (--signal=B:USR1@T before the time limit, at preemption with
#           preempt_send_user_signal, scancel --signal=USR1 --batch): checkpoint, then
#           the job requeues itself and resumes.
#   SIGTERM (scancel, scontrol requeue, a time limit, a preemption without the user
#           signal; Slurm sends it to every process of the job): checkpoint and stop;
#           the job is NOT requeued by this script (whoever sent SIGTERM decides: Slurm
#           requeues after scontrol requeue or a REQUEUE preemption; a cancel stays
#           cancelled, though Slurm would accept a requeue from the batch script).
#
#   pt_start CONFIG [ARGS...] sets pt_repo (the repository this file is in), pt_bin (the
#                             pipetrain binary; exits 1 naming what it tried when there
#                             is none), pt_config and pt_args (the rest), and logs the start.
#   pt_run_preemptible CMD... runs CMD (the launcher: mpirun ... or srun ... with
#                             pipetrain train ... --resume auto) in the background and
#                             waits for it. A stop request is forwarded to the launcher as
#                             SIGUSR1 (both mpirun and srun pass SIGUSR1 on to every
#                             rank); the ranks finish the step, write a checkpoint and
#                             exit 0. After SIGUSR1 the job requeues itself (scontrol
#                             requeue), and the next start resumes from the newest
#                             complete checkpoint. Exits with the launcher's status.
#
# Why a SIGUSR1 never loses the job:
#  - before the launcher starts: nothing runs yet; the job requeues at once;
#  - while the job starts: forwarding waits until this node's ranks run and have their
#    SIGUSR1 handler (SigCgt in /proc/PID/status; a rank that gets SIGUSR1 before that
#    dies of it; the launcher forwards signals from before it starts the ranks), at most
#    PIPETRAIN_READY_WAIT_S seconds (default 20) after the launch (ranks on other nodes
#    are not visible from here: they start at about the same time, and the next point
#    covers them);
#  - the launcher fails after the request anyway (a rank died of the signal): every
#    checkpoint on disk is complete or ignored (a DONE marker is written last), so the
#    job requeues and resumes from the newest complete one, or starts over when there
#    is none.
# A request that arrives after the run finished (exit 0, nothing forwarded) does not
# requeue.
#
# Environment: PIPETRAIN (the binary; default: build/pipetrain of the repository,
# then `pipetrain` on PATH), PIPETRAIN_REPO (the repository, when the batch script
# was copied out of it), PIPETRAIN_READY_WAIT_S (above).

pt_start() {  # pt_start CONFIG [ARGS...]
  pt_config=${1:?usage: sbatch SCRIPT CONFIG [--set k=v ...]}
  shift
  # shellcheck disable=SC2034  # pt_args is read by the batch scripts
  pt_args=("$@")
  pt_repo=${PIPETRAIN_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
  pt_bin=${PIPETRAIN:-}
  if [ -z "$pt_bin" ]; then
    if [ -x "$pt_repo/build/pipetrain" ]; then
      pt_bin=$pt_repo/build/pipetrain
    else
      pt_bin=$(command -v pipetrain || true)
    fi
  fi
  if [ -z "$pt_bin" ] || [ ! -x "$pt_bin" ]; then
    echo "pipetrain: no binary: tried \$PIPETRAIN ('${PIPETRAIN:-}'), $pt_repo/build/pipetrain and pipetrain on PATH;" \
      "build it (cmake --build build) or set PIPETRAIN=/path/to/pipetrain" >&2
    exit 1
  fi
  echo "$(date -Is) job ${SLURM_JOB_ID:-} start ${SLURM_RESTART_COUNT:-0}: $pt_bin, ${SLURM_NTASKS:-?} rank(s) on" \
    "${SLURM_JOB_NUM_NODES:-?} node(s), config $pt_config"
}

pt_requeue() {  # pt_requeue WHY
  echo "$(date -Is) $1; requeueing job ${SLURM_JOB_ID:-?}"
  scontrol requeue "${SLURM_JOB_ID:?not in a Slurm job}" ||
    echo "$(date -Is) scontrol requeue failed (the job was cancelled or has ended)"
}

pt_catches_usr1() {  # pt_catches_usr1 PID: the process has a SIGUSR1 handler (SigCgt bit 9)
  local line
  while read -r line; do
    case $line in SigCgt:*) line=${line#SigCgt:}; (((16#${line//[[:space:]]/} >> 9) & 1)); return ;; esac
  done 2>/dev/null <"/proc/$1/status"
  return 1
}

pt_ready() {  # pt_ready: this node's ranks all run and catch SIGUSR1. The launchers set up
  # their forwarding before they start ranks (mpirun: a handler; srun: a signal thread).
  local want=${SLURM_TASKS_PER_NODE:-1} name p comm env n=0
  want=${want%%[(,]*}  # "4(x2)" or "4,2": the first node's (this batch node's) count
  name=$(basename "$pt_bin")
  name=${name:0:15}  # /proc/PID/comm holds at most 15 characters
  for p in /proc/[0-9]*; do
    read -r comm 2>/dev/null <"$p/comm" || continue
    [ "$comm" = "$name" ] || continue
    env=$(tr '\0' '\n' 2>/dev/null <"$p/environ") || continue
    [[ $'\n'$env$'\n' == *$'\n'"SLURM_JOB_ID=${SLURM_JOB_ID:-}"$'\n'* ]] || continue  # a rank of this job
    pt_catches_usr1 "${p#/proc/}" || return 1
    n=$((n + 1))
  done
  [ "$n" -ge "$want" ]
}

pt_forward_stop() {  # pt_forward_stop LAUNCHER_PID LAUNCHED_AT: 0 when forwarded
  local wait_s=${PIPETRAIN_READY_WAIT_S:-20}
  until pt_ready || [ $((SECONDS - $2)) -ge "$wait_s" ]; do
    kill -0 "$1" 2>/dev/null || return 1
    sleep 0.2
  done
  echo "$(date -Is) stop requested: asking pipetrain to checkpoint and stop"
  kill -USR1 "$1" 2>/dev/null
}

pt_run_preemptible() {  # pt_run_preemptible CMD...
  case ${pt_stop:-} in
    usr1) pt_requeue "stop requested before training started"; exit 0 ;;
    term) echo "$(date -Is) SIGTERM before training started; not starting"; exit 0 ;;
  esac
  local launched=$SECONDS forwarded=0 pid rc
  "$@" &
  pid=$!
  # `wait` returns early (status > 128) whenever a trapped signal arrives.
  while kill -0 "$pid" 2>/dev/null; do
    if [ -n "${pt_stop:-}" ] && [ "$forwarded" = 0 ]; then
      pt_forward_stop "$pid" "$launched" && forwarded=1
    fi
    wait "$pid"
  done
  wait "$pid"
  rc=$?
  if [ "${pt_stop:-}" = usr1 ] && [ "$forwarded" = 1 ] && [ "$rc" = 0 ]; then
    pt_requeue "checkpoint written"
  elif [ "${pt_stop:-}" = usr1 ] && [ "$rc" != 0 ]; then
    pt_requeue "launcher exited with $rc after a stop request; resuming from the newest complete checkpoint"
    rc=0
  fi
  exit "$rc"
}
