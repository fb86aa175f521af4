// The schedule registry: the one table of schedule kinds and their traits, the rules common to all
// kinds, and make_schedule (check, build, add the step). Every rejection starts with the config key
// to change, so config validation and `pipetrain plan` print it verbatim.
#include <array>
#include <string>

#include "common/check.h"
#include "pipeline/prefault.h"
#include "pipeline/schedules/common.h"
#include "pipeline/schedules/rpd.h"
#include "pipeline/schedules/schedules.h"

namespace pt {

namespace schedules_internal {

Schedule empty_schedule(const ScheduleSpec& spec, const char* name) {
  return Schedule{.num_ranks = spec.ranks,
                  .num_stages = spec.ranks * spec.chunks,
                  .microbatches = spec.microbatches,
                  .stage_to_rank = looping_stage_to_rank(spec.ranks, spec.chunks),
                  .per_rank = std::vector<std::vector<Action>>(static_cast<size_t>(spec.ranks)),
                  .name = name};
}

std::vector<Action>& reserve_rank_list(Schedule& s, int r, size_t compute_actions, int stages) {
  auto& list = s.per_rank[size_t(r)];
  list.reserve(compute_actions + step_actions(stages));
  prefault(list.data(), list.capacity() * sizeof(Action));
  return list;
}

}  // namespace schedules_internal

namespace {

using schedules_internal::compute;
constexpr ClipPolicy kGlobal = ClipPolicy::kGlobalNorm;
constexpr ClipPolicy kPerStage = ClipPolicy::kPerStage;

// name, build, check, asynchronous, chunks, tied_embeddings, replicas, recompute_mode,
// lagging_caps, clip[, stagewise_lr, averaged_copies, block_coordinate (all default false)].
constexpr ScheduleTraits kRegistry[] = {
    {"gpipe", build_gpipe, nullptr, false, false, true, false, false, false, kGlobal},
    {"1f1b", build_one_f_one_b, nullptr, false, false, true, false, false, false, kGlobal},
    {"interleaved_1f1b", build_interleaved_1f1b, schedules_internal::check_interleaved_1f1b, false,
     true, true, false, false, false, kGlobal},
    {"bfpp", build_bfpp, nullptr, false, true, true, false, false, false, kGlobal},
    {"zb_h1", build_zb_h1, nullptr, false, false, true, false, false, false, kGlobal},
    {"pipedream", build_pipedream, nullptr, true, false, false, false, false, false, kPerStage, true},
    {"pipedream_2bw", build_pipedream_2bw, schedules_internal::check_pipedream_2bw, true, false,
     false, false, false, false, kPerStage},
    {"paci", build_paci, schedules_internal::check_paci, true, false, false, false, true, true,
     kPerStage},
    {"paci_flush", build_paci_flush, nullptr, true, false, false, false, true, false, kPerStage},
    {"amdp", build_amdp, schedules_internal::check_amdp, true, false, false, true, false, false,
     kPerStage},
    {"localsgd", build_localsgd, schedules_internal::check_localsgd, true, false, false, false, false,
     false, kPerStage, /*stagewise_lr=*/false, /*averaged_copies=*/true},
    {"rpd", build_rpd, schedules_internal::check_rpd, true, false, false, false, false, false, kPerStage,
     /*stagewise_lr=*/false, /*averaged_copies=*/false, /*block_coordinate=*/true},
};
constexpr int kNumKinds = int(sizeof(kRegistry) / sizeof(kRegistry[0]));

const char* const* kind_names() {
  static const std::array<const char*, kNumKinds> names = [] {
    std::array<const char*, kNumKinds> n{};
    for (int i = 0; i < kNumKinds; ++i) n[size_t(i)] = kRegistry[i].name;
    return n;
  }();
  return names.data();
}

std::string str(int v) { return std::to_string(v); }

// Ranges of the counts every kind needs.
Status check_counts(const ScheduleSpec& spec) {
  if (spec.ranks < 1) return Status::error("parallel.pp (pipeline ranks) must be >= 1, got " + str(spec.ranks));
  if (spec.microbatches < 1)
    return Status::error("training.microbatches must be >= 1, got " + str(spec.microbatches));
  if (spec.chunks < 1) return Status::error("schedule.chunks must be >= 1, got " + str(spec.chunks));
  if (spec.bfpp_breadth < 0 || (spec.bfpp_breadth > 0 && spec.microbatches % spec.bfpp_breadth != 0))
    return Status::error("schedule.bfpp_breadth = " + str(spec.bfpp_breadth) + " must be 0 or divide training.microbatches = " +
                         str(spec.microbatches) + " (m = breadth x depth; 0 means breadth = m)");
  if (spec.segment_updates < 1)
    return Status::error("segment_updates (optimizer updates per stage between two drain points) must be >= 1, got " +
                         str(spec.segment_updates));
  return Status::ok();
}

// Keys that apply to some kinds only, and the option values every kind shares.
Status check_options(const ScheduleSpec& spec, const ScheduleTraits& t) {
  const std::string kind = "schedule.kind '" + spec.kind + "'";
  if (spec.chunks != 1 && !t.chunks)
    return Status::error("schedule.chunks = " + str(spec.chunks) + " is not supported by " + kind +
                         " (one stage per rank); use interleaved_1f1b or bfpp for chunks > 1, or chunks: 1");
  if (spec.tie_embeddings && !t.tied_embeddings)
    return Status::error("model.tie_embeddings is not supported by " + kind +
                         ": asynchronous schedules keep separate weight versions per stage, so the first and last "
                         "stage cannot share wte; set model.tie_embeddings: false");
  if (spec.paci_mode != "perf" && spec.paci_mode != "mem")
    return Status::error("schedule.paci.mode must be 'perf' or 'mem', got '" + spec.paci_mode + "'");
  if (spec.paci_mode != "perf" && !t.recompute_mode)
    return Status::error("schedule.paci.mode = " + spec.paci_mode +
                         " applies to the kinds that can recompute the forward in the backward (paci, paci_flush); "
                         "leave it perf with " + spec.kind);
  if (spec.amdp_step_slot != "clean" && spec.amdp_step_slot != "reference")
    return Status::error("schedule.amdp.step_slot = '" + spec.amdp_step_slot + "' is not one of: clean, reference");
  if (spec.amdp_step_slot != "clean" && !t.replicas)
    return Status::error("schedule.amdp.step_slot applies to schedule.kind: amdp only; leave it clean with " + spec.kind);
  if (!spec.amdp_zero_owner && !t.replicas)
    return Status::error("schedule.amdp.zero_owner applies to schedule.kind: amdp only (stage replicas); leave it true with " +
                         spec.kind);
  if ((spec.localsgd_copies != 0 || spec.localsgd_local_steps != 2) && !t.averaged_copies)
    return Status::error("schedule.localsgd.copies and schedule.localsgd.local_steps apply to schedule.kind: localsgd "
                         "only; leave them at 0 and 2 with " + spec.kind);
  if (!t.block_coordinate && (spec.rpd_max_delay != 0 || spec.rpd_stage_sampling != "uniform" ||
                              spec.rpd_delay_sampling != "uniform"))
    return Status::error("schedule.rpd.* (max_delay, stage_sampling, delay_sampling) applies to schedule.kind: rpd "
                         "only; leave them at their defaults with " + spec.kind);
  if (!spec.paci_allowed_lagging.empty() && !t.lagging_caps)
    return Status::error("schedule.paci.allowed_lagging applies to schedule.kind: paci only; use 'auto' with " + spec.kind);
  return Status::ok();
}

// schedule.pipedream.*: the PipeDream-LR correction's values, and only kinds that honour it.
Status check_lr_correction(const ScheduleSpec& spec, const ScheduleTraits& t) {
  const std::string& v = spec.pipedream_lr_correction;
  if (v != "none" && v != "stagewise")
    return Status::error("schedule.pipedream.lr_correction = '" + v + "' is not one of: none, stagewise");
  if (spec.pipedream_lr_correction_steps < 0)
    return Status::error("schedule.pipedream.lr_correction_steps must be >= 1 (or 0 = training.steps), got " +
                         std::to_string(spec.pipedream_lr_correction_steps));
  if (t.stagewise_lr) return Status::ok();
  std::string honour;  // the kinds that apply the correction
  for (const ScheduleTraits& k : kRegistry)
    if (k.stagewise_lr) honour += std::string(honour.empty() ? "" : ", ") + k.name;
  if (v != "none")
    return Status::error("schedule.pipedream.lr_correction applies to schedule.kind: " + honour +
                         " only; leave it none with " + spec.kind);
  if (spec.pipedream_lr_correction_steps != 0)
    return Status::error("schedule.pipedream.lr_correction_steps applies to schedule.kind: " + honour +
                         " only; leave it 0 with " + spec.kind);
  return Status::ok();
}

// Synchronous step: per rank, after its last compute action, ALLREDUCE_GRAD(data) of each of its
// stages in ascending order, then their STEPs in the same order.
void append_sync_step(Schedule* s) {
  for (int r = 0; r < s->num_ranks; ++r) {
    auto& list = s->per_rank[size_t(r)];
    for (ActionKind kind : {ActionKind::ALLREDUCE_GRAD, ActionKind::STEP}) {
      for (int st = 0; st < s->num_stages; ++st) {
        if (s->stage_to_rank[size_t(st)] != r) continue;
        list.push_back(compute(kind, st, -1));
        if (kind == ActionKind::ALLREDUCE_GRAD) list.back().group = kGroupData;
      }
    }
  }
}

// Asynchronous step: ALLREDUCE_GRAD(data) right before every STEP.
void insert_data_reduce(Schedule* s) {
  for (auto& list : s->per_rank) {
    size_t steps = 0;
    for (const Action& a : list) steps += a.kind == ActionKind::STEP;
    std::vector<Action> out;
    out.reserve(list.size() + steps);
    for (const Action& a : list) {
      if (a.kind == ActionKind::STEP) {
        out.push_back(compute(ActionKind::ALLREDUCE_GRAD, a.stage, -1));
        out.back().group = kGroupData;
      }
      out.push_back(a);
    }
    list = std::move(out);
  }
}

}  // namespace

const ScheduleTraits* find_schedule(const std::string& kind) {
  for (const ScheduleTraits& t : kRegistry)
    if (kind == t.name) return &t;
  return nullptr;
}

const char* const* schedule_kinds(int* count) {
  *count = kNumKinds;
  return kind_names();
}

std::string schedule_kind_list() {
  std::string known;
  for (const ScheduleTraits& t : kRegistry) known += std::string(known.empty() ? "" : ", ") + t.name;
  return known;
}

Status check_schedule_spec(const ScheduleSpec& spec) {
  const ScheduleTraits* t = find_schedule(spec.kind);
  if (t == nullptr)
    return Status::error("schedule.kind '" + spec.kind + "' is not one of: " + schedule_kind_list());
  PT_RETURN_IF_ERROR(check_counts(spec));
  PT_RETURN_IF_ERROR(check_options(spec, *t));
  PT_RETURN_IF_ERROR(check_lr_correction(spec, *t));
  return t->check != nullptr ? t->check(spec) : Status::ok();
}

Status make_schedule(const ScheduleSpec& spec, Schedule* out) {
  PT_RETURN_IF_ERROR(check_schedule_spec(spec));
  const ScheduleTraits& t = *find_schedule(spec.kind);
  Schedule s;
  PT_RETURN_IF_ERROR(t.build(spec, &s));
  s.recompute_in_backward = t.recompute_mode && spec.paci_mode == "mem";
  if (t.asynchronous) {
    insert_data_reduce(&s);
  } else {
    append_sync_step(&s);
  }
  *out = std::move(s);
  return Status::ok();
}

bool is_async_kind(const std::string& kind) {
  const ScheduleTraits* t = find_schedule(kind);
  return t != nullptr && t->asynchronous;
}

}  // namespace pt
