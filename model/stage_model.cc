// StageModel on a Backend (see stage_model.h, backend_stage_model.h).
//
// Per slot one float block holds the forward activations and, with
// StageNeeds::split_backward, the gradients that backward_input leaves for
// backward_weight (zero-bubble split): the residual stream gradients at every
// block boundary and inside each block, dqkv, dfch, dln1, dln2 and dlnf. Without
// split backward those gradients live once per model: backward() runs each
// block's input gradients and then its weight gradients before the next block,
// so one block's buffers (and two alternating residual-stream gradients) serve
// every block and slot. Either way backward() computes every gradient with the
// same op on the same inputs as backward_input() then backward_weight(), so split
// and full backward are bitwise equal. Slot blocks are taken from a pool on the
// first forward into a slot and returned on release(), so steady-state training
// allocates nothing.
//
// Classifier (last stage). The forward runs the head matmul and the loss chunk by chunk
// over the N = B*T rows (R rows per chunk: StageNeeds::classifier_chunk_rows or from
// BackendSizes::classifier_chunk_bytes) and keeps the per-row losses. The backward
// turns each chunk's logits into dlogits in place (the loss op recomputes the softmax),
// writes that chunk's rows of dlnf (=) and adds its part of the head's weight gradient
// (+=), chunks in increasing row order: a fixed summation order, the same on every
// rerun and pipeline layout. Where the logits live:
//  * kept (bf16 precision, StageNeeds::keep_logits): in the slot, (N, V) of dtype bf16,
//    written by the forward; the backward uses them as they are while the weights are
//    the forward's (weights_version_), and Bw (split backward) then reuses the dlogits
//    Bx left there. Else the backward recomputes them into the slot first.
//  * not kept (fp32, or keep_logits false): one (R, V) chunk workspace per model; the
//    backward recomputes each chunk's logits from the saved lnf output, the split
//    backward once in Bx (for dlnf) and again in Bw (for the weight gradient; Bx saves
//    the loss scale in the slot).
// Both compute the same values: a recomputation with the same weights repeats the
// forward's GEMM on the same operands, and the bf16 logits are stored rounded either
// way; with the same chunk rows the CPU gives the same bits (classifier_chunk_test).
// By default kept logits take one chunk of all N rows (classifier_chunk_rows), the
// recomputation R: the head's weight gradient then sums in another order. On CUDA the
// kept logits are also a bf16 GEMM output where the chunk is an fp32 one rounded after,
// and a chunk of the kept tensor may start off the 256-byte grid (V odd), so cuBLASLt
// may choose another algorithm: the same up to summation order. Schedules give a
// micro-batch's Bx and Bw the same weight version. With newer weights than the
// forward's (an asynchronous schedule whose backward reads a later version) the
// backward uses the consistent softmax of those weights.
// Stage-independent numerics: a block computes the same ops on the same shapes
// whichever stage owns it, so any pipeline split is bitwise equal to pp=1.
// Fused forward ops: each residual add that feeds a LayerNorm runs as one
// Backend::residual_layernorm_forward (res1 -> ln2; res2 -> the next block's ln1, or lnf
// when the last block and the head share a stage), bitwise the unfused residual_forward,
// rounding and layernorm_forward on each backend, so the fusion changes no result and
// a split (whose boundary res2 is a plain residual_forward) stays bitwise equal to pp=1.
// Backward: each LayerNorm input gradient is added to the residual stream's gradient in
// the same op (Backend::layernorm_backward_input_residual; d_res1 and d_resid[i]),
// bitwise the unfused layernorm_backward_input, rounding and residual_forward.
//
// Memory (stage_model.h, memory contract): params_ and grads_ are the only copies, in
// backend memory. download()/upload() check that their range lies in one of them and
// count the floats. Weight stashes are backend buffers too; swapping one in exchanges
// the params_ pointer with the stash's and rebinds the tensor pointers (no copy).
//
// Precision (model/precision.h). bf16: the ops read wparams_, a copy of the fp32
// masters rounded to bf16, refreshed once per update (params_written() marks it
// stale, the next forward/backward rounds it, on every backend); every
// activation and activation gradient is rounded (Backend::round_to_bf16) right
// after the op that writes it (a residual sum feeding a LayerNorm: inside the fused
// op, before the LayerNorm reads it), which is where the CUDA bf16 kernels
// (model/cuda/*_bf16.h) store bf16: each matmul, LayerNorm, attention, residual
// and GELU output and input gradient, the embedding output, the logits (each
// chunk, also when the backward recomputes it) and dlogits. Not rounded (fp32
// there too): LayerNorm mean/rstd, the attention's saved softmax state, the
// per-token losses, the parameter gradients (fp32 +=).
// The fc matmul and GELU round both outputs from the unrounded pre-activation, as
// the fused cuBLASLt GELU epilogue does (which the CUDA backend runs: fc_forward).
// Stage-boundary tensors (output, dinput)
// are therefore bf16 values sent in fp32 containers: the wire format does not
// change, and any pipeline split stays bitwise equal to pp=1. Differences from the
// bf16 kernels' arithmetic: fp32 summation order, and the attention, whose CPU op
// keeps fp32 probabilities where the flash kernel rounds P to bf16 before P·V.
// The CUDA backend in bf16 runs the GEMMs and the attention on the bf16 kernels where
// the shapes allow (model/cuda/cuda_backend.h); with the rounding points above, its
// GEMMs differ from the fp32 ops only by summation order. Each refresh of wparams_
// declares it to the backend (Backend::set_bf16_weights), which converts the weights to
// bf16 once per update instead of once per op (refresh_device_params says why that copy
// is never stale).
// Storage dtypes (bf16). Every tensor rounded above except the logits chunk is of dtype
// bf16 and comes from Backend::alloc_bf16 (Carvers::take_bf16): x0, ln1, qkv, atty,
// res1, ln2, fch, fch_gelu, res2, lnf, every activation gradient a slot or the shared
// set keeps, and the backward scratch (N, C). The CPU backend gives fp32 containers
// (the values above, bit for bit); on CUDA (and the CPU test stand-in,
// PIPETRAIN_TEST_BF16_STORAGE) they are real 2-byte bf16 (model/bf16_storage_backend.h),
// which stores exactly the rounded values, so results do not change and a slot takes
// BackendSizes::bf16_bytes per bf16 element (stage_memory). fp32 storage: mean/rstd,
// the attention state, losses, the logits chunk, parameters and their gradients, the
// boundary buffers (the stage's inputs and outputs stay fp32 containers of bf16
// values). The unrounded fc output that the GELU reads lives in the fp32 workspace
// scratch_fch_ (N, 4C) and is copied (rounded) into fch (fc_forward), except where the
// backend fuses the fc layer with its GELU (BackendSizes::fuses_fc_gelu: CUDA's bf16
// storage), which writes fch and fch_gelu from its accumulator and needs no scratch.
// Likewise CUDA's bf16 storage takes the MLP projection's input gradient with the GELU
// backward in one GEMM (Backend::matmul_backward_input_dgelu): dfch rounded once, not
// after the GEMM and again after gelu_backward; elsewhere declined (CPU unchanged).
// fp32: no rounding and no weight copy; the code path is the fp32 one bit for bit.
#include <algorithm>
#include <functional>
#include <map>
#include <utility>
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
  float* att;       // BackendSizes::attention_saved_floats: CPU (B, NH, T, T) probabilities, CUDA (B, NH, T) lse
  float* atty;      // (N, C) attention output before the projection
  float* res1;      // (N, C) residual after attention
  float* ln2;       // (N, C)
  float* ln2_mean;  // (N)
  float* ln2_rstd;  // (N)
  float* fch;       // (N, 4C) pre-GELU
  float* fch_gelu;  // (N, 4C)
  float* res2;      // (N, C) block output
  // Gradients kept from backward_input for backward_weight (without split backward
  // every block's point to the same shared set, layout_grads).
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
  float* block = nullptr;       // the slot's fp32 tensors (BlockSizes::f32 floats), from the pool
  float* block_bf16 = nullptr;  // bf16 precision: its bf16 tensors (BlockSizes::b16, Backend::alloc_bf16)
  int32_t* tokens = nullptr;   // (B, T), first stage
  int32_t* targets = nullptr;  // (B, T), last stage
  float* x0 = nullptr;         // (N, C) stage input (embedding output or a copy of `input`)
  std::vector<LayerActs> layers;
  std::vector<float*> d_resid;  // nl + 1 of (N, C): d loss / d (input of local block i); [nl] = stage output
  float* lnf = nullptr;       // (N, C)
  float* lnf_mean = nullptr;  // (N)
  float* lnf_rstd = nullptr;  // (N)
  float* losses = nullptr;    // (N)
  float* dlnf = nullptr;      // (N, C)
  float loss_scale = 0.0f;    // last stage: what backward_input was given, for backward_weight
  // Last stage with kept logits (Geometry::keep_logits): (N, V) bf16, holding `kept` as
  // computed with weights version kept_version (BackendStageModel::weights_version_).
  float* logits = nullptr;
  float* ce_stats = nullptr;  // (N, 2) fp32: each row's softmax (max, sum) from the forward's loss
  enum class Kept { kNothing, kLogits, kDlogits } kept = Kept::kNothing;
  uint64_t kept_version = 0;
};

