// Backend::set_bf16_weights (model/backend.h): the stage model in bf16 declares its
// bf16 weight copy wparams_ after every refresh, so a backend that serves weight
// operands from its own bf16 copy of the declared range (the CUDA backend,
// model/cuda/cuda_backend.h) never reads stale weights. Checked on the CPU with a
// recording test double that wraps the CPU backend: at every declaration it snapshots
// the range, and at every GEMM it checks that a weight operand inside the declared
// range equals the snapshot (what the CUDA backend would read) and that no weight
// operand lies outside it. Exercised: init, a repeated forward (no new declaration),
// an update (params written + params_written()), a weight stash swapped in and
// restored (asynchronous schedules), the split backward after a swap, and a
// checkpoint load (params_from_host). Each declaration must equal round_to_bf16 of
// the masters then current. fp32 declares nothing.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "model/backend_stage_model.h"
#include "model/cpu/bf16.h"
#include "model/stage_model.h"
#include "tests/model/test_util.h"

namespace pt {
namespace {

using testing::random_tokens;

constexpr int kB = 2, kT = 8;

ModelConfig small_config() { return testing::small_test_config(2); }

// What the double saw; outlives the backend (the model owns it).
struct Record {
  const float* base = nullptr;     // last declared range
  std::vector<float> snapshot;     // its contents at the declaration
  int declarations = 0;
  int served = 0;       // weight operands inside the declared range
  int stale = 0;        // ... whose contents differed from the snapshot
  int undeclared = 0;   // weight operands outside any declared range
};

// The CPU backend, every call forwarded; set_bf16_weights recorded, GEMM weight
// operands checked against the record.
class RecordingBackend final : public Backend {
 public:
  explicit RecordingBackend(Record* r) : in_(make_cpu_backend()), r_(r) {}
  const char* name() const override { return in_->name(); }
  float* alloc(size_t n) override { return in_->alloc(n); }
  void free(float* p) override {
    if (p == r_->base) r_->base = nullptr;
    in_->free(p);
  }
  int32_t* alloc_i32(size_t n) override { return in_->alloc_i32(n); }
  void free_i32(int32_t* p) override { in_->free_i32(p); }
  void zero(float* p, size_t n) override { in_->zero(p, n); }
  void copy(float* dst, const float* src, size_t n) override { in_->copy(dst, src, n); }
  void upload(float* dst, const float* src, size_t n) override { in_->upload(dst, src, n); }
  void download(float* dst, const float* src, size_t n) override { in_->download(dst, src, n); }
  void upload_i32(int32_t* dst, const int32_t* src, size_t n) override { in_->upload_i32(dst, src, n); }
  bool host_memory() const override { return in_->host_memory(); }
  BackendSizes sizes() const override { return in_->sizes(); }
  float* alloc_host(size_t n) override { return in_->alloc_host(n); }
  void free_host(float* p) override { in_->free_host(p); }
  void round_to_bf16(float* p, size_t n) override { in_->round_to_bf16(p, n); }
  void set_bf16_weights(const float* w, size_t n) override {
    r_->base = w;
    r_->snapshot.assign(w, w + n);
    ++r_->declarations;
  }
  void sums_of_squares(double* out, const float* x, const size_t* o, const size_t* n, int count) override {
    in_->sums_of_squares(out, x, o, n, count);
  }
  void add(float* out, const float* a, const float* b, size_t n) override { in_->add(out, a, b, n); }
  void average(float* const* bufs, int count, size_t n) override { in_->average(bufs, count, n); }
  void encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe, int B, int T,
                       int C) override {
    in_->encoder_forward(out, inp, wte, wpe, B, T, C);
  }
  void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp, int B, int T, int C,
                        int V) override {
    in_->encoder_backward(dwte, dwpe, dout, inp, B, T, C, V);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b,
                         int N, int C) override {
    in_->layernorm_forward(out, mean, rstd, inp, w, b, N, C);
  }
  void layernorm_backward_input(float* dinp, const float* dout, const float* inp, const float* w,
                                const float* mean, const float* rstd, int N, int C) override {
    in_->layernorm_backward_input(dinp, dout, inp, w, mean, rstd, N, C);
  }
  void layernorm_backward_weight(float* dw, float* db, const float* dout, const float* inp, const float* mean,
                                 const float* rstd, int N, int C) override {
    in_->layernorm_backward_weight(dw, db, dout, inp, mean, rstd, N, C);
  }
  void matmul_forward(float* out, const float* inp, const float* w, const float* bias, int N, int C,
                      int OC) override {
    check_weight(w, size_t(OC) * C);
    in_->matmul_forward(out, inp, w, bias, N, C, OC);
  }
  void matmul_backward_input(float* dinp, const float* dout, const float* w, int N, int C, int OC) override {
    check_weight(w, size_t(OC) * C);
    in_->matmul_backward_input(dinp, dout, w, N, C, OC);
  }
  void matmul_backward_weight(float* dw, float* db, const float* dout, const float* inp, int N, int C,
                              int OC) override {
    in_->matmul_backward_weight(dw, db, dout, inp, N, C, OC);
  }
  void attention_forward(float* out, float* att, const float* inp, int B, int T, int C, int NH) override {
    in_->attention_forward(out, att, inp, B, T, C, NH);
  }
  void attention_backward(float* dinp, float* scratch, const float* dout, const float* inp, const float* out,
                          const float* att, int B, int T, int C, int NH) override {
    in_->attention_backward(dinp, scratch, dout, inp, out, att, B, T, C, NH);
  }
  void gelu_forward(float* out, const float* inp, int N) override { in_->gelu_forward(out, inp, N); }
  void gelu_backward(float* dinp, const float* inp, const float* dout, int N) override {
    in_->gelu_backward(dinp, inp, dout, N);
  }
  void residual_forward(float* out, const float* a, const float* b, int N) override {
    in_->residual_forward(out, a, b, N);
  }
  void residual_layernorm_forward(float* res, float* ln, float* mean, float* rstd, const float* a, const float* b,
                                  const float* w, const float* bias, int N, int C, bool round_res) override {
    in_->residual_layernorm_forward(res, ln, mean, rstd, a, b, w, bias, N, C, round_res);
  }
  void layernorm_backward_input_residual(float* dinp, const float* dres, const float* dout, const float* inp,
                                         const float* w, const float* mean, const float* rstd, int N, int C,
                                         bool round) override {
    in_->layernorm_backward_input_residual(dinp, dres, dout, inp, w, mean, rstd, N, C, round);
  }
  void crossentropy_forward(float* losses, const float* logits, const int32_t* t, int N, int V,
                            float* stats) override {
    in_->crossentropy_forward(losses, logits, t, N, V, stats);
  }
  void crossentropy_backward(float* dl, const float* logits, const int32_t* t, float scale, int N, int V,
                             const float* stats) override {
    in_->crossentropy_backward(dl, logits, t, scale, N, V, stats);
  }

