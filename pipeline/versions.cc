// Version records from action lists, their per-stage summary, and the invariant checkers of
// algorithms.md §1.4, §1.5, §2.4, §3.5 (contracts in versions.h). The record replay mirrors
// Executor::run_step's version bookkeeping line for line, so a record from a real run and one from
// the list must be equal; the checkers index records by (stage, micro-batch) and so accept either.
#include "pipeline/versions.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>

namespace pt {

namespace {


std::string where(int mb, int stage) {
  return "micro-batch " + std::to_string(mb) + ", stage " + std::to_string(stage);
}

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Index a record by (stage, mb); rejects duplicates and incomplete entries. `expected(mb, stage)`
// says whether (mb, stage) must be present; every expected pair must be, and no other.
template <class Expected>
Status index_record(const std::vector<VersionRecord>& record, int num_stages, Expected expected,
                    std::map<std::pair<int, int>, const VersionRecord*>* out, int* total) {
  int n = 0;
  for (const VersionRecord& r : record) {
    if (r.stage < 0 || r.stage >= num_stages || r.microbatch < 0) {
      return Status::error("version record: " + where(r.microbatch, r.stage) +
                           " is outside the schedule (" + std::to_string(num_stages) + " stages)");
    }
    n = std::max(n, r.microbatch + 1);
    if (!out->emplace(std::make_pair(r.stage, r.microbatch), &r).second) {
      return Status::error("version record: " + where(r.microbatch, r.stage) +
                           " appears twice (each micro-batch runs once per stage)");
    }
    if (!expected(r.microbatch, r.stage)) {
      return Status::error("version record: " + where(r.microbatch, r.stage) +
                           " should not run on this stage (wrong pipeline)");
    }
    if (r.backward < 0) {
      return Status::error("version record: " + where(r.microbatch, r.stage) +
                           " has no backward (every forward needs one)");
    }
    if (r.applied < 0) {
      return Status::error("version record: " + where(r.microbatch, r.stage) +
                           " gradient was never applied (each gradient is applied exactly once)");
    }
    if (r.backward < r.forward) {
      return Status::error("version record: " + where(r.microbatch, r.stage) + " drift " +
                           std::to_string(r.backward - r.forward) +
                           " < 0 (versions only increase)");
    }
  }
  for (int s = 0; s < num_stages; ++s) {
    for (int mb = 0; mb < n; ++mb) {
      if (expected(mb, s) && !out->count({s, mb})) {
        return Status::error("version record: " + where(mb, s) +
                             " is missing (each micro-batch runs once on every stage of its "
                             "pipeline)");
      }
    }
  }
  *total = n;
  return Status::ok();
}

auto all_stages = [](int, int) { return true; };

}  // namespace

std::vector<VersionRecord> versions_from_schedule(const Schedule& s) {
  std::vector<VersionRecord> out;
  for (size_t rank = 0; rank < s.per_rank.size(); ++rank) {
    const auto& list = s.per_rank[rank];
    // AMDP replicas: stages reduced (ALLREDUCE_GRAD) and not yet stepped; a non-owner's backward
    // in that window is dropped (never applied), see the header.
    std::set<int> reduced;
    auto dropped = [&](int stage) {
      return s.pipelines > 1 && reduced.count(stage) &&
             s.stage_to_rank[size_t(stage % s.model_stages)] != int(rank);
    };
    std::map<int, int> live;
    std::map<std::pair<int, int>, size_t> record_of;
    std::map<int, std::vector<size_t>> unapplied;
    for (const Action& a : list) {
      const std::pair<int, int> key{a.stage, a.microbatch};
      switch (a.kind) {
        case ActionKind::F:
          record_of[key] = out.size();
          out.push_back(VersionRecord{a.microbatch, a.stage, a.version, -1, -1});
          break;
        case ActionKind::B:
        case ActionKind::Bx: {
          auto it = record_of.find(key);
          if (it == record_of.end()) break;  // validate_compute reports a B before its F
          out[it->second].backward = a.version;
          if (a.kind == ActionKind::B && !dropped(a.stage)) unapplied[a.stage].push_back(it->second);
          break;
        }
        case ActionKind::Bw: {
          auto it = record_of.find(key);
          if (it != record_of.end()) unapplied[a.stage].push_back(it->second);
          break;
        }
        case ActionKind::STEP: {
          for (size_t i : unapplied[a.stage]) out[i].applied = live[a.stage];
          unapplied[a.stage].clear();
          ++live[a.stage];
          reduced.erase(a.stage);
          break;
        }
        case ActionKind::ALLREDUCE_GRAD:
          if (a.group & kGroupReplicas) reduced.insert(a.stage);
          break;
        default:
          break;
      }
    }
  }
  return out;
}

Status check_version_reads(const Schedule& s) {
  for (int r = 0; r < int(s.per_rank.size()); ++r) {
    std::map<int, int> live;
    const auto& list = s.per_rank[r];
    for (int t = 0; t < int(list.size()); ++t) {
      const Action& a = list[t];
      if (a.kind == ActionKind::STEP) ++live[a.stage];
      if (!is_compute(a.kind)) continue;
      if (a.version < 0 || a.version > live[a.stage]) {
        return Status::error("rank " + std::to_string(r) + " tick " + std::to_string(t) + ": " +
                             format_action(a) + " reads weight version " +
                             std::to_string(a.version) + " but stage " + std::to_string(a.stage) +
                             " is at version " + std::to_string(live[a.stage]) +
                             " (a version must exist: 0 <= version <= live)\n" +
                             format_schedule(s, r, t));
      }
    }
  }
  return Status::ok();
}

std::vector<int> peak_live_versions(const Schedule& s) {
  std::vector<int> peak(size_t(s.num_stages), 1);
  for (const auto& list : s.per_rank) {
    std::map<std::pair<int, int>, size_t> last_read;  // (stage, version) -> last reading tick
    for (size_t i = 0; i < list.size(); ++i) {
      if (is_compute(list[i].kind)) last_read[{list[i].stage, list[i].version}] = i;
    }
    std::map<int, int> live;
    std::map<int, std::set<int>> snapshots;
    for (size_t i = 0; i < list.size(); ++i) {
      const Action& a = list[i];
      if (a.kind != ActionKind::STEP || a.stage < 0 || a.stage >= s.num_stages) continue;
      auto& snaps = snapshots[a.stage];
      auto lr = last_read.find({a.stage, live[a.stage]});
      if (lr != last_read.end() && lr->second > i) snaps.insert(live[a.stage]);
      ++live[a.stage];
      for (auto it = snaps.begin(); it != snaps.end();) {
        auto last = last_read.find({a.stage, *it});
        it = (last == last_read.end() || last->second <= i) ? snaps.erase(it) : std::next(it);
      }
      peak[size_t(a.stage)] = std::max(peak[size_t(a.stage)], 1 + int(snaps.size()));
    }
  }
  return peak;
}

std::vector<StageVersionSummary> summarize_versions(const std::vector<VersionRecord>& record,
                                                    int num_stages) {
  std::vector<StageVersionSummary> out(size_t(std::max(num_stages, 0)));
  std::vector<int> drift_n(out.size(), 0), delay_n(out.size(), 0);
  for (int s = 0; s < num_stages; ++s) out[size_t(s)].stage = s;
  for (const VersionRecord& r : record) {
    if (r.stage < 0 || r.stage >= num_stages) continue;
    StageVersionSummary& x = out[size_t(r.stage)];
    ++x.records;
    if (r.backward >= 0) {
      const int d = r.backward - r.forward;
      x.max_drift = std::max(x.max_drift, d);
      x.mean_drift += d;
      x.drifted += d != 0;
      ++drift_n[size_t(r.stage)];
    }
    if (r.applied >= 0) {
      const int d = r.applied - r.forward;
      x.max_delay = std::max(x.max_delay, d);
      x.mean_delay += d;
      ++delay_n[size_t(r.stage)];
    }
  }
  for (size_t s = 0; s < out.size(); ++s) {
    if (drift_n[s] > 0) out[s].mean_drift /= drift_n[s];
    if (delay_n[s] > 0) out[s].mean_delay /= delay_n[s];
  }
  return out;
}

Status check_paci_invariants(const std::vector<VersionRecord>& record, int num_stages,
                             int accumulation) {
  if (num_stages < 1 || accumulation < 1) {
    return Status::error("check_paci_invariants: needs num_stages >= 1 and accumulation >= 1");
  }
  std::map<std::pair<int, int>, const VersionRecord*> idx;
  int n = 0;
  PT_RETURN_IF_ERROR(index_record(record, num_stages, all_stages, &idx, &n));
  const int S = num_stages, a = accumulation;
  for (const auto& [key, r] : idx) {
    const int s = key.first, i = key.second;
    const int drift = r->backward - r->forward;
    const int bound = ceil_div(S - 1 - s, a);
    if (drift > bound) {
      return Status::error("PACI: " + where(i, s) + " has drift " + std::to_string(drift) +
                           " > ceil((S-1-s)/a) = " + std::to_string(bound) +
                           " (drift law, algorithms.md §3.5 item 3; last stage must be 0)");
    }
    if (r->applied != i / a) {
      return Status::error("PACI: " + where(i, s) + " was applied at version " +
                           std::to_string(r->applied) + ", expected " + std::to_string(i / a) +
                           " (stage steps exactly after backwards a, 2a, ... with a = " +
                           std::to_string(a) + ", §3.5 item 2)");
    }
  }
  return Status::ok();
}

Status check_pipedream_invariants(const std::vector<VersionRecord>& record, int num_stages,
                                  int accumulation) {
  if (num_stages < 1 || accumulation < 1) {
    return Status::error("check_pipedream_invariants: needs num_stages >= 1 and accumulation >= 1");
  }
  std::map<std::pair<int, int>, const VersionRecord*> idx;
  int n = 0;
  PT_RETURN_IF_ERROR(index_record(record, num_stages, all_stages, &idx, &n));
  const int S = num_stages;
  for (const auto& [key, r] : idx) {
    const int s = key.first, i = key.second;
    if (r->backward != r->forward) {
      return Status::error("PipeDream: " + where(i, s) + " has drift " +
                           std::to_string(r->backward - r->forward) +
                           " (weight stashing makes the backward read its forward's version, "
                           "§1.4)");
    }
    if (r->applied != i / accumulation) {
      return Status::error("PipeDream: " + where(i, s) + " applied at version " +
                           std::to_string(r->applied) + ", expected " +
                           std::to_string(i / accumulation) + " (one update per " +
                           std::to_string(accumulation) + " backwards)");
    }
    if (accumulation == 1 && i >= S && i < n - S && r->applied - r->forward != S - 1 - s) {
      return Status::error("PipeDream: " + where(i, s) + " has delay " +
                           std::to_string(r->applied - r->forward) +
                           " in the steady state, expected S-1-s = " + std::to_string(S - 1 - s) +
                           " (§1.4)");
    }
  }
  return Status::ok();
}

Status check_2bw_invariants(const std::vector<VersionRecord>& record, int num_stages, int m) {
  if (num_stages < 1 || m < 1) {
    return Status::error("check_2bw_invariants: needs num_stages >= 1 and m >= 1");
  }
  std::map<std::pair<int, int>, const VersionRecord*> idx;
  int n = 0;
  PT_RETURN_IF_ERROR(index_record(record, num_stages, all_stages, &idx, &n));
  for (const auto& [key, r] : idx) {
    const int s = key.first, i = key.second, t = i / m;
    const int want = std::max(0, t - 1);
    if (r->forward != want || r->backward != want) {
      return Status::error("PipeDream-2BW: " + where(i, s) + " of update " + std::to_string(t) +
                           " read versions F " + std::to_string(r->forward) + " / B " +
                           std::to_string(r->backward) + ", expected max(0, t-1) = " +
                           std::to_string(want) + " for both (§1.5)");
    }
    if (r->applied != t) {
      return Status::error("PipeDream-2BW: " + where(i, s) + " applied at version " +
                           std::to_string(r->applied) + ", expected " + std::to_string(t) +
                           " (delay exactly 1 after the first update, §1.5)");
    }
  }
  return Status::ok();
}

Status check_amdp_invariants(const std::vector<VersionRecord>& record, int model_stages,
                             int pipelines, int m) {
  const int S = model_stages, K = pipelines;
  if (S < 1 || K < 1 || m < 2 * K || m % (2 * K) != 0) {
    return Status::error("check_amdp_invariants: needs model_stages >= 1, pipelines >= 1 and m a "
                         "multiple of 2 x pipelines");
  }
  auto pipeline_of = [K](int g) { return (g % (2 * K)) % K; };
  auto expected = [&](int g, int v) { return v / S == pipeline_of(g); };
  std::map<std::pair<int, int>, const VersionRecord*> idx;
  int n = 0;
  PT_RETURN_IF_ERROR(index_record(record, S * K, expected, &idx, &n));
  for (const auto& [key, r] : idx) {
    const int v = key.first, g = key.second, t = g / m;
    const int drift = r->backward - r->forward;
    const bool first_round = (g % m) < 2 * K;
    if (drift > 1) {
      return Status::error("AMDP: " + where(g, v) + " has drift " + std::to_string(drift) +
                           " (must be 0 or 1, algorithms.md §2.4 item 3)");
    }
    if (drift == 1 && !first_round) {
      return Status::error("AMDP: " + where(g, v) + " has drift 1 but is in round " +
                           std::to_string((g % m) / (2 * K)) + " of iteration " +
                           std::to_string(t) +
                           " (drift 1 only in the first round of an iteration, §2.4 item 3)");
    }
    if (!(r->applied == t || (first_round && t > 0 && r->applied == t - 1))) {
      return Status::error("AMDP: " + where(g, v) + " of iteration " + std::to_string(t) +
                           " was applied at version " + std::to_string(r->applied) +
                           " (expected the step ending its iteration, version " +
                           std::to_string(t) + ", or in its first round the previous one; §2.4 "
                           "item 7)");
    }
  }
  return Status::ok();
}

Status check_localsgd_invariants(const std::vector<VersionRecord>& record, int model_stages,
                                 int copies, int m) {
  const int S = model_stages, M = copies;
  if (S < 1 || M < 1 || m < M || m % M != 0) {
    return Status::error("check_localsgd_invariants: needs model_stages >= 1, copies >= 1 and m a "
                         "multiple of copies");
  }
  auto expected = [&](int g, int v) { return v / S == g % M; };
  std::map<std::pair<int, int>, const VersionRecord*> idx;
  int n = 0;
  PT_RETURN_IF_ERROR(index_record(record, S * M, expected, &idx, &n));
  for (const auto& [key, r] : idx) {
    const int v = key.first, g = key.second, k = g / m;
    if (r->forward != k || r->backward != k || r->applied != k) {
      return Status::error("LocalSGD: " + where(g, v) + " of update " + std::to_string(k) +
                           " read versions F " + std::to_string(r->forward) + " / B " +
                           std::to_string(r->backward) + " and was applied at " +
                           std::to_string(r->applied) + "; zero staleness needs all three = " +
                           std::to_string(k) + ", its copy's live version (algorithms.md §5.6 item 5)");
    }
  }
  return Status::ok();
}

Status check_drift_zero(const std::vector<VersionRecord>& record) {
  for (const VersionRecord& r : record) {
    if (r.backward != r.forward) {
      return Status::error(where(r.microbatch, r.stage) + " has drift " +
                           std::to_string(r.backward - r.forward) +
                           " (forward and backward must read the same version)");
    }
  }
  return Status::ok();
}

}  // namespace pt
