# shellcheck shell=bash
# Shared scaffolding of the shell tests in tests/app/ (bench, determinism, gpu_train,
# device_step, mps_pipeline, resume, schedule_equivalence, train_step_reference). Sourced,
# never executed:
#
#   set -euo pipefail                 # the script's own choice; nothing here changes shell options
#   source "$2/tests/app/test_lib.sh"
#   init_test "$1" "$2"               # PIPETRAIN SOURCE_DIR, as ctest passes them
#
# Globals. init_test sets:
#   bin    the pipetrain binary (argument 1)
#   src    the source tree (argument 2)
#   work   a fresh temporary directory, removed by an EXIT trap
#   runs   "$work/runs": use it as run.out_dir, the functions below read runs from it
#   cfg    "$src/configs/tiny_test.yaml"
# and exports OPENBLAS_NUM_THREADS=1. mpi_setup sets `mpirun` (a command line, used
# unquoted: "$mpirun -np N ..."). The script sets `common`, an array of arguments that
# every `train` run gets after --config "$cfg" (it may be empty: common=()).
# Every check below that fails prints a line starting "FAIL" and exits 1.
#
# Functions:
#   init_test BIN SRC         sets bin, src, work (+ EXIT trap), runs, cfg; exports
#                             OPENBLAS_NUM_THREADS=1.
#   mpi_setup [VAR...]        exports OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM)=1 and sets
#                             mpirun="mpirun --oversubscribe -x OPENBLAS_NUM_THREADS=1",
#                             plus "-x VAR" for each VAR (the caller exports VAR).
#   fail MESSAGE...           prints "FAIL: MESSAGE" and exits 1.
#   make_corpus KBYTES        a deterministic KBYTES KiB text ($work/corpus.txt, from
#                             tests/app/make_byte_corpus.py) prepared with the byte
#                             tokenizer into $work/data (train_*.bin, val_*.bin).
#   run_train NAME NP [ARGS...]
#                             `$bin train --config "$cfg" "${common[@]}" --set run.name=NAME
#                             ARGS...` with stdout and stderr in $work/NAME.log, under
#                             `$mpirun -np NP`, or without mpirun (one rank) when NP is
#                             `direct`. Returns the run's exit status (no check).
#   train NAME NP [ARGS...]   run_train that must succeed: otherwise prints
#                             "FAIL: run NAME failed" and the log, exits 1.
#   train_or_skip NAME NP [ARGS...]
#                             train for a runtime.backend=cuda run that skips the test
#                             instead when the binary says cuda cannot run here: prints
#                             "no usable GPU: <reason>" (ctest SKIP_REGULAR_EXPRESSION)
#                             and exits 0.
#   step_columns NAME         one line per optimizer step of $runs/NAME/metrics.jsonl:
#                             step, repr(loss), repr(grad_norm), data_hash.
#   all_columns NAME          one line per record of $runs/NAME/metrics.jsonl (steps and
#                             evals): step, repr of loss, grad_norm and val_loss (None
#                             where absent).
#   same_metrics REF NAME [COLUMNS]
#                             COLUMNS (default step_columns) of NAME equal those of REF
#                             as text (all digits, so bitwise); else prints
#                             "FAIL NAME: metrics differ from REF" and the diff.
#   same_params REF NAME      every $runs/REF/params/*.bin byte-equal to NAME's, more
#                             than 10 of them, and NAME has no others; sets
#                             params_checked to their count.
#   same_versions REF NAME    when REF has versions.jsonl (asynchronous schedules),
#                             NAME's is byte-equal.
#   same_run REF NAME STEPS   same_metrics (step_columns), exactly STEPS step lines,
#                             same_params and same_versions; prints an "ok" line.
#   resume_copy REF NAME NP [ARGS...]
#                             NAME starts from a copy of REF's step_5 checkpoint,
#                             metrics.jsonl and versions.jsonl (the lines after step 5
#                             must be dropped) and trains NP ranks with --resume auto
#                             ARGS...; its log must say it resumed from step_5 at step 5.
#   transport_pair TRANSPORT NAME NP [ARGS...]
#                             NAME over runtime.transport=TRANSPORT (its log must say
#                             "pipetrain: transport TRANSPORT (requested") and NAME_mpi
#                             over mpi, NP ranks each; same_run NAME_mpi NAME $steps.

init_test() {  # init_test BIN SRC
  bin=$1
  src=$2
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  runs="$work/runs"
  cfg="$src/configs/tiny_test.yaml"
  export OPENBLAS_NUM_THREADS=1
}

mpi_setup() {  # mpi_setup [VAR...]
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  mpirun="mpirun --oversubscribe -x OPENBLAS_NUM_THREADS=1"
  local v
  for v in "$@"; do mpirun+=" -x $v"; done
}

device_space_setup() {  # device_space_setup: mpirun passes PIPETRAIN_TEST_DEVICE_SPACE (off unless set per run); a 64 KiB corpus
  export PIPETRAIN_TEST_DEVICE_SPACE=0
  mpi_setup PIPETRAIN_TEST_DEVICE_SPACE
  make_corpus 64
}
saved_run_common() {  # saved_run_common STEPS EVAL_EVERY: common= that corpus (train and val), saved parameters, 2 eval batches
  common=(--set "data.train=$work/data/train_*.bin" --set "data.val=$work/data/val_*.bin" --set run.out_dir="$runs"
          --set run.save_params=true --set training.steps="$1" --set training.eval_every="$2" --set training.eval_batches=2)
}
fail() {
  echo "FAIL: $*"
  exit 1
}

