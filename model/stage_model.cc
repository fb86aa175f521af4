// StageModel on a Backend (see stage_model.h, backend_stage_model.h).
//
// Per slot one float block holds the forward activations and the gradients that
// backward_input leaves for backward_weight (zero-bubble split): the residual
// stream gradients at every block boundary and inside each block, dqkv, dfch,
// dln1, dln2, dlnf, and dlogits (written over the probabilities). backward() is
// literally backward_input() then backward_weight(), so split and full backward
// are bitwise equal. Blocks are taken from a pool on the first forward into a
// slot and returned on release(), so steady-state training allocates nothing.
// Stage-independent numerics: a block computes the same ops on the same shapes
// whichever stage owns it, so any pipeline split is bitwise equal to pp=1.
//
// Host mirrors (backends whose memory is not host memory, i.e. CUDA): params()
// and grads() are alloc_host() buffers next to the backend copies params_/grads_.
// The device params are refreshed lazily: sync_params_to_device() marks them
// stale and the next forward/backward uploads once. Gradients have one owner at a
// time: the device during backward, the host after sync_grads_to_host() until
// zero_grads() (a backward_weight in between sends the host values back first).
// With host-memory backends (CPU) the mirrors are the backend buffers themselves
// and both hooks do nothing.
//
// Precision (model/precision.h). bf16: the ops read wparams_, a copy of the fp32
// masters rounded to bf16, refreshed once per update (sync_params_to_device marks
// it stale, the next forward/backward rounds it, on every backend); every
// activation and activation gradient is rounded (Backend::round_to_bf16) right
// after the op that writes it, which is where the CUDA bf16 kernels
// (model/cuda/*_bf16.h) store bf16: each matmul, LayerNorm, attention, residual
// and GELU output and input gradient, the embedding output, the logits and
// dlogits. Not rounded (fp32 there too): LayerNorm mean/rstd, the attention's
// saved softmax state, the per-token losses, the parameter gradients (fp32 +=).
// The fc matmul and GELU round both outputs from the unrounded pre-activation, as
// the fused cuBLASLt GELU epilogue does. Stage-boundary tensors (output, dinput)
// are therefore bf16 values sent in fp32 containers: the wire format does not
// change, and any pipeline split stays bitwise equal to pp=1. Differences from the
// bf16 kernels' arithmetic: fp32 summation order, and the attention, whose CPU op
// keeps fp32 probabilities where the flash kernel rounds P to bf16 before P·V.
// fp32: no rounding and no weight copy; the code path is the fp32 one bit for bit.
#include <algorithm>
#include <cstring>
#include <functional>
#include <vector>

#include "common/check.h"
#include "model/backend_stage_model.h"
#include "model/param_layout.h"

