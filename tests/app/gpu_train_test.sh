#!/usr/bin/env bash
# Training on the CUDA backend, end to end (label gpu; skips without a GPU):
#  1. 20 steps of configs/tiny_test.yaml with runtime.backend=cuda and =cpu (pp=1):
#     step 1 starts from identical parameters, so its loss and grad norm agree to
#     1e-4 relative (fp32 sum-order differences are ~1e-6; a wrong kernel or a
#     missing transfer is >1e-2). After that the parameters differ: AdamW
#     normalizes every update, so gradient entries that are pure rounding noise
#     (e.g. the attention k bias, zero in exact arithmetic) move by up to lr per
#     step either way, on entries that barely affect the loss; the loss curves
#     stay within 5e-3 relative over the 20 steps (the loss falls by ~12% over
#     them: frozen or one-update-stale device parameters are caught).
#  2. cuda twice: bitwise identical losses, grad norms and final parameters
#     (deterministic kernels, cuBLASLt plans fixed per shape and alignment).
#  3. cuda 1f1b at pp=4 (4 ranks on the GPUs of the node, round robin; tied
#     embeddings summed across ranks on the host) against cuda pp=1 and against
#     cpu pp=1 within the tolerance of 1 (layouts change operand alignments, hence
#     possibly GEMM algorithms, so pp=4 vs pp=1 is not claimed bitwise on the GPU).
#     Boundary buffers travel device -> pinned host -> MPI -> pinned host -> device.
#     Also two stages on one rank (interleaved_1f1b, chunks=2, transport local: one
#     stream per stage, each consumer waiting on its producer's event) against cpu.
#  4. resume == uninterrupted on the GPU, bitwise (losses, grad norms, data hashes,
#     parameters, version records): 10 steps straight vs 5 + resume + 5 for 1f1b
#     and paci at pp=4, as tests/app/resume_test.sh does on the CPU.
#  5. runtime.precision=bf16 with n_embd=64 (head size 32, so the CUDA backend runs
#     the bf16 GEMMs and the bf16 flash attention, model/cuda/cuda_backend.h): cuda
#     twice bitwise, and cuda vs cpu bf16 with step 1's loss and grad norm within
#     2e-3 and every step's loss within 5e-3 (the AdamW argument of 1, independent
#     of the noise's size). Measured on the CPU at this config, bf16 vs fp32 (every
#     rounding on one side): step 1 loss 1e-7, grad norm 5.4e-4, worst loss over the
#     20 steps 3.0e-4. cuda vs cpu in bf16 differ by fewer roundings than that (sum-
#     order flips in the GEMMs; the flash attention's P and dS roundings, 3 per
#     block), so 2e-3 is a ~4x margin, and a wrong kernel or path errs by >1e-2.
#     And resume == uninterrupted in bf16 (pp=1, 10 steps vs 5 + resume + 5, bitwise):
#     the persistent bf16 weight copy must follow the restored parameters.
# Usage: gpu_train_test.sh PIPETRAIN SOURCE_DIR [emu]
#   emu (ctest cuda_emu_train_test, label cuda_emu): PIPETRAIN is pipetrain_cuda_emu, the
#   binary over the host CUDA emulator (tests/cuda_emu/README.md), which runs every CUDA
#   thread as a fiber: the same checks on a smaller model (2 blocks, 2 microbatches), over
#   10 steps instead of 20 at twice the learning rate (the loss still falls by ~11%), with
#   pp=2 instead of 4 (2 ranks for 2 CPU cores); a cuda run that cannot start fails
#   instead of skipping.
set -euo pipefail
source "$2/tests/app/test_lib.sh"
init_test "$1" "$2"
emu=false
pp=4
steps=20
if [ "${3:-}" = emu ]; then
  emu=true
  pp=2
  steps=10
elif [ -n "${3:-}" ]; then
  fail "unknown mode '$3' (expected emu or nothing)"
fi
mpi_setup
make_corpus 128
common=(--set "data.train=$work/data/train_*.bin" --set run.out_dir="$runs" --set run.save_params=true
        --set runtime.transport=mpi)
if $emu; then
  common+=(--set model.n_layer=2 --set training.microbatches=2 --set optimizer.lr=2e-3)
  echo "emu mode: n_layer=2, microbatches=2, lr=2e-3, $steps steps, pp=$pp (GPU: 8, 8, 1e-3, 20, 4); runs may not skip"
  train cuda_a 1 --set training.steps="$steps" --set runtime.backend=cuda
else
  # Skip (ctest SKIP_REGULAR_EXPRESSION "no usable GPU: ") when the binary cannot use
  # a GPU here: no CUDA in the build, no driver, or no device.
  train_or_skip cuda_a 1 --set training.steps="$steps" --set runtime.backend=cuda
fi
grep -q "backend cuda" "$work/cuda_a.log" || { echo "FAIL cuda_a: did not run on the cuda backend"; cat "$work/cuda_a.log"; exit 1; }

