// llm.c's token shard format: a header of 256 little-endian int32 (magic 20240520,
// version 1, token count N, the rest zero) followed by N uint16 tokens. A valid shard
// is exactly 1024 + 2N bytes and, when read for a model, every token is < vocab_size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace pt {

constexpr int32_t kShardMagic = 20240520;
constexpr int32_t kShardVersion = 1;
constexpr int kShardHeaderInts = 256;
constexpr size_t kShardHeaderBytes = kShardHeaderInts * sizeof(int32_t);

// Writes tokens to path (replacing it). Fails with a Status if the file cannot be written.
Status write_token_shard(const std::string& path, const std::vector<uint16_t>& tokens);

// Reads a shard and checks magic, version, size and token range; every message
// names the file. vocab_size <= 0 skips the range check.
Status read_token_shard(const std::string& path, int vocab_size, std::vector<uint16_t>* out);

}  // namespace pt
