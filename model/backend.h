// Backend: the op set a StageModel runs on, one virtual per op plus the memory
// primitives. The CPU backend forwards to model/cpu/*; a CUDA backend implements
// the same interface with kernels of the same names and argument order (llm.c
// style), so the stage model code is backend-independent.
//
// Invariants shared by every implementation:
//   - Pointers passed to ops are backend memory (host memory on the CPU backend,
//     device memory on the CUDA backend); copy/upload/download also take host
//     memory (see below). A pointer into alloc_bf16 memory may be a handle to real
//     bf16 storage that only the backend resolves (model/bf16_storage_backend.h); the
//     ops keep their float* signatures and fp32 contracts on the stored values, and the
//     typed entry points (TensorPtr) carry the dtype to backends with bf16 kernels.
//   - Activation gradients are written (=); parameter gradients accumulate (+=).
//   - Results do not depend on the number of threads: reductions that feed a
//     single output run in a fixed order.
// Shapes use the letters of model/config.h; N = B * T rows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/check.h"
#include "model/backend_sizes.h"
#include "model/precision.h"

namespace pt {

// Settings a backend is made with (runtime.* keys).
struct BackendOptions {
  // runtime.tf32: fp32 GEMMs run on tensor cores with TF32 inputs (CUDA,
  // CUBLAS_COMPUTE_32F_FAST_TF32). The CPU backend has no such mode and ignores it.
  bool tf32 = false;
  // runtime.precision, set by make_stage_model (stage_model_factory.h) from its
  // precision argument. bf16 on CUDA: the GEMMs whose shapes allow it run on the bf16
  // cuBLASLt kernels (model/cuda/cuda_backend.h); fp32 ops elsewhere. The CPU backend
  // runs fp32 ops on bf16-rounded storage either way and ignores it.
  Precision precision = Precision::kFp32;
};

// An operand of the typed entry points below: backend memory of dtype fp32 (float
// elements) or bf16 (2-byte elements of real bf16 storage, model/bf16_storage_backend.h).
enum class Dtype { kFp32, kBf16 };
struct TensorPtr {
  void* p = nullptr;
  Dtype dtype = Dtype::kFp32;
  bool bf16() const { return dtype == Dtype::kBf16; }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // ---- memory ----
  virtual float* alloc(size_t n) = 0;  // n floats, contents undefined
  // n elements of bf16 storage for a tensor of dtype bf16, freed by free(). The result
  // is used exactly like alloc()'s (p + k is element k, ops take it as float*): on a
  // backend that really stores bf16 (make_bf16_storage_backend, model/bf16_storage_backend.h)
  // it is a handle to 2-byte elements that only the backend's ops and copies may touch;
  // by default it is alloc(n), an fp32 container whose producers round to bf16 values
  // (round_to_bf16). sizes().bf16_bytes says which (4 or 2 bytes per element).
  virtual float* alloc_bf16(size_t n) { return alloc(n); }
  virtual void free(float* p) = 0;
  virtual int32_t* alloc_i32(size_t n) = 0;
  virtual void free_i32(int32_t* p) = 0;
  virtual void zero(float* p, size_t n) = 0;  // backend memory
  // dst and src may each be backend memory or host memory (the pipeline hands the
  // stage model host buffers). Returns once a host dst holds the data and a host src
  // may be reused (CUDA: a small pageable host src is copied to pinned staging and the
  // upload queued without a host wait; a pinned or large one is waited for), so the
  // caller may read dst or reuse src right away; backend
  // memory is written in stream order (ops issued later on this backend see it).
  virtual void copy(float* dst, const float* src, size_t n) = 0;
  virtual void upload(float* dst, const float* host_src, size_t n) = 0;
  virtual void download(float* host_dst, const float* src, size_t n) = 0;
  virtual void upload_i32(int32_t* dst, const int32_t* host_src, size_t n) = 0;
  // True when host code may dereference alloc()'s memory (CPU). False on CUDA, and on
  // the CPU test backend that emulates device memory: host code then reaches backend
  // memory only through download()/upload() (model/stage_model.h, memory contract).
  virtual bool host_memory() const = 0;
  // The stream every op and copy is issued on (cudaStream_t) on CUDA; null on the CPU
  // (where every op has finished when it returns).
  virtual void* stream() const { return nullptr; }
  // This backend kind's buffer sizes (attention state, classifier chunk).
  virtual BackendSizes sizes() const = 0;
  // Host memory for staging transfers (pinned on CUDA: the executor's host boundary
  // buffers, model/boundary_memory.h), n floats, contents undefined.
  virtual float* alloc_host(size_t n) = 0;
  virtual void free_host(float* p) = 0;
  // Blocks until every op and copy issued so far has finished (CUDA: the
  // backend's stream). For timing only, never needed for correctness: copies to
  // host memory already wait. No-op where ops are synchronous (CPU).
  virtual void synchronize() {}
  // Stream ordering for work issued outside the backend (model/boundary_memory.h):
  // record_event() returns an event completing once every op issued so far has
  // finished (owned by the backend, valid until the next record_event call);
  // wait_event(e) makes ops issued from now on wait for e (an event of another
  // stream of the same device, e.g. a transport's receive). Synchronous backends
  // (CPU) return nullptr and ignore waits.
  virtual void* record_event() { return nullptr; }
  virtual void wait_event(void* event) { (void)event; }
  // Device timing for the executor's time split (run.time_accounting): timing_mark()
  // records a timed event on the stream and returns its index, or -1 where ops are
  // synchronous (CPU: the host clock already times them). timing_marks() waits for every
  // op issued so far, then gives for each mark since its last call how many seconds
  // before its return the stream reached that mark, and starts over.
  virtual int timing_mark() { return -1; }
  virtual void timing_marks(std::vector<double>* before_now) { before_now->clear(); }
  // The most backend memory alloc()/alloc_i32() (and the backend's own
  // workspaces) held at once since construction, in bytes; 0 where not tracked
  // (CPU: host memory). Library-internal memory (CUDA context, cuBLASLt
  // workspaces) is not included.
  virtual size_t peak_device_bytes() const { return 0; }

