// The memory contract of model/stage_model.h on the CPU, with the backend that emulates
// device memory (make_cpu_backend_emulating_device) against the plain CPU backend:
//  * the emulated model reports host_memory() false and computes the same bits;
//  * download()/upload() move exactly what they are asked, count the floats per buffer and
//    direction, refuse ranges outside params/grads, and an upload into params reaches the
//    next forward (fp32 and the bf16 weight copy);
//  * the step ops: grad_sums_of_squares equals optim's sum_of_squares per tensor bitwise,
//    add equals the host's IEEE adds bitwise, average equals the header's double formula
//    bitwise, writes it to every buffer and moves nothing between host and backend;
//  * weight stashes: a swapped-in stash computes what a model holding those parameters
//    computes, a second swap restores the live parameters, and none of it is a transfer;
//  * deferred losses: take_losses() returns what loss() returned for every recorded
//    micro-batch (more than the first buffer holds), in order, bitwise, then nothing.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "model/backend_stage_model.h"
#include "model/stage_model.h"
#include "optim/grad_norm.h"
#include "tests/model/test_util.h"

namespace pt {
namespace {

using testing::random_tokens;

constexpr int kB = 2, kT = 8;

ModelConfig small_config() { return testing::small_test_config(2); }

std::unique_ptr<StageModel> make(bool emulated, Precision p = Precision::kFp32) {
  auto backend = emulated ? make_cpu_backend_emulating_device() : make_cpu_backend();
  auto m = make_backend_stage_model(std::move(backend), small_config(), StageSpec{0, 2, true, true}, kB, kT, p);
  m->init_params(42);
  m->zero_grads();
  return m;
}

std::vector<float> host_params(StageModel& m) {
  std::vector<float> p(m.num_params());
  m.params_to_host(p.data());
  return p;
}

std::vector<float> host_grads(StageModel& m) {
  std::vector<float> g(m.num_params());
  m.download(g.data(), m.grads(), g.size());
  return g;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Loss of one forward/backward on fixed tokens (gradients accumulate).
float step(StageModel& m, uint64_t seed) {
  const int V = m.config().vocab_size;
  const auto tokens = random_tokens(size_t(kB * kT), V, seed);
  const auto targets = random_tokens(size_t(kB * kT), V, seed + 1);
  m.forward(0, tokens.data(), nullptr, targets.data(), nullptr);
  const float loss = m.loss(0);
  m.backward(0, nullptr, nullptr, 1.0f);
  m.release(0);
  return loss;
}

TEST(StageModelMemory, EmulatedDeviceComputesTheSameBits) {
  auto host = make(false), dev = make(true);
  EXPECT_TRUE(host->host_memory());
  EXPECT_FALSE(dev->host_memory());
  EXPECT_EQ(dev->stream(), nullptr);  // CPU memory: host optimizer kernels step it in place
  EXPECT_EQ(step(*host, 3), step(*dev, 3));
  EXPECT_TRUE(same_bits(host_grads(*host), host_grads(*dev)));
}

TEST(StageModelMemory, TransfersAreExactAndCounted) {
  for (Precision p : {Precision::kFp32, Precision::kBf16}) {
    auto m = make(true, p), ref = make(false, p);
    const size_t n = m->num_params();
    EXPECT_EQ(m->transfers().total(), 0) << "construction and init are not transfers";
    std::vector<float> doubled = host_params(*m);
    for (float& x : doubled) x *= 2.0f;
    m->params_from_host(doubled.data());
    EXPECT_TRUE(same_bits(host_params(*m), doubled));
    // The upload reaches the forward (bf16: the weight copy is rounded again).
    std::vector<float> ref_doubled = host_params(*ref);
    for (float& x : ref_doubled) x *= 2.0f;
    std::memcpy(ref->params(), ref_doubled.data(), n * sizeof(float));
    ref->params_written();
    EXPECT_EQ(step(*m, 5), step(*ref, 5));
    const ParamTensor& t = m->tensors()[3];
    std::vector<float> part(t.numel);
    m->download(part.data(), m->grads() + t.offset, t.numel);
    const StageModel::Transfers c = m->transfers();
    EXPECT_EQ(c.params_from_host, int64_t(n));
    EXPECT_EQ(c.params_to_host, int64_t(2 * n));  // two host_params calls
    EXPECT_EQ(c.grads_to_host, int64_t(t.numel));
    EXPECT_EQ(c.grads_from_host, 0);
    EXPECT_DEATH(m->download(part.data(), part.data(), 1), "outside the stage's params and grads");
  }
}

TEST(StageModelMemory, StepOpsMatchTheHostBitwise) {
  auto m = make(true);
  step(*m, 9);
  const std::vector<float> g = host_grads(*m), p = host_params(*m);
  std::vector<double> sq(m->tensors().size());
  m->grad_sums_of_squares(sq.data());
  for (size_t k = 0; k < sq.size(); ++k) {
    const ParamTensor& t = m->tensors()[k];
    const double want = sum_of_squares(g.data() + t.offset, t.numel);
    EXPECT_EQ(std::memcmp(&sq[k], &want, sizeof want), 0) << t.name;
    EXPECT_GT(sq[k], 0.0) << t.name;
  }
  m->add(m->grads(), m->grads(), m->params(), m->num_params());
  std::vector<float> want(g.size());
  for (size_t i = 0; i < g.size(); ++i) want[i] = g[i] + p[i];
  EXPECT_TRUE(same_bits(host_grads(*m), want));
}

// average over three buffers (an odd count: the divide rounds) of two models on one device.
TEST(StageModelMemory, AverageIsTheDoubleMeanInEveryBuffer) {
  auto m = make(true), other = make(true);
  other->init_params(7);
  step(*m, 9);
  const std::vector<float> a = host_params(*m), b = host_grads(*m), c = host_params(*other);
  std::vector<float> want(a.size());
  for (size_t i = 0; i < a.size(); ++i) want[i] = float((double(a[i]) + double(b[i]) + double(c[i])) / 3.0);
  size_t float_sum_differs = 0;  // the double accumulation is visible: an fp32 sum would differ here
  for (size_t i = 0; i < a.size(); ++i) float_sum_differs += float((a[i] + b[i] + c[i]) / 3.0f) != want[i];
  EXPECT_GT(float_sum_differs, 0u);
  const int64_t moved = m->transfers().total() + other->transfers().total();
  float* bufs[] = {m->params(), m->grads(), other->params()};
  m->average(bufs, 3, a.size());
  EXPECT_EQ(m->transfers().total() + other->transfers().total(), moved);
  EXPECT_TRUE(same_bits(host_params(*m), want));
  EXPECT_TRUE(same_bits(host_grads(*m), want));
  EXPECT_TRUE(same_bits(host_params(*other), want));
}

TEST(StageModelMemory, StashedParamsSwapInAndOut) {
  for (Precision p : {Precision::kFp32, Precision::kBf16}) {
    auto m = make(true, p), ref = make(false, p);
    const std::vector<float> v0 = host_params(*m);
    m->stash_params(0);
    std::vector<float> v1 = v0;
    for (float& x : v1) x *= 0.75f;
    m->params_from_host(v1.data());
    const int64_t moved = m->transfers().total();
    m->swap_stashed_params(0);  // version 0 in, v1 out
    EXPECT_EQ(step(*m, 11), step(*ref, 11)) << "the stash is what the forward reads";
    m->swap_stashed_params(0);
    EXPECT_EQ(m->transfers().total(), moved) << "stashing is not a host transfer";
    EXPECT_TRUE(same_bits(host_params(*m), v1)) << "the second swap restores the live parameters";
    m->drop_stashed_params(0);
    EXPECT_DEATH(m->swap_stashed_params(0), "no stashed parameters");
  }
}

TEST(StageModelMemory, DeferredLossesEqualLoss) {
  auto m = make(true);
  const int V = m->config().vocab_size;
  std::vector<float> want;
  for (uint64_t k = 0; k < 11; ++k) {
    const auto tokens = random_tokens(size_t(kB * kT), V, 100 + k);
    const auto targets = random_tokens(size_t(kB * kT), V, 200 + k);
    m->forward(int(k % 2), tokens.data(), nullptr, targets.data(), nullptr);
    want.push_back(m->loss(int(k % 2)));
    m->record_loss(int(k % 2));
    m->release(int(k % 2));
  }
  const std::vector<float> got = m->take_losses();
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
  EXPECT_NE(want.front(), want.back()) << "different batches should give different losses";
  EXPECT_TRUE(m->take_losses().empty()) << "taken losses are forgotten";
  EXPECT_EQ(m->transfers().total(), 0) << "losses are not parameter or gradient transfers";
}

}  // namespace
}  // namespace pt