namespace pt {
namespace {

// Pointers of one block's parameters (or gradients), in BlockTensor order.
struct BlockParams {
  float* t[kTensorsPerBlock];
  float* operator[](BlockTensor w) const { return t[static_cast<int>(w)]; }
};

struct LayerActs {
  float* ln1;       // (N, C)
  float* ln1_mean;  // (N)
  float* ln1_rstd;  // (N)
  float* qkv;       // (N, 3C)
  float* att;       // attention_saved_floats: CPU (B, NH, T, T) probabilities, CUDA (B, NH, T) lse
  float* atty;      // (N, C) attention output before the projection
  float* res1;      // (N, C) residual after attention
  float* ln2;       // (N, C)
  float* ln2_mean;  // (N)
  float* ln2_rstd;  // (N)
  float* fch;       // (N, 4C) pre-GELU
  float* fch_gelu;  // (N, 4C)
  float* res2;      // (N, C) block output
  // Gradients kept from backward_input for backward_weight.
  float* d_res1;    // (N, C) d loss / d res1
  float* dqkv;      // (N, 3C)
  float* dln1;      // (N, C)
  float* dln2;      // (N, C)
  float* dfch;      // (N, 4C) d loss / d fch (pre-GELU)
};

// kFree: no activations. kForward: forward done. kBackwardInput: input grads done,
// weight grads pending. kDone: backward finished (loss() still readable).
enum class SlotState { kFree, kForward, kBackwardInput, kDone };

struct Slot {
  SlotState state = SlotState::kFree;
  float* block = nullptr;  // activation_floats_per_slot() floats, from the pool
  int32_t* tokens = nullptr;   // (B, T), first stage
  int32_t* targets = nullptr;  // (B, T), last stage
  float* x0 = nullptr;         // (N, C) stage input (embedding output or a copy of `input`)
  std::vector<LayerActs> layers;
  std::vector<float*> d_resid;  // nl + 1 of (N, C): d loss / d (input of local block i); [nl] = stage output
  float* lnf = nullptr;       // (N, C)
  float* lnf_mean = nullptr;  // (N)
  float* lnf_rstd = nullptr;  // (N)
  float* logits = nullptr;    // (N, V) logits -> probabilities -> dlogits
  float* losses = nullptr;    // (N)
  float* dlnf = nullptr;      // (N, C)
};

class BackendStageModel final : public StageModel {
 public:
  BackendStageModel(std::unique_ptr<Backend> backend, const ModelConfig& config, const StageSpec& spec, int B,
                    int T, Precision precision)
      : backend_(std::move(backend)), config_(config), spec_(spec), B_(B), T_(T),
        bf16_(precision == Precision::kBf16) {
    PT_CHECK(backend_ != nullptr);
    tensors_ = stage_tensors(config_, spec_);  // validates config and spec
    PT_CHECK_MSG(B > 0 && T > 0 && T <= config_.max_seq_len, "need B > 0 and 0 < T <= max_seq_len");
    C_ = config_.n_embd;
    NH_ = config_.n_head;
    V_ = config_.vocab_size;
    N_ = B_ * T_;
    nl_ = spec_.last_layer - spec_.first_layer;
    num_params_ = total_numel(tensors_);
    params_ = backend_->alloc(num_params_);
    grads_ = backend_->alloc(num_params_);
    backend_->zero(params_, num_params_);
    backend_->zero(grads_, num_params_);
    mirrored_ = !backend_->host_memory();
    if (bf16_) {
      wparams_ = backend_->alloc(num_params_);
      params_stale_ = true;  // rounded from params_ on first use
    }
    if (mirrored_) {
      host_params_ = backend_->alloc_host(num_params_);
      host_grads_ = backend_->alloc_host(num_params_);
      std::memset(host_params_, 0, num_params_ * sizeof(float));
      std::memset(host_grads_, 0, num_params_ * sizeof(float));
    } else {
      host_params_ = params_;
      host_grads_ = grads_;
    }
    bind_params();
    slot_floats_ = layout_slot(nullptr, nullptr);
    scratch_nc_ = backend_->alloc(size_t(N_) * C_);
    scratch_tt_ = backend_->alloc(backend_->attention_scratch_floats(B_, NH_, T_));
  }

  ~BackendStageModel() override {
    for (auto& s : slots_) {
      if (s.block != nullptr) free_slot_memory(s);
    }
    for (auto& p : pool_) free_slot_memory(p);
    backend_->free(scratch_tt_);
    backend_->free(scratch_nc_);
    backend_->free(grads_);
    backend_->free(params_);
    if (wparams_ != nullptr) backend_->free(wparams_);
    if (mirrored_) {
      backend_->free_host(host_grads_);
      backend_->free_host(host_params_);
    }
  }

  const ModelConfig& config() const override { return config_; }
  const StageSpec& spec() const override { return spec_; }
  int batch_size() const override { return B_; }
  int seq_len() const override { return T_; }
  const std::vector<ParamTensor>& tensors() const override { return tensors_; }
  size_t num_params() const override { return num_params_; }
  float* params() override { return host_params_; }
  float* grads() override { return host_grads_; }
  size_t activation_floats_per_slot() const override { return slot_floats_; }

  void init_params(uint64_t seed) override {
    for (const auto& t : tensors_) init_tensor(config_, t, seed, host_params_ + t.offset);
    sync_params_to_device();
  }

  void zero_grads() override {
    backend_->zero(grads_, num_params_);
    if (mirrored_) std::memset(host_grads_, 0, num_params_ * sizeof(float));
    grads_on_host_ = false;
  }

  void sync_params_to_device() override {
    if (mirrored_ || bf16_) params_stale_ = true;
  }

