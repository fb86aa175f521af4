// libFuzzer target: the YAML config loader (app/config.h load_config_text).
// Input: YAML text; after the first NUL byte, one `--set key=value` override per line.
// Properties: no crash or sanitizer report; a failure has a message; a loaded config
// passes validate() and its resolved dump reloads to the same dump (what the run
// directory's config.yaml relies on).
#include <cstdint>
#include <string>
#include <vector>

#include "app/config.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string yaml = input.substr(0, nul);
  std::vector<std::string> overrides;
  if (nul != std::string::npos) {
    size_t start = nul + 1;
    while (start <= input.size()) {
      size_t end = input.find('\n', start);
      if (end == std::string::npos) end = input.size();
      overrides.push_back(input.substr(start, end - start));
      start = end + 1;
    }
  }
  pt::Config c;
  pt::Status s = pt::load_config_text(yaml, "fuzz.yaml", overrides, &c);
  if (!s) {
    if (s.message().empty()) pt::fuzz::fail("a rejected config has an empty message");
    return 0;
  }
  if (!pt::validate(c)) pt::fuzz::fail("a loaded config fails validate(): " + pt::validate(c).message());
  const std::string dumped = pt::dump_config(c);
  pt::Config again;
  pt::Status r = pt::load_config_text(dumped, "dump.yaml", {}, &again);
  if (!r) pt::fuzz::fail("the resolved dump does not reload: " + r.message() + "\n" + dumped);
  if (pt::dump_config(again) != dumped)
    pt::fuzz::fail("the resolved dump reloads to a different config:\n" + dumped + "---\n" + pt::dump_config(again));
  return 0;
}
