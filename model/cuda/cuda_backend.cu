// The CUDA Backend; see cuda_backend.h. Thin forwards to the model/cuda launchers
// on the backend's stream, plus the memory primitives and the two workspaces the
// kernels need (encoder backward, LayerNorm weight backward), grown on demand.
#include "model/cuda/cuda_backend.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <initializer_list>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/check.h"
#include "model/cuda/attention.h"
#include "model/cuda/attention_bf16.h"
#include "model/cuda/average.h"
#include "model/cuda/convert_bf16.h"
#include "model/cuda/crossentropy.h"
#include "model/cuda/cuda_check.h"
#include "model/cuda/encoder.h"
#include "model/cuda/gelu.h"
#include "model/cuda/layernorm.h"
#include "model/cuda/matmul.h"
#include "model/cuda/matmul_bf16.h"
#include "model/cuda/op_timer.h"
#include "model/cuda/residual.h"
#include "model/cuda/residual_layernorm.h"
#include "optim/cuda/global_norm.h"

namespace pt {
namespace {

std::atomic<size_t> g_bf16_calls{0};  // cuda_bf16_kernel_calls()
std::atomic<size_t> g_weight_conversions{0};  // cuda_bf16_weight_conversions()
std::atomic<size_t> g_weight_operands{0};     // cuda_bf16_weight_operands()
std::atomic<size_t> g_fused_gelu_calls{0};    // cuda_bf16_fused_gelu_calls()
std::atomic<size_t> g_fused_dgelu_calls{0};   // cuda_bf16_fused_dgelu_calls()

// Device memory only: pageable, pinned and managed memory are all host-readable,
// so a copy touching them must finish before copy() returns.
cudaMemoryType memory_type(const void* p) {
  cudaPointerAttributes attr{};
  const cudaError_t rc = cudaPointerGetAttributes(&attr, p);
  if (rc != cudaSuccess) {
    (void)cudaGetLastError();  // older runtimes report plain host pointers as an error
    return cudaMemoryTypeUnregistered;
  }
  return attr.type;
}

bool is_device_pointer(const void* p) { return memory_type(p) == cudaMemoryTypeDevice; }

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, const BackendOptions& options)
      : device_(device), tf32_(options.tf32), bf16_(options.precision == Precision::kBf16) {
    std::string why;
    const int count = cuda_device_count(&why);
    PT_CHECK_MSG(device >= 0 && device < count, "CUDA device " + std::to_string(device) + " is not available (" +
                                                    std::to_string(count) + " visible" +
                                                    (why.empty() ? std::string() : ": " + why) + ")");
    PT_CUDA_CHECK(cudaSetDevice(device_));
    PT_CUDA_CHECK(cudaStreamCreate(&stream_));
  }

  ~CudaBackend() override {
    activate();
    PT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (ln_scratch_ != nullptr) PT_CUDA_CHECK(cudaFree(ln_scratch_));
    if (enc_workspace_ != nullptr) PT_CUDA_CHECK(cudaFree(enc_workspace_));
    if (sumsq_ != nullptr) PT_CUDA_CHECK(cudaFree(sumsq_));
    for (__nv_bfloat16* b : bf16_scratch_)
      if (b != nullptr) PT_CUDA_CHECK(cudaFree(b));
    if (bf16_weights_ != nullptr) PT_CUDA_CHECK(cudaFree(bf16_weights_));
    // The matmul plan cache keeps this stream's cuBLASLt workspace (keyed by the
    // stream handle) until matmul_release_plans(); other backends may still use
    // the cache, so it is not released here.
    if (event_ != nullptr) PT_CUDA_CHECK(cudaEventDestroy(event_));
    timer_.report(device_);  // PIPETRAIN_OP_TIMES (op_timer.h); the stream is idle
    PT_CUDA_CHECK(cudaStreamDestroy(stream_));
  }

  const char* name() const override { return "cuda"; }

