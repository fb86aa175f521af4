// GPU kernels vs their CPU twins: encoder, layernorm, gelu, residual, fused residual +
// layernorm, softmax + cross-entropy. Sizes are deliberately not multiples of warp, block or tile sizes
// (T = 67, C = 103, V = 1007). Written outputs are NaN-poisoned before each run.
// Tolerance derivations: cuda_test_util.h and the comment at each comparison.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "model/cpu/crossentropy.h"
#include "model/cpu/encoder.h"
#include "model/cpu/gelu.h"
#include "model/cpu/layernorm.h"
#include "model/cpu/residual.h"
#include "model/cpu/residual_layernorm.h"
#include "model/cuda/convert_bf16.h"
#include "model/cuda/crossentropy.h"
#include "model/cuda/encoder.h"
#include "model/cuda/gelu.h"
#include "model/cuda/layernorm.h"
#include "model/cuda/residual.h"
#include "model/cuda/residual_layernorm.h"
#include "tests/model/cuda/cuda_test_util.h"

namespace pt {
namespace {

using testing::DeviceBuffer;
using testing::expect_bitwise_equal;
using testing::expect_within;
using testing::kFp32Unit;
using testing::philox_vector;

constexpr int kB = 2, kT = 67, kC = 103, kV = 1007, kMaxT = 80;
constexpr int kN = kB * kT;

// Tokens from a small range plus the last vocabulary row, so buckets repeat many
// times (the order of the backward sums matters) and the row-bound edge is used.
std::vector<int32_t> repeated_tokens(size_t n, uint64_t seed) {
  std::vector<int32_t> tok(n);
  for (size_t i = 0; i < n; ++i) {
    uint32_t r[4];
    Philox4x32::generate(seed, 7, i, r);
    tok[i] = (r[0] % 11 == 0) ? kV - 1 : int32_t(r[1] % 23);
  }
  return tok;
}

class CudaOps : public testing::CudaTest {};

// Forward is one add per element; backward only adds, in the CPU twin's order
// (see model/cuda/encoder.h): both must be bitwise equal.
TEST_F(CudaOps, EncoderForwardAndBackwardAreBitwiseEqualToCpu) {
  const auto tok = repeated_tokens(kN, 1);
  const auto wte = philox_vector(size_t(kV) * kC, 1, 1);
  const auto wpe = philox_vector(size_t(kMaxT) * kC, 1, 2);
  const auto dout = philox_vector(size_t(kN) * kC, 1, 3);
  const auto dwte0 = philox_vector(size_t(kV) * kC, 1, 4);  // += onto existing gradients
  const auto dwpe0 = philox_vector(size_t(kMaxT) * kC, 1, 5);
  testing::expect_not_all_zero("dout", dout);

  std::vector<float> out(size_t(kN) * kC), dwte = dwte0, dwpe = dwpe0;
  cpu::encoder_forward(out.data(), tok.data(), wte.data(), wpe.data(), kB, kT, kC);
  cpu::encoder_backward(dwte.data(), dwpe.data(), dout.data(), tok.data(), kB, kT, kC);

  DeviceBuffer<int32_t> d_tok(tok);
  DeviceBuffer<float> d_wte(wte), d_wpe(wpe), d_dout(dout), d_out(out.size());
  DeviceBuffer<int32_t> d_ws(cuda::encoder_backward_workspace_ints(kB, kT, kV));
  d_out.poison();
  cuda::encoder_forward(d_out.get(), d_tok.get(), d_wte.get(), d_wpe.get(), kB, kT, kC, nullptr);
  expect_bitwise_equal("encoder_forward out", d_out.download(), out);

  // Twice from the same start: the result must not depend on atomics' timing.
  for (int run = 0; run < 2; ++run) {
    DeviceBuffer<float> d_dwte(dwte0), d_dwpe(dwpe0);
    d_ws.poison();  // the workspace needs no initialization by the caller
    cuda::encoder_backward(d_dwte.get(), d_dwpe.get(), d_dout.get(), d_tok.get(), kB, kT, kC, kV, d_ws.get(),
                           nullptr);
    expect_bitwise_equal("encoder_backward dwte", d_dwte.download(), dwte);
    expect_bitwise_equal("encoder_backward dwpe", d_dwpe.download(), dwpe);
  }
}

TEST_F(CudaOps, LayerNormMatchesCpu) {
  // Shifted inputs (mean 0.5, std 2) exercise the two-pass variance.
  const auto inp = philox_vector(size_t(kN) * kC, 2, 1, 2.0f, 0.5f);
  const auto weight = philox_vector(kC, 2, 2, 0.5f, 1.0f);
  const auto bias = philox_vector(kC, 2, 3, 0.5f);
  const auto dout = philox_vector(size_t(kN) * kC, 2, 4);
  const auto dweight0 = philox_vector(kC, 2, 5);
  const auto dbias0 = philox_vector(kC, 2, 6);

  std::vector<float> out(size_t(kN) * kC), mean(kN), rstd(kN), dinp(out.size());
  std::vector<float> dweight = dweight0, dbias = dbias0;
  cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(), bias.data(), kN, kC);
  cpu::layernorm_backward_input(dinp.data(), dout.data(), inp.data(), weight.data(), mean.data(), rstd.data(), kN,
                                kC);
  cpu::layernorm_backward_weight(dweight.data(), dbias.data(), dout.data(), inp.data(), mean.data(), rstd.data(), kN,
                                 kC);

