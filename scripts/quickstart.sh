#!/usr/bin/env bash
# From a fresh Debian/Ubuntu machine to a trained pipeline: installs dependencies,
# builds pipetrain, fetches the State of the Union corpus, writes byte-level token
# shards, trains configs/quickstart.yaml as a 4-stage 1F1B pipeline under mpirun on
# the CPU, and prints the loss curve. Extra arguments go to `pipetrain train`
# (e.g. --set training.steps=50).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${PIPETRAIN_SKIP_DEPS:-0}" != "1" ]; then bash scripts/install_deps.sh; fi
bash scripts/get_corpus.sh

BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" --target pipetrain -j "$(nproc)"

if ! compgen -G "data_cache/sotu_byte/train_*.bin" >/dev/null; then
  "$BUILD_DIR/pipetrain" prepare --tokenizer byte --input data_cache/corpus/*.txt --out data_cache/sotu_byte
fi

echo
echo "== the plan (no MPI needed): pipetrain plan --config configs/quickstart.yaml"
"$BUILD_DIR/pipetrain" plan --config configs/quickstart.yaml | sed -n '/== layer split/,$p' | head -40

echo
# --overwrite: running the quickstart again replaces runs/quickstart (pipetrain refuses to
# overwrite a run's record otherwise).
echo "== training: mpirun -np 4 $BUILD_DIR/pipetrain train --config configs/quickstart.yaml --overwrite $*"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun --oversubscribe -np 4 -x OPENBLAS_NUM_THREADS=1 \
  "$BUILD_DIR/pipetrain" train --config configs/quickstart.yaml --overwrite "$@"

echo
echo "== validation loss curve (runs/quickstart/metrics.jsonl)"
python3 - <<'PY'
import json
rows = [json.loads(l) for l in open("runs/quickstart/metrics.jsonl")]
evals = [r for r in rows if "val_loss" in r]
steps = [r for r in rows if "loss" in r]
print(f"{'step':>6} {'tokens':>10} {'time_s':>8} {'val_loss':>9}")
for r in evals:
    print(f"{r['step']:>6} {r['tokens']:>10} {r['time_s']:>8.1f} {r['val_loss']:>9.4f}")
if steps:
    print(f"train loss: first step {steps[0]['loss']:.4f}, last step {steps[-1]['loss']:.4f}")
if len(evals) >= 2:
    print(f"validation loss fell from {evals[0]['val_loss']:.4f} to {evals[-1]['val_loss']:.4f}")
print("run directory: runs/quickstart (config.yaml, metrics.jsonl, summary.json)")
PY
