// The pipeline schedule IR: one Action is a value type (kind, stage, micro-batch, peer, version)
// and a Schedule is, per pipeline rank, the ordered action list of ONE optimizer step. Builders
// (schedules/) emit the compute actions and the step (ALLREDUCE_GRAD per group, then STEP) of
// every stage; lower.h inserts the SEND/RECV pairs; validate.h,
// simulate.h and the executor all read the same lists, so the list that is tested is the list that
// runs.
//
// Index conventions (used by every file in pipeline/):
//   stage      global stage index in [0, num_stages); stage 0 holds the embedding, num_stages-1 the
//   loss (per pipeline: see Schedule::pipelines). microbatch micro-batch index in [0, microbatches) within one optimizer step; -1 for
//   STEP/ALLREDUCE_GRAD. rank       pipeline rank in [0, num_ranks); stage s lives on rank
//   stage_to_rank[s].
// Communication actions carry the LOCAL stage of the rank that executes them (PyTorch pipelining's
// rule):
//   SEND_ACT  (s, mb) -> peer : output of F(s, mb) to the rank of stage s+1
//   RECV_ACT  (s, mb) <- peer : input of F(s, mb) from the rank of stage s-1
//   SEND_GRAD (s, mb) -> peer : input-gradient of B/Bx(s, mb) to the rank of stage s-1
//   RECV_GRAD (s, mb) <- peer : output-gradient needed by B/Bx(s, mb) from the rank of stage s+1
// so SEND_ACT(s) pairs with RECV_ACT(s+1) and SEND_GRAD(s) pairs with RECV_GRAD(s-1), same
// micro-batch.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace pt {

// Enumerator names are the IR's text tokens (the lead's spec), hence not kName.
enum class ActionKind : uint8_t {
  F,   // forward of (stage, mb)
  B,   // full backward (input and weight gradients) of (stage, mb)
  Bx,  // zero-bubble split: backward for the input gradient (on the critical path)
  Bw,  // zero-bubble split: backward for the weight gradient (deferrable)
  SEND_ACT,
  RECV_ACT,
  SEND_GRAD,
  RECV_GRAD,
  STEP,            // optimizer step of `stage` (microbatch = -1)
  ALLREDUCE_GRAD,  // gradient reduction of `stage` over Action::group (microbatch = -1)
  // LocalSGD's round barrier (algorithms.md §5.4): the parameters and the optimizer state of
  // every replica of model stage `stage` (virtual stages p*model_stages + stage, p < pipelines;
  // `stage` < model_stages) become their element-wise mean. Group: replicas (":rep"); all of
  // them live on the rank that runs it, none has a micro-batch in flight (F done, B not yet) and
  // the versions do not change (they count optimizer updates). microbatch = -1.
  AVERAGE,
};
inline constexpr int kNumActionKinds = 11;

// The ranks an ALLREDUCE_GRAD sums over (AVERAGE: always kGroupReplicas), as bit flags: the data-parallel replicas of the stage
// (same pipeline rank, every dp replica) and/or the stage replicas of several pipelines (AMDP:
// the K replicas of a model stage). Text suffix ":dp", ":rep", ":dp+rep".
enum CollectiveGroup : uint8_t { kGroupData = 1, kGroupReplicas = 2 };

struct Action {
  ActionKind kind = ActionKind::F;
  uint8_t group = 0;  // ALLREDUCE_GRAD, AVERAGE only: CollectiveGroup bits; 0 for every other kind
  int stage = 0;
  int microbatch = 0;
  int peer_rank = -1;  // comm actions only: the other end
  int version =
      0;  // weight version an F/B reads; sync schedules run within one step and leave it 0
};

bool operator==(const Action& a, const Action& b);
inline bool operator!=(const Action& a, const Action& b) { return !(a == b); }

