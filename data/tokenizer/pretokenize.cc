// Hand-written matcher for the GPT-2 pre-tokenizer regex; see pretokenize.h. Each
// branch below is one regex alternative, tried in the regex's order.
#include "data/tokenizer/pretokenize.h"

#include <cstdint>

#include "data/tokenizer/unicode_tables.h"

namespace pt {
namespace {

constexpr uint32_t kInvalid = 0x110000;  // a byte that is not part of valid UTF-8

struct CodePoint {
  uint32_t cp;
  size_t len;
};

// Strict UTF-8 decoding: overlong forms, surrogates and values past U+10FFFF are invalid.
CodePoint decode_at(std::string_view s, size_t pos) {
  auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  uint8_t b0 = byte(pos);
  if (b0 < 0x80) return {b0, 1};
  size_t len;
  uint32_t cp, min;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return {kInvalid, 1};
  }
  if (pos + len > s.size()) return {kInvalid, 1};
  for (size_t i = 1; i < len; ++i) {
    uint8_t b = byte(pos + i);
    if ((b & 0xC0) != 0x80) return {kInvalid, 1};
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return {kInvalid, 1};
  return {cp, len};
}

enum class CharClass { kLetter, kNumber, kSpace, kOther };

CharClass class_of(uint32_t cp) {
  if (cp == kInvalid) return CharClass::kOther;
  if (unicode::is_letter(cp)) return CharClass::kLetter;
  if (unicode::is_number(cp)) return CharClass::kNumber;
  if (unicode::is_space(cp)) return CharClass::kSpace;
  return CharClass::kOther;
}

// Length of a contraction ('s 't 're 've 'm 'll 'd) starting at pos, or 0.
size_t contraction_length(std::string_view s, size_t pos) {
  if (s[pos] != '\'' || pos + 1 >= s.size()) return 0;
  char a = s[pos + 1];
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (pos + 2 >= s.size()) return 0;
  char b = s[pos + 2];
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

bool is_ascii_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

}  // namespace

std::vector<std::string_view> gpt2_pretokenize(std::string_view text) {
  std::vector<std::string_view> pieces;
  const size_t n = text.size();
  size_t pos = 0;
  while (pos < n) {
    if (size_t len = contraction_length(text, pos)) {
      pieces.push_back(text.substr(pos, len));
      pos += len;
      continue;
    }
    CodePoint c = decode_at(text, pos);
    // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": an optional leading U+0020, then a
    // run of one class. The three are mutually exclusive on the first non-space char.
    size_t k = (c.cp == ' ') ? pos + 1 : pos;
    if (k < n) {
      CodePoint d = (k == pos) ? c : decode_at(text, k);
      CharClass cls = class_of(d.cp);
      if (cls != CharClass::kSpace) {
        size_t end = k + d.len;
        while (end < n) {
          CodePoint e = decode_at(text, end);
          if (class_of(e.cp) != cls) break;
          end += e.len;
        }
        pieces.push_back(text.substr(pos, end - pos));
        pos = end;
        continue;
      }
    }
    // "\s+(?!\S)" then "\s+": the greedy run, minus its last char when a non-space
    // follows it and the run has more than one char (that char then leads the next word).
    size_t end = pos, last_start = pos, count = 0;
    while (end < n) {
      CodePoint e = decode_at(text, end);
      if (class_of(e.cp) != CharClass::kSpace) break;
      last_start = end;
      end += e.len;
      ++count;
    }
    size_t stop = (end == n || count == 1) ? end : last_start;
    pieces.push_back(text.substr(pos, stop - pos));
    pos = stop;
  }
  return pieces;
}

size_t gpt2_safe_split_point(std::string_view text, size_t target) {
  if (target == 0) target = 1;
  for (size_t p = target; p < text.size(); ++p) {
    unsigned char prev = static_cast<unsigned char>(text[p - 1]);
    if (is_ascii_space(text[p]) && prev < 0x80 && !is_ascii_space(char(prev))) return p;
  }
  return text.size();
}

}  // namespace pt
