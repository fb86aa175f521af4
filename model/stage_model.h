// StageModel: the part of a GPT-2 that one pipeline stage owns, and the only model
// interface the pipeline sees. A stage covers transformer blocks [first_layer,
// last_layer); the first stage also owns the embeddings (wte, wpe), the last stage
// the final LayerNorm, the LM head and the loss.
//
// Parameters: one flat fp32 buffer per stage, laid out as the ordered list
// tensors(); every tensor carries its global id (its index in the full model's
// canonical order, param_layout.h), so norms and checkpoints can be combined
// across stages in a layout-independent order. Initialization of a tensor is a
// pure function of (seed, global id, element index): any layout gets the same
// weights.
//
// Tied embeddings: when the model ties the head to wte and this stage has the
// head, it holds its own copy of wte for the head, with a separate gradient
// (head_wte_grad). When the same stage also has the embedding, the two gradient
// contributions are still kept apart; the trainer sums embed + head in that
// order on every layout, so pp=1 and pp=S runs are bitwise equal.
//
// Activations live in slots, one per in-flight micro-batch; the pipeline picks
// the slot. Gradients accumulate (+=) across backward calls until zero_grads().
// The last stage keeps no (B, T, V) logits: its classifier runs in chunks of rows
// and the backward recomputes each chunk's logits (stage_model.cc).
//
// Host/device contract. params() and grads() are host memory on every backend.
// A backend that computes elsewhere (CUDA) keeps device copies and host mirrors
// (pinned), and transfers only at two hooks, which every caller that touches
// params()/grads() on the host must call (on the CPU backend they are no-ops):
//   - sync_params_to_device() after writing params() on the host (optimizer step,
//     checkpoint load, snapshot swaps, broadcasts): the next forward/backward sees
//     the host values. The host copy is the master: compute never writes params,
//     so reading params() on the host needs no hook.
//   - sync_grads_to_host() before reading grads() on the host (all-reduce, norm,
//     tied-embedding sum, optimizer). From then on the host copy is authoritative
//     until zero_grads(): the host may modify it (reductions write their result in
//     place), and a later backward accumulates onto the host values (they are sent
//     back first). Calling it again without a backward in between transfers nothing,
//     so it never overwrites a host-side reduction.
// init_params() and zero_grads() leave both copies consistent by themselves.
// Forward inputs/outputs and backward doutput/dinput are buffers of the model's
// boundary_memory(): host memory on the CPU, device memory of the model's backend on
// CUDA (host buffers are accepted everywhere too). A device output is written
// asynchronously on the model's stream: whoever reads it elsewhere waits for
// boundary_memory()->producer_event() first; a device input written elsewhere must be
// ordered before the call with consumer_wait (model/boundary_memory.h). loss() and
// host outputs return only when the data is on the host.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/backend_sizes.h"
#include "model/boundary_memory.h"
#include "model/config.h"
#include "model/precision.h"

namespace pt {

struct StageSpec {
  int first_layer = 0;   // first transformer block of this stage
  int last_layer = 0;    // one past the last block
  bool has_embedding = false;
  bool has_head = false;
};

struct ParamTensor {
  std::string name;            // e.g. "h3.attn.qkv_w", "wte", "lnf_w"
  int global_id = 0;           // index in the full model's canonical tensor order
  size_t offset = 0;           // in floats, into params()/grads()
  size_t numel = 0;
  std::vector<int> shape;      // row-major
  bool weight_decay = true;    // false for biases, LayerNorm and position table
  bool is_tied_head = false;   // the head's copy of wte (not counted in the norm)
};

// What the caller will ask of a stage model, so that it allocates only that
// (app/run_setup.cc derives it from the lowered schedule). The defaults allow
// everything.
struct StageNeeds {
  // backward_input/backward_weight (zero-bubble Bx/Bw) may be called, with other
  // slots' work in between: each slot then keeps its activation gradients from Bx
  // until Bw. false: only backward() is called, which runs each block's input and
  // weight gradients back to back in one set of gradient buffers shared by every
  // slot (one block's worth), and backward_input/backward_weight are refused.
  bool split_backward = true;
  // Rows per chunk of the last stage's classifier (head matmul + cross-entropy,
  // stage_model.cc); 0: as many as BackendSizes::classifier_chunk_bytes allows. The
  // chunk size changes fp32 summation order (the head's weight gradient is summed
  // chunk by chunk), never the set of values computed.
  int classifier_chunk_rows = 0;
};

class StageModel {
 public:
  virtual ~StageModel() = default;

