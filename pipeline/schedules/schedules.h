// Pure schedule builders: each maps a ScheduleSpec to a Schedule for ONE optimizer step; lower.h
// adds the communication. No MPI, no model, no clock: the same spec always gives the same lists.
// Invariants every builder keeps (asserted in tests/pipeline/schedules_test.cc):
//   * each (stage, micro-batch) has exactly one F and one B (or one Bx and one Bw) on
//   stage_to_rank[stage];
//   * on every stage the backwards (B or Bx, and Bw) run in ascending micro-batch order, so
//   gradient
//     accumulation adds micro-batches in the same order as the single-rank run (bitwise-equal
//     gradients);
//   * forwards on a stage run in ascending micro-batch order.
// The step is in the lists (make_schedule adds what the builders do not):
//   * synchronous kinds: after each rank's last compute action, ALLREDUCE_GRAD(stage, data) for
//     each stage of the rank in ascending stage order, then STEP(stage) in the same order (every
//     reduction of a rank before its first STEP: the global-norm clip needs all gradients);
//   * asynchronous kinds: ALLREDUCE_GRAD(stage, data) immediately before every STEP(stage).
// Asynchronous kinds (ScheduleTraits::asynchronous: pipedream, pipedream_2bw, paci, paci_flush,
// amdp, localsgd, rpd) generate ONE SEGMENT between two drain points instead of one step: segment_updates
// optimizer updates per stage of `microbatches` (= m) micro-batches each, so
// Schedule::microbatches = N = m x segment_updates (id g belongs to update g / m). Their lists
// carry STEP(stage) right after the backward that triggers the update (AMDP: ALLREDUCE_GRAD over
// the replicas + STEP in its step slot) and Action::version = the version of the stage's weights
// each F/B reads, counted from 0 at segment start. Their orders come from event-simulating each
// schedule's rule once with unit costs F=1, B=2 (localsgd: §5.4's F = B = 1) and are then fixed
// data. localsgd's lists also carry AVERAGE(s) (action.h) at each round barrier.
// rpd is the exception (rpd.h): segment_updates GLOBAL updates of one micro-batch, each stepping
// one drawn stage.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "pipeline/action.h"

