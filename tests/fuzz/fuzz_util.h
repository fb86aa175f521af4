// Helpers shared by the libFuzzer targets in tests/fuzz: a scratch directory for
// loaders that only take a path, and the abort that reports a violated property
// (libFuzzer then saves the input as crash-*).
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace pt::fuzz {

// A directory unique to this process (mkdtemp under $TMPDIR or /tmp), removed at
// exit. Held in a leaked string: the exit handler runs after static destructors.
inline const std::string& scratch_dir() {
  static const std::string* dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    auto* path = new std::string(std::string(tmp && *tmp ? tmp : "/tmp") + "/pipetrain_fuzz_XXXXXX");
    if (!::mkdtemp(path->data())) {
      std::perror("pipetrain fuzz: mkdtemp");
      std::abort();
    }
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return path;
  }();
  return *dir;
}

// Writes `size` bytes to scratch_dir()/name (replacing it) and returns the path.
inline std::string write_scratch(const std::string& name, const uint8_t* data, size_t size) {
  std::string path = scratch_dir() + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(("pipetrain fuzz: cannot write " + path).c_str());
    std::abort();
  }
  return path;
}

inline std::string write_scratch(const std::string& name, const std::string& bytes) {
  return write_scratch(name, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// A property every input must keep does not hold: report it and crash, so the
// input is saved and the smoke test fails.
[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "pipetrain fuzz: property violated: %s\n", what.c_str());
  std::abort();
}

}  // namespace pt::fuzz
