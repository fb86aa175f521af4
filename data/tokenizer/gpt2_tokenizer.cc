// GPT-2 byte-level BPE; see gpt2_tokenizer.h. Symbols are held as vocabulary ids
// rather than strings: every intermediate BPE symbol is a merge result, and every
// merge result is in the vocabulary (checked at load), so ids are exact.
#include "data/tokenizer/gpt2_tokenizer.h"

#include <fstream>
#include <sstream>

#include "common/check.h"
#include "data/tokenizer/json_vocab.h"
#include "data/tokenizer/pretokenize.h"

namespace pt {
namespace {

constexpr const char* kGetHint = "run scripts/get_corpus.sh to download the GPT-2 tokenizer files";
constexpr size_t kMaxCacheEntries = 1 << 20;  // bounds memory on huge corpora

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the other 68 bytes to
// U+0100 onwards in byte order, so every byte has a visible, non-space character.
std::array<uint32_t, 256> byte_to_code_point() {
  std::array<uint32_t, 256> map{};
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    map[b] = printable ? uint32_t(b) : next++;
  }
  return map;
}

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s.push_back(char(cp));
  } else {  // the byte characters are all below U+0800
    s.push_back(char(0xC0 | (cp >> 6)));
    s.push_back(char(0x80 | (cp & 0x3F)));
  }
  return s;
}

Status read_file(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error(path + ": cannot open the file; " + kGetHint);
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return Status::ok();
}

}  // namespace

Status Gpt2Tokenizer::load(const std::string& encoder_json_path, const std::string& vocab_bpe_path) {
  std::string json_text, bpe_text;
  PT_RETURN_IF_ERROR(read_file(encoder_json_path, &json_text));
  PT_RETURN_IF_ERROR(read_file(vocab_bpe_path, &bpe_text));

  std::unordered_map<std::string, int> encoder;
  std::string error;
  if (!parse_string_int_object(json_text, &encoder, &error))
    return Status::error(encoder_json_path + ": not a valid encoder.json (" + error + "); " + kGetHint);
  if (encoder.size() != size_t(kVocabSize))
    return Status::error(encoder_json_path + ": expected " + std::to_string(kVocabSize) + " entries, found " +
                         std::to_string(encoder.size()) + "; " + kGetHint);
  id_bytes_.assign(kVocabSize, std::string());
  std::vector<bool> seen(kVocabSize, false);
  for (const auto& [token, id] : encoder) {
    if (id < 0 || id >= kVocabSize || seen[id])
      return Status::error(encoder_json_path + ": id " + std::to_string(id) + " is out of range or repeated; " + kGetHint);
    seen[id] = true;
  }
  auto eot = encoder.find("<|endoftext|>");
  if (eot == encoder.end() || eot->second != kEotToken)
    return Status::error(encoder_json_path + ": <|endoftext|> must have id " + std::to_string(kEotToken) + "; " + kGetHint);

  // Each vocabulary string is a sequence of byte characters; invert the map to get bytes.
  std::array<uint32_t, 256> b2u = byte_to_code_point();
  std::unordered_map<std::string, unsigned char> char_to_byte;
  for (int b = 0; b < 256; ++b) char_to_byte[utf8(b2u[b])] = static_cast<unsigned char>(b);
  for (const auto& [token, id] : encoder) {
    if (id == kEotToken) {
      id_bytes_[id] = token;  // decodes to its literal text, like the reference
      continue;
    }
    std::string bytes;
    for (size_t i = 0; i < token.size();) {
      size_t len = (static_cast<unsigned char>(token[i]) < 0x80) ? 1 : 2;
      auto it = char_to_byte.find(token.substr(i, len));
      if (it == char_to_byte.end())
        return Status::error(encoder_json_path + ": token \"" + token + "\" has a character outside GPT-2's byte alphabet; " + kGetHint);
      bytes.push_back(char(it->second));
      i += len;
    }
    id_bytes_[id] = std::move(bytes);
  }
  for (int b = 0; b < 256; ++b) {
    auto it = encoder.find(utf8(b2u[b]));
    if (it == encoder.end())
      return Status::error(encoder_json_path + ": no token for byte " + std::to_string(b) + "; " + kGetHint);
    byte_id_[b] = it->second;
  }

  // vocab.bpe: a "#version" line, then one "left right" merge per line, best first.
  // Like the reference (lines[1:-1]) the first line and the text after the last
  // newline are not merges.
  if (bpe_text.rfind("#version", 0) != 0)
    return Status::error(vocab_bpe_path + ": does not start with '#version'; not a GPT-2 vocab.bpe; " + kGetHint);
  std::vector<std::pair<std::string, std::string>> pairs;
  size_t line_start = bpe_text.find('\n');
  int line_no = 1;
  while (line_start != std::string::npos) {
    size_t next = bpe_text.find('\n', line_start + 1);
    if (next == std::string::npos) break;
    ++line_no;
    std::istringstream line(bpe_text.substr(line_start + 1, next - line_start - 1));
    std::string left, right, extra;
    if (!(line >> left >> right) || (line >> extra))
      return Status::error(vocab_bpe_path + ":" + std::to_string(line_no) + ": expected two symbols per merge line; " + kGetHint);
    pairs.emplace_back(std::move(left), std::move(right));
    line_start = next;
  }
  merges_.clear();
  for (size_t rank = 0; rank < pairs.size(); ++rank) {
    const auto& [left, right] = pairs[rank];
    auto l = encoder.find(left), r = encoder.find(right), m = encoder.find(left + right);
    if (l == encoder.end() || r == encoder.end() || m == encoder.end())
      return Status::error(vocab_bpe_path + ":" + std::to_string(rank + 2) + ": merge \"" + left + " " + right +
                           "\" uses or makes a token missing from encoder.json; the two files do not belong together; " + kGetHint);
    merges_[pair_key(l->second, r->second)] = Merge{int(rank), m->second};
  }
  // The reference looks ranks up by the joined string "left,right", which aliases
  // about ten punctuation pairs to other merges' ranks; every such merge yields the same
  // token either way, and an exhaustive comparison over punctuation strings up to six
  // characters found no output difference, so plain pair lookup is kept.
  cache_.clear();
  loaded_ = true;
  return Status::ok();
}