  void sync_grads_to_host() override {
    if (!mirrored_ || grads_on_host_) return;
    backend_->download(host_grads_, grads_, num_params_);
    grads_on_host_ = true;
  }

  void synchronize() override { backend_->synchronize(); }
  std::unique_ptr<BoundaryMemory> boundary_memory() override { return make_backend_boundary_memory(backend_.get()); }
  void set_grads_ready_hook(std::function<void(size_t)> fn) override { grads_ready_hook_ = std::move(fn); }
  size_t peak_device_bytes() const override { return backend_->peak_device_bytes(); }

  void forward(int slot_index, const int32_t* tokens, const float* input, const int32_t* targets,
               float* output) override {
    Slot& s = acquire_slot(slot_index);
    refresh_device_params();
    Backend& be = *backend_;
    if (spec_.has_embedding) {
      PT_CHECK_MSG(tokens != nullptr, "first stage forward needs tokens");
      for (int i = 0; i < N_; ++i) PT_CHECK_MSG(tokens[i] >= 0 && tokens[i] < V_, "token id out of range [0, V)");
      be.upload_i32(s.tokens, tokens, size_t(N_));
      be.encoder_forward(s.x0, s.tokens, wte_, wpe_, B_, T_, C_);
    } else {
      PT_CHECK_MSG(input != nullptr, "non-first stage forward needs input");
      be.copy(s.x0, input, size_t(N_) * C_);
    }
    stored(s.x0, size_t(N_) * C_);
    for (int i = 0; i < nl_; ++i) {
      const BlockParams& w = blocks_[i];
      LayerActs& a = s.layers[i];
      const float* in = block_input(s, i);
      const size_t NC = size_t(N_) * C_;
      be.layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, in, w[BlockTensor::kLn1W], w[BlockTensor::kLn1B], N_, C_);
      stored(a.ln1, NC);
      be.matmul_forward(a.qkv, a.ln1, w[BlockTensor::kQkvW], w[BlockTensor::kQkvB], N_, C_, 3 * C_);
      stored(a.qkv, 3 * NC);
      be.attention_forward(a.atty, a.att, a.qkv, B_, T_, C_, NH_);
      stored(a.atty, NC);
      be.matmul_forward(a.res1, a.atty, w[BlockTensor::kAttProjW], w[BlockTensor::kAttProjB], N_, C_, C_);
      stored(a.res1, NC);
      be.residual_forward(a.res1, in, a.res1, N_ * C_);
      stored(a.res1, NC);
      be.layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.res1, w[BlockTensor::kLn2W], w[BlockTensor::kLn2B], N_,
                           C_);
      stored(a.ln2, NC);
      be.matmul_forward(a.fch, a.ln2, w[BlockTensor::kFcW], w[BlockTensor::kFcB], N_, C_, 4 * C_);
      be.gelu_forward(a.fch_gelu, a.fch, N_ * 4 * C_);  // GELU of the unrounded fch (fused epilogue)
      stored(a.fch, 4 * NC);
      stored(a.fch_gelu, 4 * NC);
      be.matmul_forward(a.res2, a.fch_gelu, w[BlockTensor::kFcProjW], w[BlockTensor::kFcProjB], N_, 4 * C_, C_);
      stored(a.res2, NC);
      be.residual_forward(a.res2, a.res1, a.res2, N_ * C_);
      stored(a.res2, NC);
    }
    const float* out = block_input(s, nl_);
    if (spec_.has_head) {
      PT_CHECK_MSG(targets != nullptr, "last stage forward needs targets");
      be.upload_i32(s.targets, targets, size_t(N_));
      be.layernorm_forward(s.lnf, s.lnf_mean, s.lnf_rstd, out, lnf_w_, lnf_b_, N_, C_);
      stored(s.lnf, size_t(N_) * C_);
      be.matmul_forward(s.logits, s.lnf, head_, nullptr, N_, C_, V_);
      stored(s.logits, size_t(N_) * V_);
      be.crossentropy_forward(s.losses, s.logits, s.logits, s.targets, B_, T_, V_);
    } else {
      PT_CHECK_MSG(output != nullptr, "non-last stage forward needs an output buffer");
      be.copy(output, out, size_t(N_) * C_);
    }
    s.state = SlotState::kForward;
  }