// The shapes a slot's layout depends on (see stage_memory in stage_model.h).
struct Geometry {
  int B, T, C, NH, V, nl;  // nl: blocks of the stage
  bool has_head, split_backward;
  size_t att_floats;  // BackendSizes::attention_saved_floats(B, NH, T)
  bool bf16;          // Precision::kBf16: bf16 tensors come from Backend::alloc_bf16
  size_t bf16_bytes;  // BackendSizes::bf16_bytes
  bool keep_logits;   // last stage, bf16 and StageNeeds::keep_logits: (N, V) bf16 logits per slot
  size_t N() const { return size_t(B) * T; }
  // Floats of backend memory that n elements of a bf16 tensor take.
  size_t bf16_floats(size_t n) const { return (n * bf16_bytes + sizeof(float) - 1) / sizeof(float); }
};

Geometry geometry(const ModelConfig& c, const StageSpec& spec, int B, int T, Precision precision,
                  const StageNeeds& needs, const BackendSizes& sizes) {
  return Geometry{B,           T,
                  c.n_embd,    c.n_head,
                  c.vocab_size, spec.last_layer - spec.first_layer,
                  spec.has_head, needs.split_backward,
                  sizes.attention_saved_floats(B, c.n_head, T), precision == Precision::kBf16,
                  sizes.bf16_bytes,
                  spec.has_head && precision == Precision::kBf16 && needs.keep_logits};
}

// Hands out consecutive sub-buffers of `base` (null: only counts), `granule`
// elements each rounded up to, so each starts 256-byte aligned (64 floats; 128 bf16
// elements): cuBLASLt keys its algorithm on alignment up to 256 bytes, so a buffer
// gets the same GEMM algorithm whatever precedes it in the block.
struct Carver {
  float* base;
  size_t granule = 64;
  size_t used = 0;
  float* take(size_t n) {
    float* p = base == nullptr ? nullptr : base + used;
    used += (n + granule - 1) / granule * granule;
    return p;
  }
};

// A slot's two blocks: fp32 tensors (LayerNorm statistics, attention state, losses) from
// f32; tensors of dtype bf16 in bf16 precision (every activation and activation gradient
// rounded at its producer, see the header comment) from b16, whose elements come from
// Backend::alloc_bf16. fp32 precision: everything from f32, one block as before.
struct Carvers {
  Carver f32, b16;
  bool bf16;
  Carvers(const Geometry& g, float* f32_base, float* b16_base) : f32{f32_base}, b16{b16_base, 128}, bf16(g.bf16) {}
  float* take(size_t n) { return f32.take(n); }                    // fp32 tensor
  float* take_bf16(size_t n) { return (bf16 ? b16 : f32).take(n); }  // bf16 tensor in bf16 precision
};

