// Character classes for the GPT-2 pre-tokenizer: Unicode letters (\p{L}), numbers
// (\p{N}) and whitespace (JavaScript's \s). The range tables live in the generated
// unicode_tables.cc; each table is sorted and its ranges are disjoint and inclusive,
// which is what the binary search below relies on.
#pragma once

#include <cstdint>

namespace pt::unicode {

struct CodePointRange {
  uint32_t lo;
  uint32_t hi;
};

extern const CodePointRange kLetterRanges[];
extern const int kLetterRangesCount;
extern const CodePointRange kNumberRanges[];
extern const int kNumberRangesCount;
extern const CodePointRange kSpaceRanges[];
extern const int kSpaceRangesCount;

inline bool in_ranges(const CodePointRange* ranges, int count, uint32_t cp) {
  int lo = 0, hi = count - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (cp < ranges[mid].lo) {
      hi = mid - 1;
    } else if (cp > ranges[mid].hi) {
      lo = mid + 1;
    } else {
      return true;
    }
  }
  return false;
}

inline bool is_letter(uint32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return in_ranges(kLetterRanges, kLetterRangesCount, cp);
}
inline bool is_number(uint32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return in_ranges(kNumberRanges, kNumberRangesCount, cp);
}
inline bool is_space(uint32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
  return in_ranges(kSpaceRanges, kSpaceRangesCount, cp);
}

}  // namespace pt::unicode
