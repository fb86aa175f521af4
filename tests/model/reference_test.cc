// Acceptance test against an independent float64 PyTorch implementation
// (tests/reference/gpt2_reference.py) on a tiny tied GPT-2: V=96, T=16, L=2,
// C=32, NH=4, B=2. The test writes the weights (canonical order), tokens and
// targets to a temp dir, runs the reference with /usr/bin/python3 and compares
// the loss and EVERY parameter gradient. Missing torch is a failure, not a skip.
//
// Tolerance. The C++ side is fp32 (u = 2^-24 ≈ 6e-8), the reference float64
// (exact by comparison). Each op adds a relative error of about sqrt(K)·u for
// a K-term reduction (K <= 4C = 128 in forward matmuls, K = B·T = 32 in weight
// gradients, V = 96 in the softmax): <= 11·6e-8 ≈ 7e-7. Forward plus backward
// chain ~40 such ops; errors add roughly in quadrature, ≈ sqrt(40)·7e-7 ≈ 4e-6,
// amplified by LayerNorm's 1/std and softmax conditioning (O(1..10) here).
// So we expect a few 1e-6 relative error (observed: 7e-7); the K·u worst case per
// op would allow ~40·128·6e-8 ≈ 3e-4. We accept, per tensor,
//   max|g - g_ref| <= 2e-5 · max|g_ref|
// (normalized by the tensor's largest gradient so near-zero entries do not
// need a per-element atol), and for the loss |loss - ref| <= 2e-6·|ref|
// (a mean of well-conditioned log-sum-exps; observed 5e-8, one fp32 ulp of
// the result is 1.2e-7 relative). A real bug (wrong index, missing term,
// scale, LayerNorm eps) gives errors of O(1e-4..1).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "model/param_layout.h"
#include "model/stage_model.h"
#include "tests/model/test_util.h"

namespace pt {
namespace {

namespace fs = std::filesystem;

template <class T>
void write_raw(const fs::path& path, const std::vector<T>& v) {
  std::ofstream f(path, std::ios::binary);
  ASSERT_TRUE(f.good()) << path;
  f.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(T)));
  ASSERT_TRUE(f.good()) << path;
}

template <class T>
std::vector<T> read_raw(const fs::path& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f.good()) return {};
  std::vector<T> v(size_t(f.tellg()) / sizeof(T));
  f.seekg(0);
  f.read(reinterpret_cast<char*>(v.data()), std::streamsize(v.size() * sizeof(T)));
  return v;
}

// One forward + backward of `model` against the reference loss and gradients (see
// the tolerance derivation at the top).
void compare_with_reference(StageModel& model, const ModelConfig& c, const std::vector<ParamTensor>& full,
                            const std::vector<int32_t>& tokens, const std::vector<int32_t>& targets, double ref_loss,
                            const std::vector<double>& ref_grads) {
  auto find_local = [&](int global_id, bool head) -> const ParamTensor& {
    for (const auto& t : model.tensors())
      if (t.global_id == global_id && t.is_tied_head == head) return t;
    ADD_FAILURE() << "no tensor with id " << global_id;
    return model.tensors().front();
  };
  model.zero_grads();
  model.forward(0, tokens.data(), nullptr, targets.data(), nullptr);
  const float loss = model.loss(0);
  model.backward(0, nullptr, nullptr, 1.0f);
  std::printf("  loss %.9g  reference %.12g  rel err %.3g\n", loss, ref_loss,
              std::fabs(loss - ref_loss) / std::fabs(ref_loss));
  EXPECT_LE(std::fabs(double(loss) - ref_loss), 1e-5 * std::fabs(ref_loss));

  double worst = 0.0;
  for (const auto& t : full) {
    // Tied wte: embedding + head gradients, summed in that order (as the trainer does).
    std::vector<float> g(model.grads() + find_local(t.global_id, false).offset,
                         model.grads() + find_local(t.global_id, false).offset + t.numel);
    if (c.tie_embeddings && t.global_id == kWteId) {
      const float* head = model.grads() + find_local(kWteId, true).offset;
      for (size_t i = 0; i < t.numel; ++i) g[i] = g[i] + head[i];
    }
    double max_ref = 0.0, max_err = 0.0;
    for (size_t i = 0; i < t.numel; ++i) {
      const double r = ref_grads[t.offset + i];
      max_ref = std::max(max_ref, std::fabs(r));
      max_err = std::max(max_err, std::fabs(double(g[i]) - r));
    }
    ASSERT_GT(max_ref, 0.0) << t.name << ": reference gradient is zero";
    const double rel = max_err / max_ref;
    worst = std::max(worst, rel);
    EXPECT_LE(rel, 2e-5) << t.name << ": max |g - ref| = " << max_err << ", max |ref| = " << max_ref;
  }
  std::printf("  worst per-tensor gradient error / max|ref|: %.3g over %zu tensors\n", worst, full.size());
}