  float loss(int slot_index) const override {
    PT_CHECK_MSG(spec_.has_head, "loss() is only defined on the last stage");
    const Slot& s = slot_at(slot_index);
    PT_CHECK_MSG(s.state != SlotState::kFree, "loss() of a slot without a forward");
    host_losses_.resize(size_t(N_));
    backend_->download(host_losses_.data(), s.losses, size_t(N_));
    // Serial double sum: the same value on every layout and thread count.
    double sum = 0.0;
    for (float l : host_losses_) sum += double(l);
    return float(sum / double(N_));
  }

  void backward(int slot, const float* doutput, float* dinput, float loss_scale) override {
    backward_input(slot, doutput, dinput, loss_scale);
    backward_weight(slot);
  }

  void backward_input(int slot_index, const float* doutput, float* dinput, float loss_scale) override {
    Slot& s = slot_at(slot_index);
    PT_CHECK_MSG(s.state == SlotState::kForward, "backward_input needs a slot after forward and before backward");
    refresh_device_params();
    Backend& be = *backend_;
    const size_t NC = size_t(N_) * C_;
    if (spec_.has_head) {
      // loss(slot) is the mean over the N tokens, hence the 1/N.
      be.crossentropy_softmax_backward(s.logits, s.logits, s.targets, loss_scale / float(N_), B_, T_, V_);
      stored(s.logits, size_t(N_) * V_);
      be.matmul_backward_input(s.dlnf, s.logits, head_, N_, C_, V_);
      stored(s.dlnf, NC);
      be.layernorm_backward_input(s.d_resid[nl_], s.dlnf, block_input(s, nl_), lnf_w_, s.lnf_mean, s.lnf_rstd, N_,
                                  C_);
    } else {
      PT_CHECK_MSG(doutput != nullptr, "non-last stage backward needs doutput");
      be.copy(s.d_resid[nl_], doutput, NC);
    }
    stored(s.d_resid[nl_], NC);
    float* tmp = scratch_nc_;  // (N, C)
    for (int i = nl_ - 1; i >= 0; --i) {
      const BlockParams& w = blocks_[i];
      LayerActs& a = s.layers[i];
      const float* dout = s.d_resid[i + 1];
      // MLP: dfch first holds d(fch_gelu), then GELU backward turns it into d(fch) in place.
      be.matmul_backward_input(a.dfch, dout, w[BlockTensor::kFcProjW], N_, 4 * C_, C_);
      stored(a.dfch, 4 * NC);
      be.gelu_backward(a.dfch, a.fch, a.dfch, N_ * 4 * C_);
      stored(a.dfch, 4 * NC);
      be.matmul_backward_input(a.dln2, a.dfch, w[BlockTensor::kFcW], N_, C_, 4 * C_);
      stored(a.dln2, NC);
      be.layernorm_backward_input(tmp, a.dln2, a.res1, w[BlockTensor::kLn2W], a.ln2_mean, a.ln2_rstd, N_, C_);
      stored(tmp, NC);
      be.residual_forward(a.d_res1, dout, tmp, N_ * C_);
      stored(a.d_res1, NC);
      // Attention: tmp holds d(atty).
      be.matmul_backward_input(tmp, a.d_res1, w[BlockTensor::kAttProjW], N_, C_, C_);
      stored(tmp, NC);
      be.attention_backward(a.dqkv, scratch_tt_, tmp, a.qkv, a.atty, a.att, B_, T_, C_, NH_);
      stored(a.dqkv, 3 * NC);
      be.matmul_backward_input(a.dln1, a.dqkv, w[BlockTensor::kQkvW], N_, C_, 3 * C_);
      stored(a.dln1, NC);
      be.layernorm_backward_input(tmp, a.dln1, block_input(s, i), w[BlockTensor::kLn1W], a.ln1_mean, a.ln1_rstd, N_,
                                  C_);
      stored(tmp, NC);
      be.residual_forward(s.d_resid[i], a.d_res1, tmp, N_ * C_);
      stored(s.d_resid[i], NC);
    }
    if (!spec_.has_embedding) {
      PT_CHECK_MSG(dinput != nullptr, "non-first stage backward needs dinput");
      be.copy(dinput, s.d_resid[0], NC);
    }
    s.state = SlotState::kBackwardInput;
  }

