#include "app/async_runner.h"

#include <algorithm>
#include <cstring>
#include <chrono>
#include <cmath>
#include <map>
#include <set>

#include "app/metrics.h"
#include "app/optimizer_step.h"
#include "common/check.h"
#include "common/json.h"
#include "optim/lr_schedule.h"
#include "pipeline/executor.h"

namespace pt {
namespace {

// Gathers variable-length int64 arrays of every rank of `comm` on rank 0, in rank order.
std::vector<int64_t> gather_on_root(const std::vector<int64_t>& mine, MPI_Comm comm) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  int count = int(mine.size());
  std::vector<int> counts(size), displs(size);
  PT_MPI_CHECK(MPI_Gather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, comm));
  int total = 0;
  for (int r = 0; r < size; ++r) {
    displs[r] = total;
    total += counts[r];
  }
  std::vector<int64_t> all(rank == 0 ? total : 0);
  PT_MPI_CHECK(MPI_Gatherv(mine.data(), count, MPI_INT64_T, all.data(), counts.data(), displs.data(), MPI_INT64_T, 0,
                           comm));
  return all;
}

}  // namespace

AsyncRunner::AsyncRunner(const Config& config, const ProcessGroups& groups, const std::vector<int>& stage_to_rank,
                         int chain)
    : config_(config), groups_(groups), stage_to_rank_(stage_to_rank), chain_(chain) {
  if (int(stage_to_rank_.size()) > chain_) {
    // Several pipelines: ranks hosting the same set of model stages form a replica
    // group (AMDP: {s, S-1-s} for S=4). Every replica of a model stage must live in
    // the same group, so one communicator per rank serves all of its stages.
    std::vector<std::set<int>> hosted(groups_.pp);
    for (size_t v = 0; v < stage_to_rank_.size(); ++v) hosted[stage_to_rank_[v]].insert(int(v) % chain_);
    int color = groups_.pp_rank;
    for (int r = 0; r < groups_.pp; ++r)
      if (hosted[r] == hosted[groups_.pp_rank]) {
        color = r;
        break;
      }
    for (size_t v = 0; v < stage_to_rank_.size(); ++v)
      for (size_t w = 0; w < stage_to_rank_.size(); ++w)
        if (int(v) % chain_ == int(w) % chain_)
          PT_CHECK_MSG(hosted[stage_to_rank_[v]] == hosted[stage_to_rank_[w]],
                       "replicas of model stage " + std::to_string(int(v) % chain_) + " live in different rank groups");
    PT_MPI_CHECK(MPI_Comm_split(groups_.pipeline, color, groups_.pp_rank, &replica_comm_));
    for (int r = 0; r < groups_.pp; ++r)  // the split's key is pp_rank: ascending = comm rank order
      if (hosted[r] == hosted[groups_.pp_rank]) replica_members_.push_back(r);
    zero_owner_ = config_.schedule.amdp_zero_owner;
  } else if (config_.schedule.kind == "amdp") {
    // AMDP at S = 2 runs K = S/2 = 1 pipeline: every model stage has one replica, so
    // its replica group is this rank alone (the reduce is the identity, the owner is
    // this rank) and the ALLREDUCE_GRAD/STEP code paths stay the same as for K > 1.
    PT_MPI_CHECK(MPI_Comm_dup(MPI_COMM_SELF, &replica_comm_));
    replica_members_.push_back(groups_.pp_rank);
    zero_owner_ = config_.schedule.amdp_zero_owner;
  }
}

AsyncRunner::~AsyncRunner() {
  if (replica_comm_ != MPI_COMM_NULL) MPI_Comm_free(&replica_comm_);
}

