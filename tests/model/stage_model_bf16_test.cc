// runtime.precision bf16 on the CPU stage model (model/stage_model.cc, Precision):
//  * fp32 through make_backend_stage_model is the fp32 stage model bit for bit;
//  * bf16 reads only the bf16 weight copy: masters w and round(w) give bitwise
//    equal losses and gradients, and the copy follows params_written();
//  * stage-boundary tensors (output, dinput) hold bf16 values; a split [0,1)+[1,3)
//    is bitwise equal to one stage; reruns are bitwise equal;
//  * loss and gradients are within the derived bound of fp32 (below), and differ
//    from fp32 (the rounding happens).
//
// Bound. A bf16 store rounds x to x(1+d), |d| <= u = 2^-8 (RNE). To first order a
// value that passes K stores in sequence carries a relative error <= K·u when
// every op has relative gain <= 1 (matmuls with bf16 weights add one u per weight
// rounding, LayerNorm divides out a common relative error of its input, residual
// adds and GELU do not amplify). Counting the stores in stage_model.cc for L
// blocks: forward, embedding 1 (+1 weight) then per block 10 stores + 4 weight
// roundings, head 2 (+2 weight): K_fwd = 14L + 6; the backward passes another
// 10 stores per block + 3 in the head, and each weight gradient reads one bf16
// activation and one bf16 gradient: K_bwd = K_fwd + 10L + 5. The test asserts
//   |L_bf16 - L_fp32| / |L_fp32|         <= K_fwd · u
//   ||g_bf16 - g_fp32||_2 / ||g_fp32||_2 <= K_bwd · u   (all parameters of a stage)
// The errors are not worst-case aligned, so the measured values are printed to
// show the margin.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "model/backend_stage_model.h"
#include "model/cpu/bf16.h"
#include "model/stage_model.h"
#include "tests/model/test_util.h"

