#!/usr/bin/env bash
# `pipetrain plan`'s memory estimate (the stage models' own layout, stage_memory):
# a schedule without split backward (1f1b) reports fewer activation bytes per
# in-flight micro-batch than zero-bubble's split backward (zb_h1) on every stage,
# and its "with split backward" figure is exactly what zb_h1 reports; a (B,T,V)
# logits tensor no longer scales the last stage's slot with the vocabulary; in bf16 a cuda
# slot stores its bf16 tensors in 2 bytes, and its workspace keeps no fp32 fc scratch; with
# runtime.keep_logits (bf16) the last stage's slot holds its (N, V) logits instead of the
# workspace holding an (R, V) fp32 chunk.
# Usage: plan_memory_test.sh PIPETRAIN SOURCE_DIR
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"

plan() {  # NAME ARGS...: the plan's output in $work/NAME.log
  local name=$1
  shift
  "$bin" plan --config "$cfg" --set parallel.pp=2 --set run.out_dir="$runs" "$@" >"$work/$name.log" 2>&1 ||
    { cat "$work/$name.log"; fail "plan $name failed"; }
}
# Field of stage S's memory line: per-slot MiB ("x <n> activations") or the split figure.
slot_mib() { sed -n "s/^  stage $2: .* x \([0-9.]*\) activations.*/\1/p" "$work/$1.log"; }
split_mib() { sed -n "s/^  stage $2: .*; \([0-9.]*\) with split backward.*/\1/p" "$work/$1.log"; }
workspace_mib() { sed -n "s/^  stage $2: .* + workspace \([0-9.]*\) = .*/\1/p" "$work/$1.log"; }

plan 1f1b --set schedule.kind=1f1b --set "parallel.layer_split=[4,4]"
plan zb_h1 --set schedule.kind=zb_h1 --set "parallel.layer_split=[4,4]"
plan big_vocab --set schedule.kind=1f1b --set model.vocab_size=4096 --set "parallel.layer_split=[4,4]"
grep -q "no split backward" "$work/1f1b.log" || fail "1f1b should need no split backward"
grep -q "(split backward" "$work/zb_h1.log" || fail "zb_h1 should need split backward"
for s in 0 1; do
  a=$(slot_mib 1f1b $s) z=$(slot_mib zb_h1 $s) as=$(split_mib 1f1b $s)
  [ -n "$a" ] && [ -n "$z" ] || { cat "$work/1f1b.log" "$work/zb_h1.log"; fail "no memory line for stage $s"; }
  awk -v a="$a" -v z="$z" 'BEGIN { exit !(a < z) }' || fail "stage $s: 1f1b $a MiB per slot is not below zb_h1 $z MiB"
  [ "$as" = "$z" ] || fail "stage $s: 1f1b's split figure $as MiB differs from zb_h1's $z MiB"
  echo "ok: stage $s: $a MiB per in-flight micro-batch without split backward, $z MiB with"
done
[ "$(slot_mib big_vocab 1)" = "$(slot_mib 1f1b 1)" ] || fail "the last stage's slot grows with the vocabulary"
echo "ok: the last stage's slot does not depend on the vocabulary size"
# runtime.precision bf16: CUDA stores the bf16 activations in 2 bytes (BackendSizes::bf16_bytes),
# so a cuda slot takes between 50% and 60% of the fp32 one (the fp32 LayerNorm statistics,
# attention state and losses stay 4 bytes); the CPU keeps fp32 containers, same bytes as fp32.
for backend in cuda cpu; do
  plan "fp32_$backend" --set schedule.kind=1f1b --set "parallel.layer_split=[4,4]" --set runtime.backend=$backend
  plan "bf16_$backend" --set schedule.kind=1f1b --set "parallel.layer_split=[4,4]" --set runtime.backend=$backend \
    --set runtime.precision=bf16 --set runtime.keep_logits=false
  plan "keep_$backend" --set schedule.kind=1f1b --set "parallel.layer_split=[4,4]" --set runtime.backend=$backend \
    --set runtime.precision=bf16
done
for s in 0 1; do
  f=$(slot_mib fp32_cuda $s) b=$(slot_mib bf16_cuda $s)
  awk -v f="$f" -v b="$b" 'BEGIN { exit !(b >= 0.5 * f && b < 0.6 * f) }' ||
    fail "stage $s: bf16 slot $b MiB on cuda is not 50-60% of fp32's $f MiB"
  echo "ok: stage $s: $b MiB per bf16 slot on cuda, $f MiB in fp32"
  [ "$(slot_mib bf16_cpu $s)" = "$(slot_mib fp32_cpu $s)" ] || fail "stage $s: cpu bf16 slot differs from fp32's"
done
# The cuda bf16 workspace: the (N, C) scratch and the shared gradients (12 NC, + dlnf on the
# last stage) in 2 bytes, and no fp32 (N, 4C) fc scratch (fc + GELU fused,
# BackendSizes::fuses_fc_gelu): 6.5 NC below fp32's on stage 0, 7 NC on the last (2.5 and 3 NC
# with that scratch). tiny_test.yaml: NC = 2·16·32·4 B; the plan prints 3 decimals.
nc=$(awk 'BEGIN { print 2 * 16 * 32 * 4 / 1048576 }')
for s in 0 1; do
  f=$(workspace_mib fp32_cuda $s) b=$(workspace_mib bf16_cuda $s) k=$(awk -v s=$s 'BEGIN { print (13 + s) / 2 }')
  awk -v f="$f" -v b="$b" -v nc="$nc" -v k="$k" 'BEGIN { d = f - b - k * nc; exit !(d < 0.0015 && d > -0.0015) }' ||
    fail "stage $s: cuda workspace bf16 $b MiB, fp32 $f MiB: not $k NC ($nc MiB each) apart"
  echo "ok: stage $s: cuda bf16 workspace $b MiB = fp32's $f MiB - $k NC (no fp32 fc scratch)"
done
# runtime.keep_logits (the default): the last stage's slot grows by N·V bf16 elements (2 bytes
# on cuda, 4 in the cpu's fp32 containers) and its workspace loses the (R, V) fp32 chunk
# (tiny_test.yaml: N = 2·16 rows, R = N, V = 256); stage 0 does not change.
nv=$(awk 'BEGIN { print 2 * 16 * 256 / 1048576 }')
close() { awk -v d="$1" 'BEGIN { exit !(d < 0.0015 && d > -0.0015) }'; }
for backend in cuda cpu; do
  bytes=2
  [ $backend = cpu ] && bytes=4
  [ "$(slot_mib keep_$backend 0)" = "$(slot_mib bf16_$backend 0)" ] || fail "$backend stage 0: keep_logits changed its slot"
  k=$(slot_mib keep_$backend 1) r=$(slot_mib bf16_$backend 1)
  close "$(awk -v k="$k" -v r="$r" -v nv="$nv" -v b=$bytes 'BEGIN { print k - r - b * nv }')" ||
    fail "$backend stage 1: kept-logits slot $k MiB is not the recomputing slot $r MiB + N·V·$bytes bytes"
  k=$(workspace_mib keep_$backend 1) r=$(workspace_mib bf16_$backend 1)
  close "$(awk -v k="$k" -v r="$r" -v nv="$nv" 'BEGIN { print r - k - 4 * nv }')" ||
    fail "$backend stage 1: kept-logits workspace $k MiB is not the recomputing one $r MiB - the (R, V) fp32 chunk"
  echo "ok: $backend stage 1 keeps its logits: slot $(slot_mib keep_$backend 1) MiB, workspace $k MiB (recomputing: $(slot_mib bf16_$backend 1), $r)"
done