  // ---- storage dtype ----
  // Tensors of dtype bf16 (runtime.precision: bf16, model/precision.h) come from
  // alloc_bf16: fp32 containers holding bf16-representable values (CPU), or real bf16
  // storage (CUDA in bf16, the CPU test stand-in) whose ops read them widened to fp32
  // and store RNE-rounded. Either way the producer of a bf16 tensor calls this on it
  // right after writing it, and every op reads its inputs as fp32 values.
  // p[i] = the value a bf16 store of p[i] keeps (round to nearest, ties to even;
  // CPU and CUDA round identically: model/cpu/bf16.h). Backend memory, in place; a
  // no-op on real bf16 storage (already rounded by the store).
  virtual void round_to_bf16(float* p, size_t n) = 0;
  // Declares [wparams, wparams + n) (backend memory, bf16-valued) as the stage model's
  // bf16 weight copy, in its current contents. A backend with bf16 kernels may keep its
  // own bf16 copy of the range, made here (in stream order), and serve every op operand
  // lying inside the range from it instead of converting the operand per call. Contract:
  // the caller re-declares after every write to the range (a stale copy would silently
  // feed old weights to the ops), and free() of wparams forgets the declaration. The
  // stage model calls it right after each refresh of wparams_ (stage_model.cc). Default:
  // nothing (the CPU backend has no bf16 kernels).
  virtual void set_bf16_weights(const float* wparams, size_t n) {
    (void)wparams;
    (void)n;
  }
  // The stage model's weight refresh (stage_model.cc): wparams (n, backend memory) =
  // params rounded to bf16, then declared (set_bf16_weights). Default: copy,
  // round_to_bf16, set_bf16_weights; a backend with a bf16 weight copy may write both in
  // one pass (CUDA: cuda::round_fp32_to_bf16_copy), with the same contents.
  virtual void refresh_bf16_weights(float* wparams, const float* params, size_t n) {
    copy(wparams, params, n);
    round_to_bf16(wparams, n);
    set_bf16_weights(wparams, n);
  }

