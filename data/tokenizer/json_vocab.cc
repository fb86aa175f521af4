// Recursive-descent reader for a flat {"string": int, ...} JSON object; see json_vocab.h.
#include "data/tokenizer/json_vocab.h"

#include <cstdint>

namespace pt {
namespace {

class Reader {
 public:
  explicit Reader(const std::string& text) : text_(text) {}

  bool parse(std::unordered_map<std::string, int>* out, std::string* error) {
    skip_space();
    if (!consume('{')) return fail("expected '{' at the start of the object", error);
    skip_space();
    if (consume('}')) return finish(error);
    while (true) {
      std::string key;
      skip_space();
      if (!parse_string(&key)) return fail("expected a string key", error);
      skip_space();
      if (!consume(':')) return fail("expected ':' after a key", error);
      skip_space();
      int64_t value = 0;
      if (!parse_int(&value)) return fail("expected a non-negative integer value for key \"" + key + "\"", error);
      if (!out->emplace(std::move(key), static_cast<int>(value)).second)
        return fail("duplicate key", error);
      skip_space();
      if (consume(',')) continue;
      if (consume('}')) return finish(error);
      return fail("expected ',' or '}'", error);
    }
  }

 private:
  bool finish(std::string* error) {
    skip_space();
    if (pos_ != text_.size()) return fail("unexpected text after the object", error);
    return true;
  }
  bool fail(const std::string& what, std::string* error) {
    *error = what + " at byte " + std::to_string(pos_);
    return false;
  }
  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' || text_[pos_] == '\r' || text_[pos_] == '\t'))
      ++pos_;
  }
  bool consume(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool parse_int(int64_t* value) {
    size_t start = pos_;
    *value = 0;
    while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
      *value = *value * 10 + (text_[pos_] - '0');
      if (*value > INT32_MAX) return false;
      ++pos_;
    }
    return pos_ > start;
  }
  bool parse_hex4(uint32_t* v) {
    if (pos_ + 4 > text_.size()) return false;
    *v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = text_[pos_++];
      *v <<= 4;
      if (c >= '0' && c <= '9') *v |= c - '0';
      else if (c >= 'a' && c <= 'f') *v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') *v |= c - 'A' + 10;
      else return false;
    }
    return true;
  }
  static void append_utf8(uint32_t cp, std::string* s) {
    if (cp < 0x80) {
      s->push_back(char(cp));
    } else if (cp < 0x800) {
      s->push_back(char(0xC0 | (cp >> 6)));
      s->push_back(char(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      s->push_back(char(0xE0 | (cp >> 12)));
      s->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      s->push_back(char(0x80 | (cp & 0x3F)));
    } else {
      s->push_back(char(0xF0 | (cp >> 18)));
      s->push_back(char(0x80 | ((cp >> 12) & 0x3F)));
      s->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      s->push_back(char(0x80 | (cp & 0x3F)));
    }
  }
  bool parse_string(std::string* out) {
    if (!consume('"')) return false;
    while (pos_ < text_.size()) {
      char c = text_[pos_++];
      if (c == '"') return true;
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= text_.size()) return false;
      char e = text_[pos_++];
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          uint32_t cp = 0;
          if (!parse_hex4(&cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo = 0;
            if (!consume('\\') || !consume('u') || !parse_hex4(&lo) || lo < 0xDC00 || lo > 0xDFFF) return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(cp, out);
          break;
        }
        default: return false;
      }
    }
    return false;
  }

  const std::string& text_;
  size_t pos_ = 0;
};

}  // namespace

bool parse_string_int_object(const std::string& text, std::unordered_map<std::string, int>* out,
                             std::string* error) {
  out->clear();
  return Reader(text).parse(out, error);
}

}  // namespace pt
