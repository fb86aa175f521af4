// Byte tokenizer: a bijection between bytes and ids 0..255.
#include "data/tokenizer/byte_tokenizer.h"

#include "common/check.h"

namespace pt {

std::vector<int> ByteTokenizer::encode(const std::string& text) {
  std::vector<int> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int>& ids) const {
  std::string text(ids.size(), '\0');
  for (size_t i = 0; i < ids.size(); ++i) {
    PT_CHECK_MSG(ids[i] >= 0 && ids[i] < kVocabSize, "byte token id out of range: " + std::to_string(ids[i]));
    text[i] = static_cast<char>(ids[i]);
  }
  return text;
}

}  // namespace pt
