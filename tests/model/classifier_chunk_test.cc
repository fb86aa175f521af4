// The last stage's chunked classifier and the StageNeeds allocation choices
// (model/stage_model.cc), on sizes where nothing divides evenly: N = B·T = 15
// rows, V = 37, chunks of 4 rows (last chunk 3) and of 1 row.
//  * Chunked = one chunk (the former unchunked head: one (N, V) logits matmul, the
//    loss and the gradient over all rows at once) within a derived fp32 bound, for
//    the loss, every parameter gradient and the stage's dinput.
//  * Reruns are bitwise equal (fresh model or the same one), fp32 and bf16.
//  * backward() of a model without split-backward buffers (shared gradient
//    buffers, fused per block) = backward_input + backward_weight of a split model,
//    bitwise, also with two slots in flight whose backwards interleave.
//  * bf16 with kept logits (StageNeeds::keep_logits) = recomputed logits, bitwise, for
//    every call pattern above, and when the weights change between a micro-batch's
//    forward and its backward (the kept logits are then recomputed with the new ones).
//  * Without split backward a slot holds exactly the per-slot gradient buffers
//    fewer (closed form below), and backward_input is refused; slots do not grow
//    with V (no (N, V) logits).
//
// Bound (chunked vs one chunk). Chunking changes only the fp32 summation order:
// the head's weight gradient sums N row terms in chunks instead of in one GEMM
// (<= 2N·u relative to the sum of |terms| for any order), and a logits row
// computed in a GEMM with fewer rows may round differently (a C-term dot product,
// <= 2C·u of the sum of |terms|). The loss gradient sums V exponentials (2V·u).
// Carried through the backward of two blocks, with O(1) gains, the differences
// stay below K·u of each tensor's largest entry with K = 8(N + C + V) = 496,
// u = 2^-24 (3e-5 relative). A wrong chunk offset, a dropped or repeated chunk or
// a wrong scale gives O(1e-1..1) errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "model/backend_stage_model.h"
#include "model/stage_model.h"
#include "tests/model/test_util.h"

