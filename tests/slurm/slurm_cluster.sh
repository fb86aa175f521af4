# shellcheck shell=bash
# A throw-away single-node Slurm cluster on this machine, for tests/slurm/slurm_test.sh.
# Sourced, never executed. Needs root and the Debian packages of
# scripts/install_slurm.sh (slurmctld, slurmd, slurm-client, munge, libpmix).
#
#   cluster_start DIR     writes DIR/etc/slurm.conf and a munge key, starts munged,
#                         slurmctld and slurmd (foreground mode, in the background; their
#                         pids in DIR/run/*.pid), exports SLURM_CONF and waits (bounded)
#                         until the node is idle. Returns 1 with a message on failure
#                         (the daemon logs are in DIR/log/).
#   cluster_sweep_stale   kills what an earlier run of the test left behind when it was
#                         killed before its EXIT trap ran: processes whose environment
#                         names a test cluster owner (PIPETRAIN_TEST_CLUSTER_OWNER) that
#                         is no longer alive.
#   cluster_stop          cancels the jobs, stops the daemons by their process ids, then
#                         kills every process left whose environment names this cluster's
#                         SLURM_CONF (batch shells, slurmstepd, ranks). Idempotent; meant
#                         for an EXIT trap.
#   wait_for SECONDS CMD... polls CMD every 0.1 s until it succeeds; 1 on timeout.
#   job_field JOBID FIELD   FIELD (JobState, Restarts, ExitCode, ...) of `scontrol show job`.
#
# The cluster: the node is this machine's short hostname at 127.0.0.1 with 2 CPUs
# (SlurmdParameters=config_overrides: the count is taken as configured), ports chosen
# free on the loopback (never 6817/6818), MpiDefault=pmix, proctrack/linuxproc (no
# cgroups needed), no accounting. Short timeouts so that tests do not wait:
#   AuthInfo cred_expire=5  a requeued job may start again cred_expire+1 s after its
#                           requeue (Slurm's default is 120 s: the "two minutes" a
#                           requeued job waits on a default cluster); 5 is the minimum.
#   sched_interval=1        the main scheduling loop runs every second (default 60 s),
#                           so a requeued job starts as soon as its begin time passes.
#   KillWait=5              SIGTERM -> SIGKILL grace at the end of a job (the tiny
#                           model checkpoints in milliseconds).
#   MinJobAge=600           finished jobs stay visible to scontrol for the whole test.
# Every daemon lives in DIR: sockets, state, spool, logs, pid files. Another cluster
# (a system one on the default ports, or a second copy of this test) is not touched.

cluster_dir=""
cluster_pids=()

wait_for() {  # wait_for SECONDS CMD...
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

job_field() {  # job_field JOBID FIELD
  scontrol -o show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1
}

free_ports() {  # two free TCP ports on 127.0.0.1 (bound once to port 0 by the kernel)
  python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))'
}

write_slurm_conf() {  # write_slurm_conf HOST CTLD_PORT SLURMD_PORT
  local d=$cluster_dir
  cat >"$d/etc/slurm.conf" <<EOF
# Written by tests/slurm/slurm_cluster.sh: a single-node test cluster in $d.
ClusterName=pttest
SlurmctldHost=$1(127.0.0.1)
SlurmctldPort=$2
SlurmdPort=$3
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$d/run/munge.socket,cred_expire=5
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/run/slurmctld.pid
SlurmdPidFile=$d/run/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
MessageTimeout=10
InactiveLimit=0
KillWait=5
MinJobAge=600
UnkillableStepTimeout=30
TmpFS=$d/tmp
NodeName=$1 NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=test Nodes=$1 Default=YES MaxTime=INFINITE State=UP
EOF
}

start_daemon() {  # start_daemon NAME CMD...: in the background, pid recorded
  local name=$1
  shift
  "$@" >"$cluster_dir/log/$name.out" 2>&1 &
  cluster_pids+=($!)
  echo $! >"$cluster_dir/run/$name.daemon-pid"
}

node_idle() {
  sinfo -h -N -o %t 2>/dev/null | grep -qx idle
}

cluster_start() {  # cluster_start DIR
  cluster_dir=$1
  local d=$1 host ports
  mkdir -p "$d"/{etc,run,state,spool,log,tmp}
  chmod 755 "$d" "$d/run"  # munged wants its socket directory searchable by all
  host=$(hostname -s)
  ports=$(free_ports) || { echo "cluster: no free ports"; return 1; }
  # shellcheck disable=SC2086
  write_slurm_conf "$host" $ports
  export SLURM_CONF="$d/etc/slurm.conf"
  export PIPETRAIN_TEST_CLUSTER_OWNER=$$  # inherited by the daemons and every job: cluster_sweep_stale
  dd if=/dev/urandom of="$d/etc/munge.key" bs=1024 count=1 status=none
  chmod 400 "$d/etc/munge.key"
  start_daemon munged munged -F --force --socket="$d/run/munge.socket" --key-file="$d/etc/munge.key" \
    --pid-file="$d/run/munged.pid" --log-file="$d/log/munged.log" --seed-file="$d/run/munged.seed"
  wait_for 20 test -S "$d/run/munge.socket" || { echo "cluster: munged did not start"; cat "$d/log/munged"*; return 1; }
  start_daemon slurmctld slurmctld -D -i -f "$SLURM_CONF"
  wait_for 30 scontrol ping || { echo "cluster: slurmctld did not answer"; tail -n 20 "$d/log/slurmctld"*; return 1; }
  start_daemon slurmd slurmd -D -N "$host" -f "$SLURM_CONF"
  wait_for 60 node_idle || { echo "cluster: node not idle"; sinfo -N; tail -n 20 "$d/log/slurmd"*; return 1; }
}

env_has() {  # env_has PID LINE: the process's environment holds LINE exactly
  local env
  env=$(tr '\0' '\n' 2>/dev/null <"/proc/$1/environ") || return 1
  [[ $'\n'$env$'\n' == *$'\n'"$2"$'\n'* ]]
}

cluster_sweep_stale() {
  local p pid owner
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    owner=$(tr '\0' '\n' 2>/dev/null <"$p/environ" | sed -n 's/^PIPETRAIN_TEST_CLUSTER_OWNER=//p' || true)
    [ -n "$owner" ] && [ "$owner" != $$ ] || continue
    if ! kill -0 "$owner" 2>/dev/null; then
      echo "cluster: killing $pid ($(cat "$p/comm" 2>/dev/null)) left by test cluster owner $owner"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

cluster_stop() {
  [ -n "$cluster_dir" ] || return 0
  local d=$cluster_dir pid p
  if [ -n "${SLURM_CONF:-}" ] && [ ${#cluster_pids[@]} -gt 0 ]; then
    timeout 10 scancel --full --quiet --user=root >/dev/null 2>&1 || true
  fi
  for pid in "${cluster_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${cluster_pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  # What the daemons leave: slurmstepd and the job's processes; each has this cluster's
  # SLURM_CONF in its environment (slurmd and sbatch pass it on).
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" != $$ ] || continue
    if env_has "$pid" "SLURM_CONF=$d/etc/slurm.conf"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  cluster_pids=()
  cluster_dir=""
}