  virtual const ModelConfig& config() const = 0;
  virtual const StageSpec& spec() const = 0;
  virtual int batch_size() const = 0;   // B
  virtual int seq_len() const = 0;      // T

  virtual const std::vector<ParamTensor>& tensors() const = 0;
  virtual size_t num_params() const = 0;
  virtual float* params() = 0;          // host fp32 master weights
  virtual float* grads() = 0;           // host, same layout as params()
  virtual void init_params(uint64_t seed) = 0;
  virtual void zero_grads() = 0;        // zeroes the host and the device copy

  // The host/device hooks (see the header comment). Defaults: host-only models.
  virtual void sync_params_to_device() {}
  virtual void sync_grads_to_host() {}

  // Blocks until every op issued so far has finished (on CUDA ops are
  // asynchronous on a stream); for timing. Not needed for correctness: the host
  // outputs and loss() already wait. No-op on host-only models.
  virtual void synchronize() {}
  // Peak bytes of backend (device) memory this model's backend has held at once
  // (Backend::peak_device_bytes); 0 where not tracked (CPU).
  virtual size_t peak_device_bytes() const { return 0; }

  // Where the executor keeps this stage's boundary buffers (see the header comment).
  // Owned by the caller; refers to the model, which must outlive it.
  virtual std::unique_ptr<BoundaryMemory> boundary_memory() { return make_host_boundary_memory(); }

  // Forward of one micro-batch into `slot`.
  //   first stage: tokens (B, T) int32; others: input (B, T, C).
  //   last stage:  targets (B, T) int32, computes per-token losses; output unused.
  //   other stages: writes output (B, T, C).
  virtual void forward(int slot, const int32_t* tokens, const float* input, const int32_t* targets,
                       float* output) = 0;
  // Mean cross-entropy of the micro-batch in `slot` (last stage only).
  virtual float loss(int slot) const = 0;

  // Full backward of the micro-batch in `slot`: accumulates parameter gradients.
  //   last stage: d(loss)/d(logits) is scaled by loss_scale (1/(m*dp) for a mean); doutput unused.
  //   other stages: doutput (B, T, C) is the gradient of the stage output.
  //   non-first stages write dinput (B, T, C).
  // Equals backward_input followed by backward_weight, bit for bit.
  virtual void backward(int slot, const float* doutput, float* dinput, float loss_scale) = 0;
  // Split backward for zero-bubble schedules: input gradients now (keeps what the
  // weight gradients need in the slot), weight gradients later.
  virtual void backward_input(int slot, const float* doutput, float* dinput, float loss_scale) = 0;
  virtual void backward_weight(int slot) = 0;

  // Gradient-ready hook (bucketed data-parallel all-reduce, pipeline/grad_buckets.h):
  // during backward()/backward_weight(), fn(from) says grads()[from, num_params()) will
  // not change again in this call (weight gradients are produced last tensor first:
  // head, final LayerNorm, blocks from the last, embedding). Called only where grads()
  // is the memory the backward writes (host-memory backends); never on mirrored ones.
  // An empty fn removes the hook. Default: no hook.
  virtual void set_grads_ready_hook(std::function<void(size_t from)> fn) { (void)fn; }

  // Frees the slot's activations for reuse (after its backward).
  virtual void release(int slot) = 0;
  // Floats of backend memory each slot (in-flight micro-batch) holds.
  virtual size_t activation_floats_per_slot() const = 0;
  // Floats of backend memory held once per model besides parameters, gradients
  // and slots: the classifier's logits chunk, the shared activation gradients
  // (StageNeeds::split_backward false) and per-call scratch.
  virtual size_t workspace_floats() const { return 0; }
};

// What a stage model holds in backend memory, in floats, from the layout code the
// model itself uses (so `pipetrain plan` can size a GPU run anywhere).
struct StageMemory {
  size_t param_floats = 0;      // fp32 masters + gradients (+ the bf16 weight copy)
  size_t slot_floats = 0;       // activation_floats_per_slot(), per in-flight micro-batch
  size_t workspace_floats = 0;  // workspace_floats()
};
StageMemory stage_memory(const ModelConfig& config, const StageSpec& spec, int B, int T, Precision precision,
                         const StageNeeds& needs, const BackendSizes& sizes);

// CPU (fp32, OpenBLAS) implementation. The backend-choosing factory (cpu | cuda |
// auto) is model/stage_model_factory.h.
std::unique_ptr<StageModel> make_cpu_stage_model(const ModelConfig& config, const StageSpec& spec, int B, int T,
                                                 const StageNeeds& needs = {});

}  // namespace pt
