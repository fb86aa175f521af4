// Config loading: strict keys, typed values, range rules, and docs coverage.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "app/checkpoint.h"
#include "app/config.h"
#include "app/schedule_builder.h"
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

// training.target_val_losses: a list of floats from YAML and --set, dumped back as a list;
// a non-positive target and a trace without time accounting are refused naming the key.
TEST(Config, TimeAccountingKeys) {
  Config c;
  ASSERT_TRUE(load(std::string(kMinimal) + "training:\n  target_val_losses: [3.5, 2]\n", {}, &c));
  EXPECT_EQ(c.training.target_val_losses, (std::vector<double>{3.5, 2.0}));
  EXPECT_NE(dump_config(c).find("target_val_losses: [3.5, 2]"), std::string::npos) << dump_config(c);
  ASSERT_TRUE(load(kMinimal, {"training.target_val_losses=[1.25]"}, &c));
  EXPECT_EQ(c.training.target_val_losses, (std::vector<double>{1.25}));
  Status s = load(kMinimal, {"training.target_val_losses=[1, -2]"});
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("training.target_val_losses"), std::string::npos) << s.message();
  s = load(kMinimal, {"training.target_val_losses=3"});
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("list of numbers"), std::string::npos) << s.message();
  s = load(kMinimal, {"run.trace_steps=2", "run.time_accounting=false"});
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("run.trace_steps"), std::string::npos) << s.message();
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

// runtime.tf32: a bool, default false; true is rejected with backend cpu (no TF32
// there) and accepted with auto (ignored if auto resolves to cpu) and cuda.
TEST(Config, Tf32NeedsAGpuBackend) {
  Config c;
  ASSERT_TRUE(load(kMinimal, {}, &c));
  EXPECT_FALSE(c.runtime.tf32);
  ASSERT_TRUE(load(kMinimal, {"runtime.tf32=true"}, &c));
  EXPECT_TRUE(c.runtime.tf32);
  EXPECT_TRUE(load(kMinimal, {"runtime.tf32=true", "runtime.backend=cuda"}));
  EXPECT_TRUE(load(kMinimal, {"runtime.tf32=false", "runtime.backend=cpu"}));
  Status s = load(kMinimal, {"runtime.tf32=true", "runtime.backend=cpu"});
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("runtime.tf32"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("cpu"), std::string::npos) << s.message();
  s = load(kMinimal, {"runtime.tf32=yes please"});
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("runtime.tf32"), std::string::npos) << s.message();
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

