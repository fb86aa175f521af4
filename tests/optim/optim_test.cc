// AdamW against a float64 transcription of the update rule, directly and through the
// Optimizer interface (weight-decay flags, decay_embeddings, named state); the
// registry; the learning-rate schedule against its closed form; the global norm
// against a direct sum.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/rng.h"
#include "optim/adamw.h"
#include "optim/grad_norm.h"
#include "optim/lr_schedule.h"
#include "optim/registry.h"

namespace pt {
namespace {

TEST(AdamW, MatchesFloat64ReferenceOverSeveralSteps) {
  const size_t n = 37;
  std::vector<float> p(n), m(n, 0.f), v(n, 0.f);
  std::vector<double> pd(n), md(n, 0.0), vd(n, 0.0);
  for (size_t i = 0; i < n; ++i) pd[i] = p[i] = philox_normal(1, 0, i);
  AdamWParams hp;
  hp.lr = 1e-2f; hp.beta1 = 0.9f; hp.beta2 = 0.95f; hp.eps = 1e-8f; hp.weight_decay = 0.1f; hp.grad_scale = 0.5f;
  for (int t = 1; t <= 5; ++t) {
    std::vector<float> g(n);
    for (size_t i = 0; i < n; ++i) g[i] = philox_normal(2, t, i);
    hp.t = t;
    adamw_update(p.data(), g.data(), m.data(), v.data(), n, hp);
    for (size_t i = 0; i < n; ++i) {
      double gi = double(g[i]) * 0.5;
      md[i] = 0.9 * md[i] + 0.1 * gi;
      vd[i] = 0.95 * vd[i] + 0.05 * gi * gi;
      double mh = md[i] / (1 - std::pow(0.9, t)), vh = vd[i] / (1 - std::pow(0.95, t));
      pd[i] -= 1e-2 * (mh / (std::sqrt(vh) + 1e-8) + 0.1 * pd[i]);
    }
  }
  // Each step moves a weight by at most ~lr; fp32 rounding of O(1) values over 5
  // steps stays within a few ulps of 1, far below 1e-5.
  double moved = 0;
  for (size_t i = 0; i < n; ++i) {
    EXPECT_NEAR(p[i], pd[i], 1e-5) << i;
    moved += std::fabs(pd[i] - double(philox_normal(1, 0, i)));
  }
  EXPECT_GT(moved, 1e-3);  // the update did something
}

TEST(OptimizerRegistry, KnowsAdamWAndRejectsUnknownKindsNamingTheAllowedOnes) {
  const std::vector<std::string> kinds = optimizer_kinds();
  ASSERT_EQ(kinds.size(), optimizer_registry().size());
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "adamw"), kinds.end());
  EXPECT_EQ(kinds.front(), kDefaultOptimizerKind) << "the config default is the table's first entry";
  std::string allowed;
  for (const auto& k : kinds) {
    std::unique_ptr<Optimizer> opt;
    ASSERT_TRUE(make_optimizer(k, OptimizerOptions{}, &opt)) << k;
    ASSERT_NE(opt, nullptr);
    EXPECT_EQ(std::string(opt->kind()), k) << "the entry builds the optimizer it names";
    allowed += (allowed.empty() ? "" : ", ") + k;
  }
  std::unique_ptr<Optimizer> opt;
  const Status s = make_optimizer("sgd", OptimizerOptions{}, &opt);
  ASSERT_FALSE(s);
  EXPECT_EQ(opt, nullptr);
  EXPECT_NE(s.message().find("'sgd'"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("allowed: " + allowed), std::string::npos) << s.message();
}

// A stage of four tensors: the embedding (decays only with decay_embeddings), a
// position table and a bias (never decay), a matrix (decays).
std::vector<OptimTensor> test_layout() {
  return {OptimTensor{"wte", 0, 6, {3, 2}, true}, OptimTensor{"wpe", 6, 5, {5, 1}, false},
          OptimTensor{"h0.attn.qkv_w", 11, 8, {2, 4}, true}, OptimTensor{"h0.ln_1.b", 19, 3, {3}, false}};
}

TEST(AdamWOptimizer, StateTensorsAreNamedAndSizedLikeTheParams) {
  std::unique_ptr<Optimizer> opt;
  ASSERT_TRUE(make_optimizer("adamw", OptimizerOptions{}, &opt));
  const std::vector<OptimTensor> layout = test_layout();
  const size_t n = 22;
  EXPECT_EQ(opt->state_names(), (std::vector<std::string>{"adam_m", "adam_v"}));
  std::unique_ptr<OptimizerState> st = opt->make_state(layout, n, MemorySpace::kHost);
  EXPECT_EQ(st->space(), MemorySpace::kHost);
  EXPECT_EQ(st->total_floats(), 2 * n);
  EXPECT_EQ(opt->state_floats(layout, n), st->total_floats());
  const std::vector<StateTensor> whole = st->tensors();
  ASSERT_EQ(whole.size(), 2u);
  for (size_t j = 0; j < 2; ++j) {
    EXPECT_EQ(whole[j].name, opt->state_names()[j]);
    ASSERT_EQ(whole[j].numel, n);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(whole[j].data[i], 0.0f) << "zero-initialised";
  }
  EXPECT_NE(whole[0].data, whole[1].data);
  for (size_t k = 0; k < layout.size(); ++k) {
    const std::vector<StateTensor> per = st->tensor_state(k);
    ASSERT_EQ(per.size(), 2u);
    for (size_t j = 0; j < 2; ++j) {
      EXPECT_EQ(per[j].name, whole[j].name);
      EXPECT_EQ(per[j].numel, layout[k].numel);
      EXPECT_EQ(per[j].data, whole[j].data + layout[k].offset) << "a slice of the stage-wide tensor";
    }
  }
}

// Four updates through the interface against the closed form in float64, per tensor
// with its decay (wte's depends on decay_embeddings); bitwise against adamw_update
// with the decay each tensor should get; the gradients are left untouched.
TEST(AdamWOptimizer, StepMatchesClosedFormWithDecayFlags) {
  for (const bool decay_embeddings : {true, false}) {
    OptimizerOptions o;
    o.beta1 = 0.9;
    o.beta2 = 0.95;
    o.eps = 1e-8;
    o.weight_decay = 0.1;
    o.decay_embeddings = decay_embeddings;
    std::unique_ptr<Optimizer> opt;
    ASSERT_TRUE(make_optimizer("adamw", o, &opt));
    const std::vector<OptimTensor> layout = test_layout();
    const size_t n = 22;
    std::unique_ptr<OptimizerState> st = opt->make_state(layout, n, MemorySpace::kHost);
    std::vector<float> p(n), direct_p(n), direct_m(n, 0.f), direct_v(n, 0.f);
    std::vector<double> pd(n), md(n, 0.0), vd(n, 0.0);
    for (size_t i = 0; i < n; ++i) direct_p[i] = p[i] = philox_normal(5, 0, i), pd[i] = p[i];
    const double lr = 2e-2;
    const float scale = 0.75f;
    for (int t = 1; t <= 4; ++t) {
      std::vector<float> g(n);
      for (size_t i = 0; i < n; ++i) g[i] = philox_normal(6, t, i);
      const std::vector<float> g_before = g;
      opt->step(*st, StageBuffers{p.data(), g.data(), n, MemorySpace::kHost, nullptr}, StepArgs{lr, scale, t});
      EXPECT_EQ(g, g_before);
      for (const auto& tensor : layout) {
        const bool decays = tensor.weight_decay && (tensor.name != "wte" || decay_embeddings);
        const double wd = decays ? 0.1 : 0.0;
        AdamWParams hp;
        hp.lr = float(lr); hp.beta1 = 0.9f; hp.beta2 = 0.95f; hp.eps = 1e-8f; hp.weight_decay = float(wd);
        hp.t = t; hp.grad_scale = scale;
        const size_t at = tensor.offset;
        adamw_update(direct_p.data() + at, g.data() + at, direct_m.data() + at, direct_v.data() + at, tensor.numel, hp);
        for (size_t i = at; i < at + tensor.numel; ++i) {
          const double gi = double(g[i]) * double(scale);
          md[i] = 0.9 * md[i] + 0.1 * gi;
          vd[i] = 0.95 * vd[i] + 0.05 * gi * gi;
          const double mh = md[i] / (1 - std::pow(0.9, t)), vh = vd[i] / (1 - std::pow(0.95, t));
          pd[i] -= lr * (mh / (std::sqrt(vh) + 1e-8) + wd * pd[i]);
        }
      }
    }
    // Decay moves a weight by lr·wd·|p| ~ 2e-3 per step, far above the 1e-5 of fp32
    // rounding, so a tensor given the wrong decay fails here.
    for (size_t i = 0; i < n; ++i) EXPECT_NEAR(p[i], pd[i], 1e-5) << i << " decay_embeddings=" << decay_embeddings;
    EXPECT_EQ(std::memcmp(p.data(), direct_p.data(), n * sizeof(float)), 0) << "bitwise equal to adamw_update";
    const std::vector<StateTensor> whole = st->tensors();
    EXPECT_EQ(std::memcmp(whole[0].data, direct_m.data(), n * sizeof(float)), 0);
    EXPECT_EQ(std::memcmp(whole[1].data, direct_v.data(), n * sizeof(float)), 0);
  }
}

TEST(LrSchedule, WarmupThenCosineToMin) {
  LrSchedule s;
  s.lr = 1.0; s.min_lr_ratio = 0.1; s.warmup_steps = 4; s.total_steps = 14;
  EXPECT_DOUBLE_EQ(learning_rate(s, 0), 0.25);
  EXPECT_DOUBLE_EQ(learning_rate(s, 3), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(s, 4), 1.0);
  EXPECT_NEAR(learning_rate(s, 13), 0.1, 1e-12);
  // halfway through the decay: min + (max-min)/2
  s.warmup_steps = 0; s.total_steps = 11;
  EXPECT_NEAR(learning_rate(s, 5), 0.55, 1e-12);
  s.kind = "linear";
  EXPECT_NEAR(learning_rate(s, 5), 0.55, 1e-12);
  s.kind = "constant";
  EXPECT_DOUBLE_EQ(learning_rate(s, 9), 1.0);
}

// PipeDream-LR (lr_schedule.h): lr_s = lr / (n_s - 1)^(1 - min(u / T, 1)), n_s = (S - s) / m,
// u = version + 1, against the closed form written out per case.
TEST(LrSchedule, StagewiseCorrectionClosedForm) {
  EXPECT_EQ(stagewise_num_versions(4, 0, 1), 4);
  EXPECT_EQ(stagewise_num_versions(4, 3, 1), 1);
  EXPECT_EQ(stagewise_num_versions(8, 1, 2), 3);  // the reference divides the versions by m
  EXPECT_EQ(stagewise_num_versions(4, 2, 4), 0);
  // S = 4, T = 10: stage 0 keeps 4 versions, so its factor is 3^-(1 - u/10).
  EXPECT_NEAR(stagewise_lr_factor(4, 1, 10), std::pow(3.0, -0.9), 1e-15);
  EXPECT_NEAR(stagewise_lr_factor(4, 5, 10), 1.0 / std::sqrt(3.0), 1e-15);
  EXPECT_NEAR(stagewise_lr_factor(3, 2, 10), std::pow(2.0, -0.8), 1e-15);
  EXPECT_DOUBLE_EQ(stagewise_lr_factor(2, 1, 10), 1.0);   // n - 1 = 1: 1^x
  EXPECT_EQ(stagewise_lr_factor(4, 10, 10), 1.0);          // u >= T: no correction
  EXPECT_EQ(stagewise_lr_factor(4, 11, 10), 1.0);
  EXPECT_EQ(stagewise_lr_factor(4, 1, 1), 1.0);            // T = 1: never corrected
  EXPECT_EQ(stagewise_lr_factor(1, 1, 10), 1.0);           // delay 0: no correction, no 0^x
  EXPECT_EQ(stagewise_lr_factor(0, 1, 10), 1.0);
  // stage_learning_rate: the scheduled lr of version `step` times the factor at u = step + 1.
  LrSchedule s;
  s.kind = "constant";
  s.lr = 0.5;
  s.warmup_steps = 4;
  EXPECT_EQ(stage_learning_rate(s, 0, 0), learning_rate(s, 0));  // stagewise_stages = 0: off
  s.stagewise_stages = 4;
  s.stagewise_steps = 10;
  EXPECT_NEAR(stage_learning_rate(s, 0, 0), 0.5 * 0.25 * std::pow(3.0, -0.9), 1e-15);  // warm-up step 0
  EXPECT_NEAR(stage_learning_rate(s, 1, 5), 0.5 * std::pow(2.0, -0.4), 1e-15);          // u = 6
  EXPECT_EQ(stage_learning_rate(s, 3, 0), 0.5 * 0.25);                                  // last stage
  EXPECT_EQ(stage_learning_rate(s, 0, 9), 0.5);                                         // u = T
  s.stagewise_accumulation = 2;                                                         // n_0 = 2: 1^x
  EXPECT_EQ(stage_learning_rate(s, 0, 0), 0.5 * 0.25);
}

TEST(GradNorm, CombinesInIdOrderRegardlessOfInputOrder) {
  std::vector<float> a = {3.f, 4.f}, b = {1e-8f, 12.f};
  double sa = sum_of_squares(a.data(), 2), sb = sum_of_squares(b.data(), 2);
  EXPECT_DOUBLE_EQ(sa, 25.0);
  double n1 = combine_norm({{0, sa}, {1, sb}});
  double n2 = combine_norm({{1, sb}, {0, sa}});
  EXPECT_EQ(n1, n2);
  EXPECT_NEAR(n1, std::sqrt(25.0 + 144.0), 1e-12);
  EXPECT_FLOAT_EQ(clip_scale(13.0, 1.0), float(1.0 / (13.0 + 1e-6)));
  EXPECT_EQ(clip_scale(0.5, 1.0), 1.0f);
  EXPECT_EQ(clip_scale(50.0, 0.0), 1.0f);
}

}  // namespace
}  // namespace pt
