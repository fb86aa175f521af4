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
// Memory contract (the device-resident step). params() and grads() are BACKEND
// memory, the stage's only copy: host memory on the CPU backend, device memory on
// CUDA. The optimizer update runs there (dp sum, tied-embedding sum, replica sums,
// norm, clip, optimizer: app/optimizer_step.h), with the vector ops below and the
// optimizer in the backend's memory space (stream()). The host sees the values only
// at explicit points, through download()/upload() (params_to_host()/params_from_host()
// for the whole buffer): checkpoint save/load, run.save_params, replay, the drain
// checks of AMDP and LocalSGD, and
// collectives that cannot take device memory (staged, app/backend_staging.h).
// Every such transfer is counted in transfers(), so a test can check that a step
// makes none. Rules for callers:
//   - host_memory() false (CUDA, and the CPU backend emulating device memory for
//     tests): never dereference params()/grads() on the host; use the transfers.
//   - after writing params() other than by upload() (an optimizer step, a collective
//     writing in place), call params_written(): the bf16 weight copy is derived from
//     the masters before the next forward.
//   - on CUDA, work is asynchronous on stream(): synchronize() before handing
//     params()/grads() to code that runs on another stream (NCCL).
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
  // stage_model.cc); 0: all rows with kept logits (keep_logits in bf16), else as many as
  // BackendSizes::classifier_chunk_bytes allows. The
  // chunk size changes fp32 summation order (the head's weight gradient is summed
  // chunk by chunk), never the set of values computed.
  int classifier_chunk_rows = 0;
  // bf16 precision, last stage: each slot keeps its (N, V) logits, of dtype bf16, from
  // the forward to the backward, which then turns them into dlogits in place instead of
  // recomputing them (one head GEMM fewer per micro-batch, and no fp32 chunk buffer);
  // N·V bf16 elements more per slot. Recomputed anyway when the weights changed since
  // the forward. The same values either way, up to summation order (bitwise on the CPU
  // with the same classifier_chunk_rows; stage_model.cc). fp32 always recomputes (its
  // logits would take 4 bytes each), as does false.
  bool keep_logits = true;
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
  virtual float* params() = 0;          // backend memory: fp32 master weights
  virtual float* grads() = 0;           // backend memory, same layout as params()
  virtual void init_params(uint64_t seed) = 0;
  virtual void zero_grads() = 0;

  // ---- memory (see the header comment) ----
  // Whether host code may dereference params()/grads() (Backend::host_memory).
  virtual bool host_memory() const = 0;
  // The backend's CUDA stream (cudaStream_t), null on the CPU: a non-null stream means
  // params()/grads() are device memory and device optimizer states step them on it.
  virtual void* stream() const = 0;
  // Host <-> backend copies of n floats at a range inside params() or grads(). download()
  // returns once the data is on the host; upload() once host_src may be reused, the data
  // arriving in stream order (this model's later ops see it; another stream: synchronize()
  // or an event first, see above). upload() into params() implies params_written().
  virtual void download(float* host_dst, const float* src, size_t n) = 0;
  virtual void upload(float* dst, const float* host_src, size_t n) = 0;
  void params_to_host(float* host_dst) { download(host_dst, params(), num_params()); }
  void params_from_host(const float* host_src) { upload(params(), host_src, num_params()); }
  // params() changed on the backend (not by upload): refresh what derives from it.
  virtual void params_written() = 0;
  // Floats moved by download()/upload() since construction, by buffer and direction.
  struct Transfers {
    int64_t params_to_host = 0, params_from_host = 0, grads_to_host = 0, grads_from_host = 0;
    int64_t total() const { return params_to_host + params_from_host + grads_to_host + grads_from_host; }
  };
  virtual Transfers transfers() const = 0;

  // ---- the step's vector ops, on backend memory (Backend's step ops) ----
  // out[k] (host, tensors().size() doubles) = sum of squares of grads() of tensor k, in
  // double, in the backend's fixed order (Backend::sums_of_squares). Per tensor, so the
  // global norm, combined in global tensor order (optim/grad_norm.h), has the same bits
  // on every pipeline layout.
  virtual void grad_sums_of_squares(double* out) = 0;
  // out = a + b (n floats), elementwise, and a copy: pointers into any stage model's
  // params()/grads() on this process's device. out may alias a or b. Issued on this model's
  // stream: order it after another model that wrote an input (synchronize() that one, or
  // wait_event(its record_event())).
  virtual void add(float* out, const float* a, const float* b, size_t n) = 0;
  virtual void copy(float* dst, const float* src, size_t n) = 0;  // backend to backend
  // Every bufs[p] (count host-held pointers to n floats in stage models' backend memory on this
  // device) = their element-wise mean, Backend::average's formula. Same stream rule as add().
  virtual void average(float* const* bufs, int count, size_t n) = 0;

  // ---- weight stashing (asynchronous schedules: a forward or backward of an older
  // parameter version, pipeline/executor.h); the copies stay in backend memory ----
  virtual void stash_params(int key) = 0;        // stash[key] = params() (replaces)
  virtual void swap_stashed_params(int key) = 0; // exchange params() and stash[key]; twice restores
  virtual void drop_stashed_params(int key) = 0;

  // Blocks until every op issued so far has finished (on CUDA ops are
  // asynchronous on a stream): for timing, and before handing params()/grads() to work
  // on another stream (NCCL, another stage model's ops). Host outputs, loss() and
  // download() already wait. No-op on the CPU.
  virtual void synchronize() {}
  // Ordering between the streams of stage models on one device without a host wait
  // (Backend::record_event/wait_event): record_event() returns an event completing once
  // every op issued so far on this model has finished (the backend's, valid until its next
  // record_event: consume it at once); wait_event(e) makes this model's ops issued from
  // now on wait for e. nullptr and a no-op where ops are synchronous (CPU).
  virtual void* record_event() { return nullptr; }
  virtual void wait_event(void* event) { (void)event; }
  // Device timing of actions (Backend::timing_mark/timing_marks): a mark's index, -1 on
  // the CPU; then per mark, seconds before timing_marks() returned that the device reached it.
  virtual int timing_mark() { return -1; }
  virtual void timing_marks(std::vector<double>* before_now) { before_now->clear(); }
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
  // Mean cross-entropy of the micro-batch in `slot` (last stage only). Waits for the
  // device on CUDA.
  virtual float loss(int slot) const = 0;
  // The same without a wait per micro-batch (last stage): record_loss(slot) keeps the slot's
  // per-token losses in backend memory (a device-side copy, issued in stream order);
  // take_losses() returns the loss() of every micro-batch recorded since the last call, in
  // record order, bitwise, after one download of them all, and forgets them.
  virtual void record_loss(int slot) = 0;
  virtual std::vector<float> take_losses() = 0;

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
  // during backward()/backward_weight(), fn(from, ready) says grads()[from, num_params())
  // will not change again in this call (weight gradients are produced last tensor first:
  // head, final LayerNorm, blocks from the last, embedding). Host-memory gradients are
  // final when fn runs (ready = null); device gradients are still being written on the
  // model's stream, and `ready` is an event (Backend::record_event) that completes once
  // they are final: a consumer on another stream waits for it before reading them, and
  // must not keep it past the call (the backend reuses it).
  // An empty fn removes the hook. Default: no hook.
  virtual void set_grads_ready_hook(std::function<void(size_t from, void* ready)> fn) { (void)fn; }

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