// optimizer.basis_rotation.* and optimizer.nadamw.*: a bad value names the key and what is
// allowed (geometries and sources from optim/basis_rotation.h); the defaults load.
TEST(Config, OptimizerSectionsNameTheKeyAndWhatIsAllowed) {
  Config c;
  ASSERT_TRUE(load(kMinimal, {"optimizer.kind=basis_rotation"}, &c));
  EXPECT_EQ(c.optimizer.basis_rotation.geometry, "bi");
  EXPECT_EQ(c.optimizer.basis_rotation.source, "2nd");
  EXPECT_EQ(c.optimizer.basis_rotation.update_freq, 10);
  ASSERT_TRUE(load(std::string(kMinimal) + "optimizer:\n  basis_rotation:\n    geometry: uni\n    source: 1st\n", {}, &c));
  EXPECT_EQ(c.optimizer.basis_rotation.geometry, "uni");
  EXPECT_EQ(c.optimizer.basis_rotation.source, "1st");
  struct Case {
    std::string set, key, what;
  };
  const std::vector<Case> cases = {
      {"optimizer.basis_rotation.geometry=tri", "optimizer.basis_rotation.geometry", "'tri' is not one of: bi, uni"},
      {"optimizer.basis_rotation.source=3rd", "optimizer.basis_rotation.source", "'3rd' is not one of: 2nd, 1st"},
      {"optimizer.basis_rotation.max_precond_dim=0", "optimizer.basis_rotation.max_precond_dim", "must be >= 1, got 0"},
      {"optimizer.basis_rotation.update_freq=0", "optimizer.basis_rotation.update_freq", "must be >= 1, got 0"},
      {"optimizer.basis_rotation.update_freq=-3", "optimizer.basis_rotation.update_freq", "must be >= 1, got -3"},
      {"optimizer.basis_rotation.shampoo_beta=1", "optimizer.basis_rotation.shampoo_beta", "must be < 1"},
      {"optimizer.nadamw.momentum_decay=-0.1", "optimizer.nadamw.momentum_decay", "must be >= 0"},
  };
  for (const auto& k : cases) {
    const Status s = load(kMinimal, {"optimizer.kind=basis_rotation", k.set});
    ASSERT_FALSE(s) << k.set;
    EXPECT_NE(s.message().find("test.yaml: key '" + k.key + "': " + k.what), std::string::npos) << s.message();
  }
  const Status s = load(std::string(kMinimal) + "optimizer:\n  basis_rotation:\n    freq: 3\n");
  ASSERT_FALSE(s);
  EXPECT_NE(s.message().find("optimizer.basis_rotation.freq"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("geometry, max_precond_dim, shampoo_beta, source, update_freq"), std::string::npos)
      << s.message();
}

// An optimizer's own keys are in the resume fingerprint exactly when that optimizer is selected.
TEST(Config, OptimizerOwnKeysMustMatchOnlyForTheirKind) {
  auto fingerprint_of = [](const std::string& kind) {
    Config c;
    EXPECT_TRUE(load(kMinimal, {"optimizer.kind=" + kind}, &c));
    return resume_fingerprint(c);
  };
  const std::string adamw = fingerprint_of("adamw"), nadamw = fingerprint_of("nadamw"),
                    rotation = fingerprint_of("basis_rotation");
  EXPECT_EQ(adamw.find("optimizer.basis_rotation."), std::string::npos);
  EXPECT_EQ(adamw.find("optimizer.nadamw."), std::string::npos);
  EXPECT_NE(nadamw.find("optimizer.nadamw.momentum_decay=0.0040000000000000001\n"), std::string::npos) << nadamw;
  EXPECT_EQ(nadamw.find("optimizer.basis_rotation."), std::string::npos);
  for (const char* k : {"geometry=bi\n", "source=2nd\n", "update_freq=10\n", "shampoo_beta=-1\n", "max_precond_dim=8192\n"})
    EXPECT_NE(rotation.find(std::string("optimizer.basis_rotation.") + k), std::string::npos) << k << rotation;
  EXPECT_EQ(rotation.find("optimizer.nadamw."), std::string::npos);
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

// Every schedule rule reaches config validation through check_schedule_spec (one copy): the
// message names the file and starts, after it, with the real config key.
TEST(Config, ScheduleRulesNameTheRealKey) {
  struct Case {
    std::vector<std::string> set;
    const char* key;
  };
  const Case cases[] = {
      {{"schedule.kind=zigzag"}, "schedule.kind"},
      {{"parallel.pp=0"}, "parallel.pp"},
      {{"training.microbatches=0"}, "training.microbatches"},
      {{"schedule.chunks=0"}, "schedule.chunks"},
      {{"schedule.chunks=2"}, "schedule.chunks"},  // 1f1b: one stage per rank
      {{"schedule.kind=bfpp", "schedule.bfpp_breadth=3"}, "schedule.bfpp_breadth"},
      {{"schedule.kind=interleaved_1f1b", "schedule.chunks=2", "training.microbatches=6"}, "training.microbatches"},
      {{"schedule.kind=paci"}, "model.tie_embeddings"},  // tied by default
      {{"schedule.kind=pipedream_2bw", "model.tie_embeddings=false", "training.microbatches=3"}, "training.microbatches"},
      {{"schedule.paci.mode=fast"}, "schedule.paci.mode"},
      {{"schedule.kind=paci_flush", "model.tie_embeddings=false", "schedule.paci.allowed_lagging=[4,3,2,1]"},
       "schedule.paci.allowed_lagging"},
      {{"schedule.kind=paci", "model.tie_embeddings=false", "schedule.paci.allowed_lagging=[4,3]"},
       "schedule.paci.allowed_lagging"},
      {{"schedule.kind=paci", "model.tie_embeddings=false", "schedule.paci.allowed_lagging=[4,4,2,1]"},
       "schedule.paci.allowed_lagging"},
      {{"schedule.amdp.step_slot=late"}, "schedule.amdp.step_slot"},
      {{"schedule.amdp.step_slot=reference"}, "schedule.amdp.step_slot"},  // 1f1b
      {{"schedule.amdp.zero_owner=false"}, "schedule.amdp.zero_owner"},    // 1f1b
      {{"schedule.kind=amdp", "model.tie_embeddings=false", "parallel.pp=3", "training.microbatches=6"}, "parallel.pp"},
      {{"schedule.kind=amdp", "model.tie_embeddings=false", "training.microbatches=6"}, "training.microbatches"},
      {{"schedule.kind=amdp", "model.tie_embeddings=false", "parallel.pp=6", "training.microbatches=6",
        "schedule.amdp.step_slot=reference"},
       "schedule.amdp.step_slot"},
      {{"schedule.kind=amdp", "model.tie_embeddings=false", "schedule.amdp.step_slot=reference",
        "schedule.amdp.zero_owner=false"},
       "schedule.amdp.step_slot"},
      {{"schedule.pipedream.lr_correction=stagewise"}, "schedule.pipedream.lr_correction"},  // 1f1b
      {{"schedule.kind=paci", "model.tie_embeddings=false", "schedule.pipedream.lr_correction=stagewise"},
       "schedule.pipedream.lr_correction"},
      {{"schedule.pipedream.lr_correction_steps=10"}, "schedule.pipedream.lr_correction_steps"},  // 1f1b
      {{"schedule.kind=pipedream", "model.tie_embeddings=false", "schedule.pipedream.lr_correction=pipemare"},
       "schedule.pipedream.lr_correction"},
      {{"schedule.kind=pipedream", "model.tie_embeddings=false", "schedule.pipedream.lr_correction=stagewise",
        "schedule.pipedream.lr_correction_steps=-1"},
       "schedule.pipedream.lr_correction_steps"},
      {{"schedule.kind=localsgd", "model.tie_embeddings=false", "schedule.localsgd.copies=3"}, "training.microbatches"},
      {{"schedule.kind=localsgd", "model.tie_embeddings=false", "schedule.localsgd.copies=-1"}, "schedule.localsgd.copies"},
      {{"schedule.kind=localsgd", "model.tie_embeddings=false", "schedule.localsgd.local_steps=0"},
       "schedule.localsgd.local_steps"},
      {{"schedule.kind=localsgd", "schedule.chunks=2", "model.tie_embeddings=false"}, "schedule.chunks"},
      {{"schedule.kind=localsgd"}, "model.tie_embeddings"},  // tied by default
      {{"schedule.localsgd.local_steps=3"}, "schedule.localsgd.copies"},  // 1f1b
  };
  for (const Case& c : cases) {
    std::vector<std::string> set = {"parallel.pp=4", "model.n_layer=8", "training.microbatches=8"};
    set.insert(set.end(), c.set.begin(), c.set.end());
    Status s = load(kMinimal, set);
    ASSERT_FALSE(s) << c.set.back();
    EXPECT_EQ(s.message().rfind(std::string("test.yaml: ") + c.key, 0), 0u) << s.message();
    EXPECT_EQ(s.message().find("schedule.microbatches"), std::string::npos) << s.message();
  }
  Config ok;
  ASSERT_TRUE(load(kMinimal, {"parallel.pp=4", "model.n_layer=8", "schedule.kind=amdp", "model.tie_embeddings=false",
                              "training.microbatches=8", "schedule.amdp.step_slot=reference"},
                   &ok));
  EXPECT_TRUE(check_schedule_spec(schedule_spec_for(ok)).is_ok());
  ASSERT_TRUE(load(kMinimal, {"parallel.pp=4", "model.n_layer=8", "schedule.kind=pipedream", "model.tie_embeddings=false",
                              "schedule.pipedream.lr_correction=stagewise", "schedule.pipedream.lr_correction_steps=50"},
                   &ok));
}

// The PipeDream-LR keys are in the fingerprint only when the correction is on: checkpoints
// without it keep their fingerprint, a resume that turns it on or off or changes T_corr is refused.
TEST(Config, LrCorrectionMustMatchOnlyWhenOn) {
  const std::vector<std::string> pd = {"parallel.pp=4", "model.n_layer=8", "schedule.kind=pipedream",
                                       "model.tie_embeddings=false"};
  Config off, on, on_t;
  ASSERT_TRUE(load(kMinimal, pd, &off));
  std::vector<std::string> set = pd;
  set.push_back("schedule.pipedream.lr_correction=stagewise");
  ASSERT_TRUE(load(kMinimal, set, &on));
  set.push_back("schedule.pipedream.lr_correction_steps=7");
  ASSERT_TRUE(load(kMinimal, set, &on_t));
  EXPECT_EQ(resume_fingerprint(off).find("schedule.pipedream"), std::string::npos);
  EXPECT_NE(resume_fingerprint(on).find("schedule.pipedream.lr_correction=stagewise\n"), std::string::npos);
  EXPECT_NE(resume_fingerprint(on), resume_fingerprint(on_t));
}

// localsgd drains only after an average: every drain cadence is a multiple of local_steps (K = 2);
// a training.steps that is not just ends on a shorter round.
TEST(Config, LocalSgdDrainsOnlyAtRoundEnds) {
  const std::vector<std::string> base = {"parallel.pp=4", "model.n_layer=8", "training.microbatches=8",
                                         "schedule.kind=localsgd", "model.tie_embeddings=false"};
  const std::vector<std::pair<std::vector<std::string>, const char*>> bad = {
      {{"checkpoint.every_steps=3"}, "checkpoint.every_steps"},
      {{"schedule.drain_every=5"}, "schedule.drain_every"},
      {{"data.val=val_*.bin", "training.eval_every=3"}, "training.eval_every"},
      {{"schedule.localsgd.local_steps=4", "checkpoint.every_steps=6"}, "checkpoint.every_steps"},
  };
  for (const auto& [extra, key] : bad) {
    std::vector<std::string> set = base;
    set.insert(set.end(), extra.begin(), extra.end());
    Status s = load(kMinimal, set);
    ASSERT_FALSE(s) << key;
    EXPECT_NE(s.message().find(std::string("key '") + key + "'"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("schedule.localsgd.local_steps"), std::string::npos) << s.message();
  }
  std::vector<std::string> ok = base;
  for (const char* x : {"checkpoint.every_steps=4", "schedule.drain_every=2", "training.eval_every=3", "training.steps=5"})
    ok.push_back(x);  // eval_every without data.val drains nothing
  Config c;
  EXPECT_TRUE(load(kMinimal, ok, &c));
  EXPECT_EQ(schedule_spec_for(c).localsgd_local_steps, 2);
  EXPECT_EQ(schedule_spec_for(c).localsgd_copies, 0);
}

// The fingerprint holds exactly the keys the schema marks kMustMatch, each once as key=value, plus
// the one global-batch line for the kGlobalBatch keys.
TEST(Config, FingerprintHoldsExactlyTheMustMatchKeys) {
  Config c;
  ASSERT_TRUE(load(kMinimal, {"parallel.dp=3", "training.microbatches=5"}, &c));
  std::map<std::string, std::string> lines;
  std::istringstream in(resume_fingerprint(c));
  for (std::string l; std::getline(in, l);) {
    const size_t eq = l.find('=');
    ASSERT_NE(eq, std::string::npos) << l;
    EXPECT_TRUE(lines.emplace(l.substr(0, eq), l.substr(eq + 1)).second) << "twice: " << l;
  }
  std::string batch_name;
  size_t must = 0;
  for (const auto& k : resume_keys(c)) {
    if (k.on_resume == OnResume::kGlobalBatch) batch_name += (batch_name.empty() ? "" : "*") + k.path;
    EXPECT_EQ(lines.count(k.path), k.on_resume == OnResume::kMustMatch ? 1u : 0u) << k.path;
    must += k.on_resume == OnResume::kMustMatch;
  }
  EXPECT_EQ(batch_name, "training.microbatches*parallel.dp");
  ASSERT_EQ(lines.count(batch_name + " (global batch)"), 1u);
  EXPECT_EQ(lines[batch_name + " (global batch)"], "15");
  EXPECT_EQ(lines.size(), must + 1);
  EXPECT_GT(must, 20u);
}

// Checkpoints written before the fingerprint came from the schema still resume: for the default
// config the text equals, byte for byte, what the previous hand-written list produced.
TEST(Config, FingerprintTextIsThePreviousFormat) {
  Config c;
  ASSERT_TRUE(load(kMinimal, {}, &c));
  EXPECT_EQ(resume_fingerprint(c),
            "model.vocab_size=50257\nmodel.max_seq_len=1024\nmodel.n_layer=12\nmodel.n_head=12\nmodel.n_embd=768\n"
            "model.tie_embeddings=true\nmodel.init_std=0.019999999552965164\nrun.seed=1337\ndata.train=d/train_*.bin\n"
            "data.shuffle=true\ntraining.micro_batch_size=4\ntraining.seq_len=64\n"
            "training.microbatches*parallel.dp (global batch)=4\noptimizer.kind=adamw\n"
            "optimizer.lr=0.00059999999999999995\noptimizer.min_lr_ratio=0.10000000000000001\n"
            "optimizer.lr_schedule=cosine\noptimizer.warmup_steps=0\noptimizer.beta1=0.90000000000000002\n"
            "optimizer.beta2=0.94999999999999996\noptimizer.eps=1e-08\noptimizer.weight_decay=0.10000000000000001\n"
            "optimizer.grad_clip=1\noptimizer.decay_embeddings=true\n");
}

}  // namespace
}  // namespace pt