  void backward_weight(int slot_index) override {
    Slot& s = slot_at(slot_index);
    PT_CHECK_MSG(s.state == SlotState::kBackwardInput, "backward_weight needs backward_input first");
    refresh_device_params();
    if (grads_on_host_) {  // the host owns the gradients (and may have changed them): accumulate onto those
      backend_->upload(grads_, host_grads_, num_params_);
      grads_on_host_ = false;
    }
    Backend& be = *backend_;
    if (spec_.has_head) {
      be.matmul_backward_weight(head_grad_, nullptr, s.logits, s.lnf, N_, C_, V_);
      be.layernorm_backward_weight(lnf_w_grad_, lnf_b_grad_, s.dlnf, block_input(s, nl_), s.lnf_mean, s.lnf_rstd,
                                   N_, C_);
    }
    grads_ready(spec_.has_head ? size_t(std::min(lnf_w_grad_, head_grad_) - grads_) : num_params_);
    for (int i = nl_ - 1; i >= 0; --i) {
      const BlockParams& g = block_grads_[i];
      const LayerActs& a = s.layers[i];
      be.matmul_backward_weight(g[BlockTensor::kFcProjW], g[BlockTensor::kFcProjB], s.d_resid[i + 1], a.fch_gelu, N_,
                                4 * C_, C_);
      be.matmul_backward_weight(g[BlockTensor::kFcW], g[BlockTensor::kFcB], a.dfch, a.ln2, N_, C_, 4 * C_);
      be.layernorm_backward_weight(g[BlockTensor::kLn2W], g[BlockTensor::kLn2B], a.dln2, a.res1, a.ln2_mean,
                                   a.ln2_rstd, N_, C_);
      be.matmul_backward_weight(g[BlockTensor::kAttProjW], g[BlockTensor::kAttProjB], a.d_res1, a.atty, N_, C_, C_);
      be.matmul_backward_weight(g[BlockTensor::kQkvW], g[BlockTensor::kQkvB], a.dqkv, a.ln1, N_, C_, 3 * C_);
      be.layernorm_backward_weight(g[BlockTensor::kLn1W], g[BlockTensor::kLn1B], a.dln1, block_input(s, i),
                                   a.ln1_mean, a.ln1_rstd, N_, C_);
      grads_ready(size_t(*std::min_element(g.t, g.t + kTensorsPerBlock) - grads_));
    }
    if (spec_.has_embedding) be.encoder_backward(wte_grad_, wpe_grad_, s.d_resid[0], s.tokens, B_, T_, C_, V_);
    grads_ready(0);
    s.state = SlotState::kDone;
  }

  void release(int slot_index) override {
    PT_CHECK(slot_index >= 0);
    if (size_t(slot_index) >= slots_.size()) return;
    Slot& s = slots_[size_t(slot_index)];
    if (s.block == nullptr) return;
    s.state = SlotState::kFree;
    pool_.push_back(s);
    s = Slot();
  }

 private:
  // Walks the tensor list (stage_tensors order) and binds parameter/grad pointers.
  void bind_params() {
    blocks_.resize(size_t(nl_));
    block_grads_.resize(size_t(nl_));
    float* weights = bf16_ ? wparams_ : params_;  // what the ops read
    for (const auto& t : tensors_) {
      float* p = weights + t.offset;
      float* g = grads_ + t.offset;
      if (t.is_tied_head || (!config_.tie_embeddings && spec_.has_head && t.global_id == lm_head_id(config_))) {
        head_ = p;
        head_grad_ = g;
      } else if (t.global_id == kWteId) {
        wte_ = p;
        wte_grad_ = g;
      } else if (t.global_id == kWpeId) {
        wpe_ = p;
        wpe_grad_ = g;
      } else if (t.global_id == lnf_w_id(config_)) {
        lnf_w_ = p;
        lnf_w_grad_ = g;
      } else if (t.global_id == lnf_b_id(config_)) {
        lnf_b_ = p;
        lnf_b_grad_ = g;
      } else {
        const int rel = t.global_id - 2;
        const int layer = rel / kTensorsPerBlock - spec_.first_layer;
        PT_CHECK(rel >= 0 && layer >= 0 && layer < nl_);
        blocks_[size_t(layer)].t[rel % kTensorsPerBlock] = p;
        block_grads_[size_t(layer)].t[rel % kTensorsPerBlock] = g;
      }
    }
    PT_CHECK(!spec_.has_embedding || (wte_ != nullptr && wpe_ != nullptr));
    PT_CHECK(!spec_.has_head || (head_ != nullptr && lnf_w_ != nullptr && lnf_b_ != nullptr));
  }