  void synchronize() override {
    activate();
    PT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  // One event, re-recorded per call: a consumer (the transport) waits on it at once.
  void* record_event() override {
    activate();
    if (event_ == nullptr) PT_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
    PT_CUDA_CHECK(cudaEventRecord(event_, stream_));
    return event_;
  }
  int timing_mark() override {
    activate();
    return marks_.mark(stream_);
  }
  void timing_marks(std::vector<double>* before_now) override {
    activate();
    marks_.read(stream_, before_now);
  }
  void wait_event(void* event) override {
    if (event == nullptr) return;
    activate();
    PT_CUDA_CHECK(cudaStreamWaitEvent(stream_, static_cast<cudaEvent_t>(event), 0));
  }
  // Tracked in device_bytes/free_device: every cudaMalloc of this backend
  // (buffers and workspaces), not cuBLASLt's workspace or the CUDA context.
  size_t peak_device_bytes() const override { return peak_bytes_; }

  // ---- memory ----
  float* alloc(size_t n) override { return static_cast<float*>(device_bytes(n * sizeof(float))); }
  void free(float* p) override {
    if (p != nullptr && p == declared_) {  // Backend::set_bf16_weights: the range is gone
      declared_ = nullptr;
      declared_n_ = 0;
    }
    free_device(p);
  }
  int32_t* alloc_i32(size_t n) override { return static_cast<int32_t*>(device_bytes(n * sizeof(int32_t))); }
  void free_i32(int32_t* p) override { free_device(p); }
  void zero(float* p, size_t n) override {
    if (n == 0) return;
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "zero", stream_);
    PT_CUDA_CHECK(cudaMemsetAsync(p, 0, n * sizeof(float), stream_));
  }
  void copy(float* dst, const float* src, size_t n) override { copy_bytes(dst, src, n * sizeof(float)); }
  void upload(float* dst, const float* host_src, size_t n) override { copy_bytes(dst, host_src, n * sizeof(float)); }
  void download(float* host_dst, const float* src, size_t n) override {
    copy_bytes(host_dst, src, n * sizeof(float));
  }
  void upload_i32(int32_t* dst, const int32_t* host_src, size_t n) override {
    copy_bytes(dst, host_src, n * sizeof(int32_t));
  }
  bool host_memory() const override { return false; }
  void* stream() const override { return stream_; }
  // Flash-style attention: saves lse (B, NH, T); the backward's scratch holds
  // D = rowsum(dout * out), also (B, NH, T).
  // bf16 tensors (alloc_bf16) are fp32 containers here; make_stage_model wraps the backend
  // in make_bf16_storage_backend for real bf16 storage (cuda_backend_sizes' 2 bytes), where
  // the fc + GELU fusion (fc_gelu_typed) applies (BackendSizes::fuses_fc_gelu).
  BackendSizes sizes() const override {
    BackendSizes s = cuda_backend_sizes();
    s.bf16_bytes = 4;
    return s;
  }
  float* alloc_host(size_t n) override {
    activate();
    void* p = nullptr;
    PT_CUDA_CHECK(cudaMallocHost(&p, std::max<size_t>(n, 1) * sizeof(float)));
    return static_cast<float*>(p);
  }
  void free_host(float* p) override {
    if (p == nullptr) return;
    activate();
    PT_CUDA_CHECK(cudaStreamSynchronize(stream_));  // no copy may still read or write it
    PT_CUDA_CHECK(cudaFreeHost(p));
  }
  void round_to_bf16(float* p, size_t n) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "round_to_bf16", stream_);
    cuda::round_fp32_to_bf16(p, n, stream_);
  }
  void pack_bf16(uint16_t* dst, const float* src, size_t n) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "pack_bf16", stream_);
    cuda::convert_fp32_to_bf16(reinterpret_cast<__nv_bfloat16*>(dst), src, n, stream_);
  }
  void unpack_bf16(float* dst, const uint16_t* src, size_t n) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "unpack_bf16", stream_);
    cuda::convert_bf16_to_fp32(dst, reinterpret_cast<const __nv_bfloat16*>(src), n, stream_);
  }
  // bf16 mode: the whole range converted once (exact: bf16-valued) into bf16_weights_,
  // in stream order after whatever wrote it and before every later op; fp32: ignored.
  void set_bf16_weights(const float* wparams, size_t n) override {
    if (!bf16_ || wparams == nullptr || n == 0) return;
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "set_bf16_weights", stream_);
    cuda::convert_fp32_to_bf16(declare_bf16_weights(wparams, n), wparams, n, stream_);
  }

  // One pass writes wparams (params rounded) and the persistent bf16 copy; the same
  // contents as copy + round_to_bf16 + set_bf16_weights. fp32: the default.
  void refresh_bf16_weights(float* wparams, const float* params, size_t n) override {
    if (!bf16_ || n == 0 || !is_device_pointer(params)) return Backend::refresh_bf16_weights(wparams, params, n);
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "refresh_bf16_weights", stream_);
    cuda::round_fp32_to_bf16_copy(wparams, declare_bf16_weights(wparams, n), params, n, stream_);
  }

  // ---- step ops ----
  void sums_of_squares(double* out, const float* x, const size_t* offsets, const size_t* numels,
                       int count) override {
    if (count <= 0) return;
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "sums_of_squares", stream_);
    // count results, then the reduction's scratch (count · kSumOfSquaresBlocks partials),
    // then the (offset, numel) table, uploaded without a host wait (copy_bytes).
    const size_t n = size_t(count), partials = n * cuda::kSumOfSquaresBlocks;
    double* d = grow(&sumsq_, &sumsq_bytes_, (n + partials) * sizeof(double) + 2 * n * sizeof(size_t));
    size_t* table = reinterpret_cast<size_t*>(d + n + partials);
    sumsq_table_.clear();
    for (int k = 0; k < count; ++k) sumsq_table_.insert(sumsq_table_.end(), {offsets[k], numels[k]});
    copy_bytes(table, sumsq_table_.data(), 2 * n * sizeof(size_t));
    cuda::sums_of_squares(d, x, table, count, d + n, stream_);
    copy_bytes(out, d, n * sizeof(double));  // host destination: waits
  }
  void add(float* out, const float* a, const float* b, size_t n) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "add", stream_);
    cuda::add(out, a, b, n, stream_);
  }
  void average(float* const* bufs, int count, size_t n) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "average", stream_);
    cuda::average(bufs, count, n, stream_);
  }

  // ---- ops ----
  void encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe, int B, int T,
                       int C) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "encoder_forward", stream_);
    cuda::encoder_forward(out, inp, wte, wpe, B, T, C, stream_);
  }
  void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp, int B, int T, int C,
                        int V) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "encoder_backward", stream_);
    cuda::encoder_backward(dwte, dwpe, dout, inp, B, T, C, V, encoder_workspace(B, T, V), stream_);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                         const float* bias, int N, int C) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "layernorm_forward", stream_);
    cuda::layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, stream_);
  }
  void layernorm_backward_input(float* dinp, const float* dout, const float* inp, const float* weight,
                                const float* mean, const float* rstd, int N, int C) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "layernorm_backward_input", stream_);
    cuda::layernorm_backward_input(dinp, dout, inp, weight, mean, rstd, N, C, stream_);
  }
  void layernorm_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp,
                                 const float* mean, const float* rstd, int N, int C) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "layernorm_backward_weight", stream_);
    float* scratch =
        grow(&ln_scratch_, &ln_scratch_bytes_, cuda::layernorm_backward_weight_scratch_floats(N, C) * sizeof(float));
    cuda::layernorm_backward_weight(dweight, dbias, dout, inp, mean, rstd, N, C, scratch, stream_);
  }
  // bf16 mode: see cuda_backend.h (operands to bf16 scratch, exact for the
  // bf16-valued inputs the stage model passes; fp32 outputs rounded by the caller).
  void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C,
                      int OC) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "matmul_forward", stream_);
    if (bf16_gemm(C, OC, out)) {
      const __nv_bfloat16* x = to_bf16(0, inp, size_t(N) * C);
      const __nv_bfloat16* w = to_bf16(1, weight, size_t(OC) * C);
      cuda::matmul_forward_bf16_fp32out(out, x, w, bias, N, C, OC, stream_);
      return;
    }
    cuda::matmul_forward(out, inp, weight, bias, N, C, OC, stream_, tf32_);
  }
  void matmul_backward_input(float* dinp, const float* dout, const float* weight, int N, int C, int OC) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "matmul_backward_input", stream_);
    if (bf16_gemm(C, OC, dinp)) {
      const __nv_bfloat16* d = to_bf16(0, dout, size_t(N) * OC);
      const __nv_bfloat16* w = to_bf16(1, weight, size_t(OC) * C);
      cuda::matmul_backward_input_bf16_fp32out(dinp, d, w, N, C, OC, stream_);
      return;
    }
    cuda::matmul_backward_input(dinp, dout, weight, N, C, OC, stream_, tf32_);
  }
  void matmul_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp, int N, int C,
                              int OC) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "matmul_backward_weight", stream_);
    if (bf16_gemm(C, OC, dweight)) {
      const __nv_bfloat16* d = to_bf16(0, dout, size_t(N) * OC);
      const __nv_bfloat16* x = to_bf16(1, inp, size_t(N) * C);
      cuda::matmul_backward_weight_bf16(dweight, dbias, d, x, N, C, OC, stream_);
      return;
    }
    cuda::matmul_backward_weight(dweight, dbias, dout, inp, N, C, OC, stream_, tf32_);
  }
  // Typed entry points (backend.h; real bf16 storage, model/bf16_storage_backend.h):
  // bf16 operands are read in place and bf16 outputs written by the GEMM itself (bf16 D,
  // the single RNE of the fp32 accumulator + bias, matmul_bf16.h); fp32 operands as in
  // the float* forms above. false (the caller stages through fp32) where the float*
  // form would not use the bf16 kernels or an operand is not 16-byte aligned.
  bool matmul_forward_typed(TensorPtr out, TensorPtr inp, TensorPtr weight, const float* bias, int N, int C,
                            int OC) override {
    if (!bf16_gemm_typed(C, OC, {out, inp, weight})) return false;
    const cuda::OpTimer::Scope timed(&timer_, "matmul_forward_typed", stream_);
    const __nv_bfloat16* x = as_bf16(0, inp, size_t(N) * C);
    const __nv_bfloat16* w = as_bf16(1, weight, size_t(OC) * C);
    if (!out.bf16()) {
      cuda::matmul_forward_bf16_fp32out(static_cast<float*>(out.p), x, w, bias, N, C, OC, stream_);
      return true;
    }
    cuda::matmul_forward_bf16(bf16p(out), x, w, bias_bf16(bias, OC), N, C, OC, stream_);
    return true;
  }
  // fc + GELU as one GEMM with the GELU_AUX_BIAS epilogue (matmul_forward_gelu_bf16: out =
  // bf16(gelu(p)), pre = bf16(p) of the fp32 accumulator + bias; cuBLASLt's GELU, or the
  // documented fallback on bf16(p)); both outputs bf16 and a bias, else declined.
  bool matmul_forward_gelu_typed(TensorPtr out, TensorPtr pre, TensorPtr inp, TensorPtr weight, const float* bias,
                                 int N, int C, int OC) override {
    if (bias == nullptr || !out.bf16() || !pre.bf16() || !bf16_gemm_typed(C, OC, {out, pre, inp, weight}))
      return false;
    const cuda::OpTimer::Scope timed(&timer_, "matmul_forward_gelu_typed", stream_);
    const __nv_bfloat16* x = as_bf16(0, inp, size_t(N) * C);
    const __nv_bfloat16* w = as_bf16(1, weight, size_t(OC) * C);
    cuda::matmul_forward_gelu_bf16(bf16p(out), bf16p(pre), x, w, bias_bf16(bias, OC), N, C, OC, stream_);
    g_fused_gelu_calls.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  // MLP projection input gradient + GELU backward as one GEMM with the DGELU epilogue
  // (matmul_backward_input_dgelu_bf16); dinp and pre bf16, else declined.
  bool matmul_backward_input_dgelu_typed(TensorPtr dinp, TensorPtr dout, TensorPtr weight, TensorPtr pre, int N,
                                         int C, int OC) override {
    if (!dinp.bf16() || !pre.bf16() || !bf16_gemm_typed(C, OC, {dinp, dout, weight, pre})) return false;
    const cuda::OpTimer::Scope timed(&timer_, "matmul_backward_input_dgelu_typed", stream_);
    const __nv_bfloat16* d = as_bf16(0, dout, size_t(N) * OC);
    const __nv_bfloat16* w = as_bf16(1, weight, size_t(OC) * C);
    cuda::matmul_backward_input_dgelu_bf16(bf16p(dinp), d, w, bf16p(pre), N, C, OC, stream_);
    g_fused_dgelu_calls.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  bool matmul_backward_input_typed(TensorPtr dinp, TensorPtr dout, TensorPtr weight, int N, int C,
                                   int OC) override {
    if (!bf16_gemm_typed(C, OC, {dinp, dout, weight})) return false;
    const cuda::OpTimer::Scope timed(&timer_, "matmul_backward_input_typed", stream_);
    const __nv_bfloat16* d = as_bf16(0, dout, size_t(N) * OC);
    const __nv_bfloat16* w = as_bf16(1, weight, size_t(OC) * C);
    if (dinp.bf16()) {
      cuda::matmul_backward_input_bf16(static_cast<__nv_bfloat16*>(dinp.p), d, w, N, C, OC, stream_);
    } else {
      cuda::matmul_backward_input_bf16_fp32out(static_cast<float*>(dinp.p), d, w, N, C, OC, stream_);
    }
    return true;
  }
  bool matmul_backward_weight_typed(float* dweight, float* dbias, TensorPtr dout, TensorPtr inp, int N, int C,
                                    int OC) override {
    if (!bf16_gemm_typed(C, OC, {TensorPtr{dweight}, dout, inp})) return false;
    const cuda::OpTimer::Scope timed(&timer_, "matmul_backward_weight_typed", stream_);
    const __nv_bfloat16* d = as_bf16(0, dout, size_t(N) * OC);
    const __nv_bfloat16* x = as_bf16(1, inp, size_t(N) * C);
    cuda::matmul_backward_weight_bf16(dweight, dbias, d, x, N, C, OC, stream_);
    return true;
  }
  bool attention_forward_typed(TensorPtr out, float* att, TensorPtr inp, int B, int T, int C, int NH) override {
    if (!aligned({out, inp}) || !bf16_attention(C, NH)) return false;
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "attention_forward_typed", stream_);
    const size_t n = size_t(B) * T * C;
    const __nv_bfloat16* x = as_bf16(0, inp, 3 * n);
    __nv_bfloat16* o = out.bf16() ? static_cast<__nv_bfloat16*>(out.p) : bf16_buffer(1, n);
    cuda::attention_forward_bf16(o, /*lse=*/att, x, B, T, C, NH, stream_);
    if (!out.bf16()) cuda::convert_bf16_to_fp32(static_cast<float*>(out.p), o, n, stream_);
    return true;
  }
  bool attention_backward_typed(TensorPtr dinp, float* scratch, TensorPtr dout, TensorPtr inp, TensorPtr out,
                                const float* att, int B, int T, int C, int NH) override {
    if (!aligned({dinp, dout, inp, out}) || !bf16_attention(C, NH)) return false;
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "attention_backward_typed", stream_);
    const size_t n = size_t(B) * T * C;
    const __nv_bfloat16* d = as_bf16(0, dout, n);
    const __nv_bfloat16* x = as_bf16(1, inp, 3 * n);
    const __nv_bfloat16* o = as_bf16(2, out, n);
    __nv_bfloat16* dx = dinp.bf16() ? static_cast<__nv_bfloat16*>(dinp.p) : bf16_buffer(3, 3 * n);
    cuda::attention_backward_bf16(dx, scratch, d, x, o, /*lse=*/att, B, T, C, NH, stream_);
    if (!dinp.bf16()) cuda::convert_bf16_to_fp32(static_cast<float*>(dinp.p), dx, 3 * n, stream_);
    return true;
  }
  // LayerNorm and residual + LayerNorm: all activations bf16 (weights, statistics fp32),
  // else declined (staged); layernorm.h, residual_layernorm.h.
  bool layernorm_forward_typed(TensorPtr out, float* mean, float* rstd, TensorPtr inp, const float* weight,
                               const float* bias, int N, int C) override {
    if (!out.bf16() || !inp.bf16()) return false;
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "layernorm_forward_typed", stream_);
    cuda::layernorm_forward_bf16act(bf16p(out), mean, rstd, bf16p(inp), weight, bias, N, C, stream_);
    return true;
  }
  bool layernorm_backward_input_typed(TensorPtr dinp, TensorPtr dout, TensorPtr inp, const float* weight,
                                      const float* mean, const float* rstd, int N, int C) override {
    if (!dinp.bf16() || !dout.bf16() || !inp.bf16()) return false;
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "layernorm_backward_input_typed", stream_);
    cuda::layernorm_backward_input_bf16act(bf16p(dinp), bf16p(dout), bf16p(inp), weight, mean, rstd, N, C, stream_);
    return true;
  }
  bool layernorm_backward_weight_typed(float* dweight, float* dbias, TensorPtr dout, TensorPtr inp,
                                       const float* mean, const float* rstd, int N, int C) override {
    if (!dout.bf16() || !inp.bf16()) return false;
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "layernorm_backward_weight_typed", stream_);
    float* scratch =
        grow(&ln_scratch_, &ln_scratch_bytes_, cuda::layernorm_backward_weight_scratch_floats(N, C) * sizeof(float));
    cuda::layernorm_backward_weight_bf16act(dweight, dbias, bf16p(dout), bf16p(inp), mean, rstd, N, C, scratch,
                                            stream_);
    return true;
  }
  bool residual_layernorm_forward_typed(TensorPtr res, TensorPtr ln, float* mean, float* rstd, TensorPtr inp1,
                                        TensorPtr inp2, const float* weight, const float* bias, int N, int C,
                                        bool round_res_bf16) override {
    if (!round_res_bf16 || !res.bf16() || !ln.bf16() || !inp1.bf16() || !inp2.bf16()) return false;
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "residual_layernorm_forward_typed", stream_);
    cuda::residual_layernorm_forward_bf16act(bf16p(res), bf16p(ln), mean, rstd, bf16p(inp1), bf16p(inp2), weight,
                                             bias, N, C, stream_);
    return true;
  }
  bool layernorm_backward_input_residual_typed(TensorPtr dinp, TensorPtr dres, TensorPtr dout, TensorPtr inp,
                                               const float* weight, const float* mean, const float* rstd, int N, int C,
                                               bool round_bf16) override {
    if (!round_bf16 || !dinp.bf16() || !dres.bf16() || !dout.bf16() || !inp.bf16()) return false;
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "layernorm_backward_input_residual_typed", stream_);
    cuda::layernorm_backward_input_residual_bf16act(bf16p(dinp), bf16p(dres), bf16p(dout), bf16p(inp), weight, mean,
                                                    rstd, N, C, stream_);
    return true;
  }
  // The embedding with a bf16 output / output gradient (encoder.h typed forms).
  bool encoder_forward_typed(TensorPtr out, const int32_t* inp, const float* wte, const float* wpe, int B, int T,
                             int C) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "encoder_forward_typed", stream_);
    cuda::encoder_forward_typed(out.p, out.bf16(), inp, wte, wpe, B, T, C, stream_);
    return true;
  }
  bool encoder_backward_typed(float* dwte, float* dwpe, TensorPtr dout, const int32_t* inp, int B, int T, int C,
                              int V) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "encoder_backward_typed", stream_);
    cuda::encoder_backward_typed(dwte, dwpe, dout.p, dout.bf16(), inp, B, T, C, V, encoder_workspace(B, T, V),
                                 stream_);
    return true;
  }
  // Device to device only (the conversions are kernels); a host side is staged by the caller.
  bool copy_typed(TensorPtr dst, TensorPtr src, size_t n) override {
    if (n == 0) return true;
    if (!is_device_pointer(dst.p) || !is_device_pointer(src.p)) return false;
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "copy_typed", stream_);
    if (dst.bf16() && src.bf16()) {
      if (dst.p != src.p) PT_CUDA_CHECK(cudaMemcpyAsync(dst.p, src.p, n * 2, cudaMemcpyDeviceToDevice, stream_));
    } else if (dst.bf16()) {
      cuda::convert_fp32_to_bf16(static_cast<__nv_bfloat16*>(dst.p), static_cast<const float*>(src.p), n, stream_);
    } else {
      cuda::convert_bf16_to_fp32(static_cast<float*>(dst.p), static_cast<const __nv_bfloat16*>(src.p), n, stream_);
    }
    return true;
  }
  // Elementwise ops: each operand read or written in its own dtype (gelu.h, residual.h).
  bool gelu_forward_typed(TensorPtr out, TensorPtr inp, int N) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "gelu_forward_typed", stream_);
    cuda::gelu_forward_typed(out.p, out.bf16(), inp.p, inp.bf16(), N, stream_);
    return true;
  }
  bool gelu_backward_typed(TensorPtr dinp, TensorPtr inp, TensorPtr dout, int N) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "gelu_backward_typed", stream_);
    cuda::gelu_backward_typed(dinp.p, dinp.bf16(), inp.p, inp.bf16(), dout.p, dout.bf16(), N, stream_);
    return true;
  }
  bool residual_forward_typed(TensorPtr out, TensorPtr inp1, TensorPtr inp2, int N) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "residual_forward_typed", stream_);
    cuda::residual_forward_typed(out.p, out.bf16(), inp1.p, inp1.bf16(), inp2.p, inp2.bf16(), N, stream_);
    return true;
  }
  // The classifier loss with logits / dlogits of either dtype (crossentropy.h typed forms).
  bool crossentropy_forward_typed(float* losses, TensorPtr logits, const int32_t* targets, int N, int V,
                                  float* stats) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "crossentropy_forward_typed", stream_);
    cuda::crossentropy_forward_typed(losses, logits.p, logits.bf16(), targets, N, V, stats, stream_);
    return true;
  }
  bool crossentropy_backward_typed(TensorPtr dlogits, TensorPtr logits, const int32_t* targets, float scale, int N,
                                   int V, const float* stats) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "crossentropy_backward_typed", stream_);
    cuda::crossentropy_backward_typed(dlogits.p, dlogits.bf16(), logits.p, logits.bf16(), targets, scale, N, V,
                                      stats, stream_);
    return true;
  }
  // bf16 mode with a head size the flash kernel takes: inputs to bf16 scratch (exact,
  // bf16-valued), the kernel's bf16 outputs back to fp32 (exact). lse and the
  // backward scratch are the fp32 kernel's shapes, (B, NH, T) each.
  void attention_forward(float* out, float* att, const float* inp, int B, int T, int C, int NH) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "attention_forward", stream_);
    if (bf16_attention(C, NH)) {
      const size_t n = size_t(B) * T * C;
      const __nv_bfloat16* x = to_bf16(0, inp, 3 * n);
      __nv_bfloat16* o = bf16_buffer(1, n);
      cuda::attention_forward_bf16(o, /*lse=*/att, x, B, T, C, NH, stream_);
      cuda::convert_bf16_to_fp32(out, o, n, stream_);
      return;
    }
    cuda::attention_forward(out, /*lse=*/att, inp, B, T, C, NH, stream_);
  }
  void attention_backward(float* dinp, float* scratch, const float* dout, const float* inp, const float* out,
                          const float* att, int B, int T, int C, int NH) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "attention_backward", stream_);
    if (bf16_attention(C, NH)) {
      const size_t n = size_t(B) * T * C;
      const __nv_bfloat16* d = to_bf16(0, dout, n);
      const __nv_bfloat16* x = to_bf16(1, inp, 3 * n);
      const __nv_bfloat16* o = to_bf16(2, out, n);
      __nv_bfloat16* dx = bf16_buffer(3, 3 * n);
      cuda::attention_backward_bf16(dx, scratch, d, x, o, /*lse=*/att, B, T, C, NH, stream_);
      cuda::convert_bf16_to_fp32(dinp, dx, 3 * n, stream_);
      return;
    }
    cuda::attention_backward(dinp, scratch, dout, inp, out, /*lse=*/att, B, T, C, NH, stream_);
  }
  void gelu_forward(float* out, const float* inp, int N) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "gelu_forward", stream_);
    cuda::gelu_forward(out, inp, N, stream_);
  }
  void gelu_backward(float* dinp, const float* inp, const float* dout, int N) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "gelu_backward", stream_);
    cuda::gelu_backward(dinp, inp, dout, N, stream_);
  }
  void residual_forward(float* out, const float* inp1, const float* inp2, int N) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "residual_forward", stream_);
    cuda::residual_forward(out, inp1, inp2, N, stream_);
  }
  void residual_layernorm_forward(float* res, float* ln, float* mean, float* rstd, const float* inp1,
                                  const float* inp2, const float* weight, const float* bias, int N, int C,
                                  bool round_res_bf16) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "residual_layernorm_forward", stream_);
    cuda::residual_layernorm_forward(res, ln, mean, rstd, inp1, inp2, weight, bias, N, C, round_res_bf16,
                                     stream_);
  }
  void layernorm_backward_input_residual(float* dinp, const float* dres, const float* dout, const float* inp,
                                         const float* weight, const float* mean, const float* rstd, int N, int C,
                                         bool round_bf16) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "layernorm_backward_input_residual", stream_);
    cuda::layernorm_backward_input_residual(dinp, dres, dout, inp, weight, mean, rstd, N, C, round_bf16, stream_);
  }
  // Same argument order and contract as the CPU twin; only the stream is added.
  void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int N, int V,
                            float* stats) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "crossentropy_forward", stream_);
    cuda::crossentropy_forward(losses, logits, targets, N, V, stats, stream_);
  }
  void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, float scale, int N, int V,
                             const float* stats) override {
    activate();
    const cuda::OpTimer::Scope timed(&timer_, "crossentropy_backward", stream_);
    cuda::crossentropy_backward(dlogits, logits, targets, scale, N, V, stats, stream_);
  }

 private:
  // cudaSetDevice only when another device is current (cudaGetDevice is a
  // thread-local read).
  void activate() const {
    int current = -1;
    PT_CUDA_CHECK(cudaGetDevice(&current));
    if (current != device_) PT_CUDA_CHECK(cudaSetDevice(device_));
  }

  // Whether a GEMM with reduction/output sizes C, OC and fp32 output `out` runs on
  // the bf16 kernels: bf16 mode and matmul_bf16.h's requirements (C, OC multiples of
  // 8; the fp32 output 16-byte aligned; the bf16 operands live in the scratch, which
  // cudaMalloc aligns). Counts the GEMMs it admits (cuda_bf16_kernel_calls).
  bool bf16_gemm(int C, int OC, const float* out) const {
    const bool ok = bf16_ && C % 8 == 0 && OC % 8 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0;
    if (ok) g_bf16_calls.fetch_add(1, std::memory_order_relaxed);
    return ok;
  }

  // Whether attention runs on the bf16 flash kernels: bf16 mode and a head size they
  // take (attention_bf16.h); counted as above.
  bool bf16_attention(int C, int NH) const {
    const bool ok = bf16_ && NH > 0 && C % NH == 0 && cuda::attention_bf16_supports_head_size(C / NH);
    if (ok) g_bf16_calls.fetch_add(1, std::memory_order_relaxed);
    return ok;
  }

  // Whether every operand of a typed entry point is 16-byte aligned (the bf16 kernels'
  // vector loads; fp32 inputs are converted into aligned scratch, but kept simple).
  static bool aligned(std::initializer_list<TensorPtr> ops) {
    for (const TensorPtr& t : ops)
      if (reinterpret_cast<uintptr_t>(t.p) % 16 != 0) return false;
    return true;
  }

  // bf16_gemm for the typed entry points: every operand aligned, then bf16_gemm's rule
  // (counted there); activates the device when admitted.
  bool bf16_gemm_typed(int C, int OC, std::initializer_list<TensorPtr> ops) {
    if (!aligned(ops) || !bf16_gemm(C, OC, nullptr)) return false;
    activate();
    return true;
  }

  // The embedding backward's bucketing workspace (encoder.h), grown on demand.
  int32_t* encoder_workspace(int B, int T, int V) {
    const size_t ints = cuda::encoder_backward_workspace_ints(B, T, V);
    return grow(&enc_workspace_, &enc_workspace_bytes_, ints * sizeof(int32_t));
  }

  // A bf16 operand's elements.
  static __nv_bfloat16* bf16p(TensorPtr t) { return static_cast<__nv_bfloat16*>(t.p); }

  // A GEMM bias (OC fp32, or null) as bf16 in scratch slot 2: bf16-valued (the weight copy),
  // so exact; the epilogues add it in fp32. Converted per call (OC elements; not served
  // from the declared copy, whose counters cuda_bf16_weight_operands() reports for GEMM
  // weights only).
  const __nv_bfloat16* bias_bf16(const float* bias, int OC) {
    if (bias == nullptr) return nullptr;
    __nv_bfloat16* b = bf16_buffer(2, size_t(OC));
    cuda::convert_fp32_to_bf16(b, bias, size_t(OC), stream_);
    return b;
  }

  // t as bf16 elements: bf16 storage in place, fp32 through to_bf16 (scratch slot `slot`).
  const __nv_bfloat16* as_bf16(int slot, TensorPtr t, size_t n) {
    if (t.bf16()) return static_cast<const __nv_bfloat16*>(t.p);
    return to_bf16(slot, static_cast<const float*>(t.p), n);
  }

  // [wparams, wparams + n) becomes the declared range; returns bf16_weights_ (grown to
  // n), which the caller fills with its bf16 copy in stream order. Counts the conversion.
  __nv_bfloat16* declare_bf16_weights(const float* wparams, size_t n) {
    grow(&bf16_weights_, &bf16_weights_bytes_, n * sizeof(__nv_bfloat16));
    declared_ = wparams;
    declared_n_ = n;
    g_weight_conversions.fetch_add(1, std::memory_order_relaxed);
    return bf16_weights_;
  }

  // Scratch slot `slot` (< kBf16Slots) holding at least n bf16, grown on demand.
  __nv_bfloat16* bf16_buffer(int slot, size_t n) {
    return grow(&bf16_scratch_[slot], &bf16_scratch_bytes_[slot], n * sizeof(__nv_bfloat16));
  }

  // x (n fp32, backend memory) as bf16: from the declared weight copy when x lies
  // inside it (declared_bf16), else converted into scratch slot `slot` (< kBf16Slots),
  // round to nearest even, which keeps a bf16-valued x exactly.
  const __nv_bfloat16* to_bf16(int slot, const float* x, size_t n) {
    if (const __nv_bfloat16* w = declared_bf16(x, n)) return w;
    __nv_bfloat16* b = bf16_buffer(slot, n);
    cuda::convert_fp32_to_bf16(b, x, n, stream_);
    return b;
  }

  // x's bf16 copy in bf16_weights_ (same offset as in the declared range) when
  // [x, x + n) lies inside the declared range and the copy starts 256-byte aligned,
  // else null. The alignment rule keeps results bitwise those of the scratch path:
  // the scratch is cudaMalloc'd (256-byte aligned) and the bf16 GEMM plans key on
  // operand alignment up to 256 bytes (matmul_plan.h), so a served operand gets the
  // same cuBLASLt algorithm, hence the same summation order, as a converted one. The
  // declared range starts 256-byte aligned (cudaMalloc), so a weight tensor at float
  // offset k qualifies when k % 128 == 0: every tensor of GPT-2 (C a multiple of 128);
  // in smaller models the tensors off that grid keep the per-call conversion.
  const __nv_bfloat16* declared_bf16(const float* x, size_t n) const {
    if (declared_ == nullptr) return nullptr;
    const uintptr_t lo = reinterpret_cast<uintptr_t>(declared_), p = reinterpret_cast<uintptr_t>(x);
    if (p < lo || (p - lo) / sizeof(float) > declared_n_ || n > declared_n_ - (p - lo) / sizeof(float)) return nullptr;
    const __nv_bfloat16* w = bf16_weights_ + (p - lo) / sizeof(float);
    if (reinterpret_cast<uintptr_t>(w) % 256 != 0) return nullptr;
    g_weight_operands.fetch_add(1, std::memory_order_relaxed);
    return w;
  }

  void* device_bytes(size_t bytes) {
    activate();
    void* p = nullptr;
    const size_t size = std::max<size_t>(bytes, 4);
    PT_CUDA_CHECK(cudaMalloc(&p, size));
    sizes_[p] = size;
    live_bytes_ += size;
    peak_bytes_ = std::max(peak_bytes_, live_bytes_);
    return p;
  }

  void free_device(void* p) {
    if (p == nullptr) return;
    activate();
    PT_CUDA_CHECK(cudaStreamSynchronize(stream_));  // pending work on the stream may still use it
    PT_CUDA_CHECK(cudaFree(p));
    const auto it = sizes_.find(p);
    if (it != sizes_.end()) {
      live_bytes_ -= it->second;
      sizes_.erase(it);
    }
  }

  // Ordered on the stream after every op issued so far; the caller may read a host dst
  // or reuse a host src at once. Host -> device from pageable memory, up to
  // StagingRing::kMaxBytes (the per-micro-batch tokens and targets): src is copied into
  // the staging ring and the copy queued without a host wait (the host issues the next
  // kernels while the stream runs). Otherwise, when either side is host memory, waits
  // for the copy: a pinned src (the executor's boundary buffers, (B, T, C) floats) is
  // copied by the DMA engine directly rather than through a host memcpy on the critical
  // path of the stage that waited for it, and large pageable copies (checkpoints,
  // init) would keep that much pinned memory in the ring.
  void copy_bytes(void* dst, const void* src, size_t bytes) {
    if (bytes == 0 || dst == src) return;
    activate();
    const cudaMemoryType dst_type = memory_type(dst), src_type = memory_type(src);
    const bool device_dst = dst_type == cudaMemoryTypeDevice, device_src = src_type == cudaMemoryTypeDevice;
    if (device_dst && src_type == cudaMemoryTypeUnregistered && bytes <= StagingRing::kMaxBytes) {
      staging_.upload(dst, src, bytes, stream_);
      return;
    }
    PT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_));
    if (!device_dst || !device_src) PT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  // Pinned staging of host -> device copies: entries in issue order, oldest first, each
  // a pinned buffer (grown to the largest copy it served) and the event recorded after
  // its copy (at most kMaxBytes). An entry is reused once its event completed (cudaEventQuery: never
  // blocks); while the oldest is busy the ring grows, up to kMaxEntries, then the
  // oldest is waited for. Steady state: as many entries as copies the stream lags behind
  // the host by (those between two host waits), no allocation.
  class StagingRing {
   public:
    static constexpr size_t kMaxEntries = 64;
    static constexpr size_t kMaxBytes = size_t(4) << 20;  // larger copies wait instead (copy_bytes)
    StagingRing() = default;
    StagingRing(const StagingRing&) = delete;
    StagingRing& operator=(const StagingRing&) = delete;
    // After ~CudaBackend's stream synchronize: no copy reads an entry any more.
    ~StagingRing() {
      for (Entry& e : entries_) {
        if (e.host != nullptr) PT_CUDA_CHECK(cudaFreeHost(e.host));
        PT_CUDA_CHECK(cudaEventDestroy(e.done));
      }
    }
    void upload(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
      Entry e = take();
      if (e.bytes < bytes) {
        if (e.host != nullptr) PT_CUDA_CHECK(cudaFreeHost(e.host));
        PT_CUDA_CHECK(cudaMallocHost(&e.host, bytes));
        e.bytes = bytes;
      }
      std::memcpy(e.host, src, bytes);
      PT_CUDA_CHECK(cudaMemcpyAsync(dst, e.host, bytes, cudaMemcpyHostToDevice, stream));
      PT_CUDA_CHECK(cudaEventRecord(e.done, stream));
      entries_.push_back(e);
    }

   private:
    struct Entry {
      void* host = nullptr;
      size_t bytes = 0;
      cudaEvent_t done = nullptr;
    };
    // An entry no queued copy reads: the oldest if done (or, at the cap, once done), else a new one.
    Entry take() {
      if (!entries_.empty()) {
        const cudaError_t rc = cudaEventQuery(entries_.front().done);
        // Not ready is no error, but clear it as PyTorch's allocator does, so the next
        // launch check (cudaGetLastError) cannot see it: launches check their own at once.
        if (rc == cudaErrorNotReady) (void)cudaGetLastError();
        else PT_CUDA_CHECK(rc);
        if (rc == cudaSuccess || entries_.size() >= kMaxEntries) {
          if (rc != cudaSuccess) PT_CUDA_CHECK(cudaEventSynchronize(entries_.front().done));
          Entry e = entries_.front();
          entries_.pop_front();
          return e;
        }
      }
      Entry e;
      PT_CUDA_CHECK(cudaEventCreateWithFlags(&e.done, cudaEventDisableTiming));
      return e;
    }
    std::deque<Entry> entries_;
  };

  // Timed events on the stream for the executor's device time split (Backend::timing_mark):
  // created on first use, reused every segment (none created once warm).
  class TimingMarks {
   public:
    TimingMarks() = default;
    TimingMarks(const TimingMarks&) = delete;
    TimingMarks& operator=(const TimingMarks&) = delete;
    ~TimingMarks() {
      for (cudaEvent_t e : events_) PT_CUDA_CHECK(cudaEventDestroy(e));
    }
    int mark(cudaStream_t stream) {
      if (used_ == events_.size()) {
        cudaEvent_t e = nullptr;
        PT_CUDA_CHECK(cudaEventCreate(&e));  // timing enabled
        events_.push_back(e);
      }
      PT_CUDA_CHECK(cudaEventRecord(events_[used_], stream));
      return int(used_++);
    }
    // One more mark, waited for; each earlier mark's time before it, plus the host time
    // from that wait to the return, so the values are "before the return".
    void read(cudaStream_t stream, std::vector<double>* before_now) {
      before_now->clear();
      if (used_ == 0) return;
      const size_t last = size_t(mark(stream));
      PT_CUDA_CHECK(cudaEventSynchronize(events_[last]));
      const auto synced = std::chrono::steady_clock::now();
      before_now->resize(last);
      for (size_t k = 0; k < last; ++k) {
        float ms = 0;
        PT_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[k], events_[last]));
        (*before_now)[k] = double(ms) * 1e-3;
      }
      const double tail = std::chrono::duration<double>(std::chrono::steady_clock::now() - synced).count();
      for (double& t : *before_now) t += tail;
      used_ = 0;
    }

   private:
    std::vector<cudaEvent_t> events_;
    size_t used_ = 0;
  };

  // A workspace of at least `bytes`, reallocated (after the stream drains) when too small.
  template <typename T>
  T* grow(T** buf, size_t* have, size_t bytes) {
    if (*buf == nullptr || *have < bytes) {
      if (*buf != nullptr) free_device(*buf);
      *buf = static_cast<T*>(device_bytes(bytes));
      *have = std::max<size_t>(bytes, 4);
    }
    return *buf;
  }

  int device_ = 0;
  bool tf32_ = false;  // BackendOptions::tf32: the fp32 GEMMs' compute type
  bool bf16_ = false;  // BackendOptions::precision == bf16: GEMMs on the bf16 kernels where allowed
  // bf16 mode: the bf16 operands of a GEMM (slots 0, 1) or an attention call (0-3).
  static constexpr int kBf16Slots = 4;
  __nv_bfloat16* bf16_scratch_[kBf16Slots] = {};
  size_t bf16_scratch_bytes_[kBf16Slots] = {};
  // bf16 mode: Backend::set_bf16_weights. declared_ (declared_n_ floats, the stage
  // model's wparams_) and its bf16 copy bf16_weights_ (persistent, grown on demand,
  // in peak_device_bytes); declared_ null: nothing declared (or freed since).
  const float* declared_ = nullptr;
  size_t declared_n_ = 0;
  __nv_bfloat16* bf16_weights_ = nullptr;
  size_t bf16_weights_bytes_ = 0;
  cudaStream_t stream_ = nullptr;
  double* sumsq_ = nullptr;      // sums_of_squares: results, reduction scratch, tensor table
  size_t sumsq_bytes_ = 0;
  std::vector<size_t> sumsq_table_;  // sums_of_squares: the table's host side (offset, numel pairs)
  cudaEvent_t event_ = nullptr;  // record_event()
  StagingRing staging_;          // copy_bytes: host -> device
  TimingMarks marks_;            // timing_mark / timing_marks
  cuda::OpTimer timer_;          // PIPETRAIN_OP_TIMES: every op's GPU time (op_timer.h)
  float* ln_scratch_ = nullptr;  // LayerNorm weight-gradient partial sums
  size_t ln_scratch_bytes_ = 0;
  int32_t* enc_workspace_ = nullptr;  // encoder backward bucketing
  size_t enc_workspace_bytes_ = 0;
  std::unordered_map<const void*, size_t> sizes_;  // live cudaMalloc'd buffers -> bytes
  size_t live_bytes_ = 0;  // sum of sizes_
  size_t peak_bytes_ = 0;  // max of live_bytes_ so far
};

}  // namespace