make_corpus() {  # make_corpus KBYTES
  python3 "$src/tests/app/make_byte_corpus.py" "$work/corpus.txt" "$1" || fail "make_byte_corpus.py failed"
  "$bin" prepare --tokenizer byte --input "$work/corpus.txt" --out "$work/data" >/dev/null || fail "prepare failed"
}

run_train() {  # run_train NAME NP|direct [ARGS...]: returns the exit status
  local name=$1 np=$2
  shift 2
  local cmd=("$bin" train --config "$cfg" "${common[@]}" --set run.name="$name" "$@")
  if [ "$np" = direct ]; then
    "${cmd[@]}" >"$work/$name.log" 2>&1
  else
    $mpirun -np "$np" "${cmd[@]}" >"$work/$name.log" 2>&1
  fi
}

train() {  # train NAME NP|direct [ARGS...]: must succeed
  run_train "$@" || { echo "FAIL: run $1 failed"; cat "$work/$1.log"; exit 1; }
}

train_or_skip() {  # train_or_skip NAME NP|direct [ARGS...]: must succeed, or skip without a GPU
  local name=$1
  run_train "$@" && return 0
  if grep -q "key 'runtime.backend': cuda cannot run here" "$work/$name.log"; then
    local why
    why=$(sed -n "s/.*cuda cannot run here: \(.*\); use cpu or auto.*/\1/p" "$work/$name.log" | head -1)
    echo "no usable GPU: $why"
    exit 0
  fi
  echo "FAIL: run $name failed"; cat "$work/$name.log"; exit 1
}

step_columns() {  # step_columns NAME
  python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "loss" in r: print(r["step"], repr(r["loss"]), repr(r["grad_norm"]), r["data_hash"])
' "$runs/$1/metrics.jsonl"
}

all_columns() {  # all_columns NAME
  python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(r["step"], repr(r.get("loss")), repr(r.get("grad_norm")), repr(r.get("val_loss")))
' "$runs/$1/metrics.jsonl"
}

same_metrics() {  # same_metrics REF NAME [COLUMNS]
  local ref=$1 name=$2 columns=${3:-step_columns}
  if ! diff <("$columns" "$ref") <("$columns" "$name") >"$work/diff.txt"; then
    echo "FAIL $name: metrics differ from $ref"; cat "$work/diff.txt"; exit 1
  fi
}

same_params() {  # same_params REF NAME: sets params_checked
  local ref=$1 name=$2 n=0 f
  for f in "$runs/$ref/params/"*.bin; do
    cmp -s "$f" "$runs/$name/params/$(basename "$f")" || { echo "FAIL $name: $(basename "$f") differs from $ref"; exit 1; }
    n=$((n + 1))
  done
  [ "$n" -gt 10 ] || { echo "FAIL $name: only $n parameter files in $ref"; exit 1; }
  [ "$(ls "$runs/$name/params" | wc -l)" = "$n" ] || { echo "FAIL $name: parameter file count differs from $ref"; exit 1; }
  params_checked=$n
}

same_versions() {  # same_versions REF NAME
  if [ -f "$runs/$1/versions.jsonl" ]; then
    cmp -s "$runs/$1/versions.jsonl" "$runs/$2/versions.jsonl" || { echo "FAIL $2: version record differs from $1"; exit 1; }
  fi
}

same_run() {  # same_run REF NAME STEPS
  local ref=$1 name=$2 steps=$3
  same_metrics "$ref" "$name"
  [ "$(step_columns "$name" | wc -l)" = "$steps" ] || { echo "FAIL $name: expected $steps step lines"; step_columns "$name"; exit 1; }
  same_params "$ref" "$name"
  same_versions "$ref" "$name"
  echo "ok   $name == $ref ($steps steps: losses, grad norms, data and $params_checked parameter tensors bitwise)"
}

resume_copy() {  # resume_copy REF NAME NP|direct [ARGS...]
  local ref=$1 name=$2 np=$3
  shift 3
  mkdir -p "$runs/$name/checkpoints"
  cp -r "$runs/$ref/checkpoints/step_5" "$runs/$name/checkpoints/"
  cp "$runs/$ref/metrics.jsonl" "$runs/$name/metrics.jsonl"  # lines after step 5 must be dropped
  if [ -f "$runs/$ref/versions.jsonl" ]; then cp "$runs/$ref/versions.jsonl" "$runs/$name/"; fi  # likewise
  train "$name" "$np" --resume auto "$@"
  grep -q "resumed from .*step_5 at step 5" "$work/$name.log" || { echo "FAIL $name: no resume line"; cat "$work/$name.log"; exit 1; }
}

transport_pair() {  # transport_pair TRANSPORT NAME NP [ARGS...]
  local transport=$1 name=$2 np=$3
  shift 3
  train "$name" "$np" --set runtime.transport="$transport" "$@"
  grep -q "pipetrain: transport $transport (requested $transport" "$work/$name.log" ||
    { echo "FAIL $name: not over $transport"; cat "$work/$name.log"; exit 1; }
  train "${name}_mpi" "$np" --set runtime.transport=mpi "$@"
  same_run "${name}_mpi" "$name" "$steps"
}