  // Carves a slot's float block into buffers; with base == nullptr only counts.
  // Returns the number of floats used.
  size_t layout_slot(float* base, Slot* s) const {
    size_t used = 0;
    auto take = [&](size_t n) -> float* {
      float* p = base == nullptr ? nullptr : base + used;
      used += (n + 15) / 16 * 16;  // 64-byte aligned sub-buffers
      return p;
    };
    const size_t N = size_t(N_), C = size_t(C_);
    float* x0 = take(N * C);
    std::vector<LayerActs> layers(static_cast<size_t>(nl_));
    for (auto& a : layers) {
      a.ln1 = take(N * C);
      a.ln1_mean = take(N);
      a.ln1_rstd = take(N);
      a.qkv = take(N * 3 * C);
      a.att = take(backend_->attention_saved_floats(B_, NH_, T_));
      a.atty = take(N * C);
      a.res1 = take(N * C);
      a.ln2 = take(N * C);
      a.ln2_mean = take(N);
      a.ln2_rstd = take(N);
      a.fch = take(N * 4 * C);
      a.fch_gelu = take(N * 4 * C);
      a.res2 = take(N * C);
      a.d_res1 = take(N * C);
      a.dqkv = take(N * 3 * C);
      a.dln1 = take(N * C);
      a.dln2 = take(N * C);
      a.dfch = take(N * 4 * C);
    }
    std::vector<float*> d_resid(static_cast<size_t>(nl_) + 1);
    for (auto& d : d_resid) d = take(N * C);
    float *lnf = nullptr, *lnf_mean = nullptr, *lnf_rstd = nullptr, *logits = nullptr, *losses = nullptr,
          *dlnf = nullptr;
    if (spec_.has_head) {
      lnf = take(N * C);
      lnf_mean = take(N);
      lnf_rstd = take(N);
      logits = take(N * size_t(V_));
      losses = take(N);
      dlnf = take(N * C);
    }
    if (s != nullptr) {
      s->x0 = x0;
      s->layers = std::move(layers);
      s->d_resid = std::move(d_resid);
      s->lnf = lnf;
      s->lnf_mean = lnf_mean;
      s->lnf_rstd = lnf_rstd;
      s->logits = logits;
      s->losses = losses;
      s->dlnf = dlnf;
    }
    return used;
  }

  Slot& acquire_slot(int slot_index) {
    PT_CHECK(slot_index >= 0);
    if (size_t(slot_index) >= slots_.size()) slots_.resize(size_t(slot_index) + 1);
    Slot& s = slots_[size_t(slot_index)];
    if (s.block == nullptr) {
      if (!pool_.empty()) {
        s = pool_.back();  // buffers already carved; same layout for every slot
        pool_.pop_back();
      } else {
        s.block = backend_->alloc(slot_floats_);
        s.tokens = spec_.has_embedding ? backend_->alloc_i32(size_t(N_)) : nullptr;
        s.targets = spec_.has_head ? backend_->alloc_i32(size_t(N_)) : nullptr;
        layout_slot(s.block, &s);
      }
    }
    // Forward-only reuse (evaluation) may overwrite a slot; pending weight
    // gradients may not be dropped.
    PT_CHECK_MSG(s.state != SlotState::kBackwardInput,
                 "forward into a slot whose backward_weight is pending");
    s.state = SlotState::kFree;
    return s;
  }

  Slot& slot_at(int slot_index) {
    PT_CHECK_MSG(slot_index >= 0 && size_t(slot_index) < slots_.size() && slots_[size_t(slot_index)].block,
                 "slot has no activations (no forward since the last release)");
    return slots_[size_t(slot_index)];
  }
  const Slot& slot_at(int slot_index) const { return const_cast<BackendStageModel*>(this)->slot_at(slot_index); }