close() {  # close REF NAME STEPS [TOL1 TOL]: step 1 (loss, grad norm) within TOL1 (1e-4), every
           # step's loss within TOL (5e-3), relative
  python3 - "$runs/$1/metrics.jsonl" "$runs/$2/metrics.jsonl" "$3" "$1" "$2" "${4:-1e-4}" "${5:-5e-3}" <<'PY'
import json, sys
def rows(p):
    return [r for r in map(json.loads, open(p)) if "loss" in r]
a, b, steps = rows(sys.argv[1]), rows(sys.argv[2]), int(sys.argv[3])
ref, name = sys.argv[4], sys.argv[5]
tol1, toln = float(sys.argv[6]), float(sys.argv[7])
assert len(a) >= steps and len(b) >= steps, f"FAIL {name}: fewer than {steps} steps"
worst = 0.0
for x, y in zip(a[:steps], b[:steps]):
    assert x["step"] == y["step"] and x["data_hash"] == y["data_hash"], f"FAIL {name}: step/data mismatch at {x['step']}"
    rel = abs(x["loss"] - y["loss"]) / abs(x["loss"])
    worst = max(worst, rel)
    tol = tol1 if x["step"] == 1 else toln
    assert rel <= tol, f"FAIL {name}: step {x['step']} loss {y['loss']!r} vs {ref} {x['loss']!r} (rel {rel:.3g} > {tol})"
    if x["step"] == 1:
        rn = abs(x["grad_norm"] - y["grad_norm"]) / abs(x["grad_norm"])
        assert rn <= tol1, f"FAIL {name}: step 1 grad norm {y['grad_norm']!r} vs {x['grad_norm']!r} (rel {rn:.3g})"
drop = (a[0]["loss"] - a[steps - 1]["loss"]) / a[0]["loss"]
assert drop > 0.05, f"FAIL: {ref} loss fell only {drop:.3g} over {steps} steps: the comparison would be vacuous"
print(f"ok   {name} ~ {ref} ({steps} steps: worst loss rel diff {worst:.3g}; loss fell {drop:.1%})")
PY
}

# --- 1 and 2: cuda vs cpu, cuda twice ---
train cuda_b 1 --set training.steps="$steps" --set runtime.backend=cuda
train cpu 1 --set training.steps="$steps" --set runtime.backend=cpu
same_run cuda_a cuda_b "$steps"
close cpu cuda_a "$steps"

# --- 3: pp=4 (emu: 2) on the GPU(s) against pp=1, and against the CPU ---
train "cuda_pp$pp" "$pp" --set training.steps="$steps" --set runtime.backend=cuda --set parallel.pp="$pp" --set schedule.kind=1f1b
close cuda_a "cuda_pp$pp" "$steps"
close cpu "cuda_pp$pp" "$steps"
train cuda_chunks2 1 --set training.steps="$steps" --set runtime.backend=cuda --set schedule.kind=interleaved_1f1b \
  --set schedule.chunks=2 --set runtime.transport=local
close cpu cuda_chunks2 "$steps"

# --- 4: resume == uninterrupted, bitwise, on the GPU ---
resume=(--set runtime.backend=cuda --set training.steps=10 --set checkpoint.every_steps=5 --set checkpoint.keep_last=0)
declare -A layout=(
  [1f1b]="--set parallel.pp=$pp --set schedule.kind=1f1b"
  # Asynchronous: the checkpoint at step 5 is a drain point (as in resume_test.sh).
  [paci]="--set parallel.pp=$pp --set schedule.kind=paci --set model.tie_embeddings=false"
)
for s in 1f1b paci; do
  # shellcheck disable=SC2086
  train "res_$s" "$pp" "${resume[@]}" ${layout[$s]}
  # shellcheck disable=SC2086
  resume_copy "res_$s" "res_${s}_resumed" "$pp" "${resume[@]}" ${layout[$s]}
  same_run "res_$s" "res_${s}_resumed" 10
done
# --- 5: bf16 on the bf16 kernels ---
bf16=(--set training.steps="$steps" --set runtime.precision=bf16 --set model.n_embd=64)
train cuda_bf16_a 1 "${bf16[@]}" --set runtime.backend=cuda
train cuda_bf16_b 1 "${bf16[@]}" --set runtime.backend=cuda
train cpu_bf16 1 "${bf16[@]}" --set runtime.backend=cpu
same_run cuda_bf16_a cuda_bf16_b "$steps"
close cpu_bf16 cuda_bf16_a "$steps" 2e-3 5e-3
train res_bf16 1 "${bf16[@]}" "${resume[@]}"
resume_copy res_bf16 res_bf16_resumed 1 "${bf16[@]}" "${resume[@]}"
same_run res_bf16 res_bf16_resumed 10
echo "all gpu training checks passed$($emu && echo " (on the cuda emulator)")"