bool is_compute(ActionKind k);  // F, B, Bx, Bw
bool is_comm(ActionKind k);     // SEND_*/RECV_*
bool is_send(ActionKind k);
bool is_recv(ActionKind k);
bool is_group_action(ActionKind k);  // ALLREDUCE_GRAD, AVERAGE: name a group, carry no micro-batch
// STEP, ALLREDUCE_GRAD, AVERAGE: the update and model-state actions (no micro-batch).
bool is_state_action(ActionKind k);
const char* action_kind_name(ActionKind k);  // "F", "Bx", "SEND_ACT", ...

// Text form: <stage><KIND>[<mb>][->peer | <-peer][:group][@version]
//   "2F5"  "1B3"  "1Bx3"  "1Bw3"  "0SEND_ACT4->1"  "1RECV_ACT4<-0"  "1SEND_GRAD3->0"
//   "0RECV_GRAD3<-1" "0STEP"  "3ALLREDUCE_GRAD:dp"  "5ALLREDUCE_GRAD:rep"  "1AVERAGE:rep"
//   "2F5@7" (version 7;
//   omitted when 0). Sends print "->peer", receives "<-peer"; the peer is omitted when it is -1.
// The group suffix is printed when group != 0 ("dp", "rep", "dp+rep"); a text without one (the
// form before groups existed) parses with group 0.
std::string format_action(const Action& a);
// Inverse of format_action; an error names the offending text and what was expected.
Status parse_action(std::string_view text, Action* out);

struct Schedule {
  int num_ranks = 0;
  int num_stages = 0;
  int microbatches = 0;
  std::vector<int> stage_to_rank;             // size num_stages
  std::vector<std::vector<Action>> per_rank;  // size num_ranks; one optimizer step per rank
                                              // (asynchronous kinds: one drained segment)
  std::string name;                           // "1f1b", "interleaved_1f1b", ...
  // Several independent pipelines over the same ranks (AMDP, algorithms.md §2): pipeline p holds
  // the VIRTUAL stages p*model_stages .. p*model_stages + model_stages-1, virtual stage
  // p*model_stages + s being model stage s's replica in pipeline p. Data (activations, gradients)
  // flows only between chain neighbours inside one pipeline (v-1, v+1 with the same p); the K
  // replicas of a model stage meet only in ALLREDUCE_GRAD. Defaults = one pipeline whose
  // model_stages is num_stages (0 means num_stages), so every synchronous builder is unchanged.
  int pipelines = 1;
  int model_stages = 0;
  // PACI mem mode (§3.2 item 6): the executor keeps only the stage input and recomputes the
  // forward inside the backward with the live weights. The action order is the same as perf mode.
  bool recompute_in_backward = false;
  // Block-coordinate lists (RPD, algorithms.md §5.3): an F may have no backward (forward only: the
  // executor frees its slot at once) and a Bx no Bw (input gradient only, no weight gradient: its
  // slot is freed after it); a backward sends its input gradient only to a stage that runs a
  // backward of that micro-batch. validate.h checks these rules instead of "one backward per F".
  bool partial_backward = false;
};

// Stages per pipeline chain (model_stages, or num_stages when 0).
inline int chain_length(const Schedule& s) {
  return s.model_stages > 0 ? s.model_stages : s.num_stages;
}
// Chain neighbours of (virtual) stage v inside its pipeline, -1 at the pipeline's ends. `len` is
// chain_length(schedule), hoisted by callers that loop over many actions.
inline int chain_prev(int v, int len) { return v % len == 0 ? -1 : v - 1; }
inline int chain_next(int v, int len) { return v % len == len - 1 ? -1 : v + 1; }

// Looping placement (Megatron interleaved, BFPP): global stage c*num_ranks + d lives on rank d.
std::vector<int> looping_stage_to_rank(int num_ranks, int chunks);

// Total action count over all ranks.
int64_t num_actions(const Schedule& s);

// Rank x tick listing of a schedule: one row per tick (index into the per-rank list), one column
// per rank, PyTorch `_format_pipeline_order` style. With mark_rank/mark_tick >= 0 the row gets "<--
// ERROR HERE" and the cell a '*'; large schedules are cut to a window of ticks and ranks around the
// mark.
std::string format_schedule(const Schedule& s, int mark_rank = -1, int mark_tick = -1);

}  // namespace pt