namespace pt {
namespace {

constexpr int kB = 3, kT = 5, kN = kB * kT, kC = 10, kV = 37, kLayers = 2;
constexpr double kFp32U = 1.0 / (1 << 24);

ModelConfig config(int vocab = kV) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.max_seq_len = 8;
  c.n_layer = kLayers;
  c.n_head = 2;
  c.n_embd = kC;
  c.tie_embeddings = true;
  c.init_std = 0.2f;  // visible signal on every path
  return c;
}

// The whole model, and a last stage alone (which also has a dinput).
const StageSpec kWhole{0, kLayers, true, true};
const StageSpec kLast{1, kLayers, false, true};

StageNeeds needs(int chunk_rows, bool split, bool keep_logits = true) {
  StageNeeds n;
  n.classifier_chunk_rows = chunk_rows;
  n.split_backward = split;
  n.keep_logits = keep_logits;
  return n;
}

std::unique_ptr<StageModel> make(const StageSpec& s, const StageNeeds& n, Precision p = Precision::kFp32,
                                 int vocab = kV) {
  auto m = make_backend_stage_model(make_cpu_backend(), config(vocab), s, kB, kT, p, n);
  m->init_params(7);
  m->zero_grads();
  return m;
}

struct Result {
  std::vector<float> losses;  // per micro-batch
  std::vector<float> grads;
  std::vector<float> dinput;  // last micro-batch's, non-first stages
};

// Micro-batch k's tokens / stage input and targets (deterministic per k).
struct Batch {
  std::vector<int32_t> tokens, targets;
  std::vector<float> input;
  explicit Batch(int k)
      : tokens(testing::random_tokens(kN, kV, 100 + k)),
        targets(testing::random_tokens(kN, kV, 200 + k)),
        input(testing::random_vector(size_t(kN) * kC, 300 + k)) {}
};

enum class Order { kOneByOne, kInterleaved };

// Two micro-batches: one by one (F0 B0 F1 B1) or interleaved (F0 F1 B1 B0), each
// backward full or split (Bx then Bw right away).
Result run(StageModel& m, bool split_calls, Order order) {
  Result r;
  r.losses.assign(2, 0.0f);
  r.dinput.assign(size_t(kN) * kC, 0.0f);
  Batch b[2] = {Batch(0), Batch(1)};
  auto fwd = [&](int k) {
    m.forward(k, b[k].tokens.data(), b[k].input.data(), b[k].targets.data(), nullptr);
    r.losses[size_t(k)] = m.loss(k);
  };
  auto bwd = [&](int k) {
    float* dinput = m.spec().has_embedding ? nullptr : r.dinput.data();
    if (split_calls) {
      m.backward_input(k, nullptr, dinput, 0.5f);
      m.backward_weight(k);
    } else {
      m.backward(k, nullptr, dinput, 0.5f);
    }
    m.release(k);
  };
  if (order == Order::kOneByOne) {
    fwd(0), bwd(0), fwd(1), bwd(1);
  } else {
    fwd(0), fwd(1), bwd(1), bwd(0);  // dinput: micro-batch 0's
  }
  r.grads.assign(m.grads(), m.grads() + m.num_params());
  return r;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void expect_bitwise(const Result& a, const Result& b, const char* what) {
  EXPECT_TRUE(bitwise_equal(a.losses, b.losses)) << what << ": losses";
  EXPECT_TRUE(bitwise_equal(a.grads, b.grads)) << what << ": gradients";
  EXPECT_TRUE(bitwise_equal(a.dinput, b.dinput)) << what << ": dinput";
}

// max |a - b| <= rtol · max |b| over [begin, end); returns the measured ratio.
double expect_close(const float* a, const float* b, size_t n, double rtol, const std::string& what) {
  double max_ref = 0, max_err = 0;
  for (size_t i = 0; i < n; ++i) {
    max_ref = std::max(max_ref, std::fabs(double(b[i])));
    max_err = std::max(max_err, std::fabs(double(a[i]) - double(b[i])));
  }
  EXPECT_GT(max_ref, 0.0) << what << ": zero reference proves nothing";
  EXPECT_LE(max_err, rtol * max_ref) << what << ": max |diff| " << max_err << ", max |ref| " << max_ref;
  return max_ref > 0 ? max_err / max_ref : 0.0;
}

TEST(ClassifierChunks, ChunkedMatchesOneChunkWithinFp32Bound) {
  const double rtol = 8.0 * (kN + kC + kV) * kFp32U;
  for (const StageSpec& s : {kWhole, kLast}) {
    auto one = make(s, needs(kN, true));
    const Result ref = run(*one, false, Order::kOneByOne);
    for (int rows : {4, 1}) {
      for (bool split : {true, false}) {
        auto m = make(s, needs(rows, split));
        const Result r = run(*m, false, Order::kOneByOne);
        const std::string what = std::string(s.has_embedding ? "whole" : "last") + " stage, chunks of " +
                                 std::to_string(rows) + (split ? ", split" : ", no split");
        double worst = expect_close(r.losses.data(), ref.losses.data(), 2, rtol, what + ": loss");
        for (const auto& t : m->tensors())
          worst = std::max(worst, expect_close(r.grads.data() + t.offset, ref.grads.data() + t.offset, t.numel,
                                               rtol, what + ": " + t.name));
        if (!s.has_embedding)
          worst = std::max(worst, expect_close(r.dinput.data(), ref.dinput.data(), r.dinput.size(), rtol,
                                               what + ": dinput"));
        std::printf("  %-40s worst relative difference %.3g (bound %.3g)\n", what.c_str(), worst, rtol);
      }
    }
  }
}

TEST(ClassifierChunks, RerunsAreBitwiseEqual) {
  for (Precision p : {Precision::kFp32, Precision::kBf16}) {
    for (bool split : {true, false}) {
      auto a = make(kLast, needs(4, split), p);
      const Result first = run(*a, false, Order::kOneByOne);
      auto b = make(kLast, needs(4, split), p);
      expect_bitwise(run(*b, false, Order::kOneByOne), first, "fresh model");
      a->zero_grads();
      expect_bitwise(run(*a, false, Order::kOneByOne), first, "same model again");
    }
  }
}

TEST(ClassifierChunks, FusedBackwardEqualsSplitBitwise) {
  for (Precision p : {Precision::kFp32, Precision::kBf16}) {
    for (Order order : {Order::kOneByOne, Order::kInterleaved}) {
      for (const StageSpec& s : {kWhole, kLast}) {
        auto split = make(s, needs(4, true), p);
        const Result bx_bw = run(*split, true, order);
        split->zero_grads();
        expect_bitwise(run(*split, false, order), bx_bw, "split model, backward()");
        auto fused = make(s, needs(4, false), p);
        expect_bitwise(run(*fused, false, order), bx_bw, "model without split backward, backward()");
      }
    }
  }
}

TEST(ClassifierChunks, KeptLogitsEqualRecomputedBitwise) {
  for (Order order : {Order::kOneByOne, Order::kInterleaved})
    for (const StageSpec& s : {kWhole, kLast})
      for (bool split : {true, false})
        for (bool split_calls : {false, split}) {
          auto kept = make(s, needs(4, split, true), Precision::kBf16);
          auto recomputed = make(s, needs(4, split, false), Precision::kBf16);
          expect_bitwise(run(*kept, split_calls, order), run(*recomputed, split_calls, order),
                         split_calls ? "kept logits, Bx + Bw" : "kept logits, backward()");
        }
}

// An asynchronous schedule's backward may read newer weights than its forward: the kept
// logits are stale then and must be recomputed, as the recomputing model does anyway.
TEST(ClassifierChunks, KeptLogitsFollowWeightsChangedAfterTheForward) {
  for (bool split_calls : {false, true}) {
    Result r[2];
    for (bool keep : {true, false}) {
      auto m = make(kLast, needs(4, true, keep), Precision::kBf16);
      Batch b(0);
      std::vector<float> input_grad(size_t(kN) * kC);
      m->forward(0, nullptr, b.input.data(), b.targets.data(), nullptr);
      std::vector<float> p(m->num_params());
      m->params_to_host(p.data());
      for (float& x : p) x *= 1.25f;  // every weight the classifier reads changes
      m->params_from_host(p.data());
      if (split_calls) {
        m->backward_input(0, nullptr, input_grad.data(), 0.5f);
        m->backward_weight(0);
      } else {
        m->backward(0, nullptr, input_grad.data(), 0.5f);
      }
      r[keep].dinput = input_grad;
      r[keep].grads.resize(m->num_params());
      m->download(r[keep].grads.data(), m->grads(), m->num_params());
    }
    expect_bitwise(r[1], r[0], split_calls ? "weights changed, Bx + Bw" : "weights changed, backward()");
  }
}

// Floats a sub-buffer of n floats takes in a slot (256-byte aligned).
size_t aligned(size_t n) { return (n + 63) / 64 * 64; }

TEST(ClassifierChunks, WithoutSplitBackwardSlotsHoldNoGradients) {
  const size_t N = kN, C = kC;
  for (const StageSpec& s : {kWhole, kLast}) {
    auto split = make(s, needs(4, true));
    auto fused = make(s, needs(4, false));
    const size_t nl = size_t(s.last_layer - s.first_layer);
    // What backward_input keeps per slot for backward_weight: per block d_res1,
    // dqkv, dln1, dln2, dfch; nl + 1 residual-stream gradients; dlnf.
    const size_t per_block = 2 * aligned(N * C) + aligned(3 * N * C) + aligned(N * C) + aligned(4 * N * C);
    const size_t kept = nl * per_block + (nl + 1) * aligned(N * C) + aligned(N * C);
    EXPECT_EQ(split->activation_floats_per_slot() - fused->activation_floats_per_slot(), kept);
    // The shared set: one block's, two alternating residual gradients, dlnf.
    const size_t shared = per_block + 2 * aligned(N * C) + aligned(N * C);
    EXPECT_EQ(fused->workspace_floats() - split->workspace_floats(), shared);
  }
}

// stage_memory (what `pipetrain plan` prints) is what the model allocates.
TEST(ClassifierChunks, StageMemoryIsWhatTheModelHolds) {
  for (Precision p : {Precision::kFp32, Precision::kBf16})
    for (const StageSpec& s : {kWhole, kLast, StageSpec{0, 1, true, false}})
      for (bool split : {true, false}) {
        auto m = make(s, needs(0, split), p);
        const StageMemory mem = stage_memory(config(), s, kB, kT, p, needs(0, split), cpu_backend_sizes());
        EXPECT_EQ(mem.slot_floats, m->activation_floats_per_slot());
        EXPECT_EQ(mem.workspace_floats, m->workspace_floats());
        EXPECT_EQ(mem.param_floats, m->num_params() * (p == Precision::kBf16 ? 3 : 2));
      }
}

// No (N, V) logits in a slot: its size does not depend on V; the model holds one
// (rows, V) chunk instead.
TEST(ClassifierChunks, SlotsDoNotGrowWithTheVocabulary) {
  constexpr int kBigV = 100 * kV;
  for (bool split : {true, false}) {
    auto small = make(kLast, needs(4, split));
    auto big = make(kLast, needs(4, split), Precision::kFp32, kBigV);
    EXPECT_EQ(big->activation_floats_per_slot(), small->activation_floats_per_slot());
    EXPECT_EQ(big->workspace_floats() - small->workspace_floats(), size_t(4) * (kBigV - kV));
  }
}

TEST(ClassifierChunksDeathTest, SplitCallsNeedSplitBackward) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // OpenBLAS may have started threads
  auto m = make(kWhole, needs(4, false));
  Batch b(0);
  m->forward(0, b.tokens.data(), nullptr, b.targets.data(), nullptr);
  EXPECT_DEATH(m->backward_input(0, nullptr, nullptr, 1.0f), "split_backward");
}

}  // namespace
}  // namespace pt
