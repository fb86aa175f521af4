// make_schedule: the one place that maps schedule.kind to a builder, plus the argument checks
// shared by the builders. Every rejection names the YAML key and the rule, so `pipetrain plan` can
// print it verbatim.
#include <string>

#include "pipeline/schedules/common.h"
#include "pipeline/schedules/schedules.h"

namespace pt {

namespace schedules_internal {

Status check_basic(const ScheduleSpec& spec, bool allow_chunks) {
  if (spec.ranks < 1) {
    return Status::error("parallel.pp (pipeline ranks) must be >= 1, got " +
                         std::to_string(spec.ranks));
  }
  if (spec.microbatches < 1) {
    return Status::error("schedule.microbatches must be >= 1, got " +
                         std::to_string(spec.microbatches));
  }
  if (spec.chunks < 1) {
    return Status::error("schedule.chunks must be >= 1, got " + std::to_string(spec.chunks));
  }
  if (!allow_chunks && spec.chunks != 1) {
    return Status::error("schedule.chunks = " + std::to_string(spec.chunks) +
                         " is not supported by schedule.kind '" + spec.kind +
                         "' (one stage per rank); use interleaved_1f1b or bfpp for chunks > 1");
  }
  return Status::ok();
}

Schedule empty_schedule(const ScheduleSpec& spec, const char* name) {
  Schedule s;
  s.num_ranks = spec.ranks;
  s.num_stages = spec.ranks * spec.chunks;
  s.microbatches = spec.microbatches;
  s.stage_to_rank = looping_stage_to_rank(spec.ranks, spec.chunks);
  s.per_rank.assign(size_t(spec.ranks), {});
  s.name = name;
  return s;
}

}  // namespace schedules_internal

namespace {

struct Entry {
  const char* kind;
  Status (*build)(const ScheduleSpec&, Schedule*);
};
constexpr Entry kRegistry[] = {
    {"gpipe", build_gpipe},
    {"1f1b", build_one_f_one_b},
    {"interleaved_1f1b", build_interleaved_1f1b},
    {"bfpp", build_bfpp},
    {"zb_h1", build_zb_h1},
    {"pipedream", build_pipedream},
    {"pipedream_2bw", build_pipedream_2bw},
    {"paci", build_paci},
    {"paci_flush", build_paci_flush},
    {"amdp", build_amdp},
};
constexpr int kNumKinds = int(sizeof(kRegistry) / sizeof(kRegistry[0]));
const char* const kKindNames[kNumKinds] = {"gpipe",     "1f1b",          "interleaved_1f1b",
                                           "bfpp",      "zb_h1",         "pipedream",
                                           "pipedream_2bw", "paci",      "paci_flush",
                                           "amdp"};

}  // namespace

const char* const* schedule_kinds(int* count) {
  *count = kNumKinds;
  return kKindNames;
}

Status make_schedule(const ScheduleSpec& spec, Schedule* out) {
  for (const Entry& e : kRegistry) {
    if (spec.kind == e.kind) return e.build(spec, out);
  }
  std::string known;
  for (const Entry& e : kRegistry) known += std::string(known.empty() ? "" : ", ") + e.kind;
  return Status::error("schedule.kind '" + spec.kind +
                       "' is not a schedule this planner knows (" + known + ")");
}

bool is_async_kind(const std::string& kind) {
  return kind == "pipedream" || kind == "pipedream_2bw" || kind == "paci" ||
         kind == "paci_flush" || kind == "amdp";
}

}  // namespace pt
