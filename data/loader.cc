// DataLoader implementation; see loader.h for the batch-to-data mapping it keeps.
#include "data/loader.h"

#include <glob.h>

#include <algorithm>

#include "common/check.h"
#include "common/rng.h"
#include "data/token_shard.h"

namespace pt {
namespace {

// Philox stream for shuffling, apart from the streams used for weights and noise.
constexpr uint64_t kShuffleStream = 0x5348554646000000ull;  // "SHUFF"
constexpr int kFeistelRounds = 6;

Status load_shards(const std::string& pattern, int vocab_size, std::vector<std::string>* files,
                   std::vector<uint16_t>* tokens) {
  PT_RETURN_IF_ERROR(expand_glob(pattern, files));
  tokens->clear();
  std::vector<uint16_t> shard;
  for (const std::string& file : *files) {
    PT_RETURN_IF_ERROR(read_token_shard(file, vocab_size, &shard));
    tokens->insert(tokens->end(), shard.begin(), shard.end());
  }
  return Status::ok();
}

}  // namespace

Status expand_glob(const std::string& pattern, std::vector<std::string>* files) {
  files->clear();
  if (pattern.empty()) return Status::error("empty shard pattern; give a glob such as 'DIR/train_*.bin'");
  glob_t g{};
  int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  if (rc == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) files->push_back(g.gl_pathv[i]);
  }
  globfree(&g);
  if (rc == GLOB_NOMATCH || files->empty())
    return Status::error("no files match '" + pattern +
                         "'; check the path, or create shards with 'pipetrain prepare --tokenizer gpt2|byte --input FILES --out DIR'");
  if (rc != 0) return Status::error("cannot expand '" + pattern + "' (read error while listing the directory)");
  std::sort(files->begin(), files->end());  // independent of the locale glob sorted with
  return Status::ok();
}

uint64_t shuffle_index(uint64_t i, uint64_t n, uint64_t seed, uint64_t epoch) {
  PT_CHECK(i < n);
  if (n <= 1) return i;
  int bits = 2;
  while (bits < 64 && (uint64_t(1) << bits) < n) ++bits;
  if (bits % 2) ++bits;
  const int half = bits / 2;
  const uint64_t mask = (uint64_t(1) << half) - 1;
  // The domain is < 4n, so cycle walking takes under 4 passes on average; it ends
  // because the Feistel network is a permutation of [0, 2^bits) and i < n.
  uint64_t x = i;
  do {
    uint64_t left = x >> half, right = x & mask;
    for (int r = 0; r < kFeistelRounds; ++r) {
      uint32_t out[4];
      Philox4x32::generate(seed, kShuffleStream + epoch, (uint64_t(r) << 32) | right, out);
      uint64_t f = ((uint64_t(out[1]) << 32) | out[0]) & mask;
      uint64_t next_right = left ^ f;
      left = right;
      right = next_right;
    }
    x = (left << half) | right;
  } while (x >= n);
  return x;
}

uint64_t batch_hash(const int32_t* inputs, const int32_t* targets, int64_t count) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](const int32_t* tokens, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      uint32_t v = static_cast<uint32_t>(tokens[i]);
      for (int k = 0; k < 4; ++k) {
        h ^= (v >> (8 * k)) & 0xFF;
        h *= 0x100000001b3ull;
      }
    }
  };
  mix(inputs, count);
  mix(targets, count);
  return h;
}

Status DataLoader::open(const DataLoaderOptions& options) {
  if (options.batch_size <= 0 || options.seq_len <= 0 || options.microbatches <= 0 || options.dp_size <= 0)
    return Status::error("data loader: batch_size, seq_len, microbatches and dp_size must be positive (got B=" +
                         std::to_string(options.batch_size) + " T=" + std::to_string(options.seq_len) +
                         " m=" + std::to_string(options.microbatches) + " dp=" + std::to_string(options.dp_size) + ")");
  options_ = options;
  PT_RETURN_IF_ERROR(load_shards(options.train_pattern, options.vocab_size, &train_files_, &train_));
  train_sequences_ = train_.size() > 0 ? int64_t(train_.size() - 1) / options.seq_len : 0;
  if (train_sequences_ == 0)
    return Status::error("'" + options.train_pattern + "': the train shards hold " + std::to_string(train_.size()) +
                         " tokens, fewer than one sequence of seq_len+1 = " + std::to_string(options.seq_len + 1) +
                         "; use more text or a shorter seq_len");
  val_files_.clear();
  val_.clear();
  val_sequences_ = 0;
  if (!options.val_pattern.empty()) {
    PT_RETURN_IF_ERROR(load_shards(options.val_pattern, options.vocab_size, &val_files_, &val_));
    val_sequences_ = val_.size() > 0 ? int64_t(val_.size() - 1) / options.seq_len : 0;
    if (val_sequences_ < options.batch_size)
      return Status::error("'" + options.val_pattern + "': the validation shards hold " + std::to_string(val_.size()) +
                           " tokens, fewer than one batch of " + std::to_string(options.batch_size) + " sequences of " +
                           std::to_string(options.seq_len + 1) + " tokens; raise the val fraction in prepare or lower B/T");
  }
  return Status::ok();
}

int64_t DataLoader::sequence_index(int64_t step, int microbatch, int dp_rank, int b) const {
  PT_CHECK(train_sequences_ > 0);
  PT_CHECK(step >= 0);
  PT_CHECK(microbatch >= 0 && microbatch < options_.microbatches);
  PT_CHECK(dp_rank >= 0 && dp_rank < options_.dp_size);
  PT_CHECK(b >= 0 && b < options_.batch_size);
  const int64_t m = options_.microbatches, dp = options_.dp_size;
  const int64_t g = step * (m * dp) + dp_rank * m + microbatch;
  const uint64_t slot = uint64_t(g) * uint64_t(options_.batch_size) + uint64_t(b);
  const uint64_t n = uint64_t(train_sequences_);
  const uint64_t epoch = slot / n, within = slot % n;
  return int64_t(options_.shuffle ? shuffle_index(within, n, options_.seed, epoch) : within);
}

void DataLoader::copy_sequence(const std::vector<uint16_t>& tokens, int64_t sequence, int32_t* inputs,
                               int32_t* targets) const {
  const int64_t T = options_.seq_len;
  const uint16_t* src = tokens.data() + sequence * T;
  for (int64_t t = 0; t < T; ++t) {
    inputs[t] = src[t];
    targets[t] = src[t + 1];
  }
}

void DataLoader::batch(int64_t step, int microbatch, int dp_rank, int32_t* inputs, int32_t* targets) const {
  const int64_t T = options_.seq_len;
  for (int b = 0; b < options_.batch_size; ++b)
    copy_sequence(train_, sequence_index(step, microbatch, dp_rank, b), inputs + b * T, targets + b * T);
}

void DataLoader::eval_batch(int index, int32_t* inputs, int32_t* targets) const {
  PT_CHECK_MSG(index >= 0 && index < num_eval_batches(),
               "eval batch " + std::to_string(index) + " outside [0, " + std::to_string(num_eval_batches()) + ")");
  const int64_t T = options_.seq_len;
  for (int b = 0; b < options_.batch_size; ++b)
    copy_sequence(val_, int64_t(index) * options_.batch_size + b, inputs + b * T, targets + b * T);
}

}  // namespace pt
