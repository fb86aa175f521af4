#include "app/segment_runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "app/backend_staging.h"
#include "app/model_copies.h"
#include "app/optimizer_step.h"
#include "common/check.h"
#include "common/json.h"
#include "common/logging.h"
#include "optim/grad_norm.h"
#include "optim/lr_schedule.h"

namespace pt {

struct SegmentRunner::Pending {
  int64_t first_step = 0;
  LrSchedule lr;
  int tied_holders = 0;                       // local stages holding a wte copy
  int tied_reduced = 0;                       // of those, data-reduced in the current update
  int64_t norm_update = -1;                   // sync: the update whose global norm is cached
  float clip = 1.0f;                          // sync: its clip scale
  std::vector<double> global_norm;            // sync: per update
  std::map<std::pair<int, int>, double> sq;   // async: (stage, update) -> squared norm applied
  std::vector<NonFinite> nonfinite;           // this rank's
  std::set<int> skipped;                      // updates (k) left out on some stage of this rank
  std::map<int, int64_t> start_version;       // local stage -> its version at the segment start
  std::vector<int> step_updates;              // block-coordinate: update index of each STEP of this rank
  size_t steps_done = 0;                      // of those, STEPs run so far
};

namespace {

// Block-coordinate lists: the update of each STEP on `rank` is the micro-batch of the B before it.
std::vector<int> block_coordinate_steps(const Schedule& lowered, int rank) {
  std::vector<int> out;
  int last_backward = -1;
  for (const Action& a : lowered.per_rank[size_t(rank)]) {
    if (a.kind == ActionKind::B) last_backward = a.microbatch;
    if (a.kind == ActionKind::STEP) out.push_back(last_backward);
  }
  return out;
}

}  // namespace

SegmentRunner::SegmentRunner(const Config& c, Collectives& coll, const Schedule& placement, int pp_rank,
                             const ScheduleTraits& traits, std::string run_dir)
    : c_(c), coll_(coll), pp_rank_(pp_rank), chain_(chain_length(placement)), traits_(traits),
      run_dir_(std::move(run_dir)),
      replicas_(coll, placement.stage_to_rank, chain_length(placement), pp_rank, traits.replicas,
                c.schedule.amdp_zero_owner, c.optimizer) {
  tied_.enabled = c.model.tie_embeddings;
  tied_.last_stage = chain_ - 1;
  tied_.first_rank = placement.stage_to_rank[0];
  tied_.last_rank = placement.stage_to_rank[size_t(chain_ - 1)];
}

// ALLREDUCE_GRAD(data): non-owners in owner mode hold gradients that are never applied.
void SegmentRunner::reduce_data(LocalStage& ls, Pending& p, std::vector<LocalStage>& local) {
  if (replicas_.owner_mode() && !replicas_.owns(ls)) return;
  if (BucketedAllReduce* b = dp_buckets(ls)) {
    // The buckets the backward started (host memory only), then the rest: on the gradients
    // themselves where the sum takes them (app/backend_staging.h), else on a staged host copy.
    StageModel& m = *ls.model;
    if (sum_takes_backend_memory(coll_, Group::kData, m)) {
      m.synchronize();  // a device sum runs on its own stream
      b->finish(m.grads());
    } else {
      on_host(m, m.grads(), m.num_params(), HostAccess::kReadWrite, [&](float* h) { b->finish(h); });
    }
  }
  if (!tied_.enabled || (ls.stage != 0 && ls.stage != tied_.last_stage)) return;
  if (++p.tied_reduced < p.tied_holders) return;
  p.tied_reduced = 0;
  reduce_tied_embeddings(coll_, tied_, local);
}

BucketedAllReduce* SegmentRunner::dp_buckets(LocalStage& ls) {
  if (coll_.size(Group::kData) <= 1 || (replicas_.owner_mode() && !replicas_.owns(ls))) return nullptr;
  std::unique_ptr<BucketedAllReduce>& b = dp_buckets_[ls.stage];
  if (!b) {
    std::vector<std::pair<size_t, size_t>> extents;
    for (const ParamTensor& t : ls.model->tensors()) extents.push_back({t.offset, t.numel});
    const size_t cap = size_t(c_.runtime.dp_bucket_mb * (1 << 20) / sizeof(float));
    b = std::make_unique<BucketedAllReduce>(coll_, Group::kData, plan_grad_buckets(extents, cap));
  }
  return b.get();
}

// While a segment runs, each stage's weight backward reports its final gradient suffixes to its buckets.
void SegmentRunner::set_grads_ready_hooks(std::vector<LocalStage>& local, bool on) {
  for (auto& ls : local) {
    BucketedAllReduce* b = on ? dp_buckets(ls) : nullptr;
    using Hook = std::function<void(size_t, void*)>;
    ls.model->set_grads_ready_hook(b ? Hook([b](size_t from, void* ready) { b->ready_from(from, ready); }) : Hook());
  }
}

// Once per stage, on data-parallel rank 0: the bucket plan and how much of it the backward started.
void SegmentRunner::report_dp_buckets(std::vector<LocalStage>& local) {
  if (coll_.rank(Group::kData) != 0) return;
  for (auto& ls : local) {
    BucketedAllReduce* b = dp_buckets(ls);
    if (!b || !dp_buckets_reported_.insert(ls.stage).second) continue;
    char mib[32];
    std::snprintf(mib, sizeof mib, "%g", c_.runtime.dp_bucket_mb);
    log_info("pipetrain: dp all-reduce of stage " + std::to_string(ls.stage) + ": " + std::to_string(b->plan().size()) +
             " bucket(s) (runtime.dp_bucket_mb " + mib + "), " +
             std::to_string(b->started_early()) + " started during the backward");
  }
}

void SegmentRunner::step(LocalStage& ls, Pending& p, std::vector<LocalStage>& local) {
  if (replicas_.owner_mode() && !replicas_.owns(ls)) {
    replicas_.broadcast_params(ls);
    ls.model->zero_grads();
    ++ls.version;
    return;
  }
  const bool bc = traits_.block_coordinate;
  const int k = bc ? p.step_updates.at(p.steps_done++) : int(ls.version - p.first_step);
  bool finite = true;
  if (traits_.clip == ClipPolicy::kPerStage) {  // a non-finite update is left out
    const double sq = apply_stage_update_self_clipped(ls, c_, p.lr, bc ? p.first_step + k : -1);
    p.sq[{ls.stage, k}] = sq;
    finite = std::isfinite(sq);
    if (!finite) p.nonfinite.push_back({p.first_step + k + 1, ls.stage, pp_rank_});
  } else {
    if (p.norm_update != k) global_norm_of_update(k, p, local);
    finite = std::isfinite(p.global_norm.back());
    if (finite) apply_stage_update(ls, c_.optimizer, learning_rate(p.lr, p.first_step + k), p.clip);
    else ++ls.version;  // left out: parameters and optimizer state stay as they were
  }
  if (!finite) p.skipped.insert(k);
  ls.model->zero_grads();
  if (replicas_.owner_mode()) replicas_.broadcast_params(ls);
}

// This rank's first STEP of update k: every local stage is reduced, the norm is global.
void SegmentRunner::global_norm_of_update(int k, Pending& p, std::vector<LocalStage>& local) {
  const double norm = global_grad_norm(coll_, local);
  p.global_norm.push_back(norm);
  p.clip = clip_scale(norm, c_.optimizer.grad_clip);
  p.norm_update = k;
  if (std::isfinite(norm)) return;
  for (const auto& ls : local)  // name the stages whose own gradients are not finite
    if (!std::isfinite(stage_norm_sq(ls))) p.nonfinite.push_back({p.first_step + k + 1, ls.stage, pp_rank_});
}

// Every rank's non-finite findings, and the non-finite update losses (stage -1).
void SegmentRunner::gather_nonfinite(const Pending& p, SegmentResult* result) {
  // One flag exchange per segment; the findings themselves are gathered only when there are any.
  int64_t any[2] = {p.nonfinite.empty() ? 0 : 1, p.skipped.empty() ? 0 : 1};
  coll_.allreduce_max(Group::kPipeline, any, 2);
  std::vector<NonFinite> all;
  if (any[0]) all = allgatherv(coll_, Group::kPipeline, p.nonfinite);
  for (const UpdateLog& l : result->updates)
    if (!std::isfinite(l.loss)) all.push_back({l.step, -1, -1});
  std::sort(all.begin(), all.end(), [](const NonFinite& a, const NonFinite& b) {
    return a.step != b.step ? a.step < b.step : a.stage < b.stage;
  });
  result->nonfinite = all;
  if (!any[1]) return;
  std::vector<int64_t> mine(p.skipped.begin(), p.skipped.end());
  std::vector<int64_t> ks = allgatherv(coll_, Group::kPipeline, mine);
  for (int64_t k : ks) result->updates[size_t(k)].skipped = true;
}

int64_t transfer_floats(const TrainState& state) {
  int64_t total = 0;
  for (const auto& ls : state.local) total += ls.model->transfers().total();
  return total;
}

Executor& SegmentRunner::executor_for(const Schedule& lowered, const TrainState& state, Transport* transport) {
  std::unique_ptr<Executor>& e = executors_[&lowered];
  if (!e) {
    std::vector<StageModel*> by_stage(size_t(lowered.num_stages), nullptr);
    for (const auto& ls : state.local) by_stage[size_t(ls.stage)] = ls.model.get();
    e = std::make_unique<Executor>(lowered, pp_rank_, std::move(by_stage), transport);
  }
  return *e;
}

SegmentResult SegmentRunner::run(const Schedule& lowered, int64_t first_step, double clock_offset, TrainState* state,
                                 const DataLoader& data, Transport* transport) {
  const auto t0 = std::chrono::steady_clock::now();
  const int m = c_.training.microbatches;
  PT_CHECK(lowered.microbatches % m == 0);
  std::map<int, LocalStage*> local;
  Pending p;
  p.first_step = first_step;
  p.lr = lr_schedule_for(c_);
  for (auto& ls : state->local) {
    local[ls.stage] = &ls;
    p.start_version[ls.stage] = ls.version;
    ls.model->zero_grads();
    if (tied_.enabled && (ls.stage == 0 || ls.stage == tied_.last_stage)) ++p.tied_holders;
    // Versions count updates from the run's start: sync stages are all at first_step.
    PT_CHECK_MSG(traits_.asynchronous || ls.version == first_step, "stage " + std::to_string(ls.stage) + " is at version " +
                                                                std::to_string(ls.version) + ", expected step " +
                                                                std::to_string(first_step));
  }
  replicas_.release_non_owner_state(state);
  if (traits_.block_coordinate) p.step_updates = block_coordinate_steps(lowered, pp_rank_);

  StageCallbacks callbacks;
  callbacks.reduce = [&](int v, uint8_t group) {
    if (group & kGroupReplicas) replicas_.reduce(*local.at(v));
    if (group & kGroupData) reduce_data(*local.at(v), p, state->local);
  };
  callbacks.step = [&](int v) { step(*local.at(v), p, state->local); };
  callbacks.average = [&](int s) { average_copies(copies_of(state->local, s, chain_)); };
  callbacks.grads_final_next = [&](int v) {
    LocalStage& ls = *local.at(v);
    BucketedAllReduce* b = dp_buckets(ls);  // staged sums start at ALLREDUCE_GRAD, on a host copy
    if (b && sum_takes_backend_memory(coll_, Group::kData, *ls.model)) b->arm(ls.model->grads());
  };
  set_grads_ready_hooks(state->local, true);
  Executor& executor = executor_for(lowered, *state, transport);
  executor.set_timing(c_.run.time_accounting);
  const float loss_scale = 1.0f / float(microbatches_per_gradient(traits_, lowered, m) * coll_.size(Group::kData));
  const int dp_rank = coll_.rank(Group::kData);
  const int64_t moved_before = transfer_floats(*state);
  StepOutput out = executor.run_step(
      [&](int g, int32_t* in, int32_t* tg) { data.batch(first_step + g / m, g % m, dp_rank, in, tg); }, loss_scale,
      callbacks);
  const int64_t moved = transfer_floats(*state) - moved_before;  // the drain checks below not included
  set_grads_ready_hooks(state->local, false);
  report_dp_buckets(state->local);
  if (replicas_.owner_mode()) mark_dropped_backwards(lowered, state->local, &out.versions);
  replicas_.check(*state, coll_.rank(Group::kWorld) == 0, run_dir_);
  std::string differs;
  PT_CHECK_MSG(!traits_.averaged_copies || copies_identical(state->local, chain_, &differs),
               "the segment ended after an AVERAGE, yet " + differs);

  SegmentResult result;
  result.transfer_floats = moved;
  result.peak_slots = out.peak_slots;
  result.spans = std::move(out.spans);
  result.started = out.started;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fill_logs(lowered, first_step, clock_offset, p, out, &result);
  gather_nonfinite(p, &result);
  return result;
}

// step_slot reference (owner mode): a non-owner's backward between its stage's ALLREDUCE_GRAD
// (replicas) and STEP was zeroed at the STEP, never applied; the record says so (applied -1),
// exactly as versions_from_schedule derives it from the list.
void SegmentRunner::mark_dropped_backwards(const Schedule& lowered, const std::vector<LocalStage>& local,
                                           std::vector<VersionRecord>* versions) const {
  std::map<int, const LocalStage*> by_stage;
  for (const auto& ls : local) by_stage[ls.stage] = &ls;
  std::set<int> reduced;
  std::set<std::pair<int, int>> dropped;  // (micro-batch, stage)
  for (const Action& a : lowered.per_rank[size_t(pp_rank_)]) {
    if (a.kind == ActionKind::ALLREDUCE_GRAD && (a.group & kGroupReplicas)) reduced.insert(a.stage);
    if (a.kind == ActionKind::STEP) reduced.erase(a.stage);
    if (a.kind == ActionKind::B && reduced.count(a.stage) && !replicas_.owns(*by_stage.at(a.stage)))
      dropped.insert({a.microbatch, a.stage});
  }
  for (VersionRecord& r : *versions)
    if (dropped.count({r.microbatch, r.stage})) r.applied = -1;
}

namespace {

// Per stage max/mean drift (backward - forward) and delay (applied - forward) of update
// `step`'s micro-batches, as the JSON object of the metrics line's "versions" field.
std::string versions_json(const std::vector<RunVersionRecord>& records, int64_t step, int m, int stages) {
  std::vector<int64_t> dmax(size_t(stages), 0), tmax(size_t(stages), 0);
  std::vector<double> dsum(size_t(stages), 0), tsum(size_t(stages), 0);
  std::vector<int> cnt(size_t(stages), 0);
  for (const auto& r : records) {
    if (r.microbatch / m != step) continue;
    const int64_t drift = r.backward < 0 ? 0 : r.backward - r.forward, delay = r.applied < 0 ? 0 : r.applied - r.forward;
    const size_t s = size_t(r.stage);
    dmax[s] = std::max(dmax[s], drift);
    tmax[s] = std::max(tmax[s], delay);
    dsum[s] += double(drift);
    tsum[s] += double(delay);
    ++cnt[s];
  }
  auto arr = [&](auto f) {
    std::string out = "[";
    for (int st = 0; st < stages; ++st) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%s%.4g", st ? "," : "", double(f(size_t(st))));
      out += buf;
    }
    return out + "]";
  };
  JsonWriter v;
  v.raw("drift_max", arr([&](size_t st) { return double(dmax[st]); }))
      .raw("drift_mean", arr([&](size_t st) { return cnt[st] ? dsum[st] / cnt[st] : 0.0; }))
      .raw("delay_max", arr([&](size_t st) { return double(tmax[st]); }))
      .raw("delay_mean", arr([&](size_t st) { return cnt[st] ? tsum[st] / cnt[st] : 0.0; }));
  return v.str();
}

// Async: sqrt of the per-stage squared norms of each update, pipeline 0's stages (AMDP
// replicas carry identical reduced gradients), added in ascending stage order.
std::vector<double> async_update_norms(Collectives& coll, const std::map<std::pair<int, int>, double>& sq, int chain,
                                       int updates) {
  struct Entry {
    int64_t stage, update;
    double sq;
  };
  std::vector<Entry> mine;
  for (const auto& [sk, v] : sq)
    if (sk.first < chain) mine.push_back({sk.first, sk.second, v});
  std::vector<Entry> all = allgatherv(coll, Group::kPipeline, mine);
  std::vector<std::vector<std::pair<int, double>>> per(static_cast<size_t>(updates));
  for (const Entry& e : all) per[size_t(e.update)].push_back({int(e.stage), e.sq});
  std::vector<double> norms;
  for (auto& v : per) {
    std::sort(v.begin(), v.end());
    double total = 0.0;
    for (const auto& e : v) total += e.second;
    norms.push_back(std::sqrt(total));
  }
  return norms;
}

// Version records of dp replica 0 with run-global ids, gathered over the pipeline group: each
// stage's versions continue from its version at the segment start (-1 stays -1: no backward, or
// never applied).
std::vector<RunVersionRecord> gather_records(Collectives& coll, const std::vector<VersionRecord>& versions,
                                             int64_t first_step, int m, const std::map<int, int64_t>& start) {
  std::vector<RunVersionRecord> mine;
  for (const VersionRecord& r : versions) {
    const int64_t v0 = start.at(r.stage);
    mine.push_back(RunVersionRecord{first_step * m + r.microbatch, r.stage, v0 + r.forward,
                                    r.backward < 0 ? -1 : v0 + r.backward, r.applied < 0 ? -1 : v0 + r.applied});
  }
  return allgatherv(coll, Group::kPipeline, mine);
}

}  // namespace

