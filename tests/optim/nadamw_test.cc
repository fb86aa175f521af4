// NAdamW (optim/nadamw.h) through the Optimizer interface against a float64
// transcription of PyTorch's NAdam with decoupled_weight_decay=True (mu_product kept
// as a running product, the parameter first scaled by 1 − lr·wd), with the decay flags
// of AdamW; and the coefficients against their closed form at t = 1.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "common/rng.h"
#include "optim/nadamw.h"
#include "optim/registry.h"

namespace pt {
namespace {

TEST(NAdamW, MatchesFloat64PyTorchFormulaWithDecayFlags) {
  const std::vector<OptimTensor> layout = {{"wte", 0, 6, {3, 2}, true}, {"h0.attn.qkv_w", 6, 8, {2, 4}, true},
                                           {"h0.ln1_b", 14, 3, {3}, false}};
  const size_t n = 17;
  OptimizerOptions o;
  o.beta1 = 0.9;
  o.beta2 = 0.99;
  o.eps = 1e-8;
  o.weight_decay = 0.1;
  o.decay_embeddings = false;
  o.momentum_decay = 0.004;
  std::unique_ptr<Optimizer> opt, adamw;
  ASSERT_TRUE(make_optimizer("nadamw", o, &opt));
  ASSERT_TRUE(make_optimizer("adamw", o, &adamw));
  EXPECT_EQ(opt->state_names(), (std::vector<std::string>{"adam_m", "adam_v"}));
  auto st = opt->make_state(layout, n, MemorySpace::kHost);
  auto ast = adamw->make_state(layout, n, MemorySpace::kHost);
  std::vector<float> p(n), pa(n);
  std::vector<double> pd(n), md(n, 0.0), vd(n, 0.0);
  for (size_t i = 0; i < n; ++i) pa[i] = p[i] = philox_normal(51, 0, i), pd[i] = p[i];
  const double lr = 1e-2, scale = 0.5;
  double mu_product = 1.0;
  for (int t = 1; t <= 6; ++t) {
    std::vector<float> g(n);
    for (size_t i = 0; i < n; ++i) g[i] = philox_normal(52, t, i);
    opt->step(*st, StageBuffers{p.data(), g.data(), n, MemorySpace::kHost, nullptr}, StepArgs{lr, float(scale), t});
    adamw->step(*ast, StageBuffers{pa.data(), g.data(), n, MemorySpace::kHost, nullptr}, StepArgs{lr, float(scale), t});
    const double mu = 0.9 * (1 - 0.5 * std::pow(0.96, t * 0.004));
    const double mu_next = 0.9 * (1 - 0.5 * std::pow(0.96, (t + 1) * 0.004));
    mu_product *= mu;
    for (const auto& tensor : layout) {
      const double wd = tensor.weight_decay && tensor.name != "wte" ? 0.1 : 0.0;  // decay_embeddings = false
      for (size_t i = tensor.offset; i < tensor.offset + tensor.numel; ++i) {
        const double gi = double(g[i]) * scale;
        pd[i] *= 1 - lr * wd;
        md[i] += (gi - md[i]) * (1 - 0.9);  // exp_avg.lerp_(grad, 1 − beta1)
        vd[i] = 0.99 * vd[i] + (1 - 0.99) * gi * gi;
        const double denom = std::sqrt(vd[i] / (1 - std::pow(0.99, t))) + 1e-8;
        pd[i] -= lr * (1 - mu) / (1 - mu_product) * gi / denom;
        pd[i] -= lr * mu_next / (1 - mu_product * mu_next) * md[i] / denom;
      }
    }
  }
  double differs_from_adamw = 0;
  for (size_t i = 0; i < n; ++i) {
    EXPECT_NEAR(p[i], pd[i], 1e-5) << i;
    differs_from_adamw = std::max(differs_from_adamw, std::fabs(double(p[i]) - pa[i]));
  }
  EXPECT_GT(differs_from_adamw, 1e-3) << "Nesterov momentum changes the trajectory";
}

TEST(NAdamW, CoefficientsAtTheFirstUpdate) {
  NAdamWParams p;
  p.adam.beta1 = 0.9f;
  p.adam.beta2 = 0.999f;
  p.adam.t = 1;
  p.momentum_decay = 0.004;
  const double mu1 = 0.9 * (1 - 0.5 * std::pow(0.96, 0.004)), mu2 = 0.9 * (1 - 0.5 * std::pow(0.96, 0.008));
  const NAdamWCoefficients c = nadamw_coefficients(p);
  EXPECT_FLOAT_EQ(c.grad, float((1 - mu1) / (1 - mu1)));  // = 1: the first step is the plain gradient term
  EXPECT_FLOAT_EQ(c.momentum, float(mu2 / (1 - mu1 * mu2)));
  EXPECT_FLOAT_EQ(c.bc2, 1.0f - 0.999f);
}

}  // namespace
}  // namespace pt
