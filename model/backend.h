// Backend: the op set a StageModel runs on, one virtual per op plus the memory
// primitives. The CPU backend forwards to model/cpu/*; a CUDA backend implements
// the same interface with kernels of the same names and argument order (llm.c
// style), so the stage model code is backend-independent.
//
// Invariants shared by every implementation:
//   - Pointers passed to ops are backend memory (host memory on the CPU backend).
//   - Activation gradients are written (=); parameter gradients accumulate (+=).
//   - Results do not depend on the number of threads: reductions that feed a
//     single output run in a fixed order.
// Shapes use the letters of model/config.h; N = B * T rows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace pt {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // ---- memory ----
  virtual float* alloc(size_t n) = 0;  // n floats, contents undefined
  virtual void free(float* p) = 0;
  virtual int32_t* alloc_i32(size_t n) = 0;
  virtual void free_i32(int32_t* p) = 0;
  virtual void zero(float* p, size_t n) = 0;
  virtual void copy(float* dst, const float* src, size_t n) = 0;  // backend -> backend
  virtual void upload(float* dst, const float* host_src, size_t n) = 0;
  virtual void download(float* host_dst, const float* src, size_t n) = 0;
  virtual void upload_i32(int32_t* dst, const int32_t* host_src, size_t n) = 0;

  // ---- ops (see model/cpu/<op>.h for the exact contracts) ----
  // out (B,T,C); inp (B,T); wte (V,C); wpe (maxT,C)
  virtual void encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe, int B, int T,
                               int C) = 0;
  // dwte (V,C) +=, dwpe (maxT,C) +=; dout (B,T,C)
  virtual void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp, int B, int T,
                                int C) = 0;
  // out (N,C); mean, rstd (N); inp (N,C); weight, bias (C)
  virtual void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                                 const float* bias, int N, int C) = 0;
  // dinp (N,C) =
  virtual void layernorm_backward_input(float* dinp, const float* dout, const float* inp, const float* weight,
                                        const float* mean, const float* rstd, int N, int C) = 0;
  // dweight, dbias (C) +=
  virtual void layernorm_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp,
                                         const float* mean, const float* rstd, int N, int C) = 0;
  // out (N,OC) = inp (N,C) · weight (OC,C)ᵀ + bias (OC or null)
  virtual void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C,
                              int OC) = 0;
  // dinp (N,C) = dout (N,OC) · weight (OC,C)
  virtual void matmul_backward_input(float* dinp, const float* dout, const float* weight, int N, int C, int OC) = 0;
  // dweight (OC,C) += doutᵀ · inp; dbias (OC) += sum dout (null: none)
  virtual void matmul_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp, int N,
                                      int C, int OC) = 0;
  // out (B,T,C); att (B,NH,T,T); inp (B,T,3C)
  virtual void attention_forward(float* out, float* att, const float* inp, int B, int T, int C, int NH) = 0;
  // dinp (B,T,3C) =; scratch (T,T)
  virtual void attention_backward(float* dinp, float* scratch, const float* dout, const float* inp,
                                  const float* att, int B, int T, int C, int NH) = 0;
  // out, inp (N)
  virtual void gelu_forward(float* out, const float* inp, int N) = 0;
  // dinp =, inp, dout (N)
  virtual void gelu_backward(float* dinp, const float* inp, const float* dout, int N) = 0;
  // out = inp1 + inp2 (N)
  virtual void residual_forward(float* out, const float* inp1, const float* inp2, int N) = 0;
  // losses (B,T); probs, logits (B,T,V) (may alias); targets (B,T)
  virtual void crossentropy_forward(float* losses, float* probs, const float* logits, const int32_t* targets,
                                    int B, int T, int V) = 0;
  // dlogits (B,T,V) = (probs - onehot) * scale (may alias probs)
  virtual void crossentropy_softmax_backward(float* dlogits, const float* probs, const int32_t* targets,
                                             float scale, int B, int T, int V) = 0;
};

// fp32 host backend on OpenBLAS.
std::unique_ptr<Backend> make_cpu_backend();

}  // namespace pt