namespace pt {

struct ScheduleSpec {
  std::string kind;  // a registry name (schedule_kinds)                (YAML: schedule.kind)
  int ranks = 1;     // N_PP, pipeline ranks                            (YAML: parallel.pp)
  int chunks = 1;    // v, model chunks per rank (interleaved_1f1b, bfpp) (YAML: schedule.chunks)
  int microbatches = 1;  // m per optimizer step                 (YAML: training.microbatches)
  int bfpp_breadth = 0;  // bfpp: micro-batches per breadth-first group; 0 = m (pure breadth-first)
  // Asynchronous kinds only. microbatches = m means: PACI's accumulation a, PipeDream's
  // accumulation (1 = an update per backward), 2BW's m >= S, AMDP's micro-batches per iteration
  // (a multiple of S).
  int segment_updates = 1;  // optimizer updates per stage per segment (from the drain points)
  // The PipeDream-LR learning-rate correction (optim/lr_schedule.h): none | stagewise, and
  // its T_corr (0 = training.steps). Only the checks read them; the STEP applies it.
  std::string pipedream_lr_correction = "none";  // (schedule.pipedream.lr_correction)
  int64_t pipedream_lr_correction_steps = 0;     // (schedule.pipedream.lr_correction_steps)
  // paci: per-stage cap on in-flight micro-batches, each in [1, S-s]; empty = S-s (the paper's
  // default).                                                  (schedule.paci.allowed_lagging)
  std::vector<int> paci_allowed_lagging;
  std::string paci_mode = "perf";  // paci: perf | mem (mem: recompute in backward) (schedule.paci.mode)
  // amdp: clean (ALLREDUCE_GRAD + STEP together in the step slot) | reference (S=4, 8 only:
  // ALLREDUCE_GRAD right after a replica's last backward of the iteration, STEP at the reference
  // code's U; backwards in between are dropped on non-owners)        (schedule.amdp.step_slot)
  std::string amdp_step_slot = "clean";
  // localsgd (§5.4): M independent model copies over the same ranks (0 = ranks) and K, the
  // updates per round between two averages.   (schedule.localsgd.copies, .local_steps)
  int localsgd_copies = 0;
  int localsgd_local_steps = 2;
  // rpd (§5.3): read delays up to max_delay global updates; stage_sampling uniform | cyclic;
  // delay_sampling uniform | deterministic. The draws of global update k are a pure function of
  // (seed, k) (rpd.h), so each segment's list continues the run's sequence from first_update.
  int rpd_max_delay = 0;                        // (schedule.rpd.max_delay)
  std::string rpd_stage_sampling = "uniform";   // (schedule.rpd.stage_sampling)
  std::string rpd_delay_sampling = "uniform";   // (schedule.rpd.delay_sampling)
  uint64_t seed = 0;                            // run.seed
  int64_t first_update = 0;                     // global index of the segment's first update
  // Keys only the checks read (check_schedule_spec); the builders ignore them.
  bool tie_embeddings = false;  // model.tie_embeddings
  bool amdp_zero_owner = true;  // schedule.amdp.zero_owner
};

// How the gradients of a STEP are clipped: synchronous kinds by the global norm over every stage
// of every rank (optimizer.grad_clip), asynchronous kinds each stage by its own norm at its STEP.
enum class ClipPolicy : uint8_t { kGlobalNorm, kPerStage };

// One registry entry (registry.cc): all that code outside pipeline/schedules/ may know about a
// schedule kind. Nothing else compares a schedule name.
struct ScheduleTraits {
  const char* name;                                 // schedule.kind
  Status (*build)(const ScheduleSpec&, Schedule*);  // compute actions (+ STEPs for async kinds)
  Status (*check)(const ScheduleSpec&);  // the kind's own rules after the common ones; may be null
  bool asynchronous;     // one drained segment per list, STEPs inside it (file comment)
  bool chunks;           // takes schedule.chunks > 1: several stages per rank, looping placement
  bool tied_embeddings;  // supports model.tie_embeddings (first and last stage share wte)
  // Several pipelines hold replicas of every model stage (AMDP): ALLREDUCE_GRAD over the replicas,
  // schedule.amdp.* apply, and with schedule.amdp.zero_owner only the owner of a model stage
  // (the rank of pipeline 0's copy) keeps its optimizer state.
  bool replicas;
  bool recompute_mode;  // schedule.paci.mode applies: mem recomputes the forward in the backward
  bool lagging_caps;    // schedule.paci.allowed_lagging applies
  ClipPolicy clip;
  // schedule.pipedream.lr_correction applies: its STEPs update each stage with weight
  // stashing at a delay of S-1-s of its own updates (the PipeDream-LR correction).
  bool stagewise_lr = false;
  // Several independent model copies over the same ranks (LocalSGD): each copy steps on its own
  // micro-batches (no gradient sum), AVERAGE joins them every schedule.localsgd.local_steps
  // updates, schedule.localsgd.* apply, and a drained segment must be a whole number of rounds.
  bool averaged_copies = false;
  // One STEP per update, of one stage (RPD): the update index of a STEP is the micro-batch of the
  // backward before it, the learning rate is the global update's, and each segment's list depends
  // on its first update (ScheduleSpec::first_update).
  bool block_coordinate = false;
};

// schedule.kind when a config leaves it out.
inline constexpr const char* kDefaultScheduleKind = "1f1b";

// The entry of `kind`, or nullptr when no schedule has that name.
const ScheduleTraits* find_schedule(const std::string& kind);

// The schedule kinds make_schedule knows, in the order of the docs.
const char* const* schedule_kinds(int* count);
// "gpipe, 1f1b, ...": the kinds for messages.
std::string schedule_kind_list();

// Every user-facing rule of a spec, in one copy: the rules common to all kinds, then the kind's
// own. Used by config validation, `pipetrain plan` and make_schedule. A message starts with the
// config key that must change (training.microbatches, parallel.pp, schedule.chunks, ...).
Status check_schedule_spec(const ScheduleSpec& spec);

// check_schedule_spec, then the kind's builder, then the step actions (file comment).
Status make_schedule(const ScheduleSpec& spec, Schedule* out);

// True for the kinds whose Schedule is a drained asynchronous segment (see the file comment).
bool is_async_kind(const std::string& kind);

// GPipe (algorithms.md §1.1): all m forwards, then all m backwards, both ascending. One stage per
// rank.
Status build_gpipe(const ScheduleSpec& spec, Schedule* out);
// 1F1B / PipeDream-Flush (§1.2): min(S-s-1, m) warm-up forwards, then F/B pairs, then the cool-down
// B's.
Status build_one_f_one_b(const ScheduleSpec& spec, Schedule* out);
// Megatron interleaved 1F1B (§1.3): looping placement, depth-first order; needs m % ranks == 0.
Status build_interleaved_1f1b(const ScheduleSpec& spec, Schedule* out);
// BFPP (§6): looping placement, breadth-first order; breadth x depth hybrid of §6.3.
Status build_bfpp(const ScheduleSpec& spec, Schedule* out);
// ZB-H1 (§1.6): 1F1B shape with the backward split into Bx and Bw; rank s holds back s
// weight-gradient passes.
Status build_zb_h1(const ScheduleSpec& spec, Schedule* out);

// PipeDream (§1.4): async 1F1B, stage 0 admits while fewer than S are in flight, STEP after every
// m-th backward (m = accumulation, default 1); weight stashing: B reads its F's version.
Status build_pipedream(const ScheduleSpec& spec, Schedule* out);
// PipeDream-2BW (§1.5): PipeDream's order with m >= S; every F/B of update t reads version
// max(0, t-1) (double buffering); STEP after every m-th backward.
Status build_pipedream_2bw(const ScheduleSpec& spec, Schedule* out);
// PACI (§3.2): per-stage worker loop, backward first, forward while in_flight < allowed_lagging;
// STEP after every a-th backward (a = m); F and B read the live version (no stashing).
Status build_paci(const ScheduleSpec& spec, Schedule* out);
// PACI's flush baseline (§3.2 item 7): stage 0 forwards only if (fwd-bwd) < S and
// (fwd % a != 0 or fwd == bwd): 1F1B-flush over the segment, drift 0.
Status build_paci_flush(const ScheduleSpec& spec, Schedule* out);
// LocalSGD-1F1B (§5.4): M copies (virtual stages p*S + s, all on rank s), micro-batch g in copy
// g mod M, greedy 1F1B with zero staleness (F of g on s after the copy's previous update there),
// STEP of a copy after its m/M backwards of an update, rounds of K updates: stage 0 starts a round
// once the previous one is done, AVERAGE(s) after the round's last backward on every rank.
Status build_localsgd(const ScheduleSpec& spec, Schedule* out);
// AMDP (§2): K = S/2 pipelines over S GPUs (virtual stages p*S + s), rounds of 2 micro-batches per
// pipeline; the reference per-GPU order at S=4, the rule of the S=8 reference orders at S = 4q >= 8,
// a general rule at S = 4q + 2 (amdp.cc); a step slot (ALLREDUCE_GRAD + STEP per hosted stage) in
// the first round of every iteration t >= 1 and after the tail.
Status build_amdp(const ScheduleSpec& spec, Schedule* out);
// Randomized PipeDream (§5.3, rpd.h): per global update k, F of every stage at its sampled stale
// version, Bx from the last stage down to s+1, B and STEP of the sampled stage s only.
Status build_rpd(const ScheduleSpec& spec, Schedule* out);

}  // namespace pt