  DeviceBuffer<float> d_inp(inp), d_w(weight), d_b(bias), d_dout(dout);
  DeviceBuffer<float> d_out(out.size()), d_mean(kN), d_rstd(kN), d_dinp(dinp.size());
  DeviceBuffer<float> d_dw(dweight0), d_db(dbias0);
  DeviceBuffer<float> d_scratch(cuda::layernorm_backward_weight_scratch_floats(kN, kC));
  d_out.poison();
  d_mean.poison();
  d_rstd.poison();
  d_dinp.poison();
  cuda::layernorm_forward(d_out.get(), d_mean.get(), d_rstd.get(), d_inp.get(), d_w.get(), d_b.get(), kN, kC,
                          nullptr);
  // Forward: mean and variance are sums of C terms (K = C); out adds ~4 roundings.
  const double rtol_fwd = testing::sum_order_rtol(kC) + 8 * kFp32Unit;
  expect_within("layernorm mean", d_mean.download(), mean, testing::scaled_tolerances(mean, rtol_fwd));
  expect_within("layernorm rstd", d_rstd.download(), rstd, testing::tolerances(rstd, 0.0, rtol_fwd));
  expect_within("layernorm out", d_out.download(), out, testing::scaled_tolerances(out, 2 * rtol_fwd));