TEST(PytorchReference, LossAndEveryGradientMatchFloat64Torch) {
  static_assert(sizeof(float) == 4 && sizeof(double) == 8);
  ModelConfig c;
  c.vocab_size = 96;
  c.max_seq_len = 16;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_embd = 32;
  c.tie_embeddings = true;
  c.init_std = 0.02f;
  const int B = 2, T = 16, N = B * T;

  StageSpec all;
  all.first_layer = 0;
  all.last_layer = c.n_layer;
  all.has_embedding = true;
  all.has_head = true;
  auto model = make_cpu_stage_model(c, all, B, T);
  model->init_params(2024);
  // Biases start at 0 and LayerNorm weights at 1, which would hide a bias or
  // LN weight used in the wrong place: perturb them (the tied head is untouched).
  for (const auto& t : model->tensors()) {
    if (t.weight_decay || t.global_id == kWpeId) continue;
    const bool ln_weight = t.shape.size() == 1 && t.name.find("_w") != std::string::npos;
    auto noise = testing::random_vector(t.numel, 100 + uint32_t(t.global_id), 0.1f, ln_weight ? 1.0f : 0.0f);
    std::copy(noise.begin(), noise.end(), model->params() + t.offset);
  }

  // Full-model parameters in canonical order.
  const auto full = full_model_tensors(c);
  auto find_local = [&](int global_id, bool head) -> const ParamTensor& {
    for (const auto& t : model->tensors())
      if (t.global_id == global_id && t.is_tied_head == head) return t;
    ADD_FAILURE() << "no tensor with id " << global_id;
    return model->tensors().front();
  };
  std::vector<float> flat;
  for (const auto& t : full) {
    const auto& local = find_local(t.global_id, false);
    flat.insert(flat.end(), model->params() + local.offset, model->params() + local.offset + local.numel);
  }

  auto tokens = testing::random_tokens(N, c.vocab_size, 7);
  auto targets = testing::random_tokens(N, c.vocab_size, 8);

  fs::path dir = fs::temp_directory_path() / ("pipetrain_ref_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    std::ofstream cfg(dir / "config.txt");
    cfg << "vocab_size " << c.vocab_size << "\nmax_seq_len " << c.max_seq_len << "\nn_layer " << c.n_layer
        << "\nn_head " << c.n_head << "\nn_embd " << c.n_embd << "\ntie_embeddings " << int(c.tie_embeddings)
        << "\nbatch " << B << "\nseq_len " << T << "\n";
  }
  write_raw(dir / "params.bin", flat);
  write_raw(dir / "tokens.bin", tokens);
  write_raw(dir / "targets.bin", targets);

  const char* src = std::getenv("PIPETRAIN_SOURCE_DIR");
  ASSERT_NE(src, nullptr) << "PIPETRAIN_SOURCE_DIR is not set (run through ctest)";
  const std::string cmd = "/usr/bin/python3 " + (fs::path(src) / "tests/reference/gpt2_reference.py").string() +
                          " " + dir.string();
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << cmd;
  const int rc = WEXITSTATUS(status);
  ASSERT_NE(rc, 3) << "PyTorch is not installed for /usr/bin/python3: run scripts/install_deps.sh";
  ASSERT_EQ(rc, 0) << "reference failed: " << cmd;
  const auto ref_loss = read_raw<double>(dir / "ref_loss.bin");
  const auto ref_grads = read_raw<double>(dir / "ref_grads.bin");
  fs::remove_all(dir);
  ASSERT_EQ(ref_loss.size(), 1u);
  ASSERT_EQ(ref_grads.size(), flat.size());

  // The default model (one classifier chunk at this V), then the same weights with
  // the classifier in chunks of 5 rows (N = 32: the last chunk is partial) and the
  // fused backward of a model without split-backward buffers.
  StageNeeds chunked;
  chunked.classifier_chunk_rows = 5;
  chunked.split_backward = false;
  auto chunked_model = make_cpu_stage_model(c, all, B, T, chunked);
  std::copy(model->params(), model->params() + model->num_params(), chunked_model->params());
  chunked_model->sync_params_to_device();
  for (StageModel* m : {model.get(), chunked_model.get()}) {
    SCOPED_TRACE(m == model.get() ? "default StageNeeds" : "classifier chunks of 5 rows, no split backward");
    compare_with_reference(*m, c, full, tokens, targets, ref_loss[0], ref_grads);
  }
}

}  // namespace
}  // namespace pt
