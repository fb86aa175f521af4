// Config loading: strict keys, typed values, range rules, and docs coverage.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "app/config.h"
#include "optim/registry.h"

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

// optimizer.kind is checked against the optimizer registry (optim/registry.h), whose
// every kind loads and whose list the message gives.
TEST(Config, OptimizerKindComesFromTheRegistry) {
  std::string allowed;
  for (const auto& k : optimizer_kinds()) {
    EXPECT_TRUE(load(kMinimal, {"optimizer.kind=" + k})) << k;
    allowed += (allowed.empty() ? "" : ", ") + k;
  }
  Status s = load(kMinimal, {"optimizer.kind=sgd"});
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("optimizer.kind"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("'sgd' is not available; allowed: " + allowed), std::string::npos) << s.message();
}

TEST(Config, DumpReloadsToTheSameConfig) {
  Config a, b;
  ASSERT_TRUE(load(kMinimal, {"training.steps=11", "schedule.kind=gpipe"}, &a));
  std::string dumped = dump_config(a);
  ASSERT_TRUE(load_config_text(dumped, "dump.yaml", {}, &b)) << dumped;
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
