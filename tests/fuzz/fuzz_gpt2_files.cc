// libFuzzer targets: the GPT-2 tokenizer file loaders (data/tokenizer: encoder.json
// through json_vocab, vocab.bpe, make_tokenizer("gpt2", dir)). Built twice:
//   fuzz_gpt2_encoder (PT_FUZZ_VOCAB_BPE=0): the input is encoder.json, next to a bare
//     vocab.bpe header; parse_string_int_object also reads it directly.
//   fuzz_gpt2_merges (PT_FUZZ_VOCAB_BPE=1): the input is vocab.bpe, next to a valid
//     synthetic encoder.json (the 256 byte tokens, then two-byte tokens, then
//     <|endoftext|> = 50256), so merges that load are reached.
// Properties: no crash or sanitizer report; a failure names a file; a parsed object
// has only non-negative values; a loaded tokenizer gives ids in [0, 50257) and
// decode(encode(x)) == x on the input bytes.
#include <array>
#include <filesystem>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "data/tokenizer/gpt2_tokenizer.h"
#include "data/tokenizer/json_vocab.h"
#include "data/tokenizer/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

// GPT-2's printable character for each byte (bytes_to_unicode), as UTF-8.
std::string byte_char(int b) {
  static const auto table = [] {
    std::array<uint32_t, 256> cp{};
    uint32_t next = 256;
    for (int i = 0; i < 256; ++i) {
      bool printable = (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF);
      cp[i] = printable ? uint32_t(i) : next++;
    }
    return cp;
  }();
  uint32_t c = table[b];
  if (c < 0x80) return std::string(1, char(c));
  return {char(0xC0 | (c >> 6)), char(0x80 | (c & 0x3F))};
}

std::string json_key(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "\"";
}

// A directory holding the synthetic encoder.json; written once per process.
const std::string& synthetic_dir() {
  static const std::string dir = [] {
    std::filesystem::create_directories(pt::fuzz::scratch_dir() + "/synthetic");
    std::string json = "{";
    int id = 0;
    for (int b = 0; b < 256; ++b) json += json_key(byte_char(b)) + ": " + std::to_string(id++) + ",\n";
    for (int a = 0; a < 256 && id < pt::Gpt2Tokenizer::kEotToken; ++a)
      for (int b = 0; b < 256 && id < pt::Gpt2Tokenizer::kEotToken; ++b)
        json += json_key(byte_char(a) + byte_char(b)) + ": " + std::to_string(id++) + ",\n";
    json += "\"<|endoftext|>\": " + std::to_string(pt::Gpt2Tokenizer::kEotToken) + "}\n";
    pt::fuzz::write_scratch("synthetic/encoder.json", json);
    return pt::fuzz::scratch_dir() + "/synthetic";
  }();
  return dir;
}

const std::string& plain_dir() {
  static const std::string dir = [] {
    std::filesystem::create_directories(pt::fuzz::scratch_dir() + "/plain");
    pt::fuzz::write_scratch("plain/vocab.bpe", std::string("#version: 0.2\n"));
    return pt::fuzz::scratch_dir() + "/plain";
  }();
  return dir;
}

void check_round_trip(pt::Tokenizer& tok, const std::string& text) {
  std::vector<int> ids = tok.encode(text);
  for (int id : ids)
    if (id < 0 || id >= tok.vocab_size()) pt::fuzz::fail("encode gave an id outside the vocabulary");
  if (tok.decode(ids) != text) pt::fuzz::fail("decode(encode(x)) != x");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string file(reinterpret_cast<const char*>(data), size);
  constexpr bool kMerges = PT_FUZZ_VOCAB_BPE;
  if (!kMerges) {
    std::unordered_map<std::string, int> parsed;
    std::string error;
    if (pt::parse_string_int_object(file, &parsed, &error)) {
      for (const auto& [k, v] : parsed)
        if (v < 0) pt::fuzz::fail("parse_string_int_object accepted a negative value");
    } else if (error.empty()) {
      pt::fuzz::fail("parse_string_int_object failed without a message");
    }
  }
  const std::string& dir = kMerges ? synthetic_dir() : plain_dir();
  pt::fuzz::write_scratch(kMerges ? "synthetic/vocab.bpe" : "plain/encoder.json", file);
  std::unique_ptr<pt::Tokenizer> tok;
  pt::Status s = pt::make_tokenizer("gpt2", dir, &tok);
  if (!s) {
    if (s.message().find(dir + "/") == std::string::npos) pt::fuzz::fail("the error names no file: " + s.message());
    return 0;
  }
  check_round_trip(*tok, file.substr(0, 512));
  return 0;
}
