// The CPU Backend: host memory (64-byte aligned for vector loads) and thin
// forwards to the model/cpu ops.
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "common/check.h"
#include "model/backend.h"
#include "model/cpu/attention.h"
#include "model/cpu/average.h"
#include "model/cpu/convert_bf16.h"
#include "model/cpu/crossentropy.h"
#include "model/cpu/encoder.h"
#include "model/cpu/gelu.h"
#include "model/cpu/layernorm.h"
#include "model/cpu/matmul.h"
#include "model/cpu/residual.h"
#include "model/cpu/residual_layernorm.h"
#include "optim/grad_norm.h"

namespace pt {
namespace {

constexpr size_t kAlignment = 64;

void* aligned_bytes(size_t bytes) {
  size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  void* p = std::aligned_alloc(kAlignment, rounded == 0 ? kAlignment : rounded);
  PT_CHECK_MSG(p != nullptr, "host allocation of " + std::to_string(bytes) + " bytes failed");
  return p;
}

// A typed operand (backend.h) as fp32: bf16 elements widened into a copy (exactly),
// fp32 memory itself; store() packs a written bf16 operand back (RNE).
class Widened {
 public:
  Widened(TensorPtr t, size_t n, bool read = true) : t_(t), n_(n) {
    if (!t.bf16()) return;
    copy_.resize(n);
    if (read) cpu::convert_bf16_to_fp32(copy_.data(), static_cast<const cpu::bf16*>(t.p), n);
  }
  float* f32() { return t_.bf16() ? copy_.data() : static_cast<float*>(t_.p); }
  void store() {
    if (t_.bf16()) cpu::convert_fp32_to_bf16(static_cast<cpu::bf16*>(t_.p), copy_.data(), n_);
  }

 private:
  TensorPtr t_;
  size_t n_;
  std::vector<float> copy_;
};

class CpuBackend final : public Backend {
 public:
  // emulate_device: report host_memory() == false (test only, backend.h).
  explicit CpuBackend(bool emulate_device = false) : emulate_device_(emulate_device) {}
  const char* name() const override { return "cpu"; }

  float* alloc(size_t n) override { return static_cast<float*>(aligned_bytes(n * sizeof(float))); }
  void free(float* p) override { std::free(p); }
  int32_t* alloc_i32(size_t n) override { return static_cast<int32_t*>(aligned_bytes(n * sizeof(int32_t))); }
  void free_i32(int32_t* p) override { std::free(p); }
  // n == 0 may come with null pointers (a stage without parameters): memset/memcpy must not see them.
  void zero(float* p, size_t n) override {
    if (n > 0) std::memset(p, 0, n * sizeof(float));
  }
  void copy(float* dst, const float* src, size_t n) override {
    if (n > 0 && dst != src) std::memcpy(dst, src, n * sizeof(float));
  }
  void upload(float* dst, const float* host_src, size_t n) override { copy(dst, host_src, n); }
  void download(float* host_dst, const float* src, size_t n) override { copy(host_dst, src, n); }
  void upload_i32(int32_t* dst, const int32_t* host_src, size_t n) override {
    if (n > 0 && dst != host_src) std::memcpy(dst, host_src, n * sizeof(int32_t));
  }
  bool host_memory() const override { return !emulate_device_; }
  BackendSizes sizes() const override { return cpu_backend_sizes(); }
  float* alloc_host(size_t n) override { return alloc(n); }
  void free_host(float* p) override { free(p); }
  void round_to_bf16(float* p, size_t n) override { cpu::round_fp32_to_bf16(p, n); }
  void pack_bf16(uint16_t* dst, const float* src, size_t n) override {
    cpu::convert_fp32_to_bf16(reinterpret_cast<cpu::bf16*>(dst), src, n);
  }
  void unpack_bf16(float* dst, const uint16_t* src, size_t n) override {
    cpu::convert_bf16_to_fp32(dst, reinterpret_cast<const cpu::bf16*>(src), n);
  }

  void sums_of_squares(double* out, const float* x, const size_t* offsets, const size_t* numels,
                       int count) override {
    for (int k = 0; k < count; ++k) out[k] = sum_of_squares(x + offsets[k], numels[k]);
  }
  void add(float* out, const float* a, const float* b, size_t n) override { cpu::add(out, a, b, n); }
  void average(float* const* bufs, int count, size_t n) override { cpu::average(bufs, count, n); }

