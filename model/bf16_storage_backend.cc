// See bf16_storage_backend.h.
#include "model/bf16_storage_backend.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <initializer_list>
#include <utility>
#include <vector>

#include "common/check.h"
#include "model/storage_ranges.h"

namespace pt {
namespace {

std::atomic<size_t> g_staged{0};  // bf16_staged_operands()

// fp32 scratch buffers of inner memory, one per staged operand of an op, grown on demand.
struct Scratch {
  float* p = nullptr;
  size_t n = 0;
};

// One op call's bf16 operands staged in fp32 scratch: stage the inputs (in), then the
// outputs (out: written only; inout: read and written), run the inner op on the returned
// pointers, then done() packs every output back.
class Staging {
 public:
  Staging(Backend& inner, const StorageRanges& ranges, std::vector<Scratch>& pool)
      : inner_(inner), ranges_(ranges), pool_(pool) {}

  const float* in(const float* p, size_t n) { return stage(p, n, true, false); }
  float* out(float* p, size_t n) { return stage(p, n, false, true); }
  float* inout(float* p, size_t n) { return stage(p, n, true, true); }
  // An operand whose size the op does not know: it must be fp32 memory.
  template <typename T>
  T* fp32(T* p) {
    PT_CHECK_MSG(ranges_.find(p).range == nullptr, "an op operand of unknown size lies in bf16 storage");
    return p;
  }

  void done() {
    for (const Entry& e : entries_) {
      if (e.write) inner_.pack_bf16(e.at.bf16(), e.scratch, e.n);
    }
    entries_.clear();
  }

 private:
  struct Entry {
    const float* p;
    size_t n;
    StorageRanges::Found at;
    float* scratch;
    bool read, write;
  };

  float* stage(const float* p, size_t n, bool read, bool write) {
    const StorageRanges::Found at = ranges_.find(p);
    if (at.range == nullptr) return const_cast<float*>(p);
    PT_CHECK_MSG(n <= at.left(), "an op operand runs past the end of its bf16 storage");
    for (Entry& e : entries_) {
      if (e.p == p) {
        PT_CHECK_MSG(e.n == n, "one bf16 operand passed twice with different sizes");
        if (read && !e.read) inner_.unpack_bf16(e.scratch, e.at.bf16(), n);
        e.read |= read, e.write |= write;
        return e.scratch;
      }
      PT_CHECK_MSG(e.at.range != at.range || e.at.index + e.n <= at.index || at.index + n <= e.at.index,
                   "two different operands overlap in one bf16 storage range");
    }
    g_staged.fetch_add(1, std::memory_order_relaxed);
    float* scratch = scratch_for(entries_.size(), n);
    if (read) inner_.unpack_bf16(scratch, at.bf16(), n);
    entries_.push_back(Entry{p, n, at, scratch, read, write});
    return scratch;
  }

  float* scratch_for(size_t k, size_t n) {
    if (pool_.size() <= k) pool_.resize(k + 1);
    Scratch& s = pool_[k];
    if (s.n < n) {
      if (s.p != nullptr) inner_.free(s.p);
      s.p = inner_.alloc(n);
      s.n = n;
    }
    return s.p;
  }

  Backend& inner_;
  const StorageRanges& ranges_;
  std::vector<Scratch>& pool_;
  std::vector<Entry> entries_;
};

// One op call's operands resolved for a typed entry point (backend.h): bf16 storage in
// place, fp32 memory as itself. Like Staging, refuses an operand running past its storage
// and two different operands overlapping in it (the same pointer twice is an alias).
class Resolver {
 public:
  explicit Resolver(const StorageRanges& ranges) : ranges_(ranges) {}
  TensorPtr operator()(const float* p, size_t n) {
    const StorageRanges::Found at = ranges_.find(p);
    if (at.range == nullptr) return TensorPtr{const_cast<float*>(p), Dtype::kFp32};
    PT_CHECK_MSG(n <= at.left(), "an op operand runs past the end of its bf16 storage");
    for (int k = 0; k < count_; ++k) {
      const auto& [q, m] = seen_[k];
      PT_CHECK_MSG(q == at.bf16() || q + m <= at.bf16() || at.bf16() + n <= q,
                   "two different operands overlap in one bf16 storage range");
    }
    PT_CHECK(count_ < int(seen_.size()));
    seen_[count_++] = {at.bf16(), n};
    any_bf16_ = true;
    return TensorPtr{at.bf16(), Dtype::kBf16};
  }
  // Whether to call the typed entry point: some operand resolved to bf16, and the
  // operands the entry point takes as float* are fp32 memory.
  bool use(std::initializer_list<const float*> fp32_operands = {}) const {
    return any_bf16_ && std::all_of(fp32_operands.begin(), fp32_operands.end(),
                                    [&](const float* p) { return ranges_.find(p).range == nullptr; });
  }