int cuda_device_count(std::string* why) {
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess) {
    (void)cudaGetLastError();  // clear it so later runtime calls do not report it again
    if (why != nullptr)
      *why = std::string("cudaGetDeviceCount failed with ") + cudaGetErrorName(rc) + " (" + cudaGetErrorString(rc) +
             ")";
    return 0;
  }
  if (count == 0 && why != nullptr) *why = "cudaGetDeviceCount returned 0 devices";
  return count;
}

std::string cuda_device_name(int device) {
  cudaDeviceProp prop{};
  const cudaError_t rc = cudaGetDeviceProperties(&prop, device);
  if (rc != cudaSuccess) {
    (void)cudaGetLastError();
    return "";
  }
  return prop.name;
}

int cuda_attention_max_head_size() { return cuda::kAttentionMaxHeadSize; }

size_t cuda_bf16_kernel_calls() { return g_bf16_calls.load(std::memory_order_relaxed); }

size_t cuda_bf16_weight_conversions() { return g_weight_conversions.load(std::memory_order_relaxed); }

size_t cuda_bf16_weight_operands() { return g_weight_operands.load(std::memory_order_relaxed); }

size_t cuda_bf16_fused_gelu_calls() { return g_fused_gelu_calls.load(std::memory_order_relaxed); }
size_t cuda_bf16_fused_dgelu_calls() { return g_fused_dgelu_calls.load(std::memory_order_relaxed); }

std::unique_ptr<Backend> make_cuda_backend(int device, const BackendOptions& options) {
  return std::make_unique<CudaBackend>(device, options);
}

}  // namespace pt
