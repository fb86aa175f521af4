// The CUDA stage model (BackendStageModel on the CUDA backend, built by
// make_stage_model("cuda", ...)) against the CPU stage model on a tiny GPT-2 whose
// sizes divide no tile, warp or block size: V = 97, C = 48, NH = 3 (HS = 16),
// T = 19, maxT = 23, B = 3 (N = 57), L = 3, tied and untied embeddings.
// Checked: forward loss, stage outputs, dinput and every parameter gradient for
// the whole model and the first / middle / last stage specs; split backward
// (backward_input + backward_weight) equal to backward bitwise on the GPU, and a
// repeated step bitwise equal to the first (determinism); the memory contract of
// stage_model.h (params uploaded from the host reach the forward, an uploaded gradient
// edit is what a later backward accumulates onto, zero_grads clears the gradients,
// transfers are counted, an upload's host source may be reused at once (100 uploads
// without a wait); the step ops: per-tensor sums of squares against the CPU, add bitwise,
// average bitwise against its CPU twin, weight stashes swap and restore); the
// backend factory (runs without a GPU too); bf16 precision against the CPU bf16 model
// (Bf16MatchesCpuBf16 with the bf16 GEMMs, Bf16FlashAttentionMatchesCpuBf16 also with
// the bf16 flash attention; bound derived there); the persistent bf16 weight copy
// (Bf16WeightsConvertedOncePerUpdate: one conversion per update, stash swaps included,
// never stale; Bf16DeclaredWeightsBitwiseEqualConverted: served operands give the bits
// of the per-call conversion); real bf16 activation storage against fp32 containers
// (Bf16StorageHalvesActivationBytes: slot and peak bytes); the chunked classifier and the
// fused backward without split buffers (ChunkedClassifierWithoutSplitMatchesCpu).
//
// Tolerances (see cuda_test_util.h). Every op of the model reduces over at most
// K = max(4C, V, N, T) = 192 terms, so each op's GPU-vs-CPU difference is within
// 2·γ_K of its output scale (sum order; exp/log/tanh differ by a few ulp, far
// below that). To first order these relative differences add along the chain of
// ops from the input to the compared value and LayerNorm renormalizes what passes
// through, so the chain of a stage — D = 22 ops per block forward + backward plus
// 8 for embedding and head — bounds the accumulation: rtol = 4 · D · 2·γ_K, the
// factor 4 covering the gain of the GEMMs and the softmax Jacobian on the
// relative error (inputs and weights are O(1)-scaled random values, so neither
// amplifies beyond a small constant). With L = 3: rtol ≈ 6.8e-3. Comparisons are
// scale-aware per tensor (tol_i = rtol·|ref_i| + rtol·max|ref|), which covers the
// cancellations inside gradients; the qkv bias gradient's k third is zero in exact
// arithmetic (softmax is shift-invariant), and its q and v thirds set the scale of
// that tensor. A wrong index, mask, missing transfer or stale copy gives O(1)
// relative errors, far above rtol; the tests assert the references are non-zero.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "model/backend_stage_model.h"
#include "model/bf16_storage_backend.h"
#include "model/cpu/average.h"
#include "model/cpu/bf16.h"
#include "model/cuda/cuda_backend.h"
#include "model/param_layout.h"
#include "model/stage_model.h"
#include "model/stage_model_factory.h"
#include "tests/model/cuda/cuda_test_util.h"
#include "tests/model/test_util.h"

