// Config loading: strict keys, typed values, range rules, and docs coverage.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "app/config.h"

namespace pt {
namespace {

const char* kMinimal = "data:\n  train: d/train_*.bin\n";

Status load(const std::string& yaml, std::vector<std::string> overrides = {}, Config* out = nullptr) {
  Config c;
  return load_config_text(yaml, "test.yaml", overrides, out ? out : &c);
}

TEST(Config, DefaultsAndOverrides) {
  Config c;
  ASSERT_TRUE(load(std::string(kMinimal) + "training:\n  steps: 7\n", {"optimizer.lr=0.01", "parallel.layer_split=[1,2]",
                                                                       "parallel.pp=2", "model.n_layer=3"}, &c))
      << "unexpected error";
  EXPECT_EQ(c.training.steps, 7);
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 0.01);
  EXPECT_EQ(c.parallel.layer_split, (std::vector<int>{1, 2}));
  EXPECT_EQ(c.run.name, "test");  // stem of the source file
  EXPECT_EQ(c.training.micro_batch_size, 4);
}

TEST(Config, UnknownKeyNamesKeyFileAndAllowed) {
  Status s = load(std::string(kMinimal) + "training:\n  stepz: 3\n");
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("test.yaml"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("training.stepz"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("steps"), std::string::npos) << s.message();  // lists what is allowed
  s = load(std::string(kMinimal) + "trainin:\n  steps: 3\n");
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("unknown key 'trainin'"), std::string::npos) << s.message();
  s = load(kMinimal, {"training.nope=1"});
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("training.nope"), std::string::npos) << s.message();
}

TEST(Config, WrongTypeNamesKeyAndExpectedType) {
  Status s = load(std::string(kMinimal) + "training:\n  steps: 1.5\n");
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("training.steps"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("integer"), std::string::npos) << s.message();
  s = load(std::string(kMinimal) + "model:\n  tie_embeddings: maybe\n");
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("model.tie_embeddings"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("bool"), std::string::npos) << s.message();
  s = load(std::string(kMinimal) + "optimizer: 3\n");
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("section"), std::string::npos) << s.message();
}

TEST(Config, OutOfRangeNamesKeyAndRule) {
  Status s = load(std::string(kMinimal) + "optimizer:\n  beta2: 1.0\n");
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("optimizer.beta2"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("[0, 1)"), std::string::npos) << s.message();
  s = load(std::string(kMinimal) + "model:\n  n_embd: 30\n  n_head: 4\n");
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("model.n_embd"), std::string::npos) << s.message();
  s = load(std::string(kMinimal) + "schedule:\n  kind: chimera\n");
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("1f1b"), std::string::npos) << s.message();
  s = load(kMinimal, {"parallel.pp=2", "model.n_layer=4", "parallel.layer_split=[1,2]"});
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("parallel.layer_split"), std::string::npos) << s.message();
  s = load("training:\n  steps: 3\n");
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("data.train"), std::string::npos) << s.message();
}

TEST(Config, DumpReloadsToTheSameConfig) {
  Config a, b;
  ASSERT_TRUE(load(kMinimal, {"training.steps=11", "schedule.kind=gpipe"}, &a));
  std::string dumped = dump_config(a);
  ASSERT_TRUE(load_config_text(dumped, "dump.yaml", {}, &b)) << dumped;
  EXPECT_EQ(dump_config(b), dumped);
}

// Found by tests/fuzz/fuzz_config: infinite floats were accepted (lr: .inf trains
// on NaN), and keys that are not names threw an uncaught yaml-cpp exception.
TEST(Config, RejectsNonFiniteFloatsAndNonScalarKeys) {
  Status s = load(std::string(kMinimal) + "optimizer:\n  lr: .inf\n");
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("optimizer.lr"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("finite"), std::string::npos) << s.message();
  s = load(kMinimal, {"training.max_seconds=.nan"});
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("training.max_seconds"), std::string::npos) << s.message();
  s = load(kMinimal, {"optimizer.grad_clip=-.inf"});
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("finite"), std::string::npos) << s.message();
  s = load(std::string(kMinimal) + "[a, b]: 1\n");
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("expected a key name"), std::string::npos) << s.message();
  s = load(std::string(kMinimal) + "training:\n  {x: 1}: 2\n");
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("section 'training'"), std::string::npos) << s.message();
}

// Found by tests/fuzz/fuzz_config: the resolved dump (run_dir/config.yaml) printed
// floats with 9 digits (beta2 0.999999999999 became 1, which does not load) and
// strings between quotes without escaping.
TEST(Config, DumpKeepsEveryFloatAndStringExactly) {
  Config a, b;
  ASSERT_TRUE(load(std::string(kMinimal) + "optimizer:\n  beta2: 0.999999999999\n  lr: 1.2345678901234567e-4\n"
                   "run:\n  name: 'say \"hi\" \\ bye'\n  out_dir: \"tab\\there\"\n", {}, &a));
  const std::string dumped = dump_config(a);
  ASSERT_TRUE(load_config_text(dumped, "dump.yaml", {}, &b)) << dumped;
  EXPECT_EQ(b.optimizer.beta2, a.optimizer.beta2);
  EXPECT_EQ(b.optimizer.lr, a.optimizer.lr);
  EXPECT_EQ(b.run.name, "say \"hi\" \\ bye");
  EXPECT_EQ(b.run.out_dir, "tab\there");
  EXPECT_EQ(dump_config(b), dumped);
}

TEST(Config, EveryKeyIsDocumented) {
  const char* src = std::getenv("PIPETRAIN_SOURCE_DIR");
  ASSERT_NE(src, nullptr) << "PIPETRAIN_SOURCE_DIR is set by ctest";
  std::ifstream in(std::string(src) + "/docs/config.md");
  ASSERT_TRUE(in) << "docs/config.md is missing";
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  auto keys = config_schema();
  ASSERT_GT(keys.size(), 30u);
  for (const auto& k : keys)
    EXPECT_NE(doc.find("`" + k.path + "`"), std::string::npos) << k.path << " is not documented in docs/config.md";
}

}  // namespace
}  // namespace pt