// Carves the forward activations of a slot from c into *s (null: only counts).
void layout_acts(const Geometry& g, Carvers& c, Slot* s) {
  const size_t N = g.N(), C = size_t(g.C);
  Slot t;
  t.x0 = c.take_bf16(N * C);
  t.layers.resize(static_cast<size_t>(g.nl));
  for (auto& a : t.layers) {
    a.ln1 = c.take_bf16(N * C);
    a.ln1_mean = c.take(N);
    a.ln1_rstd = c.take(N);
    a.qkv = c.take_bf16(N * 3 * C);
    a.att = c.take(g.att_floats);
    a.atty = c.take_bf16(N * C);
    a.res1 = c.take_bf16(N * C);
    a.ln2 = c.take_bf16(N * C);
    a.ln2_mean = c.take(N);
    a.ln2_rstd = c.take(N);
    a.fch = c.take_bf16(N * 4 * C);
    a.fch_gelu = c.take_bf16(N * 4 * C);
    a.res2 = c.take_bf16(N * C);
  }
  if (g.has_head) {
    t.lnf = c.take_bf16(N * C);
    t.lnf_mean = c.take(N);
    t.lnf_rstd = c.take(N);
    t.losses = c.take(N);
    if (g.keep_logits) {
      t.logits = c.take_bf16(N * size_t(g.V));
      t.ce_stats = c.take(2 * N);
    }
  }
  if (s != nullptr) {
    s->x0 = t.x0;
    s->logits = t.logits;
    s->ce_stats = t.ce_stats;
    s->lnf = t.lnf;
    s->lnf_mean = t.lnf_mean;
    s->lnf_rstd = t.lnf_rstd;
    s->losses = t.losses;
    s->layers.resize(t.layers.size());
    for (size_t i = 0; i < t.layers.size(); ++i) {
      LayerActs& a = s->layers[i];
      const LayerActs& b = t.layers[i];
      a.ln1 = b.ln1, a.ln1_mean = b.ln1_mean, a.ln1_rstd = b.ln1_rstd, a.qkv = b.qkv, a.att = b.att;
      a.atty = b.atty, a.res1 = b.res1, a.ln2 = b.ln2, a.ln2_mean = b.ln2_mean, a.ln2_rstd = b.ln2_rstd;
      a.fch = b.fch, a.fch_gelu = b.fch_gelu, a.res2 = b.res2;
    }
  }
}

// Carves the activation gradients backward_input keeps for backward_weight into
// *s (null: only counts): with split backward a full set per slot, else one
// block's set that every block shares and two residual-stream gradients that
// alternate (block i reads d_resid[i + 1] and writes d_resid[i]). *s must already
// have its layers (layout_acts). All are of dtype bf16 (Carvers::take_bf16).
void layout_grads(const Geometry& g, Carvers& c, Slot* s) {
  const size_t N = g.N(), C = size_t(g.C), nl = size_t(g.nl);
  const bool shared = !g.split_backward;
  std::vector<LayerActs> d_block(shared ? std::min<size_t>(1, nl) : nl);
  for (auto& a : d_block) {
    a.d_res1 = c.take_bf16(N * C);
    a.dqkv = c.take_bf16(N * 3 * C);
    a.dln1 = c.take_bf16(N * C);
    a.dln2 = c.take_bf16(N * C);
    a.dfch = c.take_bf16(N * 4 * C);
  }
  std::vector<float*> d_resid(shared ? std::min<size_t>(2, nl + 1) : nl + 1);
  for (auto& p : d_resid) p = c.take_bf16(N * C);
  float* dlnf = g.has_head ? c.take_bf16(N * C) : nullptr;
  if (s != nullptr) {
    for (size_t i = 0; i < s->layers.size(); ++i) {
      LayerActs& a = s->layers[i];
      const LayerActs& b = d_block[shared ? 0 : i];
      a.d_res1 = b.d_res1, a.dqkv = b.dqkv, a.dln1 = b.dln1, a.dln2 = b.dln2, a.dfch = b.dfch;
    }
    s->d_resid.resize(nl + 1);
    for (size_t i = 0; i <= nl; ++i) s->d_resid[i] = d_resid[i % d_resid.size()];
    s->dlnf = dlnf;
  }
}

// Sizes of a slot's blocks (Slot::block, Slot::block_bf16): its activations, and with
// split backward the gradients it keeps; or of the shared gradients (grads_only).
struct BlockSizes {
  size_t f32 = 0;  // floats
  size_t b16 = 0;  // bf16 elements (0 in fp32 precision)
  size_t floats(const Geometry& g) const { return f32 + g.bf16_floats(b16); }  // backend memory
};

BlockSizes slot_sizes(const Geometry& g) {
  Carvers c(g, nullptr, nullptr);
  layout_acts(g, c, nullptr);
  if (g.split_backward) layout_grads(g, c, nullptr);
  return BlockSizes{c.f32.used, c.b16.used};
}

BlockSizes grad_sizes(const Geometry& g) {
  Carvers c(g, nullptr, nullptr);
  layout_grads(g, c, nullptr);
  return BlockSizes{c.f32.used, c.b16.used};
}

// Allocates the blocks of `z` (a block of size 0 stays null).
void alloc_blocks(Backend& be, const BlockSizes& z, float** f32, float** b16) {
  *f32 = z.f32 > 0 ? be.alloc(z.f32) : nullptr;
  *b16 = z.b16 > 0 ? be.alloc_bf16(z.b16) : nullptr;
}

// Rows per classifier chunk: StageNeeds::classifier_chunk_rows, else all N with kept
// logits (they need no chunk buffer, and one chunk makes the head's weight gradient one
// GEMM instead of a read-modify-write of the (V, C) fp32 gradient per chunk: at GPT-2
// B = 32, 26 chunks of 1280 rows moved 8 GB per step), else as many as the backend's
// chunk budget holds (whole GEMM tiles of 64 rows when >= 64).
int classifier_chunk_rows(const Geometry& g, const StageNeeds& needs, const BackendSizes& sizes) {
  PT_CHECK_MSG(needs.classifier_chunk_rows >= 0, "StageNeeds::classifier_chunk_rows must be >= 0");
  size_t rows = size_t(needs.classifier_chunk_rows);
  if (rows == 0 && g.keep_logits) rows = g.N();
  if (rows == 0) {
    rows = sizes.classifier_chunk_bytes / (sizeof(float) * size_t(g.V));
    if (rows >= 64) rows = rows / 64 * 64;
  }
  return int(std::clamp<size_t>(rows, 1, g.N()));
}

