#!/usr/bin/env bash
# `pipetrain plan --time-budget T` against training (docs/metrics.md, "Equal simulated-time
# budgets"): for pipedream (m = 1) and 1f1b (m = 2) at pp=4 on configs/tiny_test.yaml, the plan's
# U updates, trained as one run of training.steps = U, end at summary.json's sim_time = the
# plan's length <= T, and U + 1 updates end at its next_length > T. Also: every registered kind
# has a row in the table.
# Usage: time_budget_cli_test.sh PIPETRAIN SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
mpi_setup
make_corpus 64
common=(--set "data.train=$work/data/train_*.bin" --set run.out_dir="$runs" --set parallel.pp=4
        --set model.tie_embeddings=false)
T=61.5

field() {  # field NAME KEY: KEY=value of the plan's "time budget fit:" line
  sed -n "s/^time budget fit: .*\b$2=\([^ ]*\).*/\1/p" "$work/$1.plan"
}
summary_sim_time() {  # summary_sim_time NAME
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["sim_time"])' "$runs/$1/summary.json"
}

for kind_m in pipedream:1 1f1b:2; do
  kind=${kind_m%:*} m=${kind_m#*:}
  args=(--set schedule.kind="$kind" --set training.microbatches="$m")
  "$bin" plan --config "$cfg" "${common[@]}" "${args[@]}" --time-budget $T --trace "$work/$kind.json" \
    >"$work/$kind.plan" || { cat "$work/$kind.plan"; fail "plan --time-budget failed for $kind"; }
  u=$(field "$kind" updates)
  [ -n "$u" ] && [ "$u" -gt 1 ] || { cat "$work/$kind.plan"; fail "$kind: no time budget fit line"; }
  [ "$(field "$kind" microbatches)" = $((u * m)) ] || fail "$kind: microbatches != updates x m"
  train "$kind" 4 "${args[@]}" --set training.steps="$u"
  train "$kind.more" 4 "${args[@]}" --set training.steps=$((u + 1))
  python3 - "$(summary_sim_time "$kind")" "$(summary_sim_time "$kind.more")" "$(field "$kind" length)" \
    "$(field "$kind" next_length)" $T "$kind" "$u" <<'PY' || fail "$kind: the trained sim_time does not match the plan"
import sys
fits, more, length, next_length, T = map(float, sys.argv[1:6])
assert fits == length <= T < next_length == more, (fits, length, T, next_length, more)
print(f"ok   {sys.argv[6]}: {sys.argv[7]} updates end at sim_time {fits:g} <= {T:g}; one more ends at {more:g}")
PY
done
n_rows=$(grep -c '^| [a-z0-9_]* | ' "$work/pipedream.plan")
n_kinds=$({ "$bin" plan --config "$cfg" "${common[@]}" --set schedule.kind=zigzag 2>&1 || true; } |
  sed -n "s/.*is not one of: //p" | tr ',' '\n' | grep -c .)
[ "$n_rows" = "$n_kinds" ] || { cat "$work/pipedream.plan"; fail "the table has $n_rows kinds, the registry $n_kinds"; }
echo "ok   the table has a row for each of the $n_kinds registered kinds"
echo "PASS time_budget_cli_test"
