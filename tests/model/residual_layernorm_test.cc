// cpu::residual_layernorm_forward against the unfused ops it replaces in the stage
// model: residual_forward, then (bf16) round_fp32_to_bf16 of the sum, then
// layernorm_forward. The contract is bitwise equality (same arithmetic, row by row),
// so every output is compared bit for bit, on sizes that fill no 8-wide accumulator
// or tile evenly (C = 37, 13 rows), GPT-2's C = 768, and a row of C < 8, with the sum
// written to a separate buffer and in place over either input (as the stage model does).
// cpu::layernorm_backward_input_residual likewise against layernorm_backward_input,
// round_fp32_to_bf16 and residual_forward(dinp, dres, g).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "model/cpu/convert_bf16.h"
#include "model/cpu/layernorm.h"
#include "model/cpu/residual.h"
#include "model/cpu/residual_layernorm.h"
#include "tests/model/test_util.h"

namespace pt {
namespace {

using testing::random_vector;

void expect_bits(const std::string& what, const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
      ADD_FAILURE() << what << " differs at " << i << ": " << got[i] << " vs " << want[i];
      return;
    }
  }
}

enum class Alias { kNone, kInp1, kInp2 };

void check(int N, int C, bool round_bf16, Alias alias) {
  const std::string tag = " N=" + std::to_string(N) + " C=" + std::to_string(C) + (round_bf16 ? " bf16" : " fp32") +
                          (alias == Alias::kNone ? "" : alias == Alias::kInp1 ? " res=inp1" : " res=inp2");
  const size_t NC = size_t(N) * C;
  // A shifted inp1 (|mean| >> std in some rows) exercises the two-pass variance.
  const auto a = random_vector(NC, 11 + C, 1.0f, 3.0f), b = random_vector(NC, 12 + C, 0.5f);
  const auto w = random_vector(size_t(C), 13, 0.3f, 1.0f), bias = random_vector(size_t(C), 14, 0.1f);

  std::vector<float> ref_res(NC), ref_ln(NC), ref_mean(N), ref_rstd(N);
  cpu::residual_forward(ref_res.data(), a.data(), b.data(), int(NC));
  if (round_bf16) cpu::round_fp32_to_bf16(ref_res.data(), NC);
  cpu::layernorm_forward(ref_ln.data(), ref_mean.data(), ref_rstd.data(), ref_res.data(), w.data(), bias.data(), N,
                         C);

  std::vector<float> in1 = a, in2 = b, res(NC, -7.0f), ln(NC, -7.0f), mean(N, -7.0f), rstd(N, -7.0f);
  float* out = alias == Alias::kInp1 ? in1.data() : alias == Alias::kInp2 ? in2.data() : res.data();
  cpu::residual_layernorm_forward(out, ln.data(), mean.data(), rstd.data(), in1.data(), in2.data(), w.data(),
                                  bias.data(), N, C, round_bf16);
  expect_bits("res" + tag, std::vector<float>(out, out + NC), ref_res);
  expect_bits("ln" + tag, ln, ref_ln);
  expect_bits("mean" + tag, mean, ref_mean);
  expect_bits("rstd" + tag, rstd, ref_rstd);
}

TEST(ResidualLayerNormCpu, BitwiseEqualToUnfusedOps) {
  for (int C : {37, 768, 5})
    for (bool round_bf16 : {false, true})
      for (Alias alias : {Alias::kNone, Alias::kInp1, Alias::kInp2}) check(13, C, round_bf16, alias);
}

void check_backward(int N, int C, bool round_bf16) {
  const std::string tag = " N=" + std::to_string(N) + " C=" + std::to_string(C) + (round_bf16 ? " bf16" : " fp32");
  const size_t NC = size_t(N) * C;
  const auto x = random_vector(NC, 21 + C, 1.0f, 3.0f), dy = random_vector(NC, 22 + C, 0.5f);
  const auto dres = random_vector(NC, 23 + C, 0.5f), w = random_vector(size_t(C), 24, 0.3f, 1.0f);
  std::vector<float> ln(NC), mean(N), rstd(N);
  cpu::layernorm_forward(ln.data(), mean.data(), rstd.data(), x.data(), w.data(), w.data(), N, C);

  std::vector<float> g(NC), ref(NC);
  cpu::layernorm_backward_input(g.data(), dy.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
  if (round_bf16) cpu::round_fp32_to_bf16(g.data(), NC);
  cpu::residual_forward(ref.data(), dres.data(), g.data(), int(NC));

  std::vector<float> got(NC, -7.0f);
  cpu::layernorm_backward_input_residual(got.data(), dres.data(), dy.data(), x.data(), w.data(), mean.data(),
                                         rstd.data(), N, C, round_bf16);
  expect_bits("dinp" + tag, got, ref);
}

TEST(ResidualLayerNormCpu, BackwardInputResidualBitwiseEqualToUnfusedOps) {
  for (int C : {37, 768, 5})
    for (bool round_bf16 : {false, true}) check_backward(13, C, round_bf16);
}

}  // namespace
}  // namespace pt