namespace pt {
namespace {

using testing::expect_within;
using testing::philox_vector;
using testing::scaled_tolerances;

constexpr int kB = 3, kT = 19, kN = kB * kT;
constexpr int kV = 97, kC = 48, kNH = 3, kL = 3, kMaxT = 23;

ModelConfig tiny_config(bool tied) {
  ModelConfig c;
  c.vocab_size = kV;
  c.max_seq_len = kMaxT;
  c.n_layer = kL;
  c.n_head = kNH;
  c.n_embd = kC;
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

// rtol of the header: 4 · D · 2γ_K with D = 22 ops per block + 8.
double model_rtol(int blocks, int C = kC) {
  const double K = std::max({4.0 * C, double(kV), double(kN), double(kT)});
  return 4.0 * (22.0 * blocks + 8.0) * testing::sum_order_rtol(K);
}

std::unique_ptr<StageModel> make_model(const std::string& backend, const ModelConfig& c, const StageSpec& s,
                                       Precision precision = Precision::kFp32, const StageNeeds& needs = {}) {
  std::unique_ptr<StageModel> m;
  const Status st = make_stage_model(backend, 0, c, s, kB, kT, &m, precision, needs);
  EXPECT_TRUE(st.is_ok()) << st.message();
  if (m) m->init_params(1234);
  return m;
}

std::vector<float> host_grads(StageModel& m) {
  std::vector<float> g(m.num_params());
  m.download(g.data(), m.grads(), g.size());
  return g;
}

std::vector<float> host_params(StageModel& m) {
  std::vector<float> p(m.num_params());
  m.params_to_host(p.data());
  return p;
}

std::vector<float> slice(const std::vector<float>& v, const ParamTensor& t) {
  return std::vector<float>(v.begin() + ptrdiff_t(t.offset), v.begin() + ptrdiff_t(t.offset + t.numel));
}

// Every parameter gradient tensor, scale-aware per tensor.
void expect_grads_within(const std::string& what, StageModel& gpu, StageModel& cpu, double rtol) {
  const auto g = host_grads(gpu), r = host_grads(cpu);
  for (const auto& t : cpu.tensors()) {
    const auto rs = slice(r, t);
    expect_within(what + " d" + t.name + (t.is_tied_head ? "(head)" : ""), slice(g, t), rs,
                  scaled_tolerances(rs, rtol));
  }
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Inputs of one micro-batch for any stage.
struct Batch {
  std::vector<int32_t> tokens, targets;
  std::vector<float> input, doutput;  // (N, C)
};

Batch make_batch(uint32_t seed, int C = kC) {
  Batch b;
  b.tokens = testing::random_tokens(kN, kV, seed);
  b.targets = testing::random_tokens(kN, kV, seed + 1000);
  b.input = philox_vector(size_t(kN) * C, seed, 1);
  b.doutput = philox_vector(size_t(kN) * C, seed, 2, 0.1f);
  return b;
}

// Forward of `b` into `slot`; returns the stage output (empty on the last stage).
std::vector<float> forward(StageModel& m, int slot, const Batch& b) {
  const StageSpec& s = m.spec();
  std::vector<float> out(s.has_head ? 0 : size_t(kN) * m.config().n_embd);
  m.forward(slot, s.has_embedding ? b.tokens.data() : nullptr, s.has_embedding ? nullptr : b.input.data(),
            s.has_head ? b.targets.data() : nullptr, s.has_head ? nullptr : out.data());
  return out;
}

// Full (or split) backward of `slot`; returns dinput (empty on the first stage).
std::vector<float> backward(StageModel& m, int slot, const Batch& b, bool split, float loss_scale = 1.0f) {
  const StageSpec& s = m.spec();
  std::vector<float> dinput(s.has_embedding ? 0 : size_t(kN) * m.config().n_embd, NAN);
  const float* dout = s.has_head ? nullptr : b.doutput.data();
  float* din = s.has_embedding ? nullptr : dinput.data();
  if (split) {
    m.backward_input(slot, dout, din, loss_scale);
    m.backward_weight(slot);
  } else {
    m.backward(slot, dout, din, loss_scale);
  }
  m.release(slot);
  return dinput;
}

class CudaStageModel : public testing::CudaTest {};

// The whole model and the first / middle / last stages, tied and untied: loss,
// outputs, dinput and all gradients vs the CPU model.
TEST_F(CudaStageModel, MatchesCpuOnEveryStageKind) {
  struct Case {
    const char* name;
    StageSpec s;
  };
  const Case cases[] = {{"whole", spec(0, kL, true, true)},
                        {"first", spec(0, 1, true, false)},
                        {"middle", spec(1, 2, false, false)},
                        {"last", spec(2, kL, false, true)}};
  for (bool tied : {true, false}) {
    const ModelConfig c = tiny_config(tied);
    for (const Case& k : cases) {
      const std::string tag = std::string(k.name) + (tied ? " tied" : " untied");
      SCOPED_TRACE(tag);
      auto gpu = make_model("cuda", c, k.s);
      auto cpu = make_model("cpu", c, k.s);
      ASSERT_TRUE(gpu && cpu);
      ASSERT_EQ(gpu->num_params(), cpu->num_params());
      const double rtol = model_rtol(k.s.last_layer - k.s.first_layer);
      // Same initial parameters on both (init is a host function of the global ids).
      ASSERT_TRUE(bitwise_equal(host_params(*gpu), host_params(*cpu)));
      const Batch b = make_batch(7);
      const auto out_g = forward(*gpu, 0, b);
      const auto out_c = forward(*cpu, 0, b);
      if (k.s.has_head) {
        const double lg = gpu->loss(0), lc = cpu->loss(0);
        EXPECT_TRUE(std::isfinite(lg));
        EXPECT_LE(std::fabs(lg - lc), rtol * std::fabs(lc)) << tag << " loss gpu " << lg << " cpu " << lc;
        std::printf("  %-34s gpu %.9g cpu %.9g\n", (tag + " loss").c_str(), lg, lc);
      } else {
        expect_within(tag + " output", out_g, out_c, scaled_tolerances(out_c, rtol));
      }
      // Mean-loss scaling as in training (1/m); any value works for the comparison.
      const auto din_g = backward(*gpu, 0, b, false, 0.5f);
      const auto din_c = backward(*cpu, 0, b, false, 0.5f);
      if (!k.s.has_embedding) expect_within(tag + " dinput", din_g, din_c, scaled_tolerances(din_c, rtol));
      expect_grads_within(tag, *gpu, *cpu, rtol);
    }
  }
}

// On the GPU: backward == backward_input + backward_weight bit for bit, several
// slots in flight accumulate like the CPU, and repeating a step from zeroed
// gradients gives the same bits (deterministic kernels, fixed GEMM plans).
TEST_F(CudaStageModel, SplitBackwardAndRepeatsAreBitwiseEqual) {
  for (bool tied : {true, false}) {
    const ModelConfig c = tiny_config(tied);
    for (const StageSpec& s : {spec(0, kL, true, true), spec(0, 1, true, false), spec(1, 2, false, false),
                               spec(2, kL, false, true)}) {
      SCOPED_TRACE(std::string(tied ? "tied" : "untied") + " stage [" + std::to_string(s.first_layer) + "," +
                   std::to_string(s.last_layer) + ")");
      auto full = make_model("cuda", c, s);
      auto split = make_model("cuda", c, s);
      ASSERT_TRUE(full && split);
      const Batch b0 = make_batch(11), b1 = make_batch(12);
      std::vector<float> first_grads;
      float first_loss = 0.0f;
      for (int rep = 0; rep < 2; ++rep) {
        full->zero_grads();
        split->zero_grads();
        // Two micro-batches in flight (slots 0 and 1), backwards in reverse order.
        const auto of0 = forward(*full, 0, b0), of1 = forward(*full, 1, b1);
        const auto os0 = forward(*split, 0, b0), os1 = forward(*split, 1, b1);
        EXPECT_TRUE(bitwise_equal(of0, os0) && bitwise_equal(of1, os1)) << "forward outputs differ";
        float loss = 0.0f;
        if (s.has_head) {
          EXPECT_EQ(full->loss(0), split->loss(0));
          EXPECT_EQ(full->loss(1), split->loss(1));
          loss = full->loss(0) + full->loss(1);
        }
        const auto df1 = backward(*full, 1, b1, false), df0 = backward(*full, 0, b0, false);
        const auto ds1 = backward(*split, 1, b1, true), ds0 = backward(*split, 0, b0, true);
        EXPECT_TRUE(bitwise_equal(df0, ds0) && bitwise_equal(df1, ds1)) << "dinput: split != full";
        const auto gf = host_grads(*full), gs = host_grads(*split);
        EXPECT_TRUE(bitwise_equal(gf, gs)) << "gradients: split != full";
        testing::expect_not_all_zero("gradients", gf);
        if (rep == 0) {
          first_grads = gf;
          first_loss = loss;
        } else {
          EXPECT_TRUE(bitwise_equal(gf, first_grads)) << "a repeated step changed the gradient bits";
          EXPECT_EQ(loss, first_loss);
        }
      }
    }
  }
}

// The classifier in chunks of 7 rows (N = 57: eight full chunks and one of 1 row)
// and the fused backward of a model without split-backward buffers, on the GPU:
// within model_rtol of the CPU model with default needs (one chunk at this V: the
// chunking changes only fp32 summation order, covered by K >= N), and bitwise equal
// to a GPU model with split buffers and the same chunks, with two slots in flight.
TEST_F(CudaStageModel, ChunkedClassifierWithoutSplitMatchesCpu) {
  StageNeeds chunked;
  chunked.classifier_chunk_rows = 7;
  chunked.split_backward = false;
  StageNeeds chunked_split = chunked;
  chunked_split.split_backward = true;
  const ModelConfig c = tiny_config(true);
  for (const StageSpec& s : {spec(0, kL, true, true), spec(2, kL, false, true)}) {
    SCOPED_TRACE("stage [" + std::to_string(s.first_layer) + "," + std::to_string(s.last_layer) + ")");
    auto gpu = make_model("cuda", c, s, Precision::kFp32, chunked);
    auto gpu_split = make_model("cuda", c, s, Precision::kFp32, chunked_split);
    auto cpu = make_model("cpu", c, s);
    ASSERT_TRUE(gpu && gpu_split && cpu);
    const double rtol = model_rtol(s.last_layer - s.first_layer);
    const Batch b0 = make_batch(21), b1 = make_batch(22);
    forward(*gpu, 0, b0), forward(*gpu, 1, b1);
    forward(*gpu_split, 0, b0), forward(*gpu_split, 1, b1);
    forward(*cpu, 0, b0), forward(*cpu, 1, b1);
    for (int slot : {0, 1}) {
      EXPECT_LE(std::fabs(gpu->loss(slot) - cpu->loss(slot)), rtol * std::fabs(cpu->loss(slot)));
      EXPECT_EQ(gpu->loss(slot), gpu_split->loss(slot));
    }
    const auto dg1 = backward(*gpu, 1, b1, false, 0.5f), dg0 = backward(*gpu, 0, b0, false, 0.5f);
    const auto ds1 = backward(*gpu_split, 1, b1, true, 0.5f), ds0 = backward(*gpu_split, 0, b0, true, 0.5f);
    const auto dc1 = backward(*cpu, 1, b1, false, 0.5f), dc0 = backward(*cpu, 0, b0, false, 0.5f);
    if (!s.has_embedding) expect_within("dinput", dg0, dc0, scaled_tolerances(dc0, rtol));
    EXPECT_TRUE(bitwise_equal(dg0, ds0) && bitwise_equal(dg1, ds1)) << "dinput: fused != split";
    expect_grads_within("chunked", *gpu, *cpu, rtol);
    EXPECT_TRUE(bitwise_equal(host_grads(*gpu), host_grads(*gpu_split))) << "gradients: fused != split";
  }
}

// runtime.precision bf16 (stage_model.cc): the CUDA model rounds at the same points
// as the CPU model with the same RNE rule. Bound by the triangle inequality: each
// bf16 model is within K_bwd·u of its fp32 model (tests/model/stage_model_bf16_test.cc:
// K_fwd = 14L + 6, K_bwd = K_fwd + 10L + 5 first-order bf16 roundings, u = 2^-8) and
// the fp32 models within model_rtol of each other. The CUDA bf16 model runs its GEMMs
// on the bf16 kernels (cuda_backend.h): on the bf16-valued operands it passes their
// products are exact and only the fp32 summation order differs from the fp32 GEMM,
// a sum-order difference of the fp32 model's kind, so one more model_rtol covers it.
// With the flash attention (head size 32) the CUDA model also rounds P in the forward
// and P and dS in the backward to bf16 where the CPU keeps fp32 (attention_bf16.h):
// 3 more first-order roundings per block, counted like K_bwd's. The fc layer and its
// GELU run fused (cuBLASLt GELU_AUX_BIAS epilogue, matmul_bf16.h, on real bf16 storage):
// its GELU may differ from the CPU's tanh form by 2^-9·|p| = (u/2)·|p| (bf16_ops_test.cc),
// or, in the fallback without an epilogue algorithm, reads bf16(p): 1.13·u·|p|
// (|gelu'| <= 1.13); 2 first-order roundings per block cover either. The MLP
// projection's input gradient runs with the GELU backward fused (DGELU epilogue): the
// CPU's rounding of the sum a before gelu' is missing (1.13·u·|a|) and gelu' may differ
// from the tanh form's by 2^-10 + 2^-11·(0.5 + d(x)) <= 0.7u for |x| <= 2 (bf16_ops_test.cc):
// 2 more per block. Loss and gradients (relative, L2 over all parameters) agree within
//   bound = (2·K_bwd + 4L + extra)·u + 2·model_rtol,  extra = 0 (fp32 attention) or 3L.
// bf16 kernel calls (cuda_bf16_kernel_calls) per block and step: 4 GEMMs forward (the
// fc one fused with the GELU: cuda_bf16_fused_gelu_calls), 4 input (the MLP projection's
// fused with the GELU backward: cuda_bf16_fused_dgelu_calls) and 4 weight gradients backward, + 2 with the flash attention; the head (OC = V = 97, not a
// multiple of 8) must fall back to the fp32 GEMMs.
// The stage output is bf16-valued and a repeated step is bitwise equal.
// Block GEMM weights (qkv, attention projection, fc, MLP projection) the CUDA backend
// serves from its persistent bf16 weight copy (cuda_backend.h): those at a float offset
// that is a multiple of 128 (a 256-byte aligned bf16 address). Each is read by one
// forward and one input-gradient GEMM per step.
size_t served_block_weights(const StageModel& m) {
  size_t n = 0;
  for (const ParamTensor& t : m.tensors()) {
    const bool gemm_weight = t.name.find("qkv_w") != std::string::npos || t.name.find("proj_w") != std::string::npos ||
                             t.name.find("fc_w") != std::string::npos;
    if (gemm_weight && t.offset % 128 == 0) ++n;
  }
  return n;
}

void expect_bf16_matches_cpu(const ModelConfig& c, bool flash) {
  const double rtol = model_rtol(kL, c.n_embd);
  const double k_bwd = 24.0 * kL + 11.0, extra = flash ? 3.0 * kL : 0.0;
  const double bound = (2.0 * k_bwd + 4.0 * kL + extra) / 256.0 + 2.0 * rtol;
  const size_t calls_per_block = flash ? 14 : 12;
  for (const StageSpec& s : {spec(0, kL, true, true), spec(0, 1, true, false)}) {
    auto gpu = make_model("cuda", c, s, Precision::kBf16);
    auto cpu = make_model("cpu", c, s, Precision::kBf16);
    ASSERT_TRUE(gpu && cpu);
    const Batch b = make_batch(21, c.n_embd);
    const size_t served_per_step = 2 * served_block_weights(*gpu);
    std::vector<float> first;
    for (int rep = 0; rep < 2; ++rep) {
      gpu->zero_grads();
      cpu->zero_grads();
      const size_t calls = cuda_bf16_kernel_calls(), fused = cuda_bf16_fused_gelu_calls();
      const size_t fused_bwd = cuda_bf16_fused_dgelu_calls();
      const size_t conversions = cuda_bf16_weight_conversions(), served = cuda_bf16_weight_operands();
      const auto og = forward(*gpu, 0, b), oc = forward(*cpu, 0, b);
      for (float x : og) ASSERT_EQ(pt::cpu::round_to_bf16(x), x) << "cuda bf16 stage output is not bf16-valued";
      if (s.has_head) {
        EXPECT_LE(std::fabs(double(gpu->loss(0)) - cpu->loss(0)), bound * std::fabs(double(cpu->loss(0))));
      }
      backward(*gpu, 0, b, false);
      backward(*cpu, 0, b, false);
      EXPECT_EQ(cuda_bf16_kernel_calls() - calls, calls_per_block * size_t(s.last_layer - s.first_layer))
          << "bf16 kernel calls: every block GEMM" << (flash ? " and attention" : "")
          << " on the bf16 kernels, the head (V = 97) on the fp32 ones";
      EXPECT_EQ(cuda_bf16_fused_gelu_calls() - fused, size_t(s.last_layer - s.first_layer)) << "fc + GELU fused";
      EXPECT_EQ(cuda_bf16_fused_dgelu_calls() - fused_bwd, size_t(s.last_layer - s.first_layer))
          << "MLP projection input gradient + GELU backward fused";
      EXPECT_EQ(cuda_bf16_weight_conversions() - conversions, rep == 0 ? 1u : 0u)
          << "the bf16 weights are converted once after init_params, not per step";
      EXPECT_EQ(cuda_bf16_weight_operands() - served, served_per_step)
          << "weight operands served from the persistent bf16 copy";
      const auto gg = host_grads(*gpu), gc = host_grads(*cpu);
      double d2 = 0, r2 = 0;
      for (size_t i = 0; i < gc.size(); ++i) {
        d2 += (double(gg[i]) - gc[i]) * (double(gg[i]) - gc[i]);
        r2 += double(gc[i]) * gc[i];
      }
      EXPECT_GT(r2, 0.0);
      EXPECT_LE(std::sqrt(d2 / r2), bound) << "bf16 gradients: cuda vs cpu";
      if (rep == 0) first = gg;
      else EXPECT_TRUE(bitwise_equal(gg, first)) << "a repeated bf16 step changed the gradient bits";
    }
  }
}

// Head size 16: bf16 GEMMs, fp32 attention.
TEST_F(CudaStageModel, Bf16MatchesCpuBf16) { expect_bf16_matches_cpu(tiny_config(true), /*flash=*/false); }

// C = 64, NH = 2 (head size 32): bf16 GEMMs and the bf16 flash attention.
TEST_F(CudaStageModel, Bf16FlashAttentionMatchesCpuBf16) {
  ModelConfig c = tiny_config(true);
  c.n_embd = 64;
  c.n_head = 2;
  expect_bf16_matches_cpu(c, /*flash=*/true);
}

// Real bf16 storage (make_stage_model's cuda backend in bf16, model/bf16_storage_backend.h)
// against the same CUDA backend keeping bf16 values in fp32 containers (unwrapped): a slot
// holds what stage_memory says for cuda (2 bytes per bf16 element, under 60% of the
// containers' slot), the peak device bytes with 4 slots in flight drop by at least half
// of the 4 slots' saving (the rest may go to the staging scratch), and loss and gradients
// agree within the bf16 bound of expect_bf16_matches_cpu (GEMM outputs rounded once either
// way; the cuBLASLt algorithm for a bf16 D may sum in another order). Every op runs on a
// typed bf16 entry point (the embedding's output and output gradient included) except
// the head, whose V = 97 the bf16 GEMMs refuse (one chunk of N = 57 rows, the logits kept in
// bf16 storage, StageNeeds::keep_logits: the forward GEMM reads lnf rows and writes logits,
// the dlnf GEMM reads dlogits and writes dlnf rows, the weight gradient reads dlogits and
// lnf rows): 6 staged operands per forward + backward (bf16_staged_operands). The fc
// layer and its GELU run fused on bf16 storage only (one call per block and forward,
// cuda_bf16_fused_gelu_calls; its GELU bound as in expect_bf16_matches_cpu, 2L more
// roundings), so the real model keeps no fp32 (N, 4C) scratch: its workspace is
// stage_memory's for cuda and 4 NC floats below what the containers' sizes give.
TEST_F(CudaStageModel, Bf16StorageHalvesActivationBytes) {
  ModelConfig c = tiny_config(true);
  c.n_embd = 64;  // head size 32: the flash attention on bf16 storage too
  c.n_head = 2;
  const StageSpec s = spec(0, kL, true, true);
  auto real = make_model("cuda", c, s, Precision::kBf16);
  BackendOptions o;
  o.precision = Precision::kBf16;
  auto boxed = make_backend_stage_model(make_cuda_backend(0, o), c, s, kB, kT, Precision::kBf16, StageNeeds{});
  ASSERT_TRUE(real && boxed);
  boxed->init_params(1234);
  const StageMemory mem = stage_memory(c, s, kB, kT, Precision::kBf16, StageNeeds{}, cuda_backend_sizes());
  EXPECT_EQ(real->activation_floats_per_slot(), mem.slot_floats);
  EXPECT_LT(10 * real->activation_floats_per_slot(), 6 * boxed->activation_floats_per_slot());
  const Batch b = make_batch(41, c.n_embd);
  const double bound = (2.0 * (24.0 * kL + 11.0) + 5.0 * kL) / 256.0 + 2.0 * model_rtol(kL, c.n_embd);
  EXPECT_EQ(real->workspace_floats(), mem.workspace_floats);
  BackendSizes unfused = cuda_backend_sizes();
  unfused.fc_gelu_typed = false;
  EXPECT_EQ(stage_memory(c, s, kB, kT, Precision::kBf16, StageNeeds{}, unfused).workspace_floats - mem.workspace_floats,
            size_t(kN) * 4 * c.n_embd);
  const size_t staged = bf16_staged_operands();
  for (StageModel* m : {real.get(), boxed.get()}) {
    m->zero_grads();
    const size_t fused = cuda_bf16_fused_gelu_calls();
    for (int slot = 0; slot < 4; ++slot) forward(*m, slot, b);
    EXPECT_EQ(cuda_bf16_fused_gelu_calls() - fused, m == real.get() ? 4u * kL : 0u) << "fc + GELU fused";
  }
  for (int slot = 0; slot < 4; ++slot) {
    EXPECT_LE(std::fabs(double(real->loss(slot)) - boxed->loss(slot)), bound * std::fabs(double(boxed->loss(slot))));
    backward(*real, slot, b, false);
    backward(*boxed, slot, b, false);
  }
  EXPECT_EQ(bf16_staged_operands() - staged, 4 * 6u) << "operands staged through fp32 in 4 forwards + backwards";
  const auto gr = host_grads(*real), gb = host_grads(*boxed);
  double d2 = 0, r2 = 0;
  for (size_t i = 0; i < gb.size(); ++i) {
    d2 += (double(gr[i]) - gb[i]) * (double(gr[i]) - gb[i]);
    r2 += double(gb[i]) * gb[i];
  }
  EXPECT_LE(std::sqrt(d2 / r2), bound) << "bf16 storage vs fp32 containers: gradients";
  const size_t saved = 4 * (boxed->activation_floats_per_slot() - real->activation_floats_per_slot()) * sizeof(float);
  EXPECT_GE(boxed->peak_device_bytes(), real->peak_device_bytes() + saved / 2)
      << "peak " << real->peak_device_bytes() << " B with bf16 storage, " << boxed->peak_device_bytes()
      << " B with fp32 containers, slots' saving " << saved << " B";
}

// The persistent bf16 weight copy (Backend::set_bf16_weights, cuda_backend.h) with
// C = 128, where every tensor offset is a multiple of 128 floats: every block GEMM
// weight is served from it (4 forward + 4 input-gradient GEMMs per block and step), the
// weights are converted exactly once per update (params_written()), including after a
// stash is swapped in and when it is swapped back, and the gradients equal those of a
// fresh model of the same parameters bitwise (a stale copy would differ at O(1)).
TEST_F(CudaStageModel, Bf16WeightsConvertedOncePerUpdate) {
  ModelConfig c = tiny_config(true);
  c.n_embd = 128;
  c.n_head = 4;
  const StageSpec s = spec(0, kL, true, true);
  auto gpu = make_model("cuda", c, s, Precision::kBf16);
  ASSERT_TRUE(gpu);
  const Batch b = make_batch(31, c.n_embd);
  auto step = [&](StageModel& m) {
    m.zero_grads();
    forward(m, 0, b);
    backward(m, 0, b, false);
    return host_grads(m);
  };
  const size_t per_step = 8 * size_t(kL);
  ASSERT_EQ(served_block_weights(*gpu), 4 * size_t(kL));
  for (int update = 0; update < 3; ++update) {
    if (update > 0) {
      gpu->add(gpu->params(), gpu->params(), gpu->grads(), gpu->num_params());  // an "update"
      gpu->params_written();
    }
    const size_t conv = cuda_bf16_weight_conversions(), served = cuda_bf16_weight_operands();
    step(*gpu);
    const auto g = step(*gpu);  // a second micro-batch of the same version: no conversion
    EXPECT_EQ(cuda_bf16_weight_conversions() - conv, 1u) << "update " << update;
    EXPECT_EQ(cuda_bf16_weight_operands() - served, 2 * per_step) << "update " << update;
    auto fresh = make_model("cuda", c, s, Precision::kBf16);
    const auto p = host_params(*gpu);
    fresh->params_from_host(p.data());
    EXPECT_TRUE(bitwise_equal(step(*fresh), g)) << "update " << update << ": stale bf16 weights";
  }
  // Stash swap and restore: one conversion each, the gradients of the swapped-in version.
  const auto old_params = host_params(*gpu);
  gpu->stash_params(1);
  gpu->add(gpu->params(), gpu->params(), gpu->grads(), gpu->num_params());
  gpu->params_written();
  const auto g_new = step(*gpu);
  const size_t conv = cuda_bf16_weight_conversions();
  gpu->swap_stashed_params(1);
  const auto g_old = step(*gpu);
  gpu->swap_stashed_params(1);
  EXPECT_TRUE(bitwise_equal(step(*gpu), g_new)) << "restored version";
  EXPECT_EQ(cuda_bf16_weight_conversions() - conv, 2u);
  auto fresh = make_model("cuda", c, s, Precision::kBf16);
  fresh->params_from_host(old_params.data());
  EXPECT_TRUE(bitwise_equal(step(*fresh), g_old)) << "the swapped-in stash ran on stale bf16 weights";
  EXPECT_FALSE(bitwise_equal(g_old, g_new));
}

// An operand served from the declared bf16 copy gives the bits of the per-call
// conversion (same values, same 256-byte alignment, so the same cuBLASLt plan);
// an operand at an offset off the 256-byte grid is converted per call.
TEST_F(CudaStageModel, Bf16DeclaredWeightsBitwiseEqualConverted) {
  BackendOptions o;
  o.precision = Precision::kBf16;
  auto be = make_cuda_backend(0, o);
  const int N = kN, C = 128, OC = 384;
  auto bf16_valued = [](std::vector<float> v) {
    for (float& x : v) x = pt::cpu::round_to_bf16(x);
    return v;
  };
  const auto x = bf16_valued(philox_vector(size_t(N) * C, 5, 1));
  const auto w = bf16_valued(philox_vector(size_t(OC) * C, 5, 2, 0.1f));
  const auto d = bf16_valued(philox_vector(size_t(N) * OC, 5, 3));
  const size_t range = 256 + size_t(OC) * C;
  float* declared = be->alloc(range);
  float* plain = be->alloc(size_t(OC) * C);
  float* dx = be->alloc(size_t(N) * C);
  float* dd = be->alloc(size_t(N) * OC);
  float* out = be->alloc(size_t(N) * OC);
  float* din = be->alloc(size_t(N) * C);
  be->zero(declared, range);
  be->upload(declared + 128, w.data(), w.size());  // 256-byte bf16 address: served
  be->upload(plain, w.data(), w.size());
  be->upload(dx, x.data(), x.size());
  be->upload(dd, d.data(), d.size());
  be->set_bf16_weights(declared, range);
  auto run = [&](const float* weight) {
    std::vector<float> o1(size_t(N) * OC), o2(size_t(N) * C);
    be->matmul_forward(out, dx, weight, nullptr, N, C, OC);
    be->download(o1.data(), out, o1.size());
    be->matmul_backward_input(din, dd, weight, N, C, OC);
    be->download(o2.data(), din, o2.size());
    o1.insert(o1.end(), o2.begin(), o2.end());
    return o1;
  };
  size_t served = cuda_bf16_weight_operands();
  const auto ref = run(plain);
  EXPECT_EQ(cuda_bf16_weight_operands() - served, 0u);
  served = cuda_bf16_weight_operands();
  EXPECT_TRUE(bitwise_equal(run(declared + 128), ref)) << "served weights";
  EXPECT_EQ(cuda_bf16_weight_operands() - served, 2u);
  // Off the grid (offset 8: 16-byte aligned bf16): converted per call, same bits.
  be->upload(declared + 8, w.data(), w.size());
  be->set_bf16_weights(declared, range);
  served = cuda_bf16_weight_operands();
  EXPECT_TRUE(bitwise_equal(run(declared + 8), ref)) << "off-grid weights";
  EXPECT_EQ(cuda_bf16_weight_operands() - served, 0u);
  for (float* p : {declared, plain, dx, dd, out, din}) be->free(p);
}

// stage_model.h's memory contract, with the CPU model as the reference.
TEST_F(CudaStageModel, ExplicitTransfers) {
  const ModelConfig c = tiny_config(true);
  const StageSpec s = spec(0, kL, true, true);
  auto gpu = make_model("cuda", c, s);
  auto cpu = make_model("cpu", c, s);
  ASSERT_TRUE(gpu && cpu);
  const double rtol = model_rtol(kL);
  const Batch b0 = make_batch(21), b1 = make_batch(22);
  const size_t n = cpu->num_params();

  // 1. Parameters uploaded with params_from_host() reach the forward. Doubling every
  // parameter doubles the LayerNorm gains and the head, so the logits grow about 4x
  // and the loss moves far more than the tolerance.
  forward(*cpu, 0, b0);
  const double loss_before = cpu->loss(0);
  cpu->release(0);
  const StageModel::Transfers before = gpu->transfers();
  for (StageModel* m : {gpu.get(), cpu.get()}) {
    std::vector<float> p = host_params(*m);
    for (float& x : p) x = 2.0f * x;
    m->params_from_host(p.data());
  }
  EXPECT_EQ(gpu->transfers().params_to_host - before.params_to_host, int64_t(n));
  EXPECT_EQ(gpu->transfers().params_from_host - before.params_from_host, int64_t(n));
  forward(*gpu, 0, b0);
  forward(*cpu, 0, b0);
  const double lg = gpu->loss(0), lc = cpu->loss(0);
  EXPECT_LE(std::fabs(lg - lc), rtol * std::fabs(lc)) << "loss after an upload: gpu " << lg << " cpu " << lc;
  EXPECT_GT(std::fabs(lc - loss_before), 10 * rtol * std::fabs(lc))
      << "the upload barely changed the loss (" << loss_before << " -> " << lc << "): the test would be vacuous";
  backward(*gpu, 0, b0, false);
  backward(*cpu, 0, b0, false);

  // 2. An uploaded gradient edit is what a later backward accumulates onto.
  for (StageModel* m : {gpu.get(), cpu.get()}) {
    std::vector<float> g = host_grads(*m);
    for (float& x : g) x = 2.0f * x + 1e-3f;
    m->upload(m->grads(), g.data(), n);
  }
  forward(*gpu, 0, b1);
  forward(*cpu, 0, b1);
  backward(*gpu, 0, b1, true);
  backward(*cpu, 0, b1, true);
  expect_grads_within("edited + backward", *gpu, *cpu, rtol);

  // The step ops: per-tensor sums of squares (fixed order, so they differ from the CPU's
  // serial sum by rounding only) and add (bitwise: one IEEE add per element).
  const size_t k = cpu->tensors().size();
  std::vector<double> sq_g(k), sq_c(k);
  gpu->grad_sums_of_squares(sq_g.data());
  cpu->grad_sums_of_squares(sq_c.data());
  for (size_t i = 0; i < k; ++i) EXPECT_NEAR(sq_g[i], sq_c[i], 1e-4 * sq_c[i] + 1e-30) << cpu->tensors()[i].name;
  std::vector<float> expect = host_grads(*gpu);
  const std::vector<float> p_host = host_params(*gpu);
  for (size_t i = 0; i < n; ++i) expect[i] = expect[i] + p_host[i];
  gpu->add(gpu->grads(), gpu->grads(), gpu->params(), n);
  EXPECT_TRUE(bitwise_equal(host_grads(*gpu), expect)) << "add differs from the host's IEEE adds";
  // average (LocalSGD): the double mean of the twin (model/cpu/average.h), bitwise, in every buffer.
  {
    std::vector<float> mean_g = host_params(*gpu), mean_c = host_grads(*gpu);
    float* gbufs[] = {gpu->params(), gpu->grads()};
    float* cbufs[] = {mean_g.data(), mean_c.data()};
    gpu->average(gbufs, 2, n);
    cpu::average(cbufs, 2, n);
    EXPECT_TRUE(bitwise_equal(host_params(*gpu), mean_g)) << "average differs from the CPU twin";
    EXPECT_TRUE(bitwise_equal(host_grads(*gpu), mean_g)) << "average writes every buffer";
    gpu->params_from_host(p_host.data());
  }
  for (StageModel* m : {gpu.get(), cpu.get()}) m->zero_grads();

  // Weight stashes: a swapped-in stash is what the forward reads; a second swap restores.
  const std::vector<float> live = host_params(*gpu);
  gpu->stash_params(7);
  std::vector<float> other = live;
  for (float& x : other) x *= 0.5f;
  gpu->params_from_host(other.data());
  gpu->swap_stashed_params(7);
  EXPECT_TRUE(bitwise_equal(host_params(*gpu), live)) << "the stash swapped in";
  gpu->swap_stashed_params(7);
  EXPECT_TRUE(bitwise_equal(host_params(*gpu), other)) << "the second swap restores";
  gpu->drop_stashed_params(7);
  gpu->params_from_host(live.data());
  cpu->params_from_host(live.data());

  // 3. zero_grads() clears the gradients.
  gpu->zero_grads();
  cpu->zero_grads();
  EXPECT_EQ(testing::max_abs(host_grads(*gpu)), 0.0) << "device grads after zero_grads";
  forward(*gpu, 0, b1);
  forward(*cpu, 0, b1);
  backward(*gpu, 0, b1, false);
  backward(*cpu, 0, b1, false);
  expect_grads_within("after zero_grads", *gpu, *cpu, rtol);
}

// upload() returns once the host source may be reused (backend.h): the CUDA backend copies
// it into pinned staging and queues the device copy without a host wait. 100 uploads from
// one host buffer rewritten after each, with no wait in between (more than the staging
// ring's 64 entries, so its full-ring wait is taken too), each land their own values.
TEST_F(CudaStageModel, UploadsMayReuseTheHostSourceAtOnce) {
  auto gpu = make_model("cuda", tiny_config(true), spec(0, kL, true, true));
  ASSERT_TRUE(gpu);
  constexpr size_t kUploads = 100;
  const size_t len = gpu->num_params() / kUploads;
  ASSERT_GT(len, 0u);
  std::vector<float> host(len);
  for (size_t u = 0; u < kUploads; ++u) {
    std::fill(host.begin(), host.end(), float(u + 1));
    gpu->upload(gpu->grads() + u * len, host.data(), len);
  }
  std::fill(host.begin(), host.end(), -1.0f);
  const std::vector<float> got = host_grads(*gpu);
  for (size_t u = 0; u < kUploads; ++u)
    for (size_t i = 0; i < len; ++i)
      ASSERT_EQ(got[u * len + i], float(u + 1)) << "upload " << u << " element " << i;
}

// Backend choice (runs with or without a GPU; see stage_model_factory.h).
TEST(StageModelFactory, ResolvesBackends) {
  std::string why, kind;
  const int gpus = usable_gpu_count(&why);
  ASSERT_TRUE(resolve_backend("cpu", &kind).is_ok());
  EXPECT_EQ(kind, "cpu");
  const Status bad = resolve_backend("tpu", &kind);
  EXPECT_FALSE(bad.is_ok());
  EXPECT_NE(bad.message().find("runtime.backend"), std::string::npos) << bad.message();
  ASSERT_TRUE(resolve_backend("auto", &kind).is_ok());
  EXPECT_TRUE(cuda_backend_built());  // this test binary is only built with CUDA
  if (gpus > 0) {
    EXPECT_EQ(kind, "cuda");
    ASSERT_TRUE(resolve_backend("cuda", &kind).is_ok());
    EXPECT_EQ(kind, "cuda");
    // The device is taken modulo the GPU count (several ranks per GPU).
    std::unique_ptr<StageModel> m;
    const Status st = make_stage_model("cuda", 7 * gpus, tiny_config(true), spec(0, 1, true, false), kB, kT, &m);
    EXPECT_TRUE(st.is_ok()) << st.message();
    EXPECT_NE(m, nullptr);
    // Head sizes beyond the attention kernels' limit are a config error, not a crash.
    ModelConfig wide = tiny_config(true);
    wide.n_embd = 264;
    wide.n_head = 2;  // HS = 132 > 128
    const Status hs = make_stage_model("cuda", 0, wide, spec(0, 1, true, false), kB, kT, &m);
    EXPECT_FALSE(hs.is_ok());
    EXPECT_NE(hs.message().find("model.n_head"), std::string::npos) << hs.message();
  } else {
    EXPECT_EQ(kind, "cpu");
    const Status st = resolve_backend("cuda", &kind);
    ASSERT_FALSE(st.is_ok());
    EXPECT_NE(st.message().find("key 'runtime.backend'"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find(why), std::string::npos) << st.message();
    EXPECT_NE(why.find("cudaGetDeviceCount"), std::string::npos) << why;
    std::printf("  runtime.backend: cuda here: %s\n", st.message().c_str());
  }
}

}  // namespace
}  // namespace pt
