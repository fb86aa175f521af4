// prepare_shards: text -> shards that read back to the right tokens with the val
// split, the document separator, shard size limit, stale-shard cleanup, the loader
// reading its output, and clear errors for missing inputs and tokenizer files.
#include "data/prepare.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "data/loader.h"
#include "data/token_shard.h"
#include "data/tokenizer/gpt2_tokenizer.h"
#include "tests/data/test_files.h"

namespace pt {
namespace {

namespace fs = std::filesystem;

std::vector<uint16_t> read_shard(const std::string& path) {
  std::vector<uint16_t> tokens;
  Status s = read_token_shard(path, 0, &tokens);
  EXPECT_TRUE(s.is_ok()) << s.message();
  return tokens;
}

std::vector<uint16_t> bytes_as_tokens(const std::string& s) {
  std::vector<uint16_t> out;
  for (char c : s) out.push_back(static_cast<unsigned char>(c));
  return out;
}

TEST(Prepare, ByteTokenizerShardsReadBackWithValSplit) {
  testing::ScratchDir dir;
  std::string a, b = "second document\n";
  for (int i = 0; i < 20; ++i) a += "line " + std::to_string(i) + " of the first document\n";
  testing::write_file(dir.file("a.txt"), a);
  testing::write_file(dir.file("b.txt"), b);

  PrepareOptions o;
  o.tokenizer = "byte";
  o.inputs = {dir.file("a.txt"), dir.file("b.txt")};
  o.out_dir = dir.file("shards");
  o.val_fraction = 0.1;
  o.shard_tokens = 200;
  o.progress = false;
  std::string summary;
  Status s = prepare_shards(o, &summary);
  ASSERT_TRUE(s.is_ok()) << s.message();

  // Expected stream: NUL before each document.
  std::vector<uint16_t> expected = {0};
  for (uint16_t t : bytes_as_tokens(a)) expected.push_back(t);
  expected.push_back(0);
  for (uint16_t t : bytes_as_tokens(b)) expected.push_back(t);
  const size_t val_count = size_t(std::llround(0.1 * double(expected.size())));
  ASSERT_GT(val_count, 0u);

  std::vector<std::string> train_files;
  ASSERT_TRUE(expand_glob(o.out_dir + "/train_*.bin", &train_files).is_ok());
  const size_t train_count = expected.size() - val_count;
  ASSERT_EQ(train_files.size(), (train_count + 199) / 200);
  EXPECT_EQ(fs::path(train_files[0]).filename(), "train_000000.bin");
  std::vector<uint16_t> got;
  for (const auto& f : train_files) {
    std::vector<uint16_t> shard = read_shard(f);
    EXPECT_LE(shard.size(), 200u);
    got.insert(got.end(), shard.begin(), shard.end());
  }
  EXPECT_EQ(got, std::vector<uint16_t>(expected.begin(), expected.end() - val_count));
  EXPECT_EQ(read_shard(o.out_dir + "/val_000000.bin"), std::vector<uint16_t>(expected.end() - val_count, expected.end()));
  EXPECT_CONTAINS(summary, std::to_string(expected.size()));

  // The loader reads the output directly.
  DataLoaderOptions lo;
  lo.train_pattern = o.out_dir + "/train_*.bin";
  lo.val_pattern = o.out_dir + "/val_*.bin";
  lo.batch_size = 2;
  lo.seq_len = 8;
  lo.shuffle = false;
  lo.vocab_size = 256;
  DataLoader loader;
  s = loader.open(lo);
  ASSERT_TRUE(s.is_ok()) << s.message();
  std::vector<int32_t> in(16), tg(16);
  loader.batch(0, 0, 0, in.data(), tg.data());
  for (int t = 0; t < 16; ++t) EXPECT_EQ(in[t], expected[t]);
  EXPECT_GE(loader.num_eval_batches(), 1);

  // A second run with bigger shards removes the first run's extra train shards.
  o.shard_tokens = 100'000;
  ASSERT_TRUE(prepare_shards(o, &summary).is_ok());
  ASSERT_TRUE(expand_glob(o.out_dir + "/train_*.bin", &train_files).is_ok());
  EXPECT_EQ(train_files.size(), 1u);
  EXPECT_EQ(read_shard(train_files[0]), std::vector<uint16_t>(expected.begin(), expected.end() - val_count));
  EXPECT_CONTAINS(summary, "stale");
}

TEST(Prepare, MissingInputNamesTheFile) {
  testing::ScratchDir dir;
  PrepareOptions o;
  o.tokenizer = "byte";
  o.inputs = {dir.file("missing.txt")};
  o.out_dir = dir.file("out");
  Status s = prepare_shards(o, nullptr);
  ASSERT_FALSE(s.is_ok());
  EXPECT_CONTAINS(s.message(), dir.file("missing.txt"));
  EXPECT_FALSE(fs::exists(dir.file("out")));
}

TEST(Prepare, MissingTokenizerFilesSayHowToGetThem) {
  testing::ScratchDir dir;
  testing::write_file(dir.file("a.txt"), "hello");
  PrepareOptions o;
  o.tokenizer = "gpt2";
  o.tokenizer_dir = dir.file("no_tokenizer");
  o.inputs = {dir.file("a.txt")};
  o.out_dir = dir.file("out");
  Status s = prepare_shards(o, nullptr);
  ASSERT_FALSE(s.is_ok());
  EXPECT_CONTAINS(s.message(), "run scripts/get_corpus.sh");
  EXPECT_CONTAINS(s.message(), dir.file("no_tokenizer"));
}

TEST(Prepare, RejectsBadOptions) {
  PrepareOptions o;
  o.tokenizer = "byte";
  o.out_dir = "x";
  EXPECT_FALSE(prepare_shards(o, nullptr).is_ok());  // no inputs
  o.inputs = {"x"};
  o.val_fraction = 1.0;
  EXPECT_FALSE(prepare_shards(o, nullptr).is_ok());
}

// gpt2 on a real speech: the shards decode back to the text, EOT first.
TEST(Prepare, Gpt2OnCorpusDecodesBack) {
  std::string cache = testing::data_cache_dir();
  ASSERT_FALSE(cache.empty()) << "PIPETRAIN_SOURCE_DIR is not set; run through ctest";
  std::string input = cache + "/corpus/1790_george_washington_n.txt";
  ASSERT_TRUE(fs::exists(input)) << input << " is missing: run scripts/get_corpus.sh";
  testing::ScratchDir dir;
  PrepareOptions o;
  o.tokenizer = "gpt2";
  o.tokenizer_dir = cache + "/tokenizer";
  o.inputs = {input};
  o.out_dir = dir.file("shards");
  o.val_fraction = 0.05;
  o.progress = false;
  Status s = prepare_shards(o, nullptr);
  ASSERT_TRUE(s.is_ok()) << s.message();
  std::vector<uint16_t> all = read_shard(o.out_dir + "/train_000000.bin");
  std::vector<uint16_t> val = read_shard(o.out_dir + "/val_000000.bin");
  EXPECT_NEAR(double(val.size()) / double(all.size() + val.size()), 0.05, 0.001);
  all.insert(all.end(), val.begin(), val.end());
  ASSERT_EQ(all[0], Gpt2Tokenizer::kEotToken);
  Gpt2Tokenizer tok;
  ASSERT_TRUE(tok.load(o.tokenizer_dir + "/encoder.json", o.tokenizer_dir + "/vocab.bpe").is_ok());
  EXPECT_EQ(tok.decode(std::vector<int>(all.begin() + 1, all.end())), testing::read_file(input));
}

}  // namespace
}  // namespace pt