  // The conversions behind real bf16 storage (model/bf16_storage_backend.h), on backend
  // memory: dst[i] = the RNE bf16 bits of src[i] (model/cpu/bf16.h), and dst[i] = the
  // exact fp32 value of src[i], i < n. Default: fails (a backend without them cannot
  // hold real bf16 storage).
  virtual void pack_bf16(uint16_t* dst, const float* src, size_t n) {
    (void)dst, (void)src, (void)n;
    PT_CHECK_MSG(false, std::string(name()) + " backend cannot pack bf16 storage");
  }
  virtual void unpack_bf16(float* dst, const uint16_t* src, size_t n) {
    (void)dst, (void)src, (void)n;
    PT_CHECK_MSG(false, std::string(name()) + " backend cannot unpack bf16 storage");
  }

  // ---- typed entry points (real bf16 storage, model/bf16_storage_backend.h) ----
  // The GEMMs, the attention, LayerNorm, GELU, the residual add (also fused with LayerNorm),
  // the embedding, the cross-entropy and copies on operands of either dtype, reading bf16 operands and
  // writing bf16 outputs in place. make_bf16_storage_backend calls these when an operand
  // is bf16 and falls back to staging it through fp32 (the float* ops below) when they
  // return false, which the defaults always do. Contracts of the float* ops, on the
  // widened values; a bf16 output is the single RNE of what the float* op computes.
  // The bias is fp32 memory holding bf16 values (the stage model's weight copy).
  virtual bool matmul_forward_typed(TensorPtr out, TensorPtr inp, TensorPtr weight, const float* bias, int N, int C,
                                    int OC) {
    (void)out, (void)inp, (void)weight, (void)bias, (void)N, (void)C, (void)OC;
    return false;
  }
  virtual bool matmul_backward_input_typed(TensorPtr dinp, TensorPtr dout, TensorPtr weight, int N, int C, int OC) {
    (void)dinp, (void)dout, (void)weight, (void)N, (void)C, (void)OC;
    return false;
  }
  virtual bool matmul_backward_weight_typed(float* dweight, float* dbias, TensorPtr dout, TensorPtr inp, int N,
                                            int C, int OC) {
    (void)dweight, (void)dbias, (void)dout, (void)inp, (void)N, (void)C, (void)OC;
    return false;
  }
  virtual bool attention_forward_typed(TensorPtr out, float* att, TensorPtr inp, int B, int T, int C, int NH) {
    (void)out, (void)att, (void)inp, (void)B, (void)T, (void)C, (void)NH;
    return false;
  }
  virtual bool attention_backward_typed(TensorPtr dinp, float* scratch, TensorPtr dout, TensorPtr inp, TensorPtr out,
                                        const float* att, int B, int T, int C, int NH) {
    (void)dinp, (void)scratch, (void)dout, (void)inp, (void)out, (void)att, (void)B, (void)T, (void)C, (void)NH;
    return false;
  }
  virtual bool gelu_forward_typed(TensorPtr out, TensorPtr inp, int N) {
    (void)out, (void)inp, (void)N;
    return false;
  }
  virtual bool gelu_backward_typed(TensorPtr dinp, TensorPtr inp, TensorPtr dout, int N) {
    (void)dinp, (void)inp, (void)dout, (void)N;
    return false;
  }
  virtual bool residual_forward_typed(TensorPtr out, TensorPtr inp1, TensorPtr inp2, int N) {
    (void)out, (void)inp1, (void)inp2, (void)N;
    return false;
  }
  virtual bool layernorm_forward_typed(TensorPtr out, float* mean, float* rstd, TensorPtr inp, const float* weight,
                                       const float* bias, int N, int C) {
    (void)out, (void)mean, (void)rstd, (void)inp, (void)weight, (void)bias, (void)N, (void)C;
    return false;
  }
  virtual bool layernorm_backward_input_typed(TensorPtr dinp, TensorPtr dout, TensorPtr inp, const float* weight,
                                              const float* mean, const float* rstd, int N, int C) {
    (void)dinp, (void)dout, (void)inp, (void)weight, (void)mean, (void)rstd, (void)N, (void)C;
    return false;
  }
  virtual bool layernorm_backward_weight_typed(float* dweight, float* dbias, TensorPtr dout, TensorPtr inp,
                                               const float* mean, const float* rstd, int N, int C) {
    (void)dweight, (void)dbias, (void)dout, (void)inp, (void)mean, (void)rstd, (void)N, (void)C;
    return false;
  }
  virtual bool residual_layernorm_forward_typed(TensorPtr res, TensorPtr ln, float* mean, float* rstd, TensorPtr inp1,
                                                TensorPtr inp2, const float* weight, const float* bias, int N, int C,
                                                bool round_res_bf16) {
    (void)res, (void)ln, (void)mean, (void)rstd, (void)inp1, (void)inp2, (void)weight, (void)bias, (void)N, (void)C,
        (void)round_res_bf16;
    return false;
  }
  virtual bool layernorm_backward_input_residual_typed(TensorPtr dinp, TensorPtr dres, TensorPtr dout, TensorPtr inp,
                                                       const float* weight, const float* mean, const float* rstd,
                                                       int N, int C, bool round_bf16) {
    (void)dinp, (void)dres, (void)dout, (void)inp, (void)weight, (void)mean, (void)rstd, (void)N, (void)C,
        (void)round_bf16;
    return false;
  }
  // The embedding with its activation operand (out, dout) of either dtype; the tables
  // and their gradients fp32.
  virtual bool encoder_forward_typed(TensorPtr out, const int32_t* inp, const float* wte, const float* wpe, int B,
                                     int T, int C) {
    (void)out, (void)inp, (void)wte, (void)wpe, (void)B, (void)T, (void)C;
    return false;
  }
  virtual bool encoder_backward_typed(float* dwte, float* dwpe, TensorPtr dout, const int32_t* inp, int B, int T,
                                      int C, int V) {
    (void)dwte, (void)dwpe, (void)dout, (void)inp, (void)B, (void)T, (void)C, (void)V;
    return false;
  }
  // The fc layer fused with its GELU on bf16 storage: out = bf16(gelu(p)) and pre =
  // bf16(p), p = inp · weightᵀ + bias unrounded (matmul_forward then gelu_forward of p,
  // each output rounded once), bias non-null. Declined by default; a backend that takes
  // it sets BackendSizes::fc_gelu_typed. CUDA evaluates gelu in the cuBLASLt epilogue
  // (model/cuda/matmul_bf16.h, whose bound vs the tanh form the gpu tests derive).
  virtual bool matmul_forward_gelu_typed(TensorPtr out, TensorPtr pre, TensorPtr inp, TensorPtr weight,
                                         const float* bias, int N, int C, int OC) {
    (void)out, (void)pre, (void)inp, (void)weight, (void)bias, (void)N, (void)C, (void)OC;
    return false;
  }
  // The MLP projection's input gradient fused with the GELU backward on bf16 storage:
  // dinp = bf16(gelu'(pre) · (dout · weight)) (N, C), pre (N, C) the forward's bf16
  // pre-activation; one rounding where matmul_backward_input then gelu_backward round
  // the product first, so only CUDA takes it (cuBLASLt DGELU epilogue, model/cuda/
  // matmul_bf16.h); declined by default, keeping the CPU numerics.
  virtual bool matmul_backward_input_dgelu_typed(TensorPtr dinp, TensorPtr dout, TensorPtr weight, TensorPtr pre,
                                                 int N, int C, int OC) {
    (void)dinp, (void)dout, (void)weight, (void)pre, (void)N, (void)C, (void)OC;
    return false;
  }
  // The classifier loss on logits of either dtype: crossentropy_forward's and
  // crossentropy_backward's contracts on the float* operands (losses, targets, stats), bf16
  // logits read widened, bf16 dlogits stored RNE-rounded (the value round_to_bf16 of the
  // fp32 op's dlogits keeps). dlogits may alias logits (in place, same dtype).
  virtual bool crossentropy_forward_typed(float* losses, TensorPtr logits, const int32_t* targets, int N, int V,
                                          float* stats) {
    (void)losses, (void)logits, (void)targets, (void)N, (void)V, (void)stats;
    return false;
  }
  virtual bool crossentropy_backward_typed(TensorPtr dlogits, TensorPtr logits, const int32_t* targets, float scale,
                                           int N, int V, const float* stats) {
    (void)dlogits, (void)logits, (void)targets, (void)scale, (void)N, (void)V, (void)stats;
    return false;
  }
  // copy() with dtypes: dst = src converted (fp32 -> bf16: RNE; bf16 -> fp32: exact).
  // Either side may be host memory when fp32 (copy's contract); a backend that cannot
  // convert from or into host memory returns false there.
  virtual bool copy_typed(TensorPtr dst, TensorPtr src, size_t n) {
    (void)dst, (void)src, (void)n;
    return false;
  }

