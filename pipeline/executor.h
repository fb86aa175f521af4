// Executor: the one interpreter of lowered schedules. It walks this rank's action
// list for one optimizer step, calling StageModel forward/backward for compute
// actions and the Transport for SEND/RECV, and owns the per-(stage, micro-batch)
// boundary buffers. Every schedule, sync or split-backward, runs through run_step.
//
// Buffers: activations inside a StageModel live in slots taken at F and returned
// at B (or Bw; in a partial_backward list also right after a forward-only F or a Bx
// without Bw), so a stage holds only its in-flight micro-batches; the boundary
// tensors (stage inputs/outputs and their gradients, (B, T, C) each) are kept in
// pools keyed by (stage, micro-batch) and reused across steps. They come from each
// stage's StageModel::boundary_memory() (model/boundary_memory.h): host memory on the
// CPU, device memory on CUDA. A device buffer goes to the transport as is when it
// accepts device memory (NCCL: a send waits for the producer's event, the consumer
// waits for the receive's event), else through a host staging copy per buffer (MPI).
// Adjacent comm actions that comm_groups() groups are issued between
// Transport::group_begin/group_end.
#pragma once

#include <cstdint>
#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <vector>

#include "model/stage_model.h"
#include "pipeline/action.h"
#include "pipeline/trace.h"
#include "pipeline/transport.h"
#include "pipeline/versions.h"

namespace pt {

// Fills the (B, T) inputs and targets of micro-batch `microbatch` of the current list.
using BatchFn = std::function<void(int microbatch, int32_t* inputs, int32_t* targets)>;
// Callbacks for the collective and optimizer actions of a list: `step(stage)` applies
// one optimizer update to that stage (STEP); `reduce(stage, group)` sums the stage's
// gradients over the ranks of `group` (ALLREDUCE_GRAD; CollectiveGroup bits: the
// data-parallel replicas and/or AMDP's stage replicas). An empty callback makes its
// actions no-ops (the version bookkeeping still runs), so a synchronous list runs
// without callbacks and its caller steps afterwards; a STEP followed by more compute
// on its rank (an asynchronous list) needs `step`.
// `grads_final_next(stage)` is called right before the stage's last weight-gradient
// action (B or Bw) ahead of an ALLREDUCE_GRAD over the data group alone: its weight
// gradients become final during that action (the bucketed all-reduce starts buckets
// then, pipeline/grad_buckets.h).
// `average(stage)` (AVERAGE, LocalSGD's round barrier) replaces the parameters and the optimizer
// state of every local replica of model stage `stage` with their mean.
struct StageCallbacks {
  std::function<void(int stage)> step;
  std::function<void(int stage, uint8_t group)> reduce;
  std::function<void(int stage)> average;
  std::function<void(int stage)> grads_final_next;
};

struct StepOutput {
  // Per micro-batch; only on the rank that holds the last stage. Read once at the end of the
  // list (StageModel::record_loss / take_losses), so a device computes on without a wait per
  // micro-batch.
  std::vector<float> losses;
  // Seconds after run_step began at which each loss's forward returned: when the loss was
  // ready on the CPU (ops are synchronous), when its work was issued on CUDA (the stream
  // completes it later; the values themselves are read at the end of the list).
  std::vector<double> loss_times;
  int peak_slots = 0;                   // most activation slots held at once, summed over local stages
  // One per (micro-batch, local stage) whose gradient was formed, in backward order; for a
  // partial_backward list then the others (forward only, Bx only), in forward order.
  std::vector<VersionRecord> versions;
  std::chrono::steady_clock::time_point started;  // when run_step began (span times count from it)
  std::vector<ActionSpan> spans;        // with set_timing(true): one per action in list order, then the send wait
};

class Executor {
 public:
  // `lowered`: the schedule after lower(); `stages[s]` is the model of global stage s
  // when this rank owns it, else nullptr. Does not own the models or the transport.
  Executor(const Schedule& lowered, int pipeline_rank, std::vector<StageModel*> stages,
           Transport* transport);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Runs this rank's whole action list: one optimizer step for a synchronous
  // schedule (its ALLREDUCE_GRAD/STEP tail calls the callbacks when given; without
  // them the caller reduces and steps afterwards), or a continuous asynchronous
  // segment whose STEP actions call `step`. Gradients
  // accumulate in the stage models. loss_scale multiplies d(loss)/d(logits).
  // F/B actions read the weight version in Action::version: the live weights when
  // it equals the stage's live version, else a snapshot kept from that version
  // (weight stashing, in the stage model's backend memory: StageModel::stash_params)
  // for exactly as long as later actions reference it.
  StepOutput run_step(const BatchFn& batch, float loss_scale, const StageCallbacks& callbacks = {});