 private:
  const StorageRanges& ranges_;
  std::array<std::pair<const uint16_t*, size_t>, 8> seen_{};  // bf16 operands so far (an op has <= 6)
  int count_ = 0;
  bool any_bf16_ = false;
};

class Bf16StorageBackend final : public Backend {
 public:
  explicit Bf16StorageBackend(std::unique_ptr<Backend> inner) : in_(std::move(inner)) { PT_CHECK(in_ != nullptr); }
  ~Bf16StorageBackend() override {
    for (Scratch& s : pool_) in_->free(s.p);
    PT_CHECK_MSG(ranges_.size() == 0, "bf16 storage not freed before its backend");
  }
  const char* name() const override { return in_->name(); }

  // ---- memory ----
  float* alloc(size_t n) override { return in_->alloc(n); }
  float* alloc_bf16(size_t n) override {
    float* handle = reserve_handle(n);
    ranges_.add(handle, n, reinterpret_cast<uint16_t*>(in_->alloc(std::max<size_t>(1, (n + 1) / 2))));
    return handle;
  }
  void free(float* p) override {
    const StorageRanges::Range r = ranges_.erase(p);
    if (r.handle == nullptr) return in_->free(p);
    in_->free(reinterpret_cast<float*>(r.storage));
    release_handle(p, r.n);
  }
  int32_t* alloc_i32(size_t n) override { return in_->alloc_i32(n); }
  void free_i32(int32_t* p) override { in_->free_i32(p); }
  void zero(float* p, size_t n) override {
    Staging s = staging();
    in_->zero(s.out(p, n), n);
    s.done();
  }
  void copy(float* dst, const float* src, size_t n) override {
    {  // typed entry point first (backend.h), else staged
      Resolver typed(ranges_);
      const TensorPtr d = typed(dst, n), x = typed(src, n);
      if (typed.use() && in_->copy_typed(d, x, n)) return;
    }
    Staging s = staging();
    const float* from = s.in(src, n);
    in_->copy(s.out(dst, n), from, n);
    s.done();
  }
  void upload(float* dst, const float* host_src, size_t n) override {
    Staging s = staging();
    in_->upload(s.out(dst, n), host_src, n);
    s.done();
  }
  void download(float* host_dst, const float* src, size_t n) override {
    Staging s = staging();
    in_->download(host_dst, s.in(src, n), n);
    s.done();
  }
  void upload_i32(int32_t* dst, const int32_t* host_src, size_t n) override { in_->upload_i32(dst, host_src, n); }
  bool host_memory() const override { return false; }
  void* stream() const override { return in_->stream(); }
  BackendSizes sizes() const override {
    BackendSizes s = in_->sizes();
    s.bf16_bytes = 2;
    return s;
  }
  float* alloc_host(size_t n) override { return in_->alloc_host(n); }
  void free_host(float* p) override { in_->free_host(p); }
  void synchronize() override { in_->synchronize(); }
  void* record_event() override { return in_->record_event(); }
  int timing_mark() override { return in_->timing_mark(); }
  void timing_marks(std::vector<double>* before_now) override { in_->timing_marks(before_now); }
  void wait_event(void* event) override { in_->wait_event(event); }
  size_t peak_device_bytes() const override { return in_->peak_device_bytes(); }