void SegmentRunner::fill_logs(const Schedule& lowered, int64_t first_step, double clock_offset, const Pending& p,
                              const StepOutput& out, SegmentResult* result) {
  const int m = c_.training.microbatches, total = lowered.microbatches, updates = total / m;
  const std::vector<double> losses = reduce_update_losses(coll_, out.losses, total, m);
  std::vector<double> when(size_t(total), 0.0);  // async: when each loss was ready (max over the pipeline)
  if (traits_.asynchronous) {
    for (size_t g = 0; g < out.loss_times.size() && g < when.size(); ++g) when[g] = out.loss_times[g];
    coll_.allreduce_max(Group::kPipeline, when.data(), when.size());
  }
  std::vector<double> norms = p.global_norm;
  if (traits_.clip == ClipPolicy::kPerStage) norms = async_update_norms(coll_, p.sq, chain_, updates);
  if (traits_.asynchronous) result->records = gather_records(coll_, out.versions, first_step, m, p.start_version);
  PT_CHECK_MSG(int(norms.size()) == updates, "segment of " + std::to_string(updates) + " updates applied " +
                                                 std::to_string(norms.size()) + " on pipeline rank " +
                                                 std::to_string(pp_rank_));
  for (int k = 0; k < updates; ++k) {
    UpdateLog l;
    l.step = first_step + k + 1;
    l.loss = losses[size_t(k)];
    l.time_s = clock_offset + (traits_.asynchronous ? when[size_t(k) * m + size_t(m - 1)] : result->seconds);
    l.lr = learning_rate(p.lr, first_step + k);
    l.grad_norm = norms[size_t(k)];
    if (traits_.asynchronous) l.versions = versions_json(result->records, first_step + k, m, lowered.num_stages);
    result->updates.push_back(l);
  }
}

std::string version_record_json(const RunVersionRecord& r) {
  JsonWriter j;
  j.field("mb", r.microbatch).field("stage", r.stage).field("forward", r.forward).field("backward", r.backward)
      .field("applied", r.applied);
  return j.str();
}

}  // namespace pt
