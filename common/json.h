// A small JSON object writer for metrics lines and summaries: one flat or nested
// object per call, numbers printed with enough digits to round-trip.
#pragma once

#include <cstdint>
#include <string>

namespace pt {

class JsonWriter {
 public:
  JsonWriter& field(const std::string& key, double value);
  JsonWriter& field(const std::string& key, int64_t value);
  JsonWriter& field(const std::string& key, int value) { return field(key, int64_t(value)); }
  JsonWriter& field(const std::string& key, const std::string& value);
  JsonWriter& field(const std::string& key, const char* value) { return field(key, std::string(value)); }
  JsonWriter& field(const std::string& key, bool value);
  // Inserts an already-serialized JSON value (object or array).
  JsonWriter& raw(const std::string& key, const std::string& json);
  std::string str() const { return "{" + body_ + "}"; }

  static std::string escape(const std::string& s);

 private:
  void key(const std::string& k);
  std::string body_;
};

}  // namespace pt