 private:
  // What a backend serving from its declared copy would read, against the live weights.
  void check_weight(const float* w, size_t n) {
    const float* b = r_->base;
    if (b == nullptr || w < b || w + n > b + r_->snapshot.size()) {
      ++r_->undeclared;
      return;
    }
    ++r_->served;
    for (size_t i = 0; i < n; ++i) {
      if (r_->snapshot[size_t(w - b) + i] != w[i]) {
        ++r_->stale;
        return;
      }
    }
  }

  std::unique_ptr<Backend> in_;
  Record* r_;
};

struct Fixture {
  Record rec;
  std::unique_ptr<StageModel> m;
  std::vector<int32_t> tokens, targets;
  explicit Fixture(Precision p, bool split = false) {
    StageNeeds needs;
    needs.split_backward = split;
    m = make_backend_stage_model(std::make_unique<RecordingBackend>(&rec), small_config(),
                                 StageSpec{0, 2, true, true}, kB, kT, p, needs);
    tokens = random_tokens(size_t(kB * kT), 40, 7);
    targets = random_tokens(size_t(kB * kT), 40, 8);
    m->init_params(42);
  }
  void step() {
    m->forward(0, tokens.data(), nullptr, targets.data(), nullptr);
    m->backward(0, nullptr, nullptr, 1.0f);
    m->release(0);
  }
  // The masters now, rounded: what the latest declaration must hold.
  std::vector<float> rounded_params() const {
    std::vector<float> r(m->params(), m->params() + m->num_params());
    for (float& x : r) x = cpu::round_to_bf16(x);
    return r;
  }
  // An optimizer update on the host-memory masters.
  void update(float delta) {
    float* p = m->params();
    for (size_t i = 0; i < m->num_params(); ++i) p[i] += delta * float(i % 7 + 1);
    m->params_written();
  }
};

