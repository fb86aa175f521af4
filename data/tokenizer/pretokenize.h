// GPT-2 pre-tokenizer: splits text the way the regex
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// does under JavaScript's matchAll with the u flag (the reference gpt-3-encoder),
// implemented by hand over UTF-8 code points. Invariants: the pieces are non-empty,
// contiguous and cover the input exactly, so concatenating them gives the input back.
// Bytes that are not valid UTF-8 become one-byte pieces of the "other" class, so any
// byte string round-trips (the reference never sees them: node decodes them to U+FFFD).
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace pt {

std::vector<std::string_view> gpt2_pretokenize(std::string_view text);

// The smallest p >= target (or text.size()) at which text can be cut without changing
// the pieces: text[p-1] is an ASCII non-space and text[p] an ASCII space. No regex
// alternative matches a non-space followed by a space, and no alternative looks
// behind, so the pieces of the two halves are exactly the pieces of the whole.
size_t gpt2_safe_split_point(std::string_view text, size_t target);

}  // namespace pt