  // ---- storage dtype ----
  void round_to_bf16(float* p, size_t n) override {
    const StorageRanges::Found at = ranges_.find(p);
    if (at.range == nullptr) return in_->round_to_bf16(p, n);
    PT_CHECK_MSG(n <= at.left(), "round_to_bf16 runs past the end of its bf16 storage");
  }
  void set_bf16_weights(const float* wparams, size_t n) override {
    in_->set_bf16_weights(staging().fp32(wparams), n);
  }
  // The stage model's wparams_ and params_ are fp32 memory: the inner backend's one pass.
  void refresh_bf16_weights(float* wparams, const float* params, size_t n) override {
    if (ranges_.find(wparams).range == nullptr && ranges_.find(params).range == nullptr)
      return in_->refresh_bf16_weights(wparams, params, n);
    Backend::refresh_bf16_weights(wparams, params, n);
  }
  void pack_bf16(uint16_t* dst, const float* src, size_t n) override { in_->pack_bf16(dst, src, n); }
  void unpack_bf16(float* dst, const uint16_t* src, size_t n) override { in_->unpack_bf16(dst, src, n); }

  // ---- step ops (fp32 buffers) ----
  void sums_of_squares(double* out, const float* x, const size_t* offsets, const size_t* numels,
                       int count) override {
    in_->sums_of_squares(out, staging().fp32(x), offsets, numels, count);
  }
  void add(float* out, const float* a, const float* b, size_t n) override {
    Staging s = staging();
    const float *x = s.in(a, n), *y = s.in(b, n);
    in_->add(s.out(out, n), x, y, n);
    s.done();
  }
  void average(float* const* bufs, int count, size_t n) override {
    Staging s = staging();
    for (int p = 0; p < count; ++p) s.fp32(bufs[p]);
    in_->average(bufs, count, n);
  }

