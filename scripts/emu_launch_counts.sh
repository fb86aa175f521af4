#!/usr/bin/env bash
# Kernel launches and cuBLASLt calls per training step on the CUDA backend, counted by the
# host CUDA emulator (PIPETRAIN_EMU_COUNTS, tests/cuda_emu/README.md), split into per block
# per micro-batch and per micro-batch by running 2 and 4 blocks at 1 and 2 micro-batches
# (bf16, n_embd 64, pp = 1; each count is the difference of 6 and 3 steps over 3).
# Used for docs/results/gpu_passes.md, "Launches per step". About 45 s on 2 cores.
#   scripts/emu_launch_counts.sh [BUILD_DIR]   (default build; needs pipetrain_cuda_emu)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
bin=$build/tests/cuda_emu/pipetrain_cuda_emu
[ -x "$bin" ] || { echo "emu_launch_counts: no $bin (a build with CUDA and PIPETRAIN_CUDA_EMU=ON)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 "$root/tests/app/make_byte_corpus.py" "$work/corpus.txt" 64 >/dev/null
"$bin" prepare --tokenizer byte --input "$work/corpus.txt" --out "$work/data" >/dev/null
for L in 2 4; do
  for m in 1 2; do
    for s in 3 6; do
      echo "emu_launch_counts: $L blocks, $m micro-batches, $s steps" >&2
      PIPETRAIN_EMU_COUNTS="$work/c_${L}_${m}_$s.jsonl" OPENBLAS_NUM_THREADS=1 "$bin" train \
        --config "$root/configs/tiny_test.yaml" --set "data.train=$work/data/train_*.bin" \
        --set run.out_dir="$work/runs" --set run.name=r --overwrite --set runtime.backend=cuda \
        --set runtime.precision=bf16 --set model.n_embd=64 --set model.n_layer=$L \
        --set training.microbatches=$m --set training.steps=$s >"$work/log" 2>&1 ||
        { tail "$work/log"; exit 1; }
    done
  done
done
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
keys = ("launches", "library_calls")
def per_step(L, m):
    a, b = (json.loads(open(f"{work}/c_{L}_{m}_{s}.jsonl").readline()) for s in (3, 6))
    return {k: (b[k] - a[k]) / 3 for k in keys}
c = {(L, m): per_step(L, m) for L in (2, 4) for m in (1, 2)}
print("| per step of | kernel launches | cuBLASLt calls |\n|---|---|---|")
for (L, m), v in c.items():
    print(f"| {L} blocks, {m} micro-batch{'es' if m > 1 else ''} | {v['launches']:g} | {v['library_calls']:g} |")
block = {k: (c[4, 2][k] - c[2, 2][k] - c[4, 1][k] + c[2, 1][k]) / 2 for k in keys}
mb = {k: c[2, 2][k] - c[2, 1][k] - 2 * block[k] for k in keys}
print(f"| hence: each block, each micro-batch | {block['launches']:g} | {block['library_calls']:g} |")
print(f"| each micro-batch (embedding, classifier, loss) | {mb['launches']:g} | {mb['library_calls']:g} |")
PY
