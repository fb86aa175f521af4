// Byte tokenizer: token id = byte value, vocabulary of 256. Byte 0 (NUL, absent
// from text files) doubles as the end-of-text separator between documents.
#pragma once

#include "data/tokenizer/tokenizer.h"

namespace pt {

class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr int kVocabSize = 256;
  static constexpr int kEotToken = 0;

  std::vector<int> encode(const std::string& text) override;
  std::string decode(const std::vector<int>& ids) const override;
  int vocab_size() const override { return kVocabSize; }
  int eot_token() const override { return kEotToken; }
  std::string name() const override { return "byte"; }
};

}  // namespace pt