// AMDP invariant (algorithms.md §2.4 item 4): after the step slots, all replicas of
// a model stage hold bit-identical parameters. Checked by hash at every drain.
void AsyncRunner::check_replicas_identical(const TrainState& state) {
  std::vector<uint64_t> mine;  // (model stage, hash) pairs
  for (const auto& ls : state.local) {
    uint64_t h = 1469598103934665603ull;
    const auto* bytes = reinterpret_cast<const unsigned char*>(ls.model->params());
    for (size_t i = 0; i < ls.model->num_params() * sizeof(float); ++i) h = (h ^ bytes[i]) * 1099511628211ull;
    mine.push_back(uint64_t(ls.stage % chain_));
    mine.push_back(h);
  }
  int size = 1;
  MPI_Comm_size(replica_comm_, &size);
  std::vector<uint64_t> all(mine.size() * size);
  PT_MPI_CHECK(MPI_Allgather(mine.data(), int(mine.size()), MPI_UINT64_T, all.data(), int(mine.size()), MPI_UINT64_T,
                             replica_comm_));
  std::map<uint64_t, uint64_t> first;
  for (size_t i = 0; i + 1 < all.size(); i += 2) {
    auto [it, inserted] = first.insert({all[i], all[i + 1]});
    PT_CHECK_MSG(inserted || it->second == all[i + 1],
                 "replicas of model stage " + std::to_string(all[i]) + " hold different parameters after a step slot");
  }
}

// Sum of the stage's gradients over its replicas, added in replica-group rank order:
// on every member (all replicas get identical bits and step identically), or in owner
// mode on the owner only (the others keep theirs until STEP zeroes them).
void AsyncRunner::reduce_replicas(LocalStage& ls) {
  PT_CHECK(replica_comm_ != MPI_COMM_NULL);
  int size = 1;
  MPI_Comm_size(replica_comm_, &size);
  const size_t n = ls.model->num_params();
  ls.model->sync_grads_to_host();  // host reads, then (owner or every member) a host write of grads()
  std::vector<float> all;
  if (zero_owner_) {
    if (owns(ls)) all.resize(n * size);
    PT_MPI_CHECK(MPI_Gather(ls.model->grads(), int(n), MPI_FLOAT, all.data(), int(n), MPI_FLOAT,
                            owner_comm_rank(ls), replica_comm_));
    if (!owns(ls)) return;
  } else {
    all.resize(n * size);
    PT_MPI_CHECK(MPI_Allgather(ls.model->grads(), int(n), MPI_FLOAT, all.data(), int(n), MPI_FLOAT, replica_comm_));
  }
  float* g = ls.model->grads();
  for (size_t i = 0; i < n; ++i) {
    float sum = all[i];
    for (int r = 1; r < size; ++r) sum += all[r * n + i];
    g[i] = sum;
  }
}

int AsyncRunner::owner_comm_rank(const LocalStage& ls) const {
  const int owner = stage_to_rank_[size_t(ls.stage % chain_)];
  for (size_t i = 0; i < replica_members_.size(); ++i)
    if (replica_members_[i] == owner) return int(i);
  PT_CHECK_MSG(false, "the owner of model stage " + std::to_string(ls.stage % chain_) + " is not in its replica group");
  return -1;
}

// §2.4 item 5 (owner mode): only the owner of a model stage keeps its optimizer state.
void AsyncRunner::release_non_owner_moments(TrainState* state) const {
  if (!zero_owner_) return;
  for (auto& ls : state->local) {
    if (owns(ls)) continue;
    ls.optimizer_state.reset();
  }
}

// Gathers (pp rank, stage, model stage, params, state floats held, state floats of an owner) of
// every local stage on rank 0, checks §2.4 item 5 in owner mode (each model stage's optimizer
// state, all of it, on exactly one rank: its owner; none elsewhere) and writes
// run_dir/optimizer_state.jsonl ("moment_floats" = the optimizer's state floats held).
void AsyncRunner::check_and_record_optimizer_state(const TrainState& state) const {
  std::vector<int64_t> mine;
  for (const auto& ls : state.local) {
    mine.push_back(groups_.pp_rank);
    mine.push_back(ls.stage);
    mine.push_back(ls.stage % chain_);
    mine.push_back(int64_t(ls.model->num_params()));
    mine.push_back(int64_t(ls.optimizer_state ? ls.optimizer_state->total_floats() : 0));
    mine.push_back(int64_t(optimizer_state_floats(config_.optimizer, *ls.model)));
  }
  std::vector<int64_t> all = gather_on_root(mine, groups_.pipeline);
  if (groups_.world_rank != 0) return;
  std::map<int64_t, int> holders;  // model stage -> ranks holding optimizer state
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
  Status st = write_text_file(config_.run.out_dir + "/" + config_.run.name + "/optimizer_state.jsonl", text);
  PT_CHECK_MSG(st.is_ok(), st.message());
}