namespace pt {
namespace {

using testing::random_tokens;

constexpr int kB = 2, kT = 8;
constexpr double kU = 1.0 / 256.0;  // bf16 unit roundoff 2^-8

ModelConfig small_config() { return testing::small_test_config(3); }

StageSpec spec(int l0, int l1, bool emb, bool head) { return StageSpec{l0, l1, emb, head}; }

std::unique_ptr<StageModel> make(Precision p, const StageSpec& s) {
  auto m = make_backend_stage_model(make_cpu_backend(), small_config(), s, kB, kT, p);
  m->init_params(42);
  m->zero_grads();
  return m;
}

struct Result {
  float loss = 0;
  std::vector<float> grads;
};

// One full forward/backward of the whole model on fixed tokens.
Result run_whole(StageModel& m) {
  const int V = m.config().vocab_size;
  const auto tokens = random_tokens(size_t(kB * kT), V, 7);
  const auto targets = random_tokens(size_t(kB * kT), V, 8);
  m.zero_grads();
  m.forward(0, tokens.data(), nullptr, targets.data(), nullptr);
  Result r;
  r.loss = m.loss(0);
  m.backward(0, nullptr, nullptr, 1.0f);
  m.release(0);
  r.grads.assign(m.grads(), m.grads() + m.num_params());
  return r;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool all_bf16(const std::vector<float>& v) {
  for (float x : v)
    if (cpu::round_to_bf16(x) != x) return false;
  return true;
}

TEST(StageModelBf16, Fp32PrecisionIsTheFp32ModelBitwise) {
  auto a = make_cpu_stage_model(small_config(), spec(0, 3, true, true), kB, kT);
  a->init_params(42);
  auto b = make(Precision::kFp32, spec(0, 3, true, true));
  const Result ra = run_whole(*a), rb = run_whole(*b);
  EXPECT_EQ(std::memcmp(&ra.loss, &rb.loss, sizeof(float)), 0);
  EXPECT_TRUE(bitwise_equal(ra.grads, rb.grads));
}

TEST(StageModelBf16, WithinDerivedBoundOfFp32AndDifferent) {
  const int L = small_config().n_layer;
  auto f = make(Precision::kFp32, spec(0, L, true, true));
  auto h = make(Precision::kBf16, spec(0, L, true, true));
  const Result rf = run_whole(*f), rh = run_whole(*h);
  const double k_fwd = 14.0 * L + 6, k_bwd = k_fwd + 10.0 * L + 5;
  const double loss_rel = std::fabs(double(rh.loss) - rf.loss) / std::fabs(double(rf.loss));
  double diff2 = 0, ref2 = 0;
  for (size_t i = 0; i < rf.grads.size(); ++i) {
    diff2 += (double(rh.grads[i]) - rf.grads[i]) * (double(rh.grads[i]) - rf.grads[i]);
    ref2 += double(rf.grads[i]) * rf.grads[i];
  }
  const double grad_rel = std::sqrt(diff2 / ref2);
  std::printf("loss fp32 %.7f bf16 %.7f: rel %.3g (bound %.3g); grad rel L2 %.3g (bound %.3g)\n", rf.loss, rh.loss,
              loss_rel, k_fwd * kU, grad_rel, k_bwd * kU);
  EXPECT_LE(loss_rel, k_fwd * kU);
  EXPECT_LE(grad_rel, k_bwd * kU);
  EXPECT_GT(grad_rel, 0.0) << "bf16 gradients equal fp32: nothing was rounded";
  EXPECT_NE(rh.loss, rf.loss);
}

TEST(StageModelBf16, ReadsOnlyTheBf16WeightCopy) {
  auto a = make(Precision::kBf16, spec(0, 3, true, true));
  auto b = make(Precision::kBf16, spec(0, 3, true, true));
  for (size_t i = 0; i < b->num_params(); ++i) b->params()[i] = cpu::round_to_bf16(b->params()[i]);
  b->params_written();
  const Result ra = run_whole(*a), rb = run_whole(*b);
  EXPECT_EQ(ra.loss, rb.loss);
  EXPECT_TRUE(bitwise_equal(ra.grads, rb.grads));
  // The copy follows an update announced by params_written().
  for (size_t i = 0; i < a->num_params(); ++i) a->params()[i] *= 1.5f;
  a->params_written();
  const Result rc = run_whole(*a);
  EXPECT_NE(rc.loss, ra.loss);
}

TEST(StageModelBf16, SplitEqualsWholeAndBoundaryTensorsAreBf16) {
  auto whole = make(Precision::kBf16, spec(0, 3, true, true));
  auto s0 = make(Precision::kBf16, spec(0, 1, true, false));
  auto s1 = make(Precision::kBf16, spec(1, 3, false, true));
  const Result rw = run_whole(*whole);
  const int V = small_config().vocab_size, C = small_config().n_embd;
  const auto tokens = random_tokens(size_t(kB * kT), V, 7);
  const auto targets = random_tokens(size_t(kB * kT), V, 8);
  std::vector<float> act(size_t(kB * kT * C)), dact(act.size());
  s0->forward(0, tokens.data(), nullptr, nullptr, act.data());
  s1->forward(0, nullptr, act.data(), targets.data(), nullptr);
  EXPECT_EQ(s1->loss(0), rw.loss);
  s1->backward(0, nullptr, dact.data(), 1.0f);
  s0->backward(0, dact.data(), nullptr, 1.0f);
  EXPECT_TRUE(all_bf16(act)) << "stage output is not bf16-valued";
  EXPECT_TRUE(all_bf16(dact)) << "stage dinput is not bf16-valued";
  // Whole-model gradients of blocks 1..2 and the head equal s1's; block 0 and the
  // embeddings equal s0's (tensor by tensor, by global id).
  for (StageModel* part : {s0.get(), s1.get()}) {
    for (const auto& t : part->tensors()) {
      for (const auto& w : whole->tensors()) {
        if (w.global_id != t.global_id || w.is_tied_head != t.is_tied_head) continue;
        EXPECT_EQ(std::memcmp(part->grads() + t.offset, rw.grads.data() + w.offset, t.numel * sizeof(float)), 0)
            << t.name;
      }
    }
  }
}

TEST(StageModelBf16, RerunsAreBitwiseEqual) {
  auto a = make(Precision::kBf16, spec(0, 3, true, true));
  auto b = make(Precision::kBf16, spec(0, 3, true, true));
  const Result ra = run_whole(*a), rb = run_whole(*b), ra2 = run_whole(*a);
  EXPECT_EQ(ra.loss, rb.loss);
  EXPECT_TRUE(bitwise_equal(ra.grads, rb.grads));
  EXPECT_TRUE(bitwise_equal(ra.grads, ra2.grads));
}

}  // namespace
}  // namespace pt
