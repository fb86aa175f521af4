// Helpers shared by the data tests: a per-test scratch directory (removed at the end),
// whole-file I/O, and the data_cache/ location under $PIPETRAIN_SOURCE_DIR.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace pt::testing {

class ScratchDir {
 public:
  ScratchDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string("pt_data_") + (info ? info->name() : "x") + "_" + std::to_string(::getpid());
    path_ = std::filesystem::temp_directory_path() / name;
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// $PIPETRAIN_SOURCE_DIR/data_cache, or "" when the variable is unset.
inline std::string data_cache_dir() {
  const char* src = std::getenv("PIPETRAIN_SOURCE_DIR");
  return src ? std::string(src) + "/data_cache" : std::string();
}

inline std::string source_dir() {
  const char* src = std::getenv("PIPETRAIN_SOURCE_DIR");
  return src ? std::string(src) : std::string();
}

}  // namespace pt::testing

// Substring expectation that prints both strings on failure (gtest without gmock).
#define EXPECT_CONTAINS(haystack, needle)                                              \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos)                     \
      << "expected to find \"" << (needle) << "\" in \"" << (haystack) << "\""
