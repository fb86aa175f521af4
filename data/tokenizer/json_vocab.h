// A minimal JSON reader for GPT-2's encoder.json: one object whose keys are strings
// and whose values are non-negative integers. Anything else is rejected with a
// message giving the byte offset, so a corrupt download is reported, not guessed at.
#pragma once

#include <string>
#include <unordered_map>

namespace pt {

// Returns false and sets *error on malformed input. Keys are returned as UTF-8
// (\uXXXX escapes and surrogate pairs decoded).
bool parse_string_int_object(const std::string& text, std::unordered_map<std::string, int>* out,
                             std::string* error);

}  // namespace pt
