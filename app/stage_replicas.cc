#include "app/stage_replicas.h"

#include <map>
#include <set>

#include "app/backend_staging.h"
#include "app/metrics.h"
#include "app/optimizer_step.h"
#include "common/check.h"
#include "common/json.h"

namespace pt {

std::vector<int> replica_group_members(const std::vector<int>& stage_to_rank, int chain, int pp_rank, int pp) {
  std::vector<std::set<int>> hosted(static_cast<size_t>(pp));
  for (size_t v = 0; v < stage_to_rank.size(); ++v) hosted[size_t(stage_to_rank[v])].insert(int(v) % chain);
  for (size_t v = 0; v < stage_to_rank.size(); ++v)
    for (size_t w = 0; w < stage_to_rank.size(); ++w)
      if (int(v) % chain == int(w) % chain)
        PT_CHECK_MSG(hosted[size_t(stage_to_rank[v])] == hosted[size_t(stage_to_rank[w])],
                     "replicas of model stage " + std::to_string(int(v) % chain) + " live in different rank groups");
  std::vector<int> members;
  for (int r = 0; r < pp; ++r)
    if (hosted[size_t(r)] == hosted[size_t(pp_rank)]) members.push_back(r);
  return members;
}

StageReplicas::StageReplicas(Collectives& coll, const std::vector<int>& stage_to_rank, int chain, int pp_rank,
                             bool enabled, bool zero_owner, const OptimizerSection& optimizer)
    : coll_(coll), stage_to_rank_(stage_to_rank), chain_(chain), pp_rank_(pp_rank), enabled_(enabled),
      zero_owner_(zero_owner), optimizer_(optimizer) {
  if (!enabled_) return;
  // K = 1 pipeline (AMDP at S = 2): the group is this rank alone, and the same code paths run.
  members_ = replica_group_members(stage_to_rank_, chain_, pp_rank_, coll_.size(Group::kPipeline));
  coll_.set_replica_group(members_);
}

int StageReplicas::owner_rank_in_group(const LocalStage& ls) const {
  const int owner = stage_to_rank_[size_t(ls.stage % chain_)];
  for (size_t i = 0; i < members_.size(); ++i)
    if (members_[i] == owner) return int(i);
  PT_CHECK_MSG(false, "the owner of model stage " + std::to_string(ls.stage % chain_) + " is not in its replica group");
  return -1;
}

void StageReplicas::reduce(LocalStage& ls) {
  PT_CHECK(enabled_);
  const int size = coll_.size(Group::kReplicas);
  const size_t n = ls.model->num_params();
  const bool writes = !zero_owner_ || owns(ls);  // the owner (or every member) receives the sum
  // Gather and sum on the host (MPI): staged where the gradients are device memory.
  on_host(*ls.model, ls.model->grads(), n, writes ? HostAccess::kReadWrite : HostAccess::kRead, [&](float* g) {
    std::vector<float> all(writes ? n * size_t(size) : 0);
    if (zero_owner_) coll_.gather(Group::kReplicas, g, n * sizeof(float), all.data(), owner_rank_in_group(ls));
    else coll_.allgather(Group::kReplicas, g, n * sizeof(float), all.data());
    if (!writes) return;
    for (size_t i = 0; i < n; ++i) {
      float sum = all[i];
      for (int r = 1; r < size; ++r) sum += all[size_t(r) * n + i];
      g[i] = sum;
    }
  });
}

void StageReplicas::broadcast_params(LocalStage& ls) {
  const bool owner = owns(ls);
  on_host(*ls.model, ls.model->params(), ls.model->num_params(), owner ? HostAccess::kRead : HostAccess::kWrite,
          [&](float* p) {
            coll_.broadcast(Group::kReplicas, p, ls.model->num_params() * sizeof(float), owner_rank_in_group(ls));
          });
}

void StageReplicas::release_non_owner_state(TrainState* state) const {
  if (!owner_mode()) return;
  for (auto& ls : state->local)
    if (!owns(ls)) ls.optimizer_state.reset();
}

void StageReplicas::check(const TrainState& state, bool world_root, const std::string& run_dir) const {
  if (!enabled_) return;
  check_identical(state);
  check_and_record_state(state, world_root, run_dir);
}

// §2.4 item 4: FNV-1a of every local stage's parameter bytes, compared across the group.
void StageReplicas::check_identical(const TrainState& state) const {
  std::vector<uint64_t> mine;  // (model stage, hash) pairs
  for (const auto& ls : state.local) {
    uint64_t h = 1469598103934665603ull;
    StageModel& m = *ls.model;
    on_host(m, m.params(), m.num_params(), HostAccess::kRead, [&](float* p) {
      const auto* bytes = reinterpret_cast<const unsigned char*>(p);
      for (size_t i = 0; i < m.num_params() * sizeof(float); ++i) h = (h ^ bytes[i]) * 1099511628211ull;
    });
    mine.push_back(uint64_t(ls.stage % chain_));
    mine.push_back(h);
  }
  std::vector<uint64_t> all = allgatherv(coll_, Group::kReplicas, mine);
  std::map<uint64_t, uint64_t> first;
  for (size_t i = 0; i + 1 < all.size(); i += 2) {
    auto [it, inserted] = first.insert({all[i], all[i + 1]});
    PT_CHECK_MSG(inserted || it->second == all[i + 1],
                 "replicas of model stage " + std::to_string(all[i]) + " hold different parameters after a step slot");
  }
}

// §2.4 item 5 (owner mode): each model stage's optimizer state, all of it (what the optimizer
// allocates for the stage), on exactly one rank, its owner; none elsewhere.
void StageReplicas::check_and_record_state(const TrainState& state, bool world_root, const std::string& run_dir) const {
  std::vector<int64_t> mine;
  for (const auto& ls : state.local) {
    const size_t held = ls.optimizer_state ? ls.optimizer_state->total_floats() : 0;
    mine.insert(mine.end(), {int64_t(pp_rank_), int64_t(ls.stage), int64_t(ls.stage % chain_),
                             int64_t(ls.model->num_params()), int64_t(held),
                             int64_t(optimizer_state_floats(optimizer_, *ls.model))});
  }
  std::vector<int64_t> all = allgatherv(coll_, Group::kPipeline, mine);
  if (!world_root) return;
  std::map<int64_t, int> holders;  // model stage -> ranks holding state
  std::string text;
  for (size_t i = 0; i + 6 <= all.size(); i += 6) {
    const int64_t rank = all[i], stage = all[i + 1], ms = all[i + 2], n = all[i + 3], floats = all[i + 4];
    if (zero_owner_) {
      const int64_t expected = stage_to_rank_[size_t(ms)] == rank ? all[i + 5] : 0;
      PT_CHECK_MSG(floats == expected, "optimizer state of model stage " + std::to_string(ms) + " on rank " +
                                           std::to_string(rank) + ": " + std::to_string(floats) +
                                           " state floats, expected " + std::to_string(expected));
    }
    if (floats > 0) ++holders[ms];
    JsonWriter j;
    j.field("rank", rank).field("stage", stage).field("model_stage", ms).field("params", n).field("moment_floats", floats);
    text += j.str() + "\n";
  }
  if (zero_owner_)
    for (int ms = 0; ms < chain_; ++ms)
      PT_CHECK_MSG(holders[ms] == 1, "model stage " + std::to_string(ms) + " has optimizer state on " +
                                         std::to_string(holders[ms]) + " ranks, expected exactly 1 (its owner)");
  Status st = write_text_file(run_dir + "/optimizer_state.jsonl", text);
  PT_CHECK_MSG(st.is_ok(), st.message());
}

}  // namespace pt
