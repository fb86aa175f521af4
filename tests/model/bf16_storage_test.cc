// Real bf16 storage (model/storage_ranges.h, model/bf16_storage_backend.h) on the CPU:
//  * StorageRanges resolves pointers at range starts, interiors and last elements, not one
//    past the end, before, between or after ranges; erase forgets; overlaps are refused;
//    a handle faults when the host dereferences it;
//  * the decorated CPU backend stores 2-byte elements: an op on bf16 operands equals the
//    plain op on bf16-valued fp32 containers rounded after, bitwise, in place too; an
//    operand of unknown size or two overlapping operands in bf16 storage fail loudly; the
//    cross-entropy on bf16 logits runs on the typed entry points, nothing staged;
//  * a bf16 StageModel on it equals the one on the plain CPU backend bitwise (losses,
//    gradients, stage outputs and input gradients) for a whole model, and for a 2-stage
//    split with split backward and two slots in flight; its slots take the bytes of the
//    fp32 tensors plus 2 per bf16 element (stage_memory agrees).
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "model/backend_stage_model.h"
#include "model/bf16_storage_backend.h"
#include "model/cpu/bf16.h"
#include "model/storage_ranges.h"
#include "tests/model/test_util.h"

namespace pt {
namespace {

using testing::random_tokens;
using testing::random_vector;

TEST(StorageRanges, FindsElementsInsideRangesOnly) {
  float* a = reserve_handle(100);
  float* b = reserve_handle(7);
  std::vector<uint16_t> sa(100), sb(7);
  StorageRanges r;
  r.add(a, 100, sa.data());
  r.add(b, 7, sb.data());
  EXPECT_EQ(r.find(a).range->handle, a);
  EXPECT_EQ(r.find(a).bf16(), sa.data());
  EXPECT_EQ(r.find(a + 42).index, 42u);
  EXPECT_EQ(r.find(a + 42).left(), 58u);
  EXPECT_EQ(r.find(a + 99).bf16(), sa.data() + 99);
  EXPECT_EQ(r.find(a + 100).range == nullptr || r.find(a + 100).range->handle == b, true);  // never a's
  EXPECT_EQ(r.find(b + 6).bf16(), sb.data() + 6);
  EXPECT_EQ(r.find(b + 7).range, nullptr);
  EXPECT_EQ(r.find(a - 1).range, nullptr);
  EXPECT_EQ(r.find(nullptr).range, nullptr);
  float host = 0;
  EXPECT_EQ(r.find(&host).range, nullptr);
  const StorageRanges::Range gone = r.erase(a);
  EXPECT_EQ(gone.handle, a);
  EXPECT_EQ(gone.n, 100u);
  EXPECT_EQ(r.find(a + 5).range, nullptr);
  EXPECT_EQ(r.erase(a).handle, nullptr);
  EXPECT_EQ(r.size(), 1u);
  r.erase(b);
  release_handle(a, 100);
  release_handle(b, 7);
}

TEST(StorageRangesDeathTest, OverlapsAndDereferencesFail) {
  float* a = reserve_handle(16);
  std::vector<uint16_t> s(16);
  StorageRanges r;
  r.add(a, 8, s.data());
  EXPECT_DEATH(r.add(a + 4, 8, s.data()), "overlap");
  EXPECT_DEATH(r.add(a, 2, s.data()), "overlap");
  EXPECT_DEATH({ volatile float x = *a; (void)x; }, "");
  r.erase(a);
  release_handle(a, 16);
}

std::vector<float> rounded(std::vector<float> v) {
  for (float& x : v) x = cpu::round_to_bf16(x);
  return v;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// A bf16 tensor of the backend holding `v` (bf16 values), and its contents.
float* bf16_tensor(Backend& be, const std::vector<float>& v) {
  float* p = be.alloc_bf16(v.size());
  be.upload(p, v.data(), v.size());
  return p;
}
std::vector<float> contents(Backend& be, const float* p, size_t n) {
  std::vector<float> v(n);
  be.download(v.data(), p, n);
  return v;
}

TEST(Bf16StorageBackend, OpsEqualTheRoundedFp32Ops) {
  constexpr int N = 6, C = 16, OC = 24;
  auto be = make_bf16_storage_backend(make_cpu_backend());
  auto ref = make_cpu_backend();
  EXPECT_EQ(be->sizes().bf16_bytes, 2u);
  EXPECT_FALSE(be->host_memory());
  const auto x = rounded(random_vector(N * C, 1)), w = random_vector(OC * C, 2), b = random_vector(OC, 3);
  // Forward GEMM into a sub-range of a bigger bf16 tensor: out = rows [N, 2N) of y.
  float* in = bf16_tensor(*be, x);
  float* y = be->alloc_bf16(3 * N * OC);
  be->zero(y, 3 * N * OC);
  be->matmul_forward(y + N * OC, in, w.data(), b.data(), N, C, OC);
  be->round_to_bf16(y + N * OC, N * OC);  // a no-op on bf16 storage
  std::vector<float> expect(N * OC);
  ref->matmul_forward(expect.data(), x.data(), w.data(), b.data(), N, C, OC);
  ref->round_to_bf16(expect.data(), expect.size());
  const auto got = contents(*be, y, 3 * N * OC);
  EXPECT_TRUE(bitwise_equal(std::vector<float>(got.begin() + N * OC, got.begin() + 2 * N * OC), expect));
  EXPECT_EQ(got[N * OC - 1], 0.0f);
  EXPECT_EQ(got[2 * N * OC], 0.0f);
  // In place (dinp aliases dout): GELU backward.
  const auto d = rounded(random_vector(N * OC, 4));
  float* dy = bf16_tensor(*be, d);
  be->gelu_backward(dy, y + N * OC, dy, N * OC);
  std::vector<float> dref = d;
  ref->gelu_backward(dref.data(), expect.data(), dref.data(), N * OC);
  ref->round_to_bf16(dref.data(), dref.size());
  EXPECT_TRUE(bitwise_equal(contents(*be, dy, N * OC), dref));
  be->free(dy);
  be->free(y);
  be->free(in);
}

// Cross-entropy on bf16 logits goes to the typed entry points (nothing staged): losses
// equal the fp32 op's on the values, dlogits its dlogits rounded, out of place and in place.
TEST(Bf16StorageBackend, CrossEntropyOnBf16LogitsRunsTyped) {
  constexpr int N = 5, V = 67;
  constexpr float kScale = 1.0f / 7.0f;
  auto be = make_bf16_storage_backend(make_cpu_backend());
  auto ref = make_cpu_backend();
  const auto x = rounded(random_vector(N * V, 5));
  std::vector<int32_t> targets(N);
  for (int n = 0; n < N; ++n) targets[n] = (n * 37 + 11) % V;
  std::vector<float> expect_l(N), expect_d(N * V);
  ref->crossentropy_forward(expect_l.data(), x.data(), targets.data(), N, V, nullptr);
  ref->crossentropy_backward(expect_d.data(), x.data(), targets.data(), kScale, N, V, nullptr);
  ref->round_to_bf16(expect_d.data(), expect_d.size());
  float* logits = bf16_tensor(*be, x);
  float* dlogits = be->alloc_bf16(N * V);
  float* losses = be->alloc(N);
  const size_t staged = bf16_staged_operands();  // downloads stage: count the ops alone
  be->crossentropy_forward(losses, logits, targets.data(), N, V, nullptr);
  be->crossentropy_backward(dlogits, logits, targets.data(), kScale, N, V, nullptr);
  EXPECT_EQ(bf16_staged_operands() - staged, 0u);
  EXPECT_TRUE(bitwise_equal(contents(*be, losses, N), expect_l));
  EXPECT_TRUE(bitwise_equal(contents(*be, dlogits, N * V), expect_d));
  const size_t staged_inplace = bf16_staged_operands();
  be->crossentropy_backward(logits, logits, targets.data(), kScale, N, V, nullptr);
  EXPECT_EQ(bf16_staged_operands() - staged_inplace, 0u);
  EXPECT_TRUE(bitwise_equal(contents(*be, logits, N * V), expect_d));
  EXPECT_NE(expect_d, x);  // the in-place check sees a write
  be->free(losses);
  be->free(dlogits);
  be->free(logits);
}

TEST(Bf16StorageBackendDeathTest, UnknownSizesAndOverlapsFail) {
  auto be = make_bf16_storage_backend(make_cpu_backend());
  float* t = be->alloc_bf16(64);
  float* out = be->alloc(64);
  const int32_t tokens[2] = {0, 1};
  EXPECT_DEATH(be->encoder_forward(out, tokens, t, t, 1, 2, 4), "unknown size");
  EXPECT_DEATH(be->residual_forward(t, t + 1, t + 8, 8), "overlap");
  EXPECT_DEATH(be->matmul_forward(out, t + 60, t, nullptr, 1, 8, 1), "past the end");
  be->free(out);
  be->free(t);
}

constexpr int kB = 2, kT = 8;

std::unique_ptr<StageModel> make(bool storage, const StageSpec& s, bool split = true) {
  std::unique_ptr<Backend> be = make_cpu_backend();
  if (storage) be = make_bf16_storage_backend(std::move(be));
  StageNeeds needs;
  needs.split_backward = split;
  auto m = make_backend_stage_model(std::move(be), testing::small_test_config(3), s, kB, kT, Precision::kBf16, needs);
  m->init_params(42);
  m->zero_grads();
  return m;
}

std::vector<float> grads_of(StageModel& m) {
  std::vector<float> g(m.num_params());
  m.download(g.data(), m.grads(), g.size());
  return g;
}

// Also: every op runs on a typed entry point (the CPU backend takes every dtype, the
// embedding's output and output gradient included), so a forward + backward stages no
// operand.
TEST(Bf16StorageStageModel, WholeModelEqualsFp32ContainersBitwise) {
  for (bool split : {true, false}) {
    const StageSpec whole{0, 3, true, true};
    auto plain = make(false, whole, split), real = make(true, whole, split);
    const auto tokens = random_tokens(kB * kT, 40, 7), targets = random_tokens(kB * kT, 40, 8);
    for (int step = 0; step < 2; ++step)
      for (StageModel* m : {plain.get(), real.get()}) {
        const size_t staged = bf16_staged_operands();
        m->forward(step, tokens.data(), nullptr, targets.data(), nullptr);
        m->backward(step, nullptr, nullptr, 0.5f);
        EXPECT_EQ(bf16_staged_operands() - staged, 0u);
      }
    EXPECT_EQ(plain->loss(1), real->loss(1));
    EXPECT_TRUE(bitwise_equal(grads_of(*plain), grads_of(*real))) << "split " << split;
  }
}

// Stage [1, 3) with the head: forward from an input, Bx writing dinput, Bw later, two slots.
TEST(Bf16StorageStageModel, SplitBackwardStageEqualsFp32ContainersBitwise) {
  const StageSpec last{1, 3, false, true};
  auto plain = make(false, last), real = make(true, last);
  const size_t NC = size_t(kB) * kT * 16;
  const auto targets = random_tokens(kB * kT, 40, 8);
  std::vector<std::vector<float>> dinput(4, std::vector<float>(NC));
  std::vector<float> losses;
  int k = 0;
  for (StageModel* m : {plain.get(), real.get()}) {
    for (int slot = 0; slot < 2; ++slot) {
      const auto input = rounded(random_vector(NC, 10 + slot));
      m->forward(slot, nullptr, input.data(), targets.data(), nullptr);
      losses.push_back(m->loss(slot));
    }
    for (int slot = 1; slot >= 0; --slot) m->backward_input(slot, nullptr, dinput[k++].data(), 1.0f);
    for (int slot = 0; slot < 2; ++slot) m->backward_weight(slot);
  }
  EXPECT_EQ(losses[0], losses[2]);
  EXPECT_EQ(losses[1], losses[3]);
  EXPECT_TRUE(bitwise_equal(dinput[0], dinput[2]));
  EXPECT_TRUE(bitwise_equal(dinput[1], dinput[3]));
  EXPECT_TRUE(bitwise_equal(grads_of(*plain), grads_of(*real)));
}

// First stage [0, 2): its output equals bitwise; bf16 slots take half the bytes of their
// bf16 tensors, and stage_memory reports what the model holds.
TEST(Bf16StorageStageModel, FirstStageOutputAndSlotBytes) {
  const StageSpec first{0, 2, true, false};
  auto plain = make(false, first), real = make(true, first);
  const size_t NC = size_t(kB) * kT * 16;
  const auto tokens = random_tokens(kB * kT, 40, 7);
  std::vector<float> a(NC), b(NC);
  plain->forward(0, tokens.data(), nullptr, nullptr, a.data());
  real->forward(0, tokens.data(), nullptr, nullptr, b.data());
  EXPECT_TRUE(bitwise_equal(a, b));
  const StageMemory mem = stage_memory(testing::small_test_config(3), first, kB, kT, Precision::kBf16, StageNeeds{},
                                       make_bf16_storage_backend(make_cpu_backend())->sizes());
  EXPECT_EQ(mem.slot_floats, real->activation_floats_per_slot());
  EXPECT_EQ(mem.workspace_floats, real->workspace_floats());
  // fp32 per slot: 2 LayerNorms' mean and rstd per block, the attention probabilities.
  const size_t N = size_t(kB) * kT, att = size_t(kB) * 2 * kT * kT;
  const size_t f32 = 2 * (4 * ((N + 63) / 64 * 64) + (att + 63) / 64 * 64);
  const size_t bf16_elems = (plain->activation_floats_per_slot() - f32);  // fp32 containers: 4 bytes each
  EXPECT_EQ(real->activation_floats_per_slot(), f32 + bf16_elems / 2);
}

}  // namespace
}  // namespace pt