void expect_clean(const Record& r, const char* where) {
  EXPECT_EQ(r.stale, 0) << where << ": a GEMM read weights that differ from the declared bf16 copy";
  EXPECT_EQ(r.undeclared, 0) << where << ": a GEMM weight outside the declared range";
  EXPECT_GT(r.served, 0) << where;
}

TEST(StageModelBf16Weights, DeclaredAfterEveryRefreshWithCurrentContents) {
  Fixture f(Precision::kBf16);
  f.step();
  EXPECT_EQ(f.rec.declarations, 1) << "init: one declaration before the first GEMM";
  EXPECT_EQ(f.rec.snapshot, f.rounded_params());
  f.step();
  EXPECT_EQ(f.rec.declarations, 1) << "no update, no new declaration (no conversion per step)";

  f.update(1e-2f);
  const std::vector<float> v1 = f.rounded_params();
  f.step();
  EXPECT_EQ(f.rec.declarations, 2) << "an update: exactly one declaration";
  EXPECT_EQ(f.rec.snapshot, v1);

  // Asynchronous schedule: stash v1, update to v2, run a micro-batch on v1, restore v2.
  f.m->stash_params(5);
  EXPECT_EQ(f.rec.declarations, 2) << "stashing changes nothing the ops read";
  f.update(3e-2f);
  const std::vector<float> v2 = f.rounded_params();
  ASSERT_NE(v1, v2);
  f.step();
  EXPECT_EQ(f.rec.snapshot, v2);
  f.m->swap_stashed_params(5);
  f.step();
  EXPECT_EQ(f.rec.snapshot, v1) << "the swapped-in stash must be re-declared";
  f.m->swap_stashed_params(5);
  f.step();
  EXPECT_EQ(f.rec.snapshot, v2) << "the restored version must be re-declared";
  EXPECT_EQ(f.rec.declarations, 5);

  // Checkpoint load.
  std::vector<float> host(f.m->num_params());
  for (size_t i = 0; i < host.size(); ++i) host[i] = 0.01f * float(int(i % 13) - 6);
  f.m->params_from_host(host.data());
  f.step();
  for (float& x : host) x = cpu::round_to_bf16(x);
  EXPECT_EQ(f.rec.snapshot, host) << "a loaded checkpoint must be re-declared";
  EXPECT_EQ(f.rec.declarations, 6);
  expect_clean(f.rec, "bf16");
}

// The split backward (zero-bubble Bx/Bw) after a swap between forward and backward:
// every GEMM still reads the declared copy.
TEST(StageModelBf16Weights, SplitBackwardAcrossSwapReadsDeclaredWeights) {
  Fixture f(Precision::kBf16, /*split=*/true);
  f.m->forward(0, f.tokens.data(), nullptr, f.targets.data(), nullptr);
  f.m->stash_params(1);
  f.update(2e-2f);
  f.m->swap_stashed_params(1);  // the backward of micro-batch 0 reads the old version
  f.m->backward_input(0, nullptr, nullptr, 1.0f);
  f.m->backward_weight(0);
  EXPECT_EQ(f.rec.snapshot, f.rounded_params());
  f.m->swap_stashed_params(1);
  f.m->release(0);
  f.step();
  EXPECT_EQ(f.rec.snapshot, f.rounded_params());
  expect_clean(f.rec, "split");
}

TEST(StageModelBf16Weights, Fp32DeclaresNothing) {
  Fixture f(Precision::kFp32);
  f.step();
  f.update(1e-2f);
  f.step();
  EXPECT_EQ(f.rec.declarations, 0);
  EXPECT_EQ(f.rec.stale, 0);
}

}  // namespace
}  // namespace pt