  void free_slot_memory(Slot& s) {
    backend_->free(s.block);
    if (s.tokens != nullptr) backend_->free_i32(s.tokens);
    if (s.targets != nullptr) backend_->free_i32(s.targets);
    s = Slot();
  }

  // Uploads the host params when a sync_params_to_device() left the device copy
  // stale; bf16: then rounds the masters into the weight copy the ops read.
  void refresh_device_params() {
    if (!params_stale_) return;
    if (mirrored_) backend_->upload(params_, host_params_, num_params_);
    if (bf16_) {
      backend_->copy(wparams_, params_, num_params_);
      backend_->round_to_bf16(wparams_, num_params_);
    }
    params_stale_ = false;
  }

  // p (n floats) was just written by an op: in bf16 it becomes the bf16 value the
  // CUDA kernels store there (see the header comment); fp32: nothing.
  void stored(float* p, size_t n) {
    if (bf16_) backend_->round_to_bf16(p, n);
  }

  // grads()[from, end) final for this backward (set_grads_ready_hook); host gradients only.
  void grads_ready(size_t from) {
    if (grads_ready_hook_ && !mirrored_) grads_ready_hook_(from);
  }

  // Input of local block i (i == nl_: the stage's residual output).
  const float* block_input(const Slot& s, int i) const { return i == 0 ? s.x0 : s.layers[size_t(i - 1)].res2; }

  std::unique_ptr<Backend> backend_;
  std::function<void(size_t)> grads_ready_hook_;
  ModelConfig config_;
  StageSpec spec_;
  int B_, T_, C_ = 0, NH_ = 0, V_ = 0, N_ = 0, nl_ = 0;
  std::vector<ParamTensor> tensors_;
  size_t num_params_ = 0;
  size_t slot_floats_ = 0;
  float* params_ = nullptr;  // (num_params) backend memory
  float* grads_ = nullptr;   // (num_params) backend memory
  bool bf16_ = false;        // Precision::kBf16 (see the header comment)
  float* wparams_ = nullptr; // bf16: (num_params) backend memory, params_ rounded to bf16; fp32: null
  bool mirrored_ = false;    // backend memory is not host memory: host_* are separate mirrors
  float* host_params_ = nullptr;  // params(): params_ itself, or its host mirror
  float* host_grads_ = nullptr;   // grads(): grads_ itself, or its host mirror
  bool params_stale_ = false;     // params_ (mirrored) or wparams_ (bf16) lag host_params_ (refresh before use)
  bool grads_on_host_ = false;    // mirrored: host_grads_ is authoritative (after sync_grads_to_host)
  float *wte_ = nullptr, *wpe_ = nullptr, *lnf_w_ = nullptr, *lnf_b_ = nullptr, *head_ = nullptr;
  float *wte_grad_ = nullptr, *wpe_grad_ = nullptr, *lnf_w_grad_ = nullptr, *lnf_b_grad_ = nullptr,
        *head_grad_ = nullptr;
  std::vector<BlockParams> blocks_;       // local block i = layer first_layer + i
  std::vector<BlockParams> block_grads_;
  float* scratch_nc_ = nullptr;  // (N, C) temporaries inside one backward_input call
  float* scratch_tt_ = nullptr;  // (T, T) attention backward work buffer
  std::vector<Slot> slots_;
  std::vector<Slot> pool_;       // released slots with their carved buffers
  mutable std::vector<float> host_losses_;  // (N) staging for loss()
};

}  // namespace

std::unique_ptr<StageModel> make_backend_stage_model(std::unique_ptr<Backend> backend, const ModelConfig& config,
                                                     const StageSpec& spec, int B, int T, Precision precision) {
  return std::make_unique<BackendStageModel>(std::move(backend), config, spec, B, T, precision);
}

std::unique_ptr<StageModel> make_cpu_stage_model(const ModelConfig& config, const StageSpec& spec, int B, int T) {
  return make_backend_stage_model(make_cpu_backend(), config, spec, B, T);
}

}  // namespace pt
