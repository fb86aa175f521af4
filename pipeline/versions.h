// Weight-version tracking (architecture decision 6). Every stage keeps an integer
// version: the number of optimizer updates applied to it since the list began.
// Every (micro-batch, stage) records the version its forward read, the version its
// backward read and the version its gradient was applied to. Drift = backward −
// forward; delay = applied − forward. The same record comes from a schedule's
// action list (pure, versions_from_schedule, here) and from a real run (the executor),
// so every invariant of algorithms.md is checked against both: the check_* functions
// take only the record and the schedule parameters, never the Schedule. Records may come
// in any order; stages are the Schedule's (virtual, for AMDP) stage indices.
#pragma once

#include <vector>

#include "common/status.h"
#include "pipeline/action.h"

namespace pt {

struct VersionRecord {
  int microbatch = 0;
  int stage = 0;
  int forward = 0;    // version read by F
  int backward = -1;  // version read by B (or Bx); -1 until it ran
  int applied = -1;   // version the gradient was applied to (the STEP's pre-update version); -1 if none
};

// The record of a compute-only or lowered schedule, computed exactly as the executor does while
// running it: per stage a live version starting at 0, +1 at each STEP(stage); F records its
// action.version, B/Bx sets backward = action.version; at STEP(stage) the records whose B (or Bw)
// ran since the previous STEP(stage) get applied = the pre-update live version. Ranks in order,
// each rank's records in its forward order (the executor's order, rank by rank).
// AMDP (pipelines > 1, owner mode): a B on a replica that does not own its model stage (owner =
// the rank of pipeline 0's stage) running after that stage's replica ALLREDUCE_GRAD and before its STEP is
// DROPPED: applied stays -1 (step_slot reference, algorithms.md §2.2; clean slots have no such B).
std::vector<VersionRecord> versions_from_schedule(const Schedule& s);

// Every F/B/Bx/Bw reads a version that exists when it runs: 0 <= version <= live version of its
// stage (an older version exists as the executor's snapshot). Errors name rank, tick and action.
Status check_version_reads(const Schedule& s);

// Per stage: the most weight versions alive at once on the executor (live + snapshots some later
// action still reads). 1 for schedules that never read an old version; <= 2 for PipeDream-2BW.
std::vector<int> peak_live_versions(const Schedule& s);

// Per-stage metrics of a record (drift = backward - forward, delay = applied - forward, over the
// records where backward / applied are known).
struct StageVersionSummary {
  int stage = 0;
  int records = 0;
  int max_drift = 0;
  double mean_drift = 0;
  int drifted = 0;  // records with drift != 0
  int max_delay = 0;
  double mean_delay = 0;
};
std::vector<StageVersionSummary> summarize_versions(const std::vector<VersionRecord>& record,
                                                    int num_stages);

// Invariant checkers. Each first checks completeness: micro-batches 0..N-1 (N = largest id + 1)
// appear exactly once on every stage that must see them, with backward and applied set (every
// gradient applied exactly once). Errors name micro-batch, stage and the violated rule.
//
// PACI (§3.5 items 2, 3): drift in [0, ceil((S-1-s)/a)], 0 on the last stage; micro-batch i is
// applied by the (i/a)-th step of its stage (steps after backwards a, 2a, ...), so each update sums
// exactly a micro-batches. Also holds for paci_flush, whose drift is then checked to be 0 by
// check_drift_zero.
Status check_paci_invariants(const std::vector<VersionRecord>& record, int num_stages,
                             int accumulation);
// PipeDream (§1.4): drift 0 (stashing); applied = i / accumulation; with accumulation 1, delay
// = S-1-s for every micro-batch in the steady state i in [S, N-S) (warm-up and drain are
// transients; §1.4: stage 1 sees delays 0,1,2,3 for the first S micro-batches).
Status check_pipedream_invariants(const std::vector<VersionRecord>& record, int num_stages,
                                  int accumulation);
// PipeDream-2BW (§1.5): micro-batch i of update t = i/m reads version max(0, t-1) in F and B,
// is applied at version t: delay exactly 1 for t >= 1 (0 for t = 0).
Status check_2bw_invariants(const std::vector<VersionRecord>& record, int num_stages, int m);
// AMDP (§2.4 items 3, 7), clean step slot: stages are virtual (p*S + s); micro-batch g belongs to
// pipeline (g mod 2K) mod K and must appear once on each of that pipeline's S stages and nowhere
// else; drift in {0, 1}; drift 1 only for micro-batches of the first round (2K micro-batches) of
// their iteration (m per iteration); each gradient is applied exactly once, by the step slot of
// its own iteration's end (applied = t) or, when its backward precedes that GPU's slot inside the
// first round, by the previous one (applied = t-1).
Status check_amdp_invariants(const std::vector<VersionRecord>& record, int model_stages,
                             int pipelines, int m);
// LocalSGD (§5.4, §5.6 item 5): stages are virtual (p*S + s, copy p); micro-batch g belongs to copy
// g mod M and appears once on each of that copy's S stages and nowhere else; zero staleness: its
// forward and backward read, and its gradient is applied to, version g / m (update g / m of its
// copy: every copy steps once per update).
Status check_localsgd_invariants(const std::vector<VersionRecord>& record, int model_stages,
                                 int copies, int m);
// Drift 0 for every record (1F1B-flush and every synchronous schedule).
Status check_drift_zero(const std::vector<VersionRecord>& record);

}  // namespace pt
