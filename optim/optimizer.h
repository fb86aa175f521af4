// Optimizer: the per-stage update rule behind `optimizer.kind` (looked up in
// optim/registry.h, nowhere else), and OptimizerState: what it keeps per stage.
//
// A stage's parameters and gradients are one flat fp32 buffer each, laid out as a
// list of tensors (OptimTensor, the optimizer's view of StageModel::tensors();
// optim/ does not depend on model/). make_state() allocates zeroed state for one
// such layout in one memory space; step() applies one update to the stage.
//
// State is named: each parameter tensor k has a list of named state tensors
// (AdamW: "adam_m", "adam_v", numel floats each, i.e. slices of two stage-wide
// buffers in the params' layout). Checkpoints save and load them by (parameter
// tensor global id, state name), so a checkpoint maps onto any pipeline layout.
//
// Memory: StageBuffers and the state name their memory space. The host path is the
// reference, and what the trainer runs on the CPU backend (whose params()/grads() are
// host memory); on CUDA the trainer hands the stage's device params()/grads() to a
// kDevice state, which steps them on the backend's stream with the twins in
// optim/cuda/ (CUDA builds; adamw and basis_rotation have one: has_device_state()). State tensors are always
// reached through host views: a kDevice state keeps a host mirror, brought up to
// date by sync_to_host() (before reading it: checkpoint save) and sent back by
// sync_to_device() (after writing it: checkpoint load), StageModel's contract.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/memory_space.h"  // MemorySpace: where params, gradients and state live

namespace pt {

// One tensor of a stage's flat parameter buffer.
struct OptimTensor {
  std::string name;          // canonical name: "wte", "h3.attn.qkv_w", ...
  size_t offset = 0;         // in floats, into the stage's params/grads
  size_t numel = 0;
  std::vector<int> shape;    // row-major (matrix optimizers need it)
  bool weight_decay = true;  // the model's flag: false for biases, LayerNorm and wpe
};

// optimizer.basis_rotation.* (optim/basis_rotation.h; the allowed values are listed there).
struct BasisRotationOptions {
  std::string geometry = "bi";    // bi: both sides rotated | uni: only the smaller side
  std::string source = "2nd";     // 2nd: eigenbases of EMA(G·Gᵀ), EMA(Gᵀ·G) | 1st: singular bases of the momentum
  int64_t update_freq = 10;       // a rotated matrix refreshes its basis every update_freq updates (>= 1)
  double shampoo_beta = -1.0;     // EMA factor of the statistics; < 0: beta2
  int64_t max_precond_dim = 8192; // a side longer than this stays unrotated (identity)
};

// The optimizer.* hyper-parameters every optimizer is built from (fixed for a run).
struct OptimizerOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decay_embeddings = true;  // "wte" decays only when its own flag and this are set
  double momentum_decay = 0.004; // nadamw: psi of the momentum schedule (optim/nadamw.h)
  BasisRotationOptions basis_rotation;
};

// One update of one stage.
struct StepArgs {
  double lr = 0.0;         // learning rate of this update
  float grad_scale = 1.0f; // multiplies every gradient first (the caller's clip factor)
  int64_t t = 1;           // 1-based count of this stage's updates (bias correction)
};

// A stage's parameters and gradients: n floats each, in the layout given to make_state.
struct StageBuffers {
  float* params = nullptr;
  const float* grads = nullptr;  // read only: step() never changes the gradients
  size_t n = 0;
  MemorySpace space = MemorySpace::kHost;
  void* stream = nullptr;        // cudaStream_t when space is kDevice
};

// A named block of state floats (host memory: the state's host view).
struct StateTensor {
  std::string name;  // unique among one parameter tensor's state ("adam_m")
  float* data = nullptr;
  size_t numel = 0;
};

class OptimizerState {
 public:
  virtual ~OptimizerState() = default;
  virtual MemorySpace space() const = 0;
  // Every state tensor of the stage (AdamW: adam_m, adam_v of n floats each; names are
  // unique within the stage, e.g. basis_rotation adds "h0.attn.qkv_w:rot_q_left").
  virtual std::vector<StateTensor> tensors() = 0;
  // The state of parameter tensor k of the layout, by name: what a checkpoint stores per tensor.
  virtual std::vector<StateTensor> tensor_state(size_t k) = 0;
  // Floats held in all, the sum of tensors() sizes (0 never: a stage without state has no object).
  virtual size_t total_floats() const = 0;
  // The host-view hooks (see the header comment); no-ops for kHost states.
  virtual void sync_to_host() {}
  virtual void sync_to_device() {}
  // kDevice states: tensors() again (same order, names and sizes) with data pointing at the
  // device memory itself, for backend ops on the state (LocalSGD's average of copies, no
  // host round trip). Empty for host states.
  virtual std::vector<StateTensor> device_tensors() { return {}; }
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual const char* kind() const = 0;
  // The names of the state tensors a parameter tensor can have, in tensor_state() order;
  // one tensor's tensor_state() is this list or a subsequence of it (basis_rotation:
  // only rotated matrices carry bases and statistics).
  virtual std::vector<std::string> state_names() const = 0;
  // Floats make_state would hold for this layout (memory planning and checks).
  virtual size_t state_floats(const std::vector<OptimTensor>& layout, size_t n) const = 0;
  // Whether make_state(..., kDevice) exists for this kind in CUDA builds (a device twin:
  // adamw, basis_rotation). A device-resident stage with an optimizer without one steps
  // through host copies of its params and grads (app/optimizer_step.h).
  virtual bool has_device_state() const { return false; }
  // Zero-initialised state of a stage of n parameters laid out as `layout`.
  virtual std::unique_ptr<OptimizerState> make_state(const std::vector<OptimTensor>& layout, size_t n,
                                                     MemorySpace space) const = 0;
  // One update: params change, state advances, grads are only read. `state` comes from
  // this kind's make_state for the same layout and memory space as `b`.
  virtual void step(OptimizerState& state, const StageBuffers& b, const StepArgs& a) const = 0;
};

}  // namespace pt
