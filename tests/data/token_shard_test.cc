// Token shard format: round trip, and each corruption gives a Status naming the file.
#include "data/token_shard.h"

#include <gtest/gtest.h>

#include <cstring>

#include "tests/data/test_files.h"

namespace pt {
namespace {

std::string header_bytes(int32_t magic, int32_t version, int32_t count) {
  std::string h(kShardHeaderBytes, '\0');
  int32_t ints[3] = {magic, version, count};
  std::memcpy(h.data(), ints, sizeof(ints));
  return h;
}

std::string token_bytes(const std::vector<uint16_t>& tokens) {
  return std::string(reinterpret_cast<const char*>(tokens.data()), tokens.size() * 2);
}

TEST(TokenShard, RoundTripAndLlmcLayout) {
  testing::ScratchDir dir;
  std::vector<uint16_t> tokens = {0, 1, 2, 50256, 65535, 7};
  std::string path = dir.file("train_000000.bin");
  ASSERT_TRUE(write_token_shard(path, tokens).is_ok());
  // The bytes on disk are exactly llm.c's layout.
  EXPECT_EQ(testing::read_file(path), header_bytes(20240520, 1, 6) + token_bytes(tokens));
  std::vector<uint16_t> back;
  Status s = read_token_shard(path, 65536, &back);
  ASSERT_TRUE(s.is_ok()) << s.message();
  EXPECT_EQ(back, tokens);
  ASSERT_TRUE(read_token_shard(path, 0, &back).is_ok());
  EXPECT_EQ(back, tokens);
}

TEST(TokenShard, EmptyShardRoundTrips) {
  testing::ScratchDir dir;
  std::string path = dir.file("empty.bin");
  ASSERT_TRUE(write_token_shard(path, {}).is_ok());
  std::vector<uint16_t> back = {1};
  ASSERT_TRUE(read_token_shard(path, 10, &back).is_ok());
  EXPECT_TRUE(back.empty());
}

TEST(TokenShard, BadMagicNamesFile) {
  testing::ScratchDir dir;
  std::string path = dir.file("bad_magic.bin");
  testing::write_file(path, header_bytes(12345, 1, 2) + token_bytes({1, 2}));
  std::vector<uint16_t> out;
  Status s = read_token_shard(path, 100, &out);
  ASSERT_FALSE(s.is_ok());
  EXPECT_CONTAINS(s.message(), path);
  EXPECT_CONTAINS(s.message(), "bad magic number 12345");
  EXPECT_CONTAINS(s.message(), "pipetrain prepare");
}

TEST(TokenShard, BadVersionNamesFile) {
  testing::ScratchDir dir;
  std::string path = dir.file("bad_version.bin");
  testing::write_file(path, header_bytes(20240520, 2, 2) + token_bytes({1, 2}));
  std::vector<uint16_t> out;
  Status s = read_token_shard(path, 100, &out);
  ASSERT_FALSE(s.is_ok());
  EXPECT_CONTAINS(s.message(), path);
  EXPECT_CONTAINS(s.message(), "unsupported shard version 2");
}

TEST(TokenShard, TruncatedNamesFileAndCounts) {
  testing::ScratchDir dir;
  std::string path = dir.file("truncated.bin");
  // Header promises 10 tokens, file holds 3.
  testing::write_file(path, header_bytes(20240520, 1, 10) + token_bytes({1, 2, 3}));
  std::vector<uint16_t> out;
  Status s = read_token_shard(path, 100, &out);
  ASSERT_FALSE(s.is_ok());
  EXPECT_CONTAINS(s.message(), path);
  EXPECT_CONTAINS(s.message(), "truncated");
  EXPECT_CONTAINS(s.message(), "10 tokens");
  EXPECT_TRUE(out.empty());

  std::string short_header = dir.file("short_header.bin");
  testing::write_file(short_header, header_bytes(20240520, 1, 0).substr(0, 100));
  s = read_token_shard(short_header, 100, &out);
  ASSERT_FALSE(s.is_ok());
  EXPECT_CONTAINS(s.message(), short_header);
  EXPECT_CONTAINS(s.message(), "truncated");
}

TEST(TokenShard, TrailingBytesRejected) {
  testing::ScratchDir dir;
  std::string path = dir.file("long.bin");
  testing::write_file(path, header_bytes(20240520, 1, 2) + token_bytes({1, 2, 3}));
  std::vector<uint16_t> out;
  Status s = read_token_shard(path, 100, &out);
  ASSERT_FALSE(s.is_ok());
  EXPECT_CONTAINS(s.message(), path);
  EXPECT_CONTAINS(s.message(), "2 bytes follow");
}

TEST(TokenShard, TokenOutOfVocabNamesIndexAndValue) {
  testing::ScratchDir dir;
  std::string path = dir.file("vocab.bin");
  ASSERT_TRUE(write_token_shard(path, {5, 255, 256, 3}).is_ok());
  std::vector<uint16_t> out;
  Status s = read_token_shard(path, 256, &out);
  ASSERT_FALSE(s.is_ok());
  EXPECT_CONTAINS(s.message(), path);
  EXPECT_CONTAINS(s.message(), "token 256 at index 2");
  EXPECT_CONTAINS(s.message(), "vocab_size 256");
  EXPECT_TRUE(read_token_shard(path, 257, &out).is_ok());
}

TEST(TokenShard, MissingFileNamesFile) {
  testing::ScratchDir dir;
  std::string path = dir.file("nope.bin");
  std::vector<uint16_t> out;
  Status s = read_token_shard(path, 256, &out);
  ASSERT_FALSE(s.is_ok());
  EXPECT_CONTAINS(s.message(), path);
}

TEST(TokenShard, WriteToMissingDirectoryFails) {
  testing::ScratchDir dir;
  std::string path = dir.file("no/such/dir/x.bin");
  Status s = write_token_shard(path, {1});
  ASSERT_FALSE(s.is_ok());
  EXPECT_CONTAINS(s.message(), path);
}

}  // namespace
}  // namespace pt