Status AsyncRunner::run_segment(const Schedule& lowered, int64_t first_step, double clock_offset, TrainState* state,
                                const DataLoader& data, Transport* transport, std::vector<AsyncStepLog>* logs,
                                std::vector<RunVersionRecord>* records) {
  const int m = config_.training.microbatches;
  const int total = lowered.microbatches;
  PT_CHECK(total % m == 0);
  const int updates = total / m;
  const int S = lowered.num_stages;
  std::vector<StageModel*> by_stage(S, nullptr);
  std::map<int, LocalStage*> local;
  for (auto& ls : state->local) {
    by_stage[ls.stage] = ls.model.get();
    local[ls.stage] = &ls;
  }
  const LrSchedule lr_sched = lr_schedule_for(config_);
  // Per (stage, update k): squared norm of the applied gradient.
  std::map<std::pair<int, int>, double> norm_sq;
  const int64_t version_base = first_step;
  release_non_owner_moments(state);

  StageCallbacks callbacks;
  callbacks.reduce = [&](int v) { reduce_replicas(*local.at(v)); };
  // Owner mode: the owner's new parameters to the other replicas (every replica calls it once per STEP).
  auto broadcast_params = [&](LocalStage& ls) {
    PT_MPI_CHECK(MPI_Bcast(ls.model->params(), int(ls.model->num_params()), MPI_FLOAT, owner_comm_rank(ls), replica_comm_));
    ls.model->sync_params_to_device();
  };
  callbacks.step = [&](int v) {
    LocalStage& ls = *local.at(v);
    if (zero_owner_ && !owns(ls)) {
      broadcast_params(ls);
      ls.model->zero_grads();
      ++ls.version;
      return;
    }
    if (groups_.dp > 1) {
      ls.model->sync_grads_to_host();
      PT_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, ls.model->grads(), int(ls.model->num_params()), MPI_FLOAT, MPI_SUM,
                                 groups_.data));
    }
    const int k = int(ls.version - version_base);
    norm_sq[{v, k}] = apply_stage_update_self_clipped(ls, config_, lr_sched);
    ls.model->zero_grads();
    if (zero_owner_) broadcast_params(ls);
  };

  Executor executor(lowered, groups_.pp_rank, by_stage, transport);
  const float loss_scale = 1.0f / float(m * groups_.dp);
  StepOutput out = executor.run_step(
      [&](int g, int32_t* in, int32_t* tg) { data.batch(first_step + g / m, g % m, groups_.dp_rank, in, tg); },
      loss_scale, callbacks);

  // step_slot reference (owner mode): a non-owner's backward between its stage's ALLREDUCE_GRAD and
  // STEP was zeroed at the STEP, never applied; the record says so (applied -1), exactly as
  // versions_from_schedule derives it from the list.
  if (zero_owner_) {
    std::set<int> reduced;
    std::set<std::pair<int, int>> dropped;  // (micro-batch, stage)
    for (const Action& a : lowered.per_rank[size_t(groups_.pp_rank)]) {
      if (a.kind == ActionKind::ALLREDUCE_GRAD) reduced.insert(a.stage);
      if (a.kind == ActionKind::STEP) reduced.erase(a.stage);
      if (a.kind == ActionKind::B && reduced.count(a.stage) && !owns(*local.at(a.stage)))
        dropped.insert({a.microbatch, a.stage});
    }
    for (VersionRecord& r : out.versions)
      if (dropped.count({r.microbatch, r.stage})) r.applied = -1;
  }
  if (replica_comm_ != MPI_COMM_NULL) {
    check_replicas_identical(*state);
    check_and_record_optimizer_state(*state);
  }

  // Losses: each micro-batch's loss lives on the rank of its last stage; a SUM over
  // the pipeline group of (value, zeros) is exact. Times: MAX.
  std::vector<double> loss(total, 0.0), when(total, 0.0);
  for (size_t g = 0; g < out.losses.size(); ++g) {
    loss[g] = out.losses[g];
    when[g] = out.loss_times[g];
  }
  PT_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, loss.data(), total, MPI_DOUBLE, MPI_SUM, groups_.pipeline));
  PT_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, when.data(), total, MPI_DOUBLE, MPI_MAX, groups_.pipeline));
  std::vector<double> all_loss(size_t(total) * groups_.dp);
  PT_MPI_CHECK(MPI_Allgather(loss.data(), total, MPI_DOUBLE, all_loss.data(), total, MPI_DOUBLE, groups_.data));

  // Norms: (stage, k, sq) triples gathered on pipeline rank 0; replicas of a model
  // stage (AMDP) carry identical gradients after the reduce, so pipeline 0's count.
  std::vector<int64_t> mine;
  for (const auto& [sk, sq] : norm_sq) {
    if (sk.first >= chain_) continue;
    mine.push_back(sk.first);
    mine.push_back(sk.second);
    int64_t bits;
    static_assert(sizeof(bits) == sizeof(sq));
    std::memcpy(&bits, &sq, sizeof bits);
    mine.push_back(bits);
  }
  std::vector<int64_t> norms = gather_on_root(mine, groups_.pipeline);
  std::vector<int64_t> rec;
  for (const VersionRecord& r : out.versions) {
    rec.push_back(first_step * m + r.microbatch);
    rec.push_back(r.stage);
    rec.push_back(version_base + r.forward);
    rec.push_back(version_base + r.backward);
    rec.push_back(r.applied < 0 ? -1 : version_base + r.applied);
  }
  std::vector<int64_t> all_rec = gather_on_root(rec, groups_.pipeline);
  if (groups_.world_rank != 0) return Status::ok();

  std::vector<std::vector<std::pair<int, double>>> step_sq(updates);  // per k: (stage, sq)
  for (size_t i = 0; i + 2 < norms.size(); i += 3) {
    double sq;
    std::memcpy(&sq, &norms[i + 2], sizeof sq);
    step_sq[norms[i + 1]].push_back({int(norms[i]), sq});
  }
  records->clear();
  for (size_t i = 0; i + 5 <= all_rec.size(); i += 5)
    records->push_back(RunVersionRecord{all_rec[i], int(all_rec[i + 1]), all_rec[i + 2], all_rec[i + 3], all_rec[i + 4]});

  logs->clear();
  for (int k = 0; k < updates; ++k) {
    AsyncStepLog l;
    l.step = first_step + k + 1;
    double sum = 0.0;
    for (int r = 0; r < groups_.dp; ++r)
      for (int j = 0; j < m; ++j) sum += all_loss[size_t(r) * total + size_t(k) * m + j];
    l.loss = sum / double(m * groups_.dp);
    l.time_s = clock_offset + when[size_t(k) * m + m - 1];
    l.lr = learning_rate(lr_sched, first_step + k);
    std::sort(step_sq[k].begin(), step_sq[k].end());
    double total_sq = 0.0;
    for (const auto& e : step_sq[k]) total_sq += e.second;
    l.grad_norm = std::sqrt(total_sq);
    // Per stage drift (backward - forward) and delay (applied - forward) of the step's micro-batches.
    std::vector<int64_t> dmax(S, 0), tmax(S, 0);
    std::vector<double> dsum(S, 0), tsum(S, 0);
    std::vector<int> cnt(S, 0);
    for (const auto& r : *records) {
      if (r.microbatch / m != first_step + k) continue;
      const int64_t drift = r.backward - r.forward, delay = r.applied < 0 ? 0 : r.applied - r.forward;
      dmax[r.stage] = std::max(dmax[r.stage], drift);
      tmax[r.stage] = std::max(tmax[r.stage], delay);
      dsum[r.stage] += double(drift);
      tsum[r.stage] += double(delay);
      ++cnt[r.stage];
    }
    auto arr = [&](auto f) {
      std::string s = "[";
      for (int st = 0; st < S; ++st) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%s%.4g", st ? "," : "", double(f(st)));
        s += buf;
      }
      return s + "]";
    };
    JsonWriter v;
    v.raw("drift_max", arr([&](int st) { return double(dmax[st]); }))
        .raw("drift_mean", arr([&](int st) { return cnt[st] ? dsum[st] / cnt[st] : 0.0; }))
        .raw("delay_max", arr([&](int st) { return double(tmax[st]); }))
        .raw("delay_mean", arr([&](int st) { return cnt[st] ? tsum[st] / cnt[st] : 0.0; }));
    l.versions = v.str();
    logs->push_back(l);
  }
  return Status::ok();
}

std::string version_record_json(const RunVersionRecord& r) {
  JsonWriter j;
  j.field("mb", r.microbatch).field("stage", r.stage).field("forward", r.forward).field("backward", r.backward)
      .field("applied", r.applied);
  return j.str();
}

}  // namespace pt
