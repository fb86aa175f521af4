// StageModel layout independence: a 3-layer model run as one stage and split
// into [0,1) + [1,3) must give bitwise-equal losses and gradients (with tied
// embeddings the embed + head gradients are summed in that order on both
// layouts), init must be a function of the global id only, and the split
// backward (backward_input, later backward_weight) must equal backward bitwise.
// Also checks the canonical parameter layout.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "model/param_layout.h"
#include "model/stage_model.h"
#include "tests/model/test_util.h"

namespace pt {
namespace {

using testing::random_tokens;

constexpr int kB = 2, kT = 6;

ModelConfig small_config(bool tied) {
  ModelConfig c;
  c.vocab_size = 37;
  c.max_seq_len = 9;
  c.n_layer = 3;
  c.n_head = 2;
  c.n_embd = 10;
  c.tie_embeddings = tied;
  c.init_std = 0.2f;  // larger than GPT-2's so every path carries a visible signal
  return c;
}

StageSpec spec(int l0, int l1, bool emb, bool head) {
  StageSpec s;
  s.first_layer = l0;
  s.last_layer = l1;
  s.has_embedding = emb;
  s.has_head = head;
  return s;
}

// Tensor values keyed by (global id, is_tied_head).
using Key = std::pair<int, bool>;
std::map<Key, std::vector<float>> by_key(StageModel& m, bool grads) {
  std::map<Key, std::vector<float>> out;
  const float* base = grads ? m.grads() : m.params();
  for (const auto& t : m.tensors()) {
    Key k{t.global_id, t.is_tied_head};
    EXPECT_EQ(out.count(k), 0u) << t.name;
    out[k].assign(base + t.offset, base + t.offset + t.numel);
  }
  return out;
}

void merge_into(std::map<Key, std::vector<float>>& dst, const std::map<Key, std::vector<float>>& src) {
  for (const auto& [k, v] : src) {
    EXPECT_EQ(dst.count(k), 0u);
    dst[k] = v;
  }
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<float> tied_sum(const std::map<Key, std::vector<float>>& g) {
  std::vector<float> s = g.at({kWteId, false});
  const auto& head = g.at({kWteId, true});
  for (size_t i = 0; i < s.size(); ++i) s[i] = s[i] + head[i];  // embed + head, in that order
  return s;
}

TEST(ParamLayout, CanonicalOrderAndFlags) {
  ModelConfig c = small_config(true);
  auto full = full_model_tensors(c);
  ASSERT_EQ(int(full.size()), num_global_tensors(c));
  ASSERT_EQ(full.size(), size_t(2 + 12 * 3 + 2));
  for (size_t i = 0; i < full.size(); ++i) EXPECT_EQ(full[i].global_id, int(i));
  EXPECT_EQ(full[0].name, "wte");
  EXPECT_EQ(full[1].name, "wpe");
  EXPECT_EQ(full[1].shape, (std::vector<int>{9, 10}));
  EXPECT_EQ(full[block_tensor_id(1, BlockTensor::kQkvW)].name, "h1.attn.qkv_w");
  EXPECT_EQ(full[block_tensor_id(1, BlockTensor::kQkvW)].shape, (std::vector<int>{30, 10}));
  EXPECT_EQ(full[block_tensor_id(2, BlockTensor::kFcProjW)].shape, (std::vector<int>{10, 40}));
  EXPECT_EQ(full[lnf_b_id(c)].name, "lnf_b");
  for (const auto& t : full) {
    const bool matrix = t.shape.size() == 2 && t.name != "wpe";
    EXPECT_EQ(t.weight_decay, matrix) << t.name;  // biases, LayerNorm and wpe do not decay
  }
  // The tied head: last tensor of the last stage, named wte, same id as wte.
  auto last = stage_tensors(c, spec(1, 3, false, true));
  EXPECT_EQ(last.back().name, "wte");
  EXPECT_EQ(last.back().global_id, kWteId);
  EXPECT_TRUE(last.back().is_tied_head);
  EXPECT_TRUE(last.back().weight_decay);
  EXPECT_EQ(last.front().global_id, block_tensor_id(1, BlockTensor::kLn1W));
  size_t offset = 0;
  for (const auto& t : last) {
    EXPECT_EQ(t.offset, offset);
    offset += t.numel;
  }
  // Untied: a separate lm_head after lnf.
  ModelConfig u = small_config(false);
  auto fu = full_model_tensors(u);
  ASSERT_EQ(int(fu.size()), num_global_tensors(u));
  EXPECT_EQ(fu.back().name, "lm_head");
  EXPECT_EQ(fu.back().global_id, lm_head_id(u));
  EXPECT_FALSE(fu.back().is_tied_head);
}

TEST(StageSplit, InitIsLayoutIndependent) {
  for (bool tied : {true, false}) {
    ModelConfig c = small_config(tied);
    auto whole = make_cpu_stage_model(c, spec(0, 3, true, true), kB, kT);
    auto s0 = make_cpu_stage_model(c, spec(0, 1, true, false), kB, kT);
    auto s1 = make_cpu_stage_model(c, spec(1, 3, false, true), kB, kT);
    for (auto* m : {whole.get(), s0.get(), s1.get()}) m->init_params(1234);
    auto ref = by_key(*whole, false);
    auto split = by_key(*s0, false);
    merge_into(split, by_key(*s1, false));
    ASSERT_EQ(ref.size(), split.size());
    for (const auto& [k, v] : ref) EXPECT_TRUE(bitwise_equal(v, split.at(k))) << "tensor id " << k.first;
    if (tied) {
      EXPECT_TRUE(bitwise_equal(ref.at({kWteId, false}), ref.at({kWteId, true})));
    }
    // Sanity of the init rule itself.
    const auto& ln1 = ref.at({block_tensor_id(0, BlockTensor::kLn1W), false});
    for (float x : ln1) EXPECT_EQ(x, 1.0f);
    for (float x : ref.at({block_tensor_id(2, BlockTensor::kFcB), false})) EXPECT_EQ(x, 0.0f);
    // Another seed gives other weights.
    s0->init_params(1235);
    EXPECT_FALSE(bitwise_equal(by_key(*s0, false).at({kWteId, false}), ref.at({kWteId, false})));
  }
}

class StageSplitGrad : public ::testing::TestWithParam<bool> {};

// Two micro-batches; the split runs them in a 1F1B-like interleaving with the
// weight gradients of the last stage deferred (zero-bubble style).
TEST_P(StageSplitGrad, SplitEqualsSingleStageBitwise) {
  const bool tied = GetParam();
  ModelConfig c = small_config(tied);
  const int N = kB * kT, C = c.n_embd;
  const float scale = 0.5f;  // mean over two micro-batches
  std::vector<int32_t> tok[2] = {random_tokens(N, c.vocab_size, 1), random_tokens(N, c.vocab_size, 2)};
  std::vector<int32_t> tgt[2] = {random_tokens(N, c.vocab_size, 3), random_tokens(N, c.vocab_size, 4)};

  auto whole = make_cpu_stage_model(c, spec(0, 3, true, true), kB, kT);
  whole->init_params(7);
  whole->zero_grads();
  float whole_loss[2];
  for (int m = 0; m < 2; ++m) {
    whole->forward(m, tok[m].data(), nullptr, tgt[m].data(), nullptr);
    whole_loss[m] = whole->loss(m);
    whole->backward(m, nullptr, nullptr, scale);
    whole->release(m);
  }

  auto s0 = make_cpu_stage_model(c, spec(0, 1, true, false), kB, kT);
  auto s1 = make_cpu_stage_model(c, spec(1, 3, false, true), kB, kT);
  s0->init_params(7);
  s1->init_params(7);
  s0->zero_grads();
  s1->zero_grads();
  std::vector<float> act[2], dact[2];
  for (int m = 0; m < 2; ++m) {
    act[m].assign(size_t(N) * C, 0.0f);
    dact[m].assign(size_t(N) * C, 0.0f);
  }
  // Slots 3 and 5: the pipeline may pick any slot index.
  const int slot[2] = {3, 5};
  s0->forward(slot[0], tok[0].data(), nullptr, nullptr, act[0].data());
  s0->forward(slot[1], tok[1].data(), nullptr, nullptr, act[1].data());
  s1->forward(slot[0], nullptr, act[0].data(), tgt[0].data(), nullptr);
  s1->backward_input(slot[0], nullptr, dact[0].data(), scale);
  s1->forward(slot[1], nullptr, act[1].data(), tgt[1].data(), nullptr);
  s0->backward(slot[0], dact[0].data(), nullptr, scale);
  s1->backward_input(slot[1], nullptr, dact[1].data(), scale);
  s1->backward_weight(slot[0]);
  s0->backward(slot[1], dact[1].data(), nullptr, scale);
  s1->backward_weight(slot[1]);
  for (int m = 0; m < 2; ++m) {
    float l = s1->loss(slot[m]);
    EXPECT_EQ(std::memcmp(&l, &whole_loss[m], sizeof(float)), 0) << "micro-batch " << m << ": " << l << " vs "
                                                                 << whole_loss[m];
    s0->release(slot[m]);
    s1->release(slot[m]);
  }
  // The loss of a random-weight model is near log(V); a sanity bound.
  EXPECT_GT(whole_loss[0], 1.0f);

  auto ref = by_key(*whole, true);
  auto split = by_key(*s0, true);
  merge_into(split, by_key(*s1, true));
  ASSERT_EQ(ref.size(), split.size());
  for (const auto& [k, v] : ref) {
    EXPECT_TRUE(bitwise_equal(v, split.at(k))) << "grad of tensor id " << k.first << (k.second ? " (head)" : "");
    double norm = 0;
    for (float x : v) norm += double(x) * x;
    EXPECT_GT(norm, 0.0) << "grad of tensor id " << k.first << " is zero";
  }
  if (tied) {
    EXPECT_TRUE(bitwise_equal(tied_sum(ref), tied_sum(split)));
  }
}

TEST_P(StageSplitGrad, SplitBackwardEqualsBackwardBitwise) {
  const bool tied = GetParam();
  ModelConfig c = small_config(tied);
  const int N = kB * kT, C = c.n_embd;
  std::vector<int32_t> tok[2] = {random_tokens(N, c.vocab_size, 11), random_tokens(N, c.vocab_size, 12)};
  std::vector<int32_t> tgt[2] = {random_tokens(N, c.vocab_size, 13), random_tokens(N, c.vocab_size, 14)};
  for (StageSpec sp : {spec(0, 3, true, true), spec(1, 3, false, true), spec(0, 2, true, false),
                       spec(1, 2, false, false)}) {
    auto full = make_cpu_stage_model(c, sp, kB, kT);
    auto split = make_cpu_stage_model(c, sp, kB, kT);
    full->init_params(99);
    split->init_params(99);
    full->zero_grads();
    split->zero_grads();
    std::vector<float> in[2], dout[2], out(size_t(N) * C), din_full[2], din_split[2];
    for (int m = 0; m < 2; ++m) {
      in[m] = testing::random_vector(size_t(N) * C, 20 + m);
      dout[m] = testing::random_vector(size_t(N) * C, 30 + m, 0.1f);
      din_full[m].assign(size_t(N) * C, 0.0f);
      din_split[m].assign(size_t(N) * C, 0.0f);
    }
    auto fwd = [&](StageModel& model, int m) {
      model.forward(m, tok[m].data(), in[m].data(), tgt[m].data(), out.data());
    };
    for (int m = 0; m < 2; ++m) {
      fwd(*full, m);
      full->backward(m, dout[m].data(), din_full[m].data(), 0.5f);
    }
    // Both forwards, both input passes, then both weight passes.
    fwd(*split, 0);
    fwd(*split, 1);
    split->backward_input(0, dout[0].data(), din_split[0].data(), 0.5f);
    split->backward_input(1, dout[1].data(), din_split[1].data(), 0.5f);
    split->backward_weight(0);
    split->backward_weight(1);
    const std::vector<float> gf(full->grads(), full->grads() + full->num_params());
    const std::vector<float> gs(split->grads(), split->grads() + split->num_params());
    EXPECT_TRUE(bitwise_equal(gf, gs)) << "stage [" << sp.first_layer << "," << sp.last_layer << ")";
    if (!sp.has_embedding) {
      for (int m = 0; m < 2; ++m) EXPECT_TRUE(bitwise_equal(din_full[m], din_split[m]));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tied, StageSplitGrad, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "tied" : "untied"; });

TEST(StageModelSlots, ReleasedSlotIsReusedWithIdenticalResults) {
  ModelConfig c = small_config(true);
  const int N = kB * kT;
  auto m = make_cpu_stage_model(c, spec(0, 3, true, true), kB, kT);
  m->init_params(5);
  auto tok = random_tokens(N, c.vocab_size, 8), tgt = random_tokens(N, c.vocab_size, 9);
  EXPECT_GT(m->activation_floats_per_slot(), size_t(N) * c.vocab_size);
  m->forward(0, tok.data(), nullptr, tgt.data(), nullptr);
  const float first = m->loss(0);
  m->release(0);
  m->forward(2, tok.data(), nullptr, tgt.data(), nullptr);  // takes slot 0's pooled memory
  EXPECT_EQ(m->loss(2), first);
  // Forward-only reuse (evaluation) of a slot is allowed.
  m->forward(2, tok.data(), nullptr, tgt.data(), nullptr);
  EXPECT_EQ(m->loss(2), first);
}

TEST(StageModelSlotsDeathTest, WeightPassWithoutInputPassAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // OpenBLAS may have started threads
  ModelConfig c = small_config(true);
  auto m = make_cpu_stage_model(c, spec(0, 3, true, true), kB, kT);
  auto tok = random_tokens(kB * kT, c.vocab_size, 8);
  m->forward(0, tok.data(), nullptr, tok.data(), nullptr);
  EXPECT_DEATH(m->backward_weight(0), "backward_weight needs backward_input first");
}

}  // namespace
}  // namespace pt