  // ---- step ops: the vector ops of an optimizer update on backend memory ----
  // out[k] = sum over i < numels[k] of x[offsets[k] + i]², each in double with a fixed
  // order: the serial sum_of_squares of optim/grad_norm.h on the CPU, the fixed two-pass
  // reduction of optim/cuda/global_norm.h on CUDA. x: backend memory; out: host memory,
  // count doubles, written when the call returns (CUDA: one download for all count).
  virtual void sums_of_squares(double* out, const float* x, const size_t* offsets, const size_t* numels,
                               int count) = 0;
  // out (n) = a (n) + b (n), one IEEE add per element, so bitwise equal on every
  // backend; out may alias a or b. Backend memory (any backend of this device).
  virtual void add(float* out, const float* a, const float* b, size_t n) = 0;
  // For i < n, every bufs[p][i] (p < count) = float( (sum over p ascending of double(bufs[p][i]))
  // / count ): double adds and one double divide, correctly rounded, so bitwise equal on every
  // backend (LocalSGD's average of copies). bufs: a host array of count (>= 1; CUDA: <= 32)
  // distinct pointers into backend memory of this device.
  virtual void average(float* const* bufs, int count, size_t n) = 0;

  // ---- ops (see model/cpu/<op>.h for the exact contracts) ----
  // out (B,T,C); inp (B,T); wte (V,C); wpe (maxT,C)
  virtual void encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe, int B, int T,
                               int C) = 0;
  // dwte (V,C) +=, dwpe (maxT,C) +=; dout (B,T,C); inp in [0, V)
  virtual void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp, int B, int T,
                                int C, int V) = 0;
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
  // out, pre (N,OC): matmul_forward_gelu_typed's contract on the float* operands, for a
  // backend that forwards it there (make_bf16_storage_backend: both outputs in bf16
  // storage). Returns false, writing nothing, where it is not taken (the default): the
  // caller then runs matmul_forward and gelu_forward.
  virtual bool matmul_forward_gelu(float* out, float* pre, const float* inp, const float* weight, const float* bias,
                                   int N, int C, int OC) {
    (void)out, (void)pre, (void)inp, (void)weight, (void)bias, (void)N, (void)C, (void)OC;
    return false;
  }
  // dinp, pre (N,C): matmul_backward_input_dgelu_typed's contract on the float* operands
  // (make_bf16_storage_backend forwards it there); false, writing nothing, where not
  // taken (the default): the caller then runs matmul_backward_input and gelu_backward.
  virtual bool matmul_backward_input_dgelu(float* dinp, const float* dout, const float* weight, const float* pre,
                                           int N, int C, int OC) {
    (void)dinp, (void)dout, (void)weight, (void)pre, (void)N, (void)C, (void)OC;
    return false;
  }
  // dinp (N,C) = dout (N,OC) · weight (OC,C)
  virtual void matmul_backward_input(float* dinp, const float* dout, const float* weight, int N, int C, int OC) = 0;
  // dweight (OC,C) += doutᵀ · inp; dbias (OC) += sum dout (null: none)
  virtual void matmul_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp, int N,
                                      int C, int OC) = 0;
  // out (B,T,C); att (sizes().attention_saved_floats: what the backward needs,
  // backend-specific); inp (B,T,3C)
  virtual void attention_forward(float* out, float* att, const float* inp, int B, int T, int C, int NH) = 0;
  // dinp (B,T,3C) =; scratch (sizes().attention_scratch_floats); dout (B,T,C); inp, out and
  // att from the forward (out: the forward's output, read by the CUDA backward only).
  virtual void attention_backward(float* dinp, float* scratch, const float* dout, const float* inp,
                                  const float* out, const float* att, int B, int T, int C, int NH) = 0;
  // out, inp (N)
  virtual void gelu_forward(float* out, const float* inp, int N) = 0;
  // dinp =, inp, dout (N)
  virtual void gelu_backward(float* dinp, const float* inp, const float* dout, int N) = 0;
  // out = inp1 + inp2 (N)
  virtual void residual_forward(float* out, const float* inp1, const float* inp2, int N) = 0;
  // res (N,C) = inp1 + inp2 (may alias either), rounded to bf16 in place when round_res_bf16;
  // then ln (N,C), mean, rstd (N) = layernorm_forward(res, weight, bias). Bitwise the
  // unfused residual_forward, round_to_bf16, layernorm_forward of the same backend.
  virtual void residual_layernorm_forward(float* res, float* ln, float* mean, float* rstd, const float* inp1,
                                          const float* inp2, const float* weight, const float* bias, int N, int C,
                                          bool round_res_bf16) = 0;
  // dinp (N,C) = dres + g, g = layernorm_backward_input(dout, inp, weight, mean, rstd),
  // rounded to bf16 first when round_bf16 (dinp itself is not rounded); dinp must not
  // overlap an input. Bitwise the unfused layernorm_backward_input, round_to_bf16,
  // residual_forward(dinp, dres, g) of the same backend.
  virtual void layernorm_backward_input_residual(float* dinp, const float* dres, const float* dout,
                                                 const float* inp, const float* weight, const float* mean,
                                                 const float* rstd, int N, int C, bool round_bf16) = 0;
  // Classifier loss over rows of logits (model/cpu/crossentropy.h); the stage
  // model calls these per chunk of rows. losses (N); logits (N,V); targets (N);
  // stats (2N fp32, may be null): each row's softmax statistics, for the backward.
  virtual void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int N, int V,
                                    float* stats) = 0;
  // dlogits (N,V) = (softmax(logits) - onehot) * scale (may alias logits); stats: the
  // forward's on these logits (the same result, one pass over them fewer) or null.
  virtual void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, float scale,
                                     int N, int V, const float* stats) = 0;
};

// Host backend on OpenBLAS (fp32 arithmetic; bf16 storage by round_to_bf16).
std::unique_ptr<Backend> make_cpu_backend();
// Test only: the same CPU backend, but host_memory() reports false, so every caller
// treats its memory as device memory (explicit transfers, collectives staged through
// host buffers where a device pointer could not be handed to them). Identical numerics;
// lets CPU-only CI run the device-resident step's device paths
// (stage_model_factory.h, PIPETRAIN_TEST_DEVICE_SPACE).
std::unique_ptr<Backend> make_cpu_backend_emulating_device();
// Real bf16 storage for any backend: model/bf16_storage_backend.h.
// The CUDA backend is model/cuda/cuda_backend.h (CUDA builds only).

}  // namespace pt