  void encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe, int B, int T,
                       int C) override {
    cpu::encoder_forward(out, inp, wte, wpe, B, T, C);
  }
  void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp, int B, int T, int C,
                        int /*V*/) override {
    cpu::encoder_backward(dwte, dwpe, dout, inp, B, T, C);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                         const float* bias, int N, int C) override {
    cpu::layernorm_forward(out, mean, rstd, inp, weight, bias, N, C);
  }
  void layernorm_backward_input(float* dinp, const float* dout, const float* inp, const float* weight,
                                const float* mean, const float* rstd, int N, int C) override {
    cpu::layernorm_backward_input(dinp, dout, inp, weight, mean, rstd, N, C);
  }
  void layernorm_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp,
                                 const float* mean, const float* rstd, int N, int C) override {
    cpu::layernorm_backward_weight(dweight, dbias, dout, inp, mean, rstd, N, C);
  }
  void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C,
                      int OC) override {
    cpu::matmul_forward(out, inp, weight, bias, N, C, OC);
  }
  void matmul_backward_input(float* dinp, const float* dout, const float* weight, int N, int C, int OC) override {
    cpu::matmul_backward_input(dinp, dout, weight, N, C, OC);
  }
  void matmul_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp, int N, int C,
                              int OC) override {
    cpu::matmul_backward_weight(dweight, dbias, dout, inp, N, C, OC);
  }
  void attention_forward(float* out, float* att, const float* inp, int B, int T, int C, int NH) override {
    cpu::attention_forward(out, att, inp, B, T, C, NH);
  }
  // The probabilities att are saved, so the forward output is not needed.
  void attention_backward(float* dinp, float* scratch, const float* dout, const float* inp, const float* /*out*/,
                          const float* att, int B, int T, int C, int NH) override {
    cpu::attention_backward(dinp, scratch, dout, inp, att, B, T, C, NH);
  }
  void gelu_forward(float* out, const float* inp, int N) override { cpu::gelu_forward(out, inp, N); }
  void gelu_backward(float* dinp, const float* inp, const float* dout, int N) override {
    cpu::gelu_backward(dinp, inp, dout, N);
  }
  void residual_forward(float* out, const float* inp1, const float* inp2, int N) override {
    cpu::residual_forward(out, inp1, inp2, N);
  }
  void residual_layernorm_forward(float* res, float* ln, float* mean, float* rstd, const float* inp1,
                                  const float* inp2, const float* weight, const float* bias, int N, int C,
                                  bool round_res_bf16) override {
    cpu::residual_layernorm_forward(res, ln, mean, rstd, inp1, inp2, weight, bias, N, C, round_res_bf16);
  }
  void layernorm_backward_input_residual(float* dinp, const float* dres, const float* dout, const float* inp,
                                         const float* weight, const float* mean, const float* rstd, int N, int C,
                                         bool round_bf16) override {
    cpu::layernorm_backward_input_residual(dinp, dres, dout, inp, weight, mean, rstd, N, C, round_bf16);
  }
  void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int N, int V,
                            float* stats) override {
    cpu::crossentropy_forward(losses, logits, targets, N, V, stats);
  }

  // Typed entry points: the fp32 ops on widened operands, bf16 outputs packed, which is
  // bitwise what make_bf16_storage_backend's staging does, so CPU-only CI runs the
  // typed dispatch that the CUDA backend serves with its bf16 kernels.
  bool matmul_forward_typed(TensorPtr out, TensorPtr inp, TensorPtr weight, const float* bias, int N, int C,
                            int OC) override {
    Widened x(inp, size_t(N) * C), w(weight, size_t(OC) * C), o(out, size_t(N) * OC, false);
    cpu::matmul_forward(o.f32(), x.f32(), w.f32(), bias, N, C, OC);
    o.store();
    return true;
  }
  bool encoder_forward_typed(TensorPtr out, const int32_t* inp, const float* wte, const float* wpe, int B, int T,
                             int C) override {
    Widened o(out, size_t(B) * T * C, false);
    cpu::encoder_forward(o.f32(), inp, wte, wpe, B, T, C);
    o.store();
    return true;
  }
  bool encoder_backward_typed(float* dwte, float* dwpe, TensorPtr dout, const int32_t* inp, int B, int T, int C,
                              int V) override {
    Widened dy(dout, size_t(B) * T * C);
    encoder_backward(dwte, dwpe, dy.f32(), inp, B, T, C, V);
    return true;
  }
  bool matmul_backward_input_typed(TensorPtr dinp, TensorPtr dout, TensorPtr weight, int N, int C, int OC) override {
    Widened dy(dout, size_t(N) * OC), w(weight, size_t(OC) * C), dx(dinp, size_t(N) * C, false);
    cpu::matmul_backward_input(dx.f32(), dy.f32(), w.f32(), N, C, OC);
    dx.store();
    return true;
  }
  bool matmul_backward_weight_typed(float* dweight, float* dbias, TensorPtr dout, TensorPtr inp, int N, int C,
                                    int OC) override {
    Widened dy(dout, size_t(N) * OC), x(inp, size_t(N) * C);
    cpu::matmul_backward_weight(dweight, dbias, dy.f32(), x.f32(), N, C, OC);
    return true;
  }
  bool attention_forward_typed(TensorPtr out, float* att, TensorPtr inp, int B, int T, int C, int NH) override {
    const size_t n = size_t(B) * T * C;
    Widened x(inp, 3 * n), y(out, n, false);
    cpu::attention_forward(y.f32(), att, x.f32(), B, T, C, NH);
    y.store();
    return true;
  }
  bool attention_backward_typed(TensorPtr dinp, float* scratch, TensorPtr dout, TensorPtr inp, TensorPtr /*out*/,
                                const float* att, int B, int T, int C, int NH) override {
    const size_t n = size_t(B) * T * C;
    Widened dy(dout, n), x(inp, 3 * n), dx(dinp, 3 * n, false);
    cpu::attention_backward(dx.f32(), scratch, dy.f32(), x.f32(), att, B, T, C, NH);
    dx.store();
    return true;
  }
  bool layernorm_forward_typed(TensorPtr out, float* mean, float* rstd, TensorPtr inp, const float* weight,
                               const float* bias, int N, int C) override {
    const size_t NC = size_t(N) * C;
    Widened x(inp, NC), y(out, NC, false);
    cpu::layernorm_forward(y.f32(), mean, rstd, x.f32(), weight, bias, N, C);
    y.store();
    return true;
  }
  bool layernorm_backward_input_typed(TensorPtr dinp, TensorPtr dout, TensorPtr inp, const float* weight,
                                      const float* mean, const float* rstd, int N, int C) override {
    const size_t NC = size_t(N) * C;
    Widened dy(dout, NC), x(inp, NC), dx(dinp, NC, false);
    cpu::layernorm_backward_input(dx.f32(), dy.f32(), x.f32(), weight, mean, rstd, N, C);
    dx.store();
    return true;
  }
  bool layernorm_backward_weight_typed(float* dweight, float* dbias, TensorPtr dout, TensorPtr inp,
                                       const float* mean, const float* rstd, int N, int C) override {
    const size_t NC = size_t(N) * C;
    Widened dy(dout, NC), x(inp, NC);
    cpu::layernorm_backward_weight(dweight, dbias, dy.f32(), x.f32(), mean, rstd, N, C);
    return true;
  }
  bool residual_layernorm_forward_typed(TensorPtr res, TensorPtr ln, float* mean, float* rstd, TensorPtr inp1,
                                        TensorPtr inp2, const float* weight, const float* bias, int N, int C,
                                        bool round_res_bf16) override {
    const size_t NC = size_t(N) * C;
    Widened a(inp1, NC), b(inp2, NC), r(res, NC, false), l(ln, NC, false);
    cpu::residual_layernorm_forward(r.f32(), l.f32(), mean, rstd, a.f32(), b.f32(), weight, bias, N, C,
                                    round_res_bf16);
    r.store();
    l.store();
    return true;
  }
  bool layernorm_backward_input_residual_typed(TensorPtr dinp, TensorPtr dres, TensorPtr dout, TensorPtr inp,
                                               const float* weight, const float* mean, const float* rstd, int N, int C,
                                               bool round_bf16) override {
    const size_t NC = size_t(N) * C;
    Widened r(dres, NC), dy(dout, NC), x(inp, NC), dx(dinp, NC, false);
    cpu::layernorm_backward_input_residual(dx.f32(), r.f32(), dy.f32(), x.f32(), weight, mean, rstd, N, C,
                                           round_bf16);
    dx.store();
    return true;
  }
  bool copy_typed(TensorPtr dst, TensorPtr src, size_t n) override {
    Widened x(src, n), y(dst, n, false);
    copy(y.f32(), x.f32(), n);
    y.store();
    return true;
  }
  bool gelu_forward_typed(TensorPtr out, TensorPtr inp, int N) override {
    Widened x(inp, size_t(N)), y(out, size_t(N), false);
    cpu::gelu_forward(y.f32(), x.f32(), N);
    y.store();
    return true;
  }
  bool gelu_backward_typed(TensorPtr dinp, TensorPtr inp, TensorPtr dout, int N) override {
    Widened x(inp, size_t(N)), dy(dout, size_t(N)), dx(dinp, size_t(N), false);
    cpu::gelu_backward(dx.f32(), x.f32(), dy.f32(), N);
    dx.store();
    return true;
  }
  bool residual_forward_typed(TensorPtr out, TensorPtr inp1, TensorPtr inp2, int N) override {
    Widened a(inp1, size_t(N)), b(inp2, size_t(N)), y(out, size_t(N), false);
    cpu::residual_forward(y.f32(), a.f32(), b.f32(), N);
    y.store();
    return true;
  }
  bool crossentropy_forward_typed(float* losses, TensorPtr logits, const int32_t* targets, int N, int V,
                                  float* stats) override {
    Widened x(logits, size_t(N) * V);
    cpu::crossentropy_forward(losses, x.f32(), targets, N, V, stats);
    return true;
  }
  bool crossentropy_backward_typed(TensorPtr dlogits, TensorPtr logits, const int32_t* targets, float scale, int N,
                                   int V, const float* stats) override {
    const size_t NV = size_t(N) * V;
    Widened x(logits, NV), dx(dlogits, NV, false);  // in place: separate copies, like the fp32 op
    cpu::crossentropy_backward(dx.f32(), x.f32(), targets, scale, N, V, stats);
    dx.store();
    return true;
  }
  void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, float scale, int N, int V,
                             const float* stats) override {
    cpu::crossentropy_backward(dlogits, logits, targets, scale, N, V, stats);
  }

 private:
  bool emulate_device_ = false;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }
std::unique_ptr<Backend> make_cpu_backend_emulating_device() { return std::make_unique<CpuBackend>(true); }

}  // namespace pt
