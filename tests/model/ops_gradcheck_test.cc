// Finite-difference checks of every CPU op's backward (model/cpu/*), on small,
// deliberately non-power-of-two sizes (B=2, T=5, C=6, NH=2, V=7) with non-zero
// random inputs. The objective is f = sum(out ⊙ R) with a random R, so the
// analytic gradient is backward(dout = R). Parameter gradients are checked to
// ACCUMULATE: their buffers start from random values that are subtracted after.
//
// Tolerance. Forward outputs are fp32 (unit roundoff u = 2^-24 ≈ 6e-8); f is summed
// in double, so f carries only the rounding of the n_out <= 90 outputs, each
// ~u·|out| for these well-conditioned O(1) outputs: eps_f ≈ sqrt(n_out)·u ≈ 6e-7
// (a K·u worst case per output, K <= 18, would be ~1e-5). A central difference
// with step h errs by h²/6·|f'''| + eps_f/h. With h = 1e-2: truncation
// ≈ 1.7e-5·|f'''| with |f'''| = O(1) on O(1) inputs, rounding ≈ 6e-5 (1e-3 in the
// adversarial worst case), so ~1e-4 in total. We accept
// |g - fd| <= 5e-4·(1 + |fd|): above that estimate (observed maxima are ~2e-5)
// yet far below the O(1e-2..1) error of a wrong formula, index or sign.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "model/cpu/attention.h"
#include "model/cpu/crossentropy.h"
#include "model/cpu/encoder.h"
#include "model/cpu/gelu.h"
#include "model/cpu/layernorm.h"
#include "model/cpu/matmul.h"
#include "model/cpu/residual.h"
#include "tests/model/test_util.h"