  // Forward-only pass of `count` micro-batches through the stages of pipeline 0
  // (evaluation; AMDP's replicas hold identical weights at drain points).
  // Returns per-micro-batch losses on the last stage's rank, empty elsewhere (recorded in the
  // stage's backend memory and read once at the end: StageModel::record_loss/take_losses).
  std::vector<float> forward_only(int count, const BatchFn& batch);

  // Records StepOutput::spans (two clock reads and one push per action). Off by default.
  void set_timing(bool on) { timing_ = on; }

 private:
  struct Boundary {
    float* data = nullptr;  // in the stage's boundary memory
    float* host = nullptr;  // host staging copy (device memory, host-only transport)
  };
  using Pool = std::map<int64_t, Boundary>;
  // A receive posted but not yet handed to its consumer (inside a group: until group_end).
  struct PendingRecv {
    int stage = 0;
    Boundary* buffer = nullptr;
    void* event = nullptr;
  };
  float* buffer(Pool& pool, int stage, int microbatch) { return boundary(pool, stage, microbatch).data; }
  Boundary& boundary(Pool& pool, int stage, int microbatch);
  bool staged(int stage) const;  // device memory through a host-only transport
  void send_boundary(Pool& pool, int stage, int microbatch, int peer, int tag);
  void recv_boundary(Pool& pool, int stage, int microbatch, int peer, int tag);
  void finish_receives();
  // Orders stage `consumer`'s next op after what local stage `producer` issued so far.
  void local_order(int producer, int consumer);
  void free_pool(Pool& pool);
  int take_slot(int stage);
  void give_slot(int stage, int slot);
  template <class Fn> void with_version(int stage, int version, Fn&& fn);
  void check_average(int stage) const;
  // Runs F of (stage, mb) into a fresh slot with the weights of `version`.
  int forward_into_slot(int stage, int microbatch, int version, const BatchFn& batch);

  // Chain structure (virtual stages for several pipelines, Schedule::pipelines).
  bool is_first(int v) const { return v % chain_ == 0; }
  bool is_last(int v) const { return v % chain_ == chain_ - 1; }

  const Schedule& schedule_;
  int rank_;
  bool timing_ = false;
  int chain_ = 1;  // stages per pipeline chain
  std::vector<StageModel*> stages_;
  Transport* transport_;
  size_t act_floats_ = 0;  // B*T*C
  size_t tokens_ = 0;      // B*T
  std::vector<std::unique_ptr<BoundaryMemory>> memory_;  // per stage; null where not local
  Pool act_in_, act_out_, grad_in_, grad_out_;
  std::vector<PendingRecv> pending_recvs_;
  std::vector<uint8_t> group_open_, group_close_;  // per tick of this rank's list (comm_groups)
  std::vector<std::vector<int>> free_slots_;  // per stage
  std::vector<int> slots_in_use_;             // per stage
  std::vector<int> next_slot_;                // per stage
  std::map<int64_t, int> slot_of_;            // (stage, mb) -> slot
  std::vector<int> live_version_;             // per stage: updates applied so far in this list
  // Per stage: versions whose parameters are stashed in the stage model (StageModel weight
  // stashing, backend memory; the key is the version).
  std::vector<std::set<int>> stashed_;
  std::vector<int32_t> inputs_, targets_;     // (B, T) token scratch
};

}  // namespace pt