  // Backward from the CPU's mean/rstd so only the backward's own rounding is compared.
  d_mean.upload(mean);
  d_rstd.upload(rstd);
  cuda::layernorm_backward_input(d_dinp.get(), d_dout.get(), d_inp.get(), d_w.get(), d_mean.get(), d_rstd.get(),
                                 kN, kC, nullptr);
  // Two row sums of C terms whose means are subtracted from O(1) terms: cancellation
  // makes the scale-aware floor necessary.
  expect_within("layernorm dinp", d_dinp.download(), dinp,
                testing::scaled_tolerances(dinp, 2 * testing::sum_order_rtol(kC) + 8 * kFp32Unit));
  cuda::layernorm_backward_weight(d_dw.get(), d_db.get(), d_dout.get(), d_inp.get(), d_mean.get(), d_rstd.get(),
                                  kN, kC, d_scratch.get(), nullptr);
  // Column sums of N terms plus the existing value (K = N + 1).
  const double rtol_w = testing::sum_order_rtol(kN + 1) + 4 * kFp32Unit;
  expect_within("layernorm dweight", d_dw.download(), dweight, testing::scaled_tolerances(dweight, rtol_w));
  expect_within("layernorm dbias", d_db.download(), dbias, testing::scaled_tolerances(dbias, rtol_w));
}

TEST_F(CudaOps, GeluMatchesCpu) {
  const int n = 10007;
  const auto x = philox_vector(n, 3, 1, 2.5f);  // reaches |x| ~ 10: both saturated tails
  const auto dout = philox_vector(n, 3, 2);
  std::vector<float> out(n), dinp(n);
  cpu::gelu_forward(out.data(), x.data(), n);
  cpu::gelu_backward(dinp.data(), x.data(), dout.data(), n);
  DeviceBuffer<float> d_x(x), d_dout(dout), d_out(n), d_dinp(n);
  d_out.poison();
  d_dinp.poison();
  cuda::gelu_forward(d_out.get(), d_x.get(), n, nullptr);
  cuda::gelu_backward(d_dinp.get(), d_x.get(), d_dout.get(), n, nullptr);
  // The two tanh implementations differ by <= ~2.5e-7 absolute (CPU: exp-based,
  // ~1e-7 by its own analysis in model/cpu/gelu.cc; GPU: tanhf, 2 ulp). out moves by
  // 0.5|x|·Δtanh; dinp by (0.5 + |x|·|th|·0.8·(1 + 0.134x²))·Δtanh·|dout|. We allow
  // Δtanh = 5e-7 in those bounds, plus 8 ulp of relative rounding.
  std::vector<double> tol_out(n), tol_dinp(n);
  for (int i = 0; i < n; ++i) {
    const double ax = std::fabs(x[i]);
    tol_out[i] = 0.5 * ax * 5e-7 + 8 * kFp32Unit * std::fabs(out[i]);
    tol_dinp[i] = (0.5 + ax * 0.8 * (1.0 + 0.134 * ax * ax)) * 5e-7 * std::fabs(dout[i]) +
                  8 * kFp32Unit * std::fabs(dinp[i]);
  }
  expect_within("gelu_forward out", d_out.download(), out, tol_out);
  expect_within("gelu_backward dinp", d_dinp.download(), dinp, tol_dinp);
}

TEST_F(CudaOps, ResidualIsBitwiseEqualToCpu) {
  const int n = 10007;
  const auto a = philox_vector(n, 4, 1), b = philox_vector(n, 4, 2);
  std::vector<float> out(n);
  cpu::residual_forward(out.data(), a.data(), b.data(), n);
  DeviceBuffer<float> d_a(a), d_b(b), d_out(n);
  d_out.poison();
  cuda::residual_forward(d_out.get(), d_a.get(), d_b.get(), n, nullptr);
  expect_bitwise_equal("residual_forward out", d_out.download(), out);
  // In place (out aliases inp1), as the residual stream uses it.
  cuda::residual_forward(d_a.get(), d_a.get(), d_b.get(), n, nullptr);
  expect_bitwise_equal("residual_forward in place", d_a.download(), out);
}

// The fused residual + LayerNorm against (a) the unfused CUDA ops it replaces in the
// stage model (residual_forward, round_fp32_to_bf16, layernorm_forward): bitwise, as
// it keeps the LayerNorm kernel's per-lane order and butterfly; (b) the CPU twin: res
// bitwise (one IEEE add, the same RNE rounding), so mean, rstd and ln see the same
// input and differ by summation order only, within the LayerNorm bound above. C covers
// every register tier of the kernel (<= 256, <= 768, <= 2048) and the re-reading path
// (> 2048), none a multiple of 32 except GPT-2's 768; N = 13 leaves a partial block.
TEST_F(CudaOps, ResidualLayerNormMatchesUnfusedOpsAndCpu) {
  const int N = 13;
  for (int C : {37, 103, 768, 1601, 2085}) {
    for (bool round_bf16 : {false, true}) {
      const std::string tag = " C=" + std::to_string(C) + (round_bf16 ? " bf16" : " fp32");
      const size_t NC = size_t(N) * C;
      const auto a = philox_vector(NC, 9, uint64_t(C), 2.0f, 0.5f);  // shifted: two-pass variance
      const auto b = philox_vector(NC, 9, uint64_t(C) + 1);
      const auto w = philox_vector(size_t(C), 9, 2, 0.5f, 1.0f);
      const auto bias = philox_vector(size_t(C), 9, 3, 0.5f);

      std::vector<float> res(NC), ln(NC), mean(N), rstd(N);
      cpu::residual_layernorm_forward(res.data(), ln.data(), mean.data(), rstd.data(), a.data(), b.data(), w.data(),
                                      bias.data(), N, C, round_bf16);

      DeviceBuffer<float> d_a(a), d_b(b), d_w(w), d_bias(bias);
      DeviceBuffer<float> u_res(NC), u_ln(NC), u_mean(N), u_rstd(N), d_ln(NC), d_mean(N), d_rstd(N);
      for (auto* buf : {&u_res, &u_ln, &u_mean, &u_rstd, &d_ln, &d_mean, &d_rstd}) buf->poison();
      cuda::residual_forward(u_res.get(), d_a.get(), d_b.get(), int(NC), nullptr);
      if (round_bf16) cuda::round_fp32_to_bf16(u_res.get(), NC, nullptr);
      cuda::layernorm_forward(u_ln.get(), u_mean.get(), u_rstd.get(), u_res.get(), d_w.get(), d_bias.get(), N, C,
                              nullptr);
      // In place over inp2, as the stage model calls it (res1 = in + res1).
      cuda::residual_layernorm_forward(d_b.get(), d_ln.get(), d_mean.get(), d_rstd.get(), d_a.get(), d_b.get(),
                                       d_w.get(), d_bias.get(), N, C, round_bf16, nullptr);
      const auto f_res = d_b.download(), f_ln = d_ln.download(), f_mean = d_mean.download(),
                 f_rstd = d_rstd.download();
      expect_bitwise_equal("fused vs unfused res" + tag, f_res, u_res.download());
      expect_bitwise_equal("fused vs unfused ln" + tag, f_ln, u_ln.download());
      expect_bitwise_equal("fused vs unfused mean" + tag, f_mean, u_mean.download());
      expect_bitwise_equal("fused vs unfused rstd" + tag, f_rstd, u_rstd.download());

      expect_bitwise_equal("fused res vs cpu" + tag, f_res, res);
      const double rtol_fwd = testing::sum_order_rtol(C) + 8 * kFp32Unit;  // as in LayerNormMatchesCpu
      expect_within("fused mean vs cpu" + tag, f_mean, mean, testing::scaled_tolerances(mean, rtol_fwd));
      expect_within("fused rstd vs cpu" + tag, f_rstd, rstd, testing::tolerances(rstd, 0.0, rtol_fwd));
      expect_within("fused ln vs cpu" + tag, f_ln, ln, testing::scaled_tolerances(ln, 2 * rtol_fwd));
    }
  }
}

// Bound of the fused LayerNorm input gradient + residual add vs the CPU twin, per element:
// g differs by δ = the LayerNorm dinp bound of LayerNormMatchesCpu (summation order); the
// bf16 rounding (unit R = 2^-8) of two values δ apart differs by <= δ + R(2|g| + δ); the
// add of the same dres to both, each rounded once (u), then by <= (1 + u)·δ' + 2u(1 + u)|out|.
std::vector<double> ln_residual_tolerances(const std::vector<float>& g, const std::vector<float>& out, int C,
                                           bool round_bf16) {
  const double kR = 1.0 / 256.0, u = kFp32Unit;
  const auto delta = testing::scaled_tolerances(g, 2 * testing::sum_order_rtol(C) + 8 * u);
  std::vector<double> t(g.size());
  for (size_t i = 0; i < g.size(); ++i) {
    const double d = round_bf16 ? delta[i] + kR * (2 * std::fabs(double(g[i])) + delta[i]) : delta[i];
    t[i] = (1 + u) * d + 2 * u * (1 + u) * std::fabs(double(out[i]));
  }
  return t;
}

// layernorm_backward_input_residual: bitwise the unfused CUDA ops it replaces in the stage
// model (layernorm_backward_input, round_fp32_to_bf16, residual_forward), and the CPU twin
// within the bound above, on C below a warp, odd C and GPT-2's 768.
TEST_F(CudaOps, LayerNormBackwardResidualMatchesUnfusedOpsAndCpu) {
  const int N = 13;
  for (int C : {5, 103, 768}) {
    for (bool round_bf16 : {false, true}) {
      const std::string tag = " C=" + std::to_string(C) + (round_bf16 ? " bf16" : " fp32");
      const size_t NC = size_t(N) * C;
      const auto x = philox_vector(NC, 10, uint64_t(C), 2.0f, 0.5f), dy = philox_vector(NC, 10, uint64_t(C) + 1);
      const auto dres = philox_vector(NC, 10, uint64_t(C) + 2), w = philox_vector(size_t(C), 10, 2, 0.5f, 1.0f);
      std::vector<float> ln(NC), mean(N), rstd(N), g(NC), out(NC);
      cpu::layernorm_forward(ln.data(), mean.data(), rstd.data(), x.data(), w.data(), w.data(), N, C);
      cpu::layernorm_backward_input(g.data(), dy.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
      cpu::layernorm_backward_input_residual(out.data(), dres.data(), dy.data(), x.data(), w.data(), mean.data(),
                                             rstd.data(), N, C, round_bf16);

      DeviceBuffer<float> d_x(x), d_dy(dy), d_dres(dres), d_w(w), d_mean(mean), d_rstd(rstd);
      DeviceBuffer<float> u_g(NC), u_out(NC), d_out(NC);
      for (auto* buf : {&u_g, &u_out, &d_out}) buf->poison();
      cuda::layernorm_backward_input(u_g.get(), d_dy.get(), d_x.get(), d_w.get(), d_mean.get(), d_rstd.get(), N, C,
                                     nullptr);
      if (round_bf16) cuda::round_fp32_to_bf16(u_g.get(), NC, nullptr);
      cuda::residual_forward(u_out.get(), d_dres.get(), u_g.get(), int(NC), nullptr);
      cuda::layernorm_backward_input_residual(d_out.get(), d_dres.get(), d_dy.get(), d_x.get(), d_w.get(),
                                              d_mean.get(), d_rstd.get(), N, C, round_bf16, nullptr);
      const auto f_out = d_out.download();
      expect_bitwise_equal("fused vs unfused dinp" + tag, f_out, u_out.download());
      expect_within("fused dinp vs cpu" + tag, f_out, out, ln_residual_tolerances(g, out, C, round_bf16));
    }
  }
}

// One call over kN rows of V logits starting `offset` floats into the device buffer,
// against the CPU twin.
void check_crossentropy(int V, size_t offset) {
  const auto logits = philox_vector(size_t(kN) * V, 5, uint64_t(V), 3.0f);
  std::vector<int32_t> targets(kN);
  for (int i = 0; i < kN; ++i) targets[i] = int32_t((uint64_t(i) * 7919u) % V);
  targets[0] = V - 1;
  std::vector<float> losses(kN), dlogits(logits.size());
  cpu::crossentropy_forward(losses.data(), logits.data(), targets.data(), kN, V, nullptr);
  const float scale = 1.0f / kN;
  cpu::crossentropy_backward(dlogits.data(), logits.data(), targets.data(), scale, kN, V, nullptr);

  std::vector<float> padded(offset, 0.0f);
  padded.insert(padded.end(), logits.begin(), logits.end());
  DeviceBuffer<float> d_padded(padded), d_losses(kN), d_dlogits(dlogits.size());
  float* d_logits = d_padded.get() + offset;
  DeviceBuffer<int32_t> d_targets(targets);
  const std::string at = " V " + std::to_string(V) + " offset " + std::to_string(offset);
  d_losses.poison();
  cuda::crossentropy_forward(d_losses.get(), d_logits, d_targets.get(), kN, V, nullptr, nullptr);
  // The row sum of V exponentials is the longest reduction (K = V); each
  // probability adds exp (2 ulp per side), the reciprocal and the product. The
  // loss is log(sum) - (x_t - max): its absolute error is the relative error of
  // the sum (log's derivative is 1/sum) plus the final subtraction's ulp (in
  // rtol·|loss|). dlogits = p·scale (- scale): p's error times scale, plus the
  // subtraction's rounding, relative to |scale| at the target.
  const double rtol = testing::sum_order_rtol(V) + 8 * kFp32Unit;
  expect_within("crossentropy losses" + at, d_losses.download(), losses, testing::tolerances(losses, 2 * rtol, rtol));
  expect_bitwise_equal("crossentropy logits untouched" + at, d_padded.download(), padded);

  d_dlogits.poison();
  cuda::crossentropy_backward(d_dlogits.get(), d_logits, d_targets.get(), scale, kN, V, nullptr, nullptr);
  expect_within("crossentropy dlogits" + at, d_dlogits.download(), dlogits,
                testing::tolerances(dlogits, 2 * rtol * scale, rtol));
  // In place (dlogits over the logits, as the stage model's chunk workspace) and
  // deterministic: the same bits as the out-of-place call.
  const std::vector<float> out_of_place = d_dlogits.download();
  // With the forward's softmax statistics (the kept logits' backward): the same bits, one
  // pass over the logits fewer; the losses unchanged.
  DeviceBuffer<float> d_stats(2 * size_t(kN)), d_losses2(kN);
  d_stats.poison();
  cuda::crossentropy_forward(d_losses2.get(), d_logits, d_targets.get(), kN, V, d_stats.get(), nullptr);
  expect_bitwise_equal("crossentropy losses with stats" + at, d_losses2.download(), d_losses.download());
  d_dlogits.poison();
  cuda::crossentropy_backward(d_dlogits.get(), d_logits, d_targets.get(), scale, kN, V, d_stats.get(), nullptr);
  expect_bitwise_equal("crossentropy dlogits from stats" + at, d_dlogits.download(), out_of_place);
  cuda::crossentropy_backward(d_logits, d_logits, d_targets.get(), scale, kN, V, d_stats.get(), nullptr);
  const std::vector<float> all = d_padded.download();
  expect_bitwise_equal("crossentropy dlogits in place" + at, std::vector<float>(all.begin() + offset, all.end()),
                       out_of_place);
}

// V odd: one element per thread and step; V = 1000 (a multiple of 8): runs of 8 per
// thread, with 16-byte loads (rows aligned) and, 2 floats off, element loads.
TEST_F(CudaOps, CrossEntropyMatchesCpu) {
  check_crossentropy(kV, 0);
  check_crossentropy(1000, 0);
  check_crossentropy(1000, 2);
}

// Rows that are not a whole number of blocks' strides and a vocabulary that is
// not a multiple of the block size (V odd), a few rows at a time as the stage
// model's chunks run: every row equals the CPU twin within the same bound, and
// chunked calls give the bits of one call over all rows (rows are independent).
TEST_F(CudaOps, CrossEntropyChunkedRows) {
  constexpr int kRows = 13, kVocab = 1001, kChunk = 5;
  const auto logits = philox_vector(size_t(kRows) * kVocab, 6, 1, 3.0f);
  std::vector<int32_t> targets(kRows);
  for (int i = 0; i < kRows; ++i) targets[i] = int32_t((uint64_t(i) * 104729u) % kVocab);
  std::vector<float> losses(kRows), dlogits(logits.size());
  const float scale = 0.25f;
  cpu::crossentropy_forward(losses.data(), logits.data(), targets.data(), kRows, kVocab, nullptr);
  cpu::crossentropy_backward(dlogits.data(), logits.data(), targets.data(), scale, kRows, kVocab, nullptr);
  DeviceBuffer<float> d_logits(logits), d_losses(kRows), d_dlogits(dlogits.size()), d_chunked(dlogits.size());
  DeviceBuffer<float> d_losses_chunked(kRows);
  DeviceBuffer<int32_t> d_targets(targets);
  cuda::crossentropy_forward(d_losses.get(), d_logits.get(), d_targets.get(), kRows, kVocab, nullptr, nullptr);
  cuda::crossentropy_backward(d_dlogits.get(), d_logits.get(), d_targets.get(), scale, kRows, kVocab, nullptr, nullptr);
  for (int r0 = 0; r0 < kRows; r0 += kChunk) {
    const int rows = std::min(kChunk, kRows - r0);
    cuda::crossentropy_forward(d_losses_chunked.get() + r0, d_logits.get() + size_t(r0) * kVocab,
                               d_targets.get() + r0, rows, kVocab, nullptr, nullptr);
    cuda::crossentropy_backward(d_chunked.get() + size_t(r0) * kVocab, d_logits.get() + size_t(r0) * kVocab,
                                d_targets.get() + r0, scale, rows, kVocab, nullptr, nullptr);
  }
  const double rtol = testing::sum_order_rtol(kVocab) + 8 * kFp32Unit;
  expect_within("chunked losses", d_losses.download(), losses, testing::tolerances(losses, 2 * rtol, rtol));
  expect_within("chunked dlogits", d_dlogits.download(), dlogits,
                testing::tolerances(dlogits, 2 * rtol * scale, rtol));
  expect_bitwise_equal("losses chunk by chunk", d_losses_chunked.download(), d_losses.download());
  expect_bitwise_equal("dlogits chunk by chunk", d_chunked.download(), d_dlogits.download());
}

}  // namespace
}  // namespace pt