const std::vector<int>& Gpt2Tokenizer::bpe(std::string_view piece) {
  PT_CHECK_MSG(loaded_, "Gpt2Tokenizer used before load()");
  std::string key(piece);
  auto cached = cache_.find(key);
  if (cached != cache_.end()) return cached->second;
  if (cache_.size() >= kMaxCacheEntries) cache_.clear();

  std::vector<int> word(piece.size());
  for (size_t i = 0; i < piece.size(); ++i) word[i] = byte_id_[static_cast<unsigned char>(piece[i])];
  std::vector<int> merged;
  while (word.size() >= 2) {
    // The lowest-ranked adjacent pair is merged everywhere it occurs, left to right.
    int best_rank = -1, first = 0, second = 0, result = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      auto it = merges_.find(pair_key(word[i], word[i + 1]));
      if (it == merges_.end()) continue;
      if (best_rank < 0 || it->second.rank < best_rank) {
        best_rank = it->second.rank;
        first = word[i], second = word[i + 1], result = it->second.merged_id;
      }
    }
    if (best_rank < 0) break;
    merged.clear();
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(result);
        i += 2;
      } else {
        merged.push_back(word[i]);
        i += 1;
      }
    }
    word.swap(merged);
  }
  return cache_.emplace(std::move(key), std::move(word)).first->second;
}

std::vector<int> Gpt2Tokenizer::encode(const std::string& text) {
  std::vector<int> ids;
  ids.reserve(text.size() / 4 + 1);
  for (std::string_view piece : gpt2_pretokenize(text)) {
    const std::vector<int>& part = bpe(piece);
    ids.insert(ids.end(), part.begin(), part.end());
  }
  return ids;
}

std::string Gpt2Tokenizer::decode(const std::vector<int>& ids) const {
  PT_CHECK_MSG(loaded_, "Gpt2Tokenizer used before load()");
  std::string text;
  for (int id : ids) {
    PT_CHECK_MSG(id >= 0 && id < kVocabSize, "GPT-2 token id out of range: " + std::to_string(id));
    text += id_bytes_[id];
  }
  return text;
}

}  // namespace pt
