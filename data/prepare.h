// `pipetrain prepare`: turns text files into llm.c token shards. Each input file is
// one document, preceded by the tokenizer's end-of-text token (llm.c's convention:
// 50256 for gpt2; 0 = NUL for byte, which text files do not contain). The documents'
// tokens are concatenated in input order; the last val_fraction of them go to
// val_000000.bin and the rest to train_000000.bin, train_000001.bin, ... of at most
// shard_tokens each. Shards from an earlier run in out_dir that this run did not
// write are removed, so the loader's glob sees exactly this run's data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace pt {

struct PrepareOptions {
  std::string tokenizer = "gpt2";                        // "gpt2" or "byte"
  std::vector<std::string> inputs;                       // text files, one document each
  std::string out_dir;                                   // created if missing
  std::string tokenizer_dir = "data_cache/tokenizer";    // encoder.json + vocab.bpe (gpt2)
  double val_fraction = 0.05;                            // in [0, 1)
  int64_t shard_tokens = 100'000'000;                    // max tokens per train shard
  bool progress = true;                                  // log progress for long inputs
};

// On success *summary (if given) describes what was written, one line.
Status prepare_shards(const PrepareOptions& options, std::string* summary);

}  // namespace pt