namespace pt {
namespace {

using testing::expect_matches_central_difference;
using testing::random_tokens;
using testing::random_vector;
using testing::weighted_sum;

constexpr int kB = 2, kT = 5, kC = 6, kNH = 2, kV = 7, kMaxT = 8;
constexpr int kN = kB * kT;
constexpr float kStep = 1e-2f;
constexpr double kTol = 5e-4;

// analytic accumulated gradient minus its random starting value
std::vector<float> minus(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

TEST(OpsGradcheck, Matmul) {
  constexpr int OC = 9;
  auto inp = random_vector(kN * kC, 1);
  auto w = random_vector(OC * kC, 2, 0.5f);
  auto b = random_vector(OC, 3, 0.5f);
  auto r = random_vector(kN * OC, 4);
  std::vector<float> out(kN * OC);
  auto f = [&] {
    cpu::matmul_forward(out.data(), inp.data(), w.data(), b.data(), kN, kC, OC);
    return weighted_sum(out, r);
  };
  std::vector<float> dinp(kN * kC);
  auto dw0 = random_vector(w.size(), 5), db0 = random_vector(b.size(), 6);
  auto dw = dw0, db = db0;
  cpu::matmul_backward_input(dinp.data(), r.data(), w.data(), kN, kC, OC);
  cpu::matmul_backward_weight(dw.data(), db.data(), r.data(), inp.data(), kN, kC, OC);
  expect_matches_central_difference("matmul dinp", inp.data(), inp.size(), dinp, kStep, kTol, f);
  expect_matches_central_difference("matmul dweight", w.data(), w.size(), minus(dw, dw0), kStep, kTol, f);
  expect_matches_central_difference("matmul dbias", b.data(), b.size(), minus(db, db0), kStep, kTol, f);

  // A null bias means no bias, and no bias gradient is touched.
  std::vector<float> zero_b(OC, 0.0f), out_zero(kN * OC), out_null(kN * OC);
  cpu::matmul_forward(out_zero.data(), inp.data(), w.data(), zero_b.data(), kN, kC, OC);
  cpu::matmul_forward(out_null.data(), inp.data(), w.data(), nullptr, kN, kC, OC);
  for (size_t i = 0; i < out_zero.size(); ++i) EXPECT_NEAR(out_zero[i], out_null[i], 1e-6f);
  cpu::matmul_backward_weight(dw.data(), nullptr, r.data(), inp.data(), kN, kC, OC);
}

TEST(OpsGradcheck, LayerNorm) {
  auto inp = random_vector(kN * kC, 11, 1.5f, 0.3f);
  auto w = random_vector(kC, 12, 0.3f, 1.0f);
  auto b = random_vector(kC, 13, 0.3f);
  auto r = random_vector(kN * kC, 14);
  std::vector<float> out(kN * kC), mean(kN), rstd(kN);
  auto f = [&] {
    cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), w.data(), b.data(), kN, kC);
    return weighted_sum(out, r);
  };
  f();
  // Forward sanity: with w = 1, b = 0 each row has mean 0 and variance ~1.
  {
    std::vector<float> ones(kC, 1.0f), zeros(kC, 0.0f), o(kN * kC), m(kN), s(kN);
    cpu::layernorm_forward(o.data(), m.data(), s.data(), inp.data(), ones.data(), zeros.data(), kN, kC);
    for (int n = 0; n < kN; ++n) {
      double mu = 0, var = 0;
      for (int c = 0; c < kC; ++c) mu += o[n * kC + c];
      mu /= kC;
      for (int c = 0; c < kC; ++c) var += (o[n * kC + c] - mu) * (o[n * kC + c] - mu);
      var /= kC;
      EXPECT_NEAR(mu, 0.0, 1e-6);
      EXPECT_NEAR(var, 1.0, 1e-3);  // eps = 1e-5 against O(1) variances
    }
  }
  std::vector<float> dinp(kN * kC);
  auto dw0 = random_vector(kC, 15), db0 = random_vector(kC, 16);
  auto dw = dw0, db = db0;
  cpu::layernorm_backward_input(dinp.data(), r.data(), inp.data(), w.data(), mean.data(), rstd.data(), kN, kC);
  cpu::layernorm_backward_weight(dw.data(), db.data(), r.data(), inp.data(), mean.data(), rstd.data(), kN, kC);
  expect_matches_central_difference("layernorm dinp", inp.data(), inp.size(), dinp, kStep, kTol, f);
  expect_matches_central_difference("layernorm dweight", w.data(), w.size(), minus(dw, dw0), kStep, kTol, f);
  expect_matches_central_difference("layernorm dbias", b.data(), b.size(), minus(db, db0), kStep, kTol, f);
}

TEST(OpsGradcheck, Attention) {
  auto inp = random_vector(kN * 3 * kC, 21);
  auto r = random_vector(kN * kC, 22);
  std::vector<float> out(kN * kC), att(kB * kNH * kT * kT);
  auto f = [&] {
    cpu::attention_forward(out.data(), att.data(), inp.data(), kB, kT, kC, kNH);
    return weighted_sum(out, r);
  };
  f();
  // Probabilities: causal (exact zeros above the diagonal), rows sum to 1.
  for (int bh = 0; bh < kB * kNH; ++bh) {
    for (int t = 0; t < kT; ++t) {
      double sum = 0;
      for (int s = 0; s < kT; ++s) {
        float p = att[(bh * kT + t) * kT + s];
        if (s > t) {
          EXPECT_EQ(p, 0.0f);
        }
        sum += p;
      }
      EXPECT_NEAR(sum, 1.0, 1e-6);
    }
  }
  std::vector<float> dinp(kN * 3 * kC, 123.0f), scratch(kT * kT, 77.0f);  // garbage: must be overwritten
  cpu::attention_backward(dinp.data(), scratch.data(), r.data(), inp.data(), att.data(), kB, kT, kC, kNH);
  expect_matches_central_difference("attention dinp", inp.data(), inp.size(), dinp, kStep, kTol, f);
}

TEST(OpsGradcheck, Gelu) {
  constexpr int n = 30;
  auto inp = random_vector(n, 31, 1.5f);
  auto r = random_vector(n, 32);
  std::vector<float> out(n);
  auto f = [&] {
    cpu::gelu_forward(out.data(), inp.data(), n);
    return weighted_sum(out, r);
  };
  f();
  // Known values of the tanh approximation.
  float xs[3] = {0.0f, 1.0f, -2.0f}, ys[3];
  cpu::gelu_forward(ys, xs, 3);
  EXPECT_EQ(ys[0], 0.0f);
  EXPECT_NEAR(ys[1], 0.8411920f, 1e-6f);
  EXPECT_NEAR(ys[2], -0.0454023f, 1e-6f);
  std::vector<float> dinp(n);
  cpu::gelu_backward(dinp.data(), inp.data(), r.data(), n);
  expect_matches_central_difference("gelu dinp", inp.data(), inp.size(), dinp, kStep, kTol, f);
}

TEST(OpsGradcheck, SoftmaxCrossEntropy) {
  auto logits = random_vector(kN * kV, 41, 2.0f);
  auto targets = random_tokens(kN, kV, 42);
  const float scale = 0.37f;  // objective = scale * sum(losses), i.e. R = scale for every token
  std::vector<float> losses(kN);
  const std::vector<float> logits_before = logits;
  auto f = [&] {
    cpu::crossentropy_forward(losses.data(), logits.data(), targets.data(), kN, kV, nullptr);
    double s = 0;
    for (float l : losses) s += double(l) * scale;
    return s;
  };
  f();
  EXPECT_EQ(logits, logits_before) << "the forward must leave the logits untouched (the backward reads them)";
  // Loss against a double-precision log-softmax.
  for (int n = 0; n < kN; ++n) {
    double mx = -1e30, se = 0;
    for (int v = 0; v < kV; ++v) mx = std::max(mx, double(logits[n * kV + v]));
    for (int v = 0; v < kV; ++v) se += std::exp(double(logits[n * kV + v]) - mx);
    double ref = std::log(se) + mx - double(logits[n * kV + targets[n]]);
    EXPECT_NEAR(losses[n], ref, 1e-5 * (1 + ref));
  }
  std::vector<float> dlogits(kN * kV);
  cpu::crossentropy_backward(dlogits.data(), logits.data(), targets.data(), scale, kN, kV, nullptr);
  // In place (dlogits over the logits, as the stage model runs it) gives the same values.
  std::vector<float> inplace = logits;
  cpu::crossentropy_backward(inplace.data(), inplace.data(), targets.data(), scale, kN, kV, nullptr);
  EXPECT_EQ(inplace, dlogits);
  // Row by row (the stage model's chunks) gives the same values too: rows are independent.
  std::vector<float> losses_rows(kN), dlogits_rows(kN * kV);
  for (int n = 0; n < kN; ++n) {
    cpu::crossentropy_forward(&losses_rows[n], &logits[n * kV], &targets[n], 1, kV, nullptr);
    cpu::crossentropy_backward(&dlogits_rows[n * kV], &logits[n * kV], &targets[n], scale, 1, kV, nullptr);
  }
  EXPECT_EQ(losses_rows, losses);
  EXPECT_EQ(dlogits_rows, dlogits);
  // With the forward's softmax statistics the backward gives the same bits (in place too),
  // and the statistics are each row's max and sum of exp(x - max).
  std::vector<float> stats(2 * kN), losses_stats(kN), with_stats(kN * kV);
  cpu::crossentropy_forward(losses_stats.data(), logits.data(), targets.data(), kN, kV, stats.data());
  EXPECT_EQ(losses_stats, losses);
  for (int n = 0; n < kN; ++n) {
    const float* x = &logits[n * kV];
    EXPECT_EQ(stats[2 * n], *std::max_element(x, x + kV)) << "row " << n;
    double se = 0;
    for (int v = 0; v < kV; ++v) se += std::exp(double(x[v]) - stats[2 * n]);
    EXPECT_NEAR(stats[2 * n + 1], se, 1e-5 * se) << "row " << n;
  }
  cpu::crossentropy_backward(with_stats.data(), logits.data(), targets.data(), scale, kN, kV, stats.data());
  EXPECT_EQ(with_stats, dlogits);
  inplace = logits;
  cpu::crossentropy_backward(inplace.data(), inplace.data(), targets.data(), scale, kN, kV, stats.data());
  EXPECT_EQ(inplace, dlogits);
  expect_matches_central_difference("crossentropy dlogits", logits.data(), logits.size(), dlogits, kStep, kTol, f);
}

TEST(OpsGradcheck, Embedding) {
  auto wte = random_vector(kV * kC, 51);
  auto wpe = random_vector(kMaxT * kC, 52);
  std::vector<int32_t> tokens = {3, 1, 3, 6, 0, 2, 3, 3, 5, 1};  // repeats: gradients must add up
  ASSERT_EQ(tokens.size(), size_t(kN));
  auto r = random_vector(kN * kC, 53);
  std::vector<float> out(kN * kC);
  auto f = [&] {
    cpu::encoder_forward(out.data(), tokens.data(), wte.data(), wpe.data(), kB, kT, kC);
    return weighted_sum(out, r);
  };
  auto dwte0 = random_vector(wte.size(), 54), dwpe0 = random_vector(wpe.size(), 55);
  auto dwte = dwte0, dwpe = dwpe0;
  cpu::encoder_backward(dwte.data(), dwpe.data(), r.data(), tokens.data(), kB, kT, kC);
  // Rows of wpe at positions >= T and of tokens never seen get exactly nothing.
  for (int t = kT; t < kMaxT; ++t)
    for (int c = 0; c < kC; ++c) EXPECT_EQ(dwpe[t * kC + c], dwpe0[t * kC + c]);
  for (int c = 0; c < kC; ++c) EXPECT_EQ(dwte[4 * kC + c], dwte0[4 * kC + c]);
  // The objective is linear in the tables, so only rounding separates fd from exact.
  expect_matches_central_difference("embedding dwte", wte.data(), wte.size(), minus(dwte, dwte0), kStep, kTol, f);
  auto dwpe_used = minus(dwpe, dwpe0);
  // Unused wpe rows have an exactly zero derivative; check all rows anyway.
  expect_matches_central_difference("embedding dwpe", wpe.data(), wpe.size(), dwpe_used, kStep, kTol, f);
}

TEST(OpsGradcheck, Residual) {
  auto a = random_vector(kN * kC, 61), b = random_vector(kN * kC, 62);
  std::vector<float> out(kN * kC);
  cpu::residual_forward(out.data(), a.data(), b.data(), kN * kC);
  for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i], a[i] + b[i]);
  cpu::residual_forward(a.data(), a.data(), b.data(), kN * kC);  // aliasing, as the stage model uses it
  EXPECT_EQ(a, out);
}

}  // namespace
}  // namespace pt