  // ---- ops ----
  void encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe, int B, int T,
                       int C) override {
    {  // typed entry point first (backend.h), else staged
      Resolver typed(ranges_);
      const TensorPtr o = typed(out, size_t(B) * T * C);
      if (typed.use({wte, wpe}) && in_->encoder_forward_typed(o, inp, wte, wpe, B, T, C)) return;
    }
    Staging s = staging();
    in_->encoder_forward(s.out(out, size_t(B) * T * C), inp, s.fp32(wte), s.fp32(wpe), B, T, C);
    s.done();
  }
  void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp, int B, int T, int C,
                        int V) override {
    {  // typed entry point first (backend.h), else staged
      Resolver typed(ranges_);
      const TensorPtr dy = typed(dout, size_t(B) * T * C);
      if (typed.use({dwte, dwpe}) && in_->encoder_backward_typed(dwte, dwpe, dy, inp, B, T, C, V)) return;
    }
    Staging s = staging();
    in_->encoder_backward(s.fp32(dwte), s.fp32(dwpe), s.in(dout, size_t(B) * T * C), inp, B, T, C, V);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                         const float* bias, int N, int C) override {
    const size_t NC = size_t(N) * C;
    {  // typed entry point first (backend.h), else staged
      Resolver typed(ranges_);
      const TensorPtr o = typed(out, NC), x = typed(inp, NC);
      if (typed.use({mean, rstd, weight, bias}) &&
          in_->layernorm_forward_typed(o, mean, rstd, x, weight, bias, N, C))
        return;
    }
    Staging s = staging();
    const float *x = s.in(inp, NC), *w = s.in(weight, size_t(C)), *b = s.in(bias, size_t(C));
    in_->layernorm_forward(s.out(out, NC), s.out(mean, size_t(N)), s.out(rstd, size_t(N)), x, w, b, N, C);
    s.done();
  }
  void layernorm_backward_input(float* dinp, const float* dout, const float* inp, const float* weight,
                                const float* mean, const float* rstd, int N, int C) override {
    const size_t NC = size_t(N) * C;
    {  // typed entry point first (backend.h), else staged
      Resolver typed(ranges_);
      const TensorPtr dx = typed(dinp, NC), dy = typed(dout, NC), x = typed(inp, NC);
      if (typed.use({weight, mean, rstd}) &&
          in_->layernorm_backward_input_typed(dx, dy, x, weight, mean, rstd, N, C))
        return;
    }
    Staging s = staging();
    const float *dy = s.in(dout, NC), *x = s.in(inp, NC), *w = s.in(weight, size_t(C));
    const float *m = s.in(mean, size_t(N)), *r = s.in(rstd, size_t(N));
    in_->layernorm_backward_input(s.out(dinp, NC), dy, x, w, m, r, N, C);
    s.done();
  }
  void layernorm_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp,
                                 const float* mean, const float* rstd, int N, int C) override {
    const size_t NC = size_t(N) * C;
    {  // typed entry point first (backend.h), else staged
      Resolver typed(ranges_);
      const TensorPtr dy = typed(dout, NC), x = typed(inp, NC);
      if (typed.use({dweight, dbias, mean, rstd}) &&
          in_->layernorm_backward_weight_typed(dweight, dbias, dy, x, mean, rstd, N, C))
        return;
    }
    Staging s = staging();
    const float *dy = s.in(dout, NC), *x = s.in(inp, NC), *m = s.in(mean, size_t(N)), *r = s.in(rstd, size_t(N));
    in_->layernorm_backward_weight(s.inout(dweight, size_t(C)), s.inout(dbias, size_t(C)), dy, x, m, r, N, C);
    s.done();
  }
  void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N, int C,
                      int OC) override {
    {  // typed entry point first (backend.h), else staged
      Resolver typed(ranges_);
      const TensorPtr o = typed(out, size_t(N) * OC), x = typed(inp, size_t(N) * C);
      const TensorPtr w = typed(weight, size_t(OC) * C);
      if (typed.use({bias}) && in_->matmul_forward_typed(o, x, w, bias, N, C, OC)) return;
    }
    Staging s = staging();
    const float *x = s.in(inp, size_t(N) * C), *w = s.in(weight, size_t(OC) * C), *b = s.in(bias, size_t(OC));
    in_->matmul_forward(s.out(out, size_t(N) * OC), x, w, b, N, C, OC);
    s.done();
  }
  // Typed only (no staged form): both outputs must be bf16 storage.
  bool matmul_forward_gelu(float* out, float* pre, const float* inp, const float* weight, const float* bias, int N,
                           int C, int OC) override {
    Resolver typed(ranges_);
    const TensorPtr o = typed(out, size_t(N) * OC), p = typed(pre, size_t(N) * OC);
    const TensorPtr x = typed(inp, size_t(N) * C), w = typed(weight, size_t(OC) * C);
    return o.bf16() && p.bf16() && typed.use({bias}) && in_->matmul_forward_gelu_typed(o, p, x, w, bias, N, C, OC);
  }
  // Typed only, as matmul_forward_gelu.
  bool matmul_backward_input_dgelu(float* dinp, const float* dout, const float* weight, const float* pre, int N,
                                   int C, int OC) override {
    Resolver typed(ranges_);
    const TensorPtr dx = typed(dinp, size_t(N) * C), p = typed(pre, size_t(N) * C);
    const TensorPtr dy = typed(dout, size_t(N) * OC), w = typed(weight, size_t(OC) * C);
    return dx.bf16() && p.bf16() && typed.use() && in_->matmul_backward_input_dgelu_typed(dx, dy, w, p, N, C, OC);
  }
  void matmul_backward_input(float* dinp, const float* dout, const float* weight, int N, int C, int OC) override {
    {  // typed entry point first (backend.h), else staged
      Resolver typed(ranges_);
      const TensorPtr dx = typed(dinp, size_t(N) * C), dy = typed(dout, size_t(N) * OC);
      const TensorPtr w = typed(weight, size_t(OC) * C);
      if (typed.use() && in_->matmul_backward_input_typed(dx, dy, w, N, C, OC)) return;
    }
    Staging s = staging();
    const float *dy = s.in(dout, size_t(N) * OC), *w = s.in(weight, size_t(OC) * C);
    in_->matmul_backward_input(s.out(dinp, size_t(N) * C), dy, w, N, C, OC);
    s.done();
  }
  void matmul_backward_weight(float* dweight, float* dbias, const float* dout, const float* inp, int N, int C,
                              int OC) override {
    {  // typed entry point first (backend.h), else staged
      Resolver typed(ranges_);
      const TensorPtr dy = typed(dout, size_t(N) * OC), x = typed(inp, size_t(N) * C);
      if (typed.use({dweight, dbias}) && in_->matmul_backward_weight_typed(dweight, dbias, dy, x, N, C, OC)) return;
    }
    Staging s = staging();
    const float *dy = s.in(dout, size_t(N) * OC), *x = s.in(inp, size_t(N) * C);
    in_->matmul_backward_weight(s.inout(dweight, size_t(OC) * C), s.inout(dbias, size_t(OC)), dy, x, N, C, OC);
    s.done();
  }
  void attention_forward(float* out, float* att, const float* inp, int B, int T, int C, int NH) override {
    const size_t BTC = size_t(B) * T * C;
    {  // typed entry point first (backend.h), else staged
      Resolver typed(ranges_);
      const TensorPtr o = typed(out, BTC), x = typed(inp, 3 * BTC);
      if (typed.use({att}) && in_->attention_forward_typed(o, att, x, B, T, C, NH)) return;
    }
    Staging s = staging();
    const float* x = s.in(inp, 3 * BTC);
    in_->attention_forward(s.out(out, BTC), s.out(att, sizes().attention_saved_floats(B, NH, T)), x, B, T, C, NH);
    s.done();
  }
  void attention_backward(float* dinp, float* scratch, const float* dout, const float* inp, const float* out,
                          const float* att, int B, int T, int C, int NH) override {
    const size_t BTC = size_t(B) * T * C;
    {  // typed entry point first (backend.h), else staged
      Resolver typed(ranges_);
      const TensorPtr dx = typed(dinp, 3 * BTC), dy = typed(dout, BTC), x = typed(inp, 3 * BTC), y = typed(out, BTC);
      if (typed.use({scratch, att}) && in_->attention_backward_typed(dx, scratch, dy, x, y, att, B, T, C, NH)) return;
    }
    Staging s = staging();
    const BackendSizes z = sizes();
    const float *dy = s.in(dout, BTC), *x = s.in(inp, 3 * BTC), *y = s.in(out, BTC);
    const float* a = s.in(att, z.attention_saved_floats(B, NH, T));
    float* w = s.out(scratch, z.attention_scratch_floats(B, NH, T));
    in_->attention_backward(s.out(dinp, 3 * BTC), w, dy, x, y, a, B, T, C, NH);
    s.done();
  }
  void gelu_forward(float* out, const float* inp, int N) override {
    {  // typed entry point first (backend.h), else staged
      Resolver typed(ranges_);
      const TensorPtr o = typed(out, size_t(N)), x = typed(inp, size_t(N));
      if (typed.use() && in_->gelu_forward_typed(o, x, N)) return;
    }
    Staging s = staging();
    const float* x = s.in(inp, size_t(N));
    in_->gelu_forward(s.out(out, size_t(N)), x, N);
    s.done();
  }
  void gelu_backward(float* dinp, const float* inp, const float* dout, int N) override {
    {  // typed entry point first (backend.h), else staged
      Resolver typed(ranges_);
      const TensorPtr dx = typed(dinp, size_t(N)), x = typed(inp, size_t(N)), dy = typed(dout, size_t(N));
      if (typed.use() && in_->gelu_backward_typed(dx, x, dy, N)) return;
    }
    Staging s = staging();
    const float *x = s.in(inp, size_t(N)), *dy = s.in(dout, size_t(N));
    in_->gelu_backward(s.out(dinp, size_t(N)), x, dy, N);
    s.done();
  }
  void residual_forward(float* out, const float* inp1, const float* inp2, int N) override {
    {  // typed entry point first (backend.h), else staged
      Resolver typed(ranges_);
      const TensorPtr o = typed(out, size_t(N)), a = typed(inp1, size_t(N)), b = typed(inp2, size_t(N));
      if (typed.use() && in_->residual_forward_typed(o, a, b, N)) return;
    }
    Staging s = staging();
    const float *a = s.in(inp1, size_t(N)), *b = s.in(inp2, size_t(N));
    in_->residual_forward(s.out(out, size_t(N)), a, b, N);
    s.done();
  }
  void residual_layernorm_forward(float* res, float* ln, float* mean, float* rstd, const float* inp1,
                                  const float* inp2, const float* weight, const float* bias, int N, int C,
                                  bool round_res_bf16) override {
    const size_t NC = size_t(N) * C;
    {  // typed entry point first (backend.h), else staged
      Resolver typed(ranges_);
      const TensorPtr r = typed(res, NC), l = typed(ln, NC), a = typed(inp1, NC), b = typed(inp2, NC);
      if (typed.use({mean, rstd, weight, bias}) &&
          in_->residual_layernorm_forward_typed(r, l, mean, rstd, a, b, weight, bias, N, C, round_res_bf16))
        return;
    }
    Staging s = staging();
    const float *a = s.in(inp1, NC), *b = s.in(inp2, NC), *w = s.in(weight, size_t(C)), *c = s.in(bias, size_t(C));
    in_->residual_layernorm_forward(s.out(res, NC), s.out(ln, NC), s.out(mean, size_t(N)), s.out(rstd, size_t(N)), a,
                                    b, w, c, N, C, round_res_bf16);
    s.done();
  }
  void layernorm_backward_input_residual(float* dinp, const float* dres, const float* dout, const float* inp,
                                         const float* weight, const float* mean, const float* rstd, int N, int C,
                                         bool round_bf16) override {
    const size_t NC = size_t(N) * C;
    {  // typed entry point first (backend.h), else staged
      Resolver typed(ranges_);
      const TensorPtr dx = typed(dinp, NC), r = typed(dres, NC), dy = typed(dout, NC), x = typed(inp, NC);
      if (typed.use({weight, mean, rstd}) &&
          in_->layernorm_backward_input_residual_typed(dx, r, dy, x, weight, mean, rstd, N, C, round_bf16))
        return;
    }
    Staging s = staging();
    const float *r = s.in(dres, NC), *dy = s.in(dout, NC), *x = s.in(inp, NC), *w = s.in(weight, size_t(C));
    const float *m = s.in(mean, size_t(N)), *rs = s.in(rstd, size_t(N));
    in_->layernorm_backward_input_residual(s.out(dinp, NC), r, dy, x, w, m, rs, N, C, round_bf16);
    s.done();
  }
  void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int N, int V,
                            float* stats) override {
    {  // typed entry point first (backend.h), else staged
      Resolver typed(ranges_);
      const TensorPtr x = typed(logits, size_t(N) * V);
      if (typed.use({losses, stats}) && in_->crossentropy_forward_typed(losses, x, targets, N, V, stats)) return;
    }
    Staging s = staging();
    const float* x = s.in(logits, size_t(N) * V);
    in_->crossentropy_forward(s.out(losses, size_t(N)), x, targets, N, V,
                              stats != nullptr ? s.out(stats, 2 * size_t(N)) : nullptr);
    s.done();
  }
  void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, float scale, int N, int V,
                             const float* stats) override {
    const size_t NV = size_t(N) * V;
    {  // typed entry point first (backend.h), else staged
      Resolver typed(ranges_);
      const TensorPtr d = typed(dlogits, NV), x = typed(logits, NV);
      if (typed.use({stats}) && in_->crossentropy_backward_typed(d, x, targets, scale, N, V, stats)) return;
    }
    Staging s = staging();
    const float* x = s.in(logits, NV);
    const float* st = stats != nullptr ? s.in(stats, 2 * size_t(N)) : nullptr;
    in_->crossentropy_backward(s.out(dlogits, NV), x, targets, scale, N, V, st);
    s.done();
  }

 private:
  Staging staging() { return Staging(*in_, ranges_, pool_); }


  std::unique_ptr<Backend> in_;
  StorageRanges ranges_;
  std::vector<Scratch> pool_;  // Staging's scratch buffers (inner memory)
};

}  // namespace

size_t bf16_staged_operands() { return g_staged.load(std::memory_order_relaxed); }

std::unique_ptr<Backend> make_bf16_storage_backend(std::unique_ptr<Backend> inner) {
  return std::make_unique<Bf16StorageBackend>(std::move(inner));
}

}  // namespace pt