class BackendStageModel final : public StageModel {
 public:
  BackendStageModel(std::unique_ptr<Backend> backend, const ModelConfig& config, const StageSpec& spec, int B,
                    int T, Precision precision, const StageNeeds& needs)
      : backend_(std::move(backend)), config_(config), spec_(spec), needs_(needs), B_(B), T_(T),
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
    if (bf16_) {
      wparams_ = backend_->alloc(num_params_);
      params_stale_ = true;  // rounded from params_ on first use
    }
    for (const auto& t : tensors_) {
      tensor_offsets_.push_back(t.offset);
      tensor_numels_.push_back(t.numel);
    }
    bind_params();
    const BackendSizes sizes = backend_->sizes();
    geometry_ = geometry(config_, spec_, B_, T_, precision, needs_, sizes);
    const StageMemory mem = stage_memory(config_, spec_, B_, T_, precision, needs_, sizes);
    slot_floats_ = mem.slot_floats;
    workspace_floats_ = mem.workspace_floats;
    scratch_nc_ = bf16_ ? backend_->alloc_bf16(size_t(N_) * C_) : backend_->alloc(size_t(N_) * C_);
    scratch_tt_ = backend_->alloc(sizes.attention_scratch_floats(B_, NH_, T_));
    fused_fc_gelu_ = bf16_ && sizes.fuses_fc_gelu(C_);
    if (bf16_ && !fused_fc_gelu_) scratch_fch_ = backend_->alloc(size_t(N_) * 4 * C_);
    if (!needs_.split_backward) alloc_blocks(*backend_, grad_sizes(geometry_), &shared_grads_, &shared_grads_bf16_);
    if (spec_.has_head) {
      chunk_rows_ = classifier_chunk_rows(geometry_, needs_, sizes);
      if (!geometry_.keep_logits) logits_chunk_ = backend_->alloc(size_t(chunk_rows_) * V_);
    }
  }

  ~BackendStageModel() override {
    for (auto& s : slots_) {
      if (s.block != nullptr) free_slot_memory(s);
    }
    for (auto& p : pool_) free_slot_memory(p);
    if (logits_chunk_ != nullptr) backend_->free(logits_chunk_);
    if (shared_grads_ != nullptr) backend_->free(shared_grads_);
    if (shared_grads_bf16_ != nullptr) backend_->free(shared_grads_bf16_);
    if (scratch_fch_ != nullptr) backend_->free(scratch_fch_);
    backend_->free(scratch_tt_);
    backend_->free(scratch_nc_);
    backend_->free(grads_);
    backend_->free(params_);
    if (wparams_ != nullptr) backend_->free(wparams_);
    for (auto& [key, p] : stash_) backend_->free(p);
    for (float* p : stash_pool_) backend_->free(p);
    if (recorded_losses_ != nullptr) backend_->free(recorded_losses_);
  }

  const ModelConfig& config() const override { return config_; }
  const StageSpec& spec() const override { return spec_; }
  int batch_size() const override { return B_; }
  int seq_len() const override { return T_; }
  const std::vector<ParamTensor>& tensors() const override { return tensors_; }
  size_t num_params() const override { return num_params_; }
  float* params() override { return params_; }
  float* grads() override { return grads_; }
  size_t activation_floats_per_slot() const override { return slot_floats_; }
  size_t workspace_floats() const override { return workspace_floats_; }

  void init_params(uint64_t seed) override {
    std::vector<float> host(num_params_);
    for (const auto& t : tensors_) init_tensor(config_, t, seed, host.data() + t.offset);
    backend_->upload(params_, host.data(), num_params_);  // construction, not a counted transfer
    params_written();
  }

  void zero_grads() override { backend_->zero(grads_, num_params_); }

  bool host_memory() const override { return backend_->host_memory(); }
  void* stream() const override { return backend_->stream(); }

  void download(float* host_dst, const float* src, size_t n) override {
    *counter(src, n, false) += int64_t(n);
    backend_->download(host_dst, src, n);
  }

  void upload(float* dst, const float* host_src, size_t n) override {
    *counter(dst, n, true) += int64_t(n);
    backend_->upload(dst, host_src, n);
    if (dst >= params_ && dst < params_ + num_params_) params_written();
  }

  void params_written() override {
    ++weights_version_;
    if (bf16_) params_stale_ = true;
  }

  Transfers transfers() const override { return transfers_; }

  void grad_sums_of_squares(double* out) override {
    backend_->sums_of_squares(out, grads_, tensor_offsets_.data(), tensor_numels_.data(), int(tensors_.size()));
  }
  void add(float* out, const float* a, const float* b, size_t n) override { backend_->add(out, a, b, n); }
  void copy(float* dst, const float* src, size_t n) override { backend_->copy(dst, src, n); }
  void average(float* const* bufs, int count, size_t n) override { backend_->average(bufs, count, n); }

  void stash_params(int key) override {
    float*& p = stash_[key];
    if (p == nullptr && !stash_pool_.empty()) {
      p = stash_pool_.back();
      stash_pool_.pop_back();
    }
    if (p == nullptr) p = backend_->alloc(num_params_);
    backend_->copy(p, params_, num_params_);
  }

  void swap_stashed_params(int key) override {
    auto it = stash_.find(key);
    PT_CHECK_MSG(it != stash_.end(), "no stashed parameters under key " + std::to_string(key));
    std::swap(params_, it->second);
    bind_params();
    params_written();
  }

  void drop_stashed_params(int key) override {
    auto it = stash_.find(key);
    if (it == stash_.end()) return;
    stash_pool_.push_back(it->second);  // reused by the next stash: no allocation per step
    stash_.erase(it);
  }

  void synchronize() override { backend_->synchronize(); }
  void* record_event() override { return backend_->record_event(); }
  int timing_mark() override { return backend_->timing_mark(); }
  void timing_marks(std::vector<double>* before_now) override { backend_->timing_marks(before_now); }
  void wait_event(void* event) override { backend_->wait_event(event); }
  std::unique_ptr<BoundaryMemory> boundary_memory() override { return make_backend_boundary_memory(backend_.get()); }
  void set_grads_ready_hook(std::function<void(size_t, void*)> fn) override { grads_ready_hook_ = std::move(fn); }
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
    // Each residual sum that feeds a LayerNorm is fused with it (residual_layernorm_forward):
    // res1 -> ln2 inside a block, res2 -> the next block's ln1 or, on the last block of
    // the last stage, lnf. Only block 0's ln1 (on x0) and a head-only stage's lnf run alone.
    const size_t NC = size_t(N_) * C_;
    if (nl_ > 0) {
      const BlockParams& w = blocks_[0];
      LayerActs& a = s.layers[0];
      be.layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, s.x0, w[BlockTensor::kLn1W], w[BlockTensor::kLn1B], N_,
                           C_);
      stored(a.ln1, NC);
    }
    for (int i = 0; i < nl_; ++i) {
      const BlockParams& w = blocks_[i];
      LayerActs& a = s.layers[i];
      const float* in = block_input(s, i);
      be.matmul_forward(a.qkv, a.ln1, w[BlockTensor::kQkvW], w[BlockTensor::kQkvB], N_, C_, 3 * C_);
      stored(a.qkv, 3 * NC);
      be.attention_forward(a.atty, a.att, a.qkv, B_, T_, C_, NH_);
      stored(a.atty, NC);
      be.matmul_forward(a.res1, a.atty, w[BlockTensor::kAttProjW], w[BlockTensor::kAttProjB], N_, C_, C_);
      stored(a.res1, NC);
      be.residual_layernorm_forward(a.res1, a.ln2, a.ln2_mean, a.ln2_rstd, in, a.res1, w[BlockTensor::kLn2W],
                                    w[BlockTensor::kLn2B], N_, C_, bf16_);
      stored(a.ln2, NC);
      fc_forward(a, w);
      be.matmul_forward(a.res2, a.fch_gelu, w[BlockTensor::kFcProjW], w[BlockTensor::kFcProjB], N_, 4 * C_, C_);
      stored(a.res2, NC);
      block_output(s, i);
    }
    const float* out = block_input(s, nl_);
    if (spec_.has_head) {
      PT_CHECK_MSG(targets != nullptr, "last stage forward needs targets");
      be.upload_i32(s.targets, targets, size_t(N_));
      if (nl_ == 0) {
        be.layernorm_forward(s.lnf, s.lnf_mean, s.lnf_rstd, out, lnf_w_, lnf_b_, N_, C_);
        stored(s.lnf, NC);
      }
      for (int r0 = 0; r0 < N_; r0 += chunk_rows_) {
        const int rows = std::min(chunk_rows_, N_ - r0);
        float* logits = chunk_logits(s, r0, rows);
        float* stats = s.ce_stats != nullptr ? s.ce_stats + 2 * size_t(r0) : nullptr;
        be.crossentropy_forward(s.losses + r0, logits, s.targets + r0, rows, V_, stats);
      }
      s.kept = Slot::Kept::kLogits;
      s.kept_version = weights_version_;
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
    return mean_loss(host_losses_.data());
  }

  void record_loss(int slot_index) override {
    PT_CHECK_MSG(spec_.has_head, "record_loss() is only defined on the last stage");
    const Slot& s = slot_at(slot_index);
    PT_CHECK_MSG(s.state != SlotState::kFree, "record_loss() of a slot without a forward");
    const size_t N = size_t(N_);
    if (recorded_ == recorded_cap_) {  // grow (doubling), keeping what is recorded
      const size_t cap = std::max<size_t>(8, 2 * recorded_cap_);
      float* grown = backend_->alloc(cap * N);
      if (recorded_ > 0) backend_->copy(grown, recorded_losses_, recorded_ * N);
      if (recorded_losses_ != nullptr) backend_->free(recorded_losses_);
      recorded_losses_ = grown;
      recorded_cap_ = cap;
    }
    backend_->copy(recorded_losses_ + recorded_ * N, s.losses, N);
    ++recorded_;
  }

  std::vector<float> take_losses() override {
    const size_t N = size_t(N_);
    std::vector<float> host(recorded_ * N), out;
    if (recorded_ > 0) backend_->download(host.data(), recorded_losses_, host.size());
    for (size_t k = 0; k < recorded_; ++k) out.push_back(mean_loss(host.data() + k * N));
    recorded_ = 0;
    return out;
  }

  // backward_input then backward_weight, fused per block (see the header comment).
  void backward(int slot_index, const float* doutput, float* dinput, float loss_scale) override {
    Slot& s = slot_at(slot_index);
    PT_CHECK_MSG(s.state == SlotState::kForward, "backward needs a slot after forward and before backward");
    refresh_device_params();
    output_grad(s, doutput, loss_scale, /*head_weight=*/true);
    if (spec_.has_head) lnf_weight_grad(s);
    for (int i = nl_ - 1; i >= 0; --i) {
      block_backward_input(s, i);
      block_backward_weight(s, i);
    }
    input_grad(s, dinput);
    embedding_weight_grad(s);
    s.state = SlotState::kDone;
  }

  void backward_input(int slot_index, const float* doutput, float* dinput, float loss_scale) override {
    Slot& s = slot_at(slot_index);
    PT_CHECK_MSG(s.state == SlotState::kForward, "backward_input needs a slot after forward and before backward");
    PT_CHECK_MSG(needs_.split_backward, "backward_input on a stage model built without StageNeeds::split_backward");
    refresh_device_params();
    output_grad(s, doutput, loss_scale, /*head_weight=*/false);
    for (int i = nl_ - 1; i >= 0; --i) block_backward_input(s, i);
    input_grad(s, dinput);
    s.state = SlotState::kBackwardInput;
  }

  void backward_weight(int slot_index) override {
    Slot& s = slot_at(slot_index);
    PT_CHECK_MSG(s.state == SlotState::kBackwardInput, "backward_weight needs backward_input first");
    refresh_device_params();
    if (spec_.has_head) {
      classifier_backward(s, s.loss_scale, /*input=*/false, /*weight=*/true);
      lnf_weight_grad(s);
    }
    for (int i = nl_ - 1; i >= 0; --i) block_backward_weight(s, i);
    embedding_weight_grad(s);
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
  // Where the logits of rows [r0, ...) live: the slot's kept logits, else logits_chunk_.
  float* chunk_buffer(const Slot& s, int r0) const {
    return geometry_.keep_logits ? s.logits + size_t(r0) * V_ : logits_chunk_;
  }

  // Logits of rows [r0, r0 + rows) (rows <= chunk_rows_) into chunk_buffer(s, r0), as
  // the forward and every recomputation compute them; returns that buffer.
  float* chunk_logits(const Slot& s, int r0, int rows) {
    float* logits = chunk_buffer(s, r0);
    backend_->matmul_forward(logits, s.lnf + size_t(r0) * C_, head_, nullptr, rows, C_, V_);
    stored(logits, size_t(rows) * V_);
    return logits;
  }

  // The classifier's backward chunk by chunk; with `input` writes dlnf (=), with
  // `weight` adds the head's weight gradient (+=), chunks in increasing row order.
  // dlogits come from what the slot kept when it is current (see the header comment),
  // else from recomputed logits.
  void classifier_backward(Slot& s, float loss_scale, bool input, bool weight) {
    Backend& be = *backend_;
    const float scale = loss_scale / float(N_);  // loss(slot) is the mean over the N tokens
    const bool current = geometry_.keep_logits && s.kept_version == weights_version_;
    const Slot::Kept have = current ? s.kept : Slot::Kept::kNothing;
    for (int r0 = 0; r0 < N_; r0 += chunk_rows_) {
      const int rows = std::min(chunk_rows_, N_ - r0);
      float* dlogits = chunk_buffer(s, r0);
      if (have != Slot::Kept::kDlogits) {
        if (have != Slot::Kept::kLogits) chunk_logits(s, r0, rows);
        // The kept logits' softmax statistics are the forward's: one pass over them fewer.
        const float* stats = have == Slot::Kept::kLogits ? s.ce_stats + 2 * size_t(r0) : nullptr;
        be.crossentropy_backward(dlogits, dlogits, s.targets + r0, scale, rows, V_, stats);
        stored(dlogits, size_t(rows) * V_);
      }
      if (input) be.matmul_backward_input(s.dlnf + size_t(r0) * C_, dlogits, head_, rows, C_, V_);
      if (weight) be.matmul_backward_weight(head_grad_, nullptr, dlogits, s.lnf + size_t(r0) * C_, rows, C_, V_);
    }
    if (geometry_.keep_logits) {
      s.kept = Slot::Kept::kDlogits;
      s.kept_version = weights_version_;
    }
  }

  // d loss / d (stage output) into d_resid[nl_]: through the classifier and the
  // final LayerNorm on the last stage (with `head_weight` also the head's weight
  // gradient, from the same dlogits), else a copy of doutput.
  void output_grad(Slot& s, const float* doutput, float loss_scale, bool head_weight) {
    Backend& be = *backend_;
    const size_t NC = size_t(N_) * C_;
    if (spec_.has_head) {
      s.loss_scale = loss_scale;
      classifier_backward(s, loss_scale, /*input=*/true, head_weight);
      stored(s.dlnf, NC);
      be.layernorm_backward_input(s.d_resid[nl_], s.dlnf, block_input(s, nl_), lnf_w_, s.lnf_mean, s.lnf_rstd, N_,
                                  C_);
    } else {
      PT_CHECK_MSG(doutput != nullptr, "non-last stage backward needs doutput");
      be.copy(s.d_resid[nl_], doutput, NC);
    }
    stored(s.d_resid[nl_], NC);
  }

  // MLP: dfch = d(fch) from dout. One op where the backend fuses the GELU backward into
  // the GEMM (bf16 storage on CUDA: one rounding, Backend::matmul_backward_input_dgelu);
  // else dfch first holds d(fch_gelu), then GELU backward turns it into d(fch) in place.
  void mlp_proj_backward_input(LayerActs& a, const float* dout, const float* wproj) {
    Backend& be = *backend_;
    const size_t n = size_t(N_) * 4 * C_;
    if (bf16_ && be.matmul_backward_input_dgelu(a.dfch, dout, wproj, a.fch, N_, 4 * C_, C_)) {
      stored(a.dfch, n);
      return;
    }
    be.matmul_backward_input(a.dfch, dout, wproj, N_, 4 * C_, C_);
    stored(a.dfch, n);
    be.gelu_backward(a.dfch, a.fch, a.dfch, N_ * 4 * C_);
    stored(a.dfch, n);
  }

  // Input gradients of local block i: d_resid[i] from d_resid[i + 1], keeping
  // dfch, dln2, d_res1, dqkv and dln1 for block_backward_weight.
  void block_backward_input(Slot& s, int i) {
    Backend& be = *backend_;
    const size_t NC = size_t(N_) * C_;
    float* tmp = scratch_nc_;  // (N, C)
    const BlockParams& w = blocks_[i];
    LayerActs& a = s.layers[i];
    const float* dout = s.d_resid[i + 1];
    mlp_proj_backward_input(a, dout, w[BlockTensor::kFcProjW]);
    be.matmul_backward_input(a.dln2, a.dfch, w[BlockTensor::kFcW], N_, C_, 4 * C_);
    stored(a.dln2, NC);
    // Each LayerNorm input gradient is added to the residual stream's in the same op.
    be.layernorm_backward_input_residual(a.d_res1, dout, a.dln2, a.res1, w[BlockTensor::kLn2W], a.ln2_mean,
                                         a.ln2_rstd, N_, C_, bf16_);
    stored(a.d_res1, NC);
    // Attention: tmp holds d(atty).
    be.matmul_backward_input(tmp, a.d_res1, w[BlockTensor::kAttProjW], N_, C_, C_);
    stored(tmp, NC);
    be.attention_backward(a.dqkv, scratch_tt_, tmp, a.qkv, a.atty, a.att, B_, T_, C_, NH_);
    stored(a.dqkv, 3 * NC);
    be.matmul_backward_input(a.dln1, a.dqkv, w[BlockTensor::kQkvW], N_, C_, 3 * C_);
    stored(a.dln1, NC);
    be.layernorm_backward_input_residual(s.d_resid[i], a.d_res1, a.dln1, block_input(s, i), w[BlockTensor::kLn1W],
                                         a.ln1_mean, a.ln1_rstd, N_, C_, bf16_);
    stored(s.d_resid[i], NC);
  }

  // Weight gradients (+=) of local block i from what block_backward_input(s, i) kept.
  void block_backward_weight(const Slot& s, int i) {
    Backend& be = *backend_;
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

  // After the head's weight gradient: the head and final LayerNorm tensors are final.
  void lnf_weight_grad(const Slot& s) {
    backend_->layernorm_backward_weight(lnf_w_grad_, lnf_b_grad_, s.dlnf, block_input(s, nl_), s.lnf_mean,
                                        s.lnf_rstd, N_, C_);
    grads_ready(size_t(std::min(lnf_w_grad_, head_grad_) - grads_));
  }

  // Non-first stages: dinput = d_resid[0].
  void input_grad(const Slot& s, float* dinput) {
    if (spec_.has_embedding) return;
    PT_CHECK_MSG(dinput != nullptr, "non-first stage backward needs dinput");
    backend_->copy(dinput, s.d_resid[0], size_t(N_) * C_);
  }

  void embedding_weight_grad(const Slot& s) {
    if (spec_.has_embedding) backend_->encoder_backward(wte_grad_, wpe_grad_, s.d_resid[0], s.tokens, B_, T_, C_, V_);
    grads_ready(0);  // every weight gradient of this backward is final
  }

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

  Slot& acquire_slot(int slot_index) {
    PT_CHECK(slot_index >= 0);
    if (size_t(slot_index) >= slots_.size()) slots_.resize(size_t(slot_index) + 1);
    Slot& s = slots_[size_t(slot_index)];
    if (s.block == nullptr) {
      if (!pool_.empty()) {
        s = pool_.back();  // buffers already carved; same layout for every slot
        pool_.pop_back();
      } else {
        const BlockSizes z = slot_sizes(geometry_);
        s.block = backend_->alloc(std::max<size_t>(z.f32, 1));  // non-null: marks the slot as allocated
        s.block_bf16 = z.b16 > 0 ? backend_->alloc_bf16(z.b16) : nullptr;
        s.tokens = spec_.has_embedding ? backend_->alloc_i32(size_t(N_)) : nullptr;
        s.targets = spec_.has_head ? backend_->alloc_i32(size_t(N_)) : nullptr;
        Carvers c(geometry_, s.block, s.block_bf16);
        layout_acts(geometry_, c, &s);
        if (needs_.split_backward) {
          layout_grads(geometry_, c, &s);
        } else {
          Carvers shared(geometry_, shared_grads_, shared_grads_bf16_);
          layout_grads(geometry_, shared, &s);
        }
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
    if (s.block_bf16 != nullptr) backend_->free(s.block_bf16);
    if (s.tokens != nullptr) backend_->free_i32(s.tokens);
    if (s.targets != nullptr) backend_->free_i32(s.targets);
    s = Slot();
  }

  // bf16: rounds the masters into the weight copy the ops read when params_written()
  // left it stale, and declares the new contents to the backend
  // (Backend::refresh_bf16_weights = copy, round_to_bf16, set_bf16_weights: the CUDA
  // backend writes wparams_ and its persistent bf16 buffer, which serves the GEMMs'
  // weight operands until the next declaration, in one pass); fp32: nothing.
  // Why the backend's copy is never stale: this is the only code that writes wparams_
  // (allocated once in the constructor, never reallocated), and it re-declares right
  // after writing, in stream order before any op that reads it. Every change of the
  // masters reaches here through params_written(): the optimizer step and collectives
  // (the caller's contract, stage_model.h), upload()/params_from_host() (checkpoint
  // load, replay), init_params(), and swap_stashed_params(), which exchanges the
  // params_ pointer with a stash (wparams_ stays, its contents are re-derived from the
  // swapped-in version here), both when the old version is swapped in and when the
  // second swap restores the current one. stash_params() only copies params_ and
  // changes nothing the ops read. tests/model/stage_model_bf16_weights_test.cc checks
  // the declarations with a recording backend.
  void refresh_device_params() {
    if (!params_stale_) return;
    backend_->refresh_bf16_weights(wparams_, params_, num_params_);  // round, then declare
    params_stale_ = false;
  }

  // The transfer counter of a download (to_backend false) or upload of [p, p + n), which
  // must lie inside params_ or grads_.
  int64_t* counter(const float* p, size_t n, bool to_backend) {
    if (p >= params_ && p + n <= params_ + num_params_)
      return to_backend ? &transfers_.params_from_host : &transfers_.params_to_host;
    PT_CHECK_MSG(p >= grads_ && p + n <= grads_ + num_params_, "a host transfer outside the stage's params and grads");
    return to_backend ? &transfers_.grads_from_host : &transfers_.grads_to_host;
  }

  // p (n floats) was just written by an op: in bf16 it becomes the bf16 value the
  // CUDA kernels store there (see the header comment); fp32: nothing.
  void stored(float* p, size_t n) {
    if (bf16_) backend_->round_to_bf16(p, n);
  }

  // fch, fch_gelu = the fc matmul and the GELU of its unrounded output, then both
  // rounded: in one op where the backend fuses them (fused_fc_gelu_), else unfused. bf16
  // unfused: the unrounded output lives in the fp32 scratch_fch_ (fch itself is a bf16
  // tensor) and is copied into fch, which rounds it exactly as stored() would.
  void fc_forward(LayerActs& a, const BlockParams& w) {
    Backend& be = *backend_;
    const size_t n = size_t(N_) * 4 * C_;
    const float *ln2 = a.ln2, *wfc = w[BlockTensor::kFcW], *bfc = w[BlockTensor::kFcB];
    if (!fused_fc_gelu_ || !be.matmul_forward_gelu(a.fch_gelu, a.fch, ln2, wfc, bfc, N_, C_, 4 * C_)) {
      float* fch = bf16_ ? fch_scratch() : a.fch;
      be.matmul_forward(fch, ln2, wfc, bfc, N_, C_, 4 * C_);
      be.gelu_forward(a.fch_gelu, fch, N_ * 4 * C_);
      if (bf16_) be.copy(a.fch, fch, n);
    }
    stored(a.fch, n);
    stored(a.fch_gelu, n);
  }

  // scratch_fch_, allocated here if the backend declined a fusion it announced (beyond
  // stage_memory's estimate; the bf16 storage backend only declines misaligned operands,
  // which the 256-byte carving never gives).
  float* fch_scratch() {
    if (scratch_fch_ == nullptr) scratch_fch_ = backend_->alloc(size_t(N_) * 4 * C_);
    return scratch_fch_;
  }

  // Block i's output res2 = res1 + res2 (in place), fused with the LayerNorm that reads it:
  // block i + 1's ln1, else lnf on the last stage, else none (the stage output).
  void block_output(Slot& s, int i) {
    Backend& be = *backend_;
    LayerActs& a = s.layers[size_t(i)];
    const size_t NC = size_t(N_) * C_;
    if (i + 1 < nl_) {
      const BlockParams& w = blocks_[size_t(i + 1)];
      LayerActs& next = s.layers[size_t(i + 1)];
      be.residual_layernorm_forward(a.res2, next.ln1, next.ln1_mean, next.ln1_rstd, a.res1, a.res2,
                                    w[BlockTensor::kLn1W], w[BlockTensor::kLn1B], N_, C_, bf16_);
      stored(next.ln1, NC);
    } else if (spec_.has_head) {
      be.residual_layernorm_forward(a.res2, s.lnf, s.lnf_mean, s.lnf_rstd, a.res1, a.res2, lnf_w_, lnf_b_, N_, C_,
                                    bf16_);
      stored(s.lnf, NC);
    } else {
      be.residual_forward(a.res2, a.res1, a.res2, N_ * C_);
      stored(a.res2, NC);
    }
  }

  // Mean of one micro-batch's N per-token losses (host): a serial double sum, the same
  // value on every layout and thread count.
  float mean_loss(const float* losses) const {
    double sum = 0.0;
    for (int i = 0; i < N_; ++i) sum += double(losses[i]);
    return float(sum / double(N_));
  }

  // grads()[from, end) final for this backward (set_grads_ready_hook): at once on host
  // memory, once the event recorded here completes on a device stream.
  void grads_ready(size_t from) {
    if (grads_ready_hook_) grads_ready_hook_(from, backend_->host_memory() ? nullptr : backend_->record_event());
  }

  // Input of local block i (i == nl_: the stage's residual output).
  const float* block_input(const Slot& s, int i) const { return i == 0 ? s.x0 : s.layers[size_t(i - 1)].res2; }

  std::unique_ptr<Backend> backend_;
  std::function<void(size_t, void*)> grads_ready_hook_;
  ModelConfig config_;
  StageSpec spec_;
  StageNeeds needs_;
  Geometry geometry_{};
  int B_, T_, C_ = 0, NH_ = 0, V_ = 0, N_ = 0, nl_ = 0;
  std::vector<ParamTensor> tensors_;
  size_t num_params_ = 0;
  size_t slot_floats_ = 0;
  float* params_ = nullptr;  // (num_params) backend memory
  float* grads_ = nullptr;   // (num_params) backend memory
  bool bf16_ = false;        // Precision::kBf16 (see the header comment)
  float* wparams_ = nullptr; // bf16: (num_params) backend memory, params_ rounded to bf16; fp32: null
  bool params_stale_ = false;     // bf16: wparams_ lags params_ (refresh before use)
  uint64_t weights_version_ = 0;  // + 1 at every params_written(): what a slot's kept logits were computed with
  std::vector<size_t> tensor_offsets_, tensor_numels_;  // tensors_' ranges (grad_sums_of_squares)
  Transfers transfers_;
  std::map<int, float*> stash_;   // weight stashes: key -> (num_params) backend memory
  std::vector<float*> stash_pool_;  // dropped stash buffers, reused
  float *wte_ = nullptr, *wpe_ = nullptr, *lnf_w_ = nullptr, *lnf_b_ = nullptr, *head_ = nullptr;
  float *wte_grad_ = nullptr, *wpe_grad_ = nullptr, *lnf_w_grad_ = nullptr, *lnf_b_grad_ = nullptr,
        *head_grad_ = nullptr;
  std::vector<BlockParams> blocks_;       // local block i = layer first_layer + i
  std::vector<BlockParams> block_grads_;
  float* scratch_nc_ = nullptr;  // (N, C) temporaries inside one backward_input call (dtype bf16 in bf16)
  float* scratch_tt_ = nullptr;  // (T, T) attention backward work buffer
  float* shared_grads_ = nullptr;  // without split backward: layout_grads' one set, shared by every slot
  float* shared_grads_bf16_ = nullptr;  // its bf16 tensors in bf16 precision (Carvers)
  float* scratch_fch_ = nullptr;  // bf16 unfused: (N, 4C) the unrounded fc output the GELU reads (forward)
  bool fused_fc_gelu_ = false;    // bf16 and BackendSizes::fuses_fc_gelu: fc_forward in one op
  int chunk_rows_ = 0;             // last stage: rows per classifier chunk (R)
  float* logits_chunk_ = nullptr;  // last stage, logits not kept: (R, V) logits, then dlogits, of the chunk being worked on
  size_t workspace_floats_ = 0;    // workspace_floats(): the buffers above + scratch_nc_ (stage_memory)
  std::vector<Slot> slots_;
  std::vector<Slot> pool_;       // released slots with their carved buffers
  mutable std::vector<float> host_losses_;  // (N) staging for loss()
  float* recorded_losses_ = nullptr;  // (recorded_cap_, N) backend memory: record_loss()
  size_t recorded_ = 0, recorded_cap_ = 0;
};

}  // namespace

StageMemory stage_memory(const ModelConfig& config, const StageSpec& spec, int B, int T, Precision precision,
                         const StageNeeds& needs, const BackendSizes& sizes) {
  const Geometry g = geometry(config, spec, B, T, precision, needs, sizes);
  StageMemory m;
  const size_t params = total_numel(stage_tensors(config, spec));
  m.param_floats = params * (g.bf16 ? 3 : 2);  // masters, grads (+ bf16 weight copy)
  m.slot_floats = slot_sizes(g).floats(g);
  const size_t NC = g.N() * size_t(g.C);
  // scratch_nc_ (a bf16 tensor in bf16), scratch_tt_
  m.workspace_floats = (g.bf16 ? g.bf16_floats(NC) : NC) + sizes.attention_scratch_floats(B, g.NH, T);
  if (g.bf16 && !sizes.fuses_fc_gelu(g.C)) m.workspace_floats += g.N() * 4 * size_t(g.C);  // scratch_fch_
  if (!needs.split_backward) m.workspace_floats += grad_sizes(g).floats(g);
  if (spec.has_head && !g.keep_logits)  // logits_chunk_ (kept logits are in the slot)
    m.workspace_floats += size_t(classifier_chunk_rows(g, needs, sizes)) * size_t(g.V);
  return m;
}

std::unique_ptr<StageModel> make_backend_stage_model(std::unique_ptr<Backend> backend, const ModelConfig& config,
                                                     const StageSpec& spec, int B, int T, Precision precision,
                                                     const StageNeeds& needs) {
  return std::make_unique<BackendStageModel>(std::move(backend), config, spec, B, T, precision, needs);
}

std::unique_ptr<StageModel> make_cpu_stage_model(const ModelConfig& config, const StageSpec& spec, int B, int T,
                                                 const StageNeeds& needs) {
  return make_backend_stage_model(make_cpu_backend(), config, spec, B, T, Precision::kFp32, needs);
}

}  // namespace pt
