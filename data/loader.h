// DataLoader: serves (B, T) training batches from llm.c token shards as a pure
// function of (seed, step, microbatch, dp_rank) and the shape (B, T, m, dp), so a
// resumed, re-ordered or re-partitioned run reads exactly the same data.
//
// Layout: the train shards (glob, sorted) are concatenated into one token stream and
// cut into sequences of T+1 tokens at stride T (inputs = seq[0..T), targets =
// seq[1..T]). Micro-batch (step, microbatch, dp_rank) is global micro-batch
//   g = step*(m*dp) + dp_rank*m + microbatch,
// i.e. dp ranks take disjoint consecutive slices of a step, and a dp=2 run reads the
// same micro-batches as a dp=1 run with 2m micro-batches per step. Its rows are
// sequence slots g*B .. g*B+B-1; slot s is sequence perm_e(s mod S) of epoch
// e = s / S (S sequences), where perm_e is a Philox-keyed permutation of (seed, e)
// when shuffling and the identity otherwise. Validation batches walk the val split's
// sequences in order, B at a time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace pt {

struct DataLoaderOptions {
  std::string train_pattern;  // glob of train shards, e.g. "data_cache/shards/train_*.bin"
  std::string val_pattern;    // glob of val shards; empty = no validation data
  int batch_size = 0;         // B: rows per micro-batch
  int seq_len = 0;            // T
  int microbatches = 1;       // m: micro-batches per step per dp rank
  int dp_size = 1;            // dp
  uint64_t seed = 0;
  bool shuffle = true;
  int vocab_size = 0;         // tokens must be below this (<= 0: unchecked)
};

class DataLoader {
 public:
  // Reads every shard matching the patterns. Errors name the pattern or file.
  Status open(const DataLoaderOptions& options);

  // Fills inputs and targets, each B*T int32 row-major, for one micro-batch.
  void batch(int64_t step, int microbatch, int dp_rank, int32_t* inputs, int32_t* targets) const;

  // Index of the train sequence at row b of a micro-batch (what batch() copies).
  int64_t sequence_index(int64_t step, int microbatch, int dp_rank, int b) const;

  // Validation batch `index` in [0, num_eval_batches()): sequences index*B .. index*B+B-1.
  void eval_batch(int index, int32_t* inputs, int32_t* targets) const;
  int num_eval_batches() const { return int(val_sequences_ / options_.batch_size); }

  int64_t num_train_sequences() const { return train_sequences_; }
  int64_t num_train_tokens() const { return int64_t(train_.size()); }
  int64_t num_val_tokens() const { return int64_t(val_.size()); }
  const std::vector<std::string>& train_files() const { return train_files_; }
  const std::vector<std::string>& val_files() const { return val_files_; }
  const DataLoaderOptions& options() const { return options_; }

 private:
  void copy_sequence(const std::vector<uint16_t>& tokens, int64_t sequence, int32_t* inputs, int32_t* targets) const;

  DataLoaderOptions options_;
  std::vector<std::string> train_files_, val_files_;
  std::vector<uint16_t> train_, val_;
  int64_t train_sequences_ = 0, val_sequences_ = 0;
};

// Files matching a shell glob, sorted; an empty match is an error naming the pattern.
Status expand_glob(const std::string& pattern, std::vector<std::string>* files);

// A bijection of [0, n) keyed by (seed, epoch): a balanced Feistel network over the
// next even power of two, with Philox round functions, cycle-walked into range.
uint64_t shuffle_index(uint64_t i, uint64_t n, uint64_t seed, uint64_t epoch);

// 64-bit FNV-1a over the tokens (each as 4 little-endian bytes) of inputs then
// targets, `count` tokens each: a cheap fingerprint of a batch for logs.
uint64_t batch_hash(const int32_t* inputs, const int32_t* targets, int64_t count);

}  // namespace pt
