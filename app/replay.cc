#include "app/replay.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "app/config.h"
#include "app/model_copies.h"
#include "app/optimizer_step.h"
#include "app/run_setup.h"
#include "app/schedule_builder.h"
#include "app/train_state.h"
#include "optim/lr_schedule.h"
#include "data/loader.h"
#include "model/stage_model_factory.h"
#include "pipeline/action.h"
#include "pipeline/schedules/schedules.h"
#include "pipeline/topology.h"

namespace pt {
namespace {

std::string fmt9(float x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", double(x));
  return buf;
}

struct Rec {
  int64_t mb, forward, backward, applied;
  int stage;
};

Status read_records(const std::string& path, std::vector<Rec>* out) {
  std::ifstream in(path);
  if (!in) return Status::error(path + ": cannot open (was the run asynchronous?)");
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    Rec r;
    long long mb, st, f, b, a;
    if (std::sscanf(line.c_str(), "{\"mb\":%lld,\"stage\":%lld,\"forward\":%lld,\"backward\":%lld,\"applied\":%lld}", &mb,
                    &st, &f, &b, &a) != 5)
      return Status::error(path + ":" + std::to_string(n) + ": not a version record: " + line);
    r.mb = mb;
    r.stage = int(st);
    r.forward = f;
    r.backward = b;
    r.applied = a;
    out->push_back(r);
  }
  return Status::ok();
}

// The replay of one run: V virtual stages (chain position v % L, pipeline v / L; without
// stage replicas V = L). Each virtual stage has its own model (activations, gradients). An
// UPDATE GROUP owns weights, versions and optimizer state, kept per version in `snap`: AMDP's
// replicas of a model stage share the group of pipeline 0's stage (v % L) and sum their gradients;
// averaged copies (localsgd) are each their own group (v), and at each version where the run
// AVERAGEd a model stage (read off the run's segment lists) the copies' weights and state are
// replaced by their mean before that version is published.
class Replay {
 public:
  explicit Replay(std::string run_dir) : dir_(std::move(run_dir)) {}
  Status open();
  Status run();
  Status compare(std::string* summary);

 private:
  Status check_config() const;
  Status open_stages();
  bool first(int v) const { return v % L_ == 0; }
  bool last(int v) const { return v % L_ == L_ - 1; }
  int group(int v) const { return copies_ ? v : v % L_; }
  bool load(int v, int64_t version);
  Status read_average_points();
  void publish(int g, int64_t version);
  const std::vector<float>* output_of(int64_t mb, int v);
  bool try_step(int s);
  // The backward of the next record of stage v; false when an input is not there yet.
  bool backward_next(int v, Status* error);
  // Block-coordinate runs (rpd): update by update, every stage forward at its recorded version,
  // input gradients down to the stage that applies, its full backward and its step: the algorithm
  // of algorithms.md §5.3 written out sequentially, from the recorded versions.
  Status run_block_coordinate();
  Status block_coordinate_update(const std::vector<const Rec*>& recs);

  std::string dir_;
  Config c_;
  Schedule placement_;
  int V_ = 0, L_ = 0, m_ = 1;
  size_t act_ = 0;
  bool recompute_ = false;
  LrSchedule lr_;
  DataLoader data_;
  bool copies_ = false;          // averaged copies (ScheduleTraits::averaged_copies)
  int grad_mb_ = 1;              // micro-batches behind one applied gradient (the loss scale)
  std::vector<LocalStage> st_;  // st_[g] of an update group g also carries its optimizer state
  std::vector<std::map<int64_t, std::vector<float>>> snap_;  // group -> version -> params
  std::vector<std::vector<int>> replicas_;                   // group -> virtual stages, by rank
  std::vector<std::set<int64_t>> averages_;                  // model stage -> versions averaged at
  std::vector<std::vector<Rec>> queue_;                      // per virtual stage, in backward order
  std::map<std::pair<int64_t, int>, Rec> by_key_;
  std::map<std::pair<int64_t, int>, std::vector<float>> outputs_, dgrad_;  // (mb, virtual stage)
  std::vector<int32_t> in_, tg_;
  std::vector<int64_t> version_;  // per update group
  std::vector<size_t> next_;      // per virtual stage: records done
  std::vector<float> sum_;
  int64_t updates_ = 0, done_ = 0;
  bool block_coordinate_ = false;
  std::vector<Rec> all_;  // block-coordinate: every record
};

Status Replay::check_config() const {
  const ScheduleTraits* traits = find_schedule(c_.schedule.kind);
  if (!traits->asynchronous)
    return Status::error(dir_ + ": schedule.kind " + c_.schedule.kind + " is synchronous; replay checks asynchronous runs");
  if (traits->replicas && c_.schedule.amdp_step_slot != "clean")
    return Status::error(dir_ + ": replay of " + c_.schedule.kind +
                         " covers step_slot: clean (the reference slot drops gradients)");
  if (c_.parallel.dp != 1)
    return Status::error(dir_ + ": replay needs a dp=1 run (parallel.dp = " + std::to_string(c_.parallel.dp) + ")");
  if (!c_.run.save_params) return Status::error(dir_ + ": the run did not save its parameters (run.save_params: true)");
  return Status::ok();
}

// The run's backend (auto resolves as the run did on a machine like this one); one process: GPU 0.
Status Replay::open_stages() {
  std::vector<std::pair<int, int>> ranges;
  PT_RETURN_IF_ERROR(split_layers_for_config(c_, L_, &ranges));
  st_.resize(size_t(V_));
  snap_.resize(size_t(V_));
  replicas_.resize(size_t(V_));
  for (int v = 0; v < V_; ++v) {
    // Replay runs full backwards only (backward_next): no split-backward buffers; a
    // block-coordinate replay also runs input-gradient-only backwards (backward_input).
    PT_RETURN_IF_ERROR(make_local_stage(c_, c_.runtime.backend, 0, v, L_, ranges, v == group(v),
                                        StageNeeds{/*split_backward=*/block_coordinate_}, &st_[size_t(v)]));
    replicas_[size_t(group(v))].push_back(v);
  }
  for (int s = 0; s < V_; ++s) {
    if (replicas_[size_t(s)].empty()) continue;
    StageModel& mdl = *st_[size_t(s)].model;
    snap_[size_t(s)][0].assign(mdl.params(), mdl.params() + mdl.num_params());
    // The run sums replica gradients in ascending rank order (replica group).
    std::sort(replicas_[size_t(s)].begin(), replicas_[size_t(s)].end(),
              [&](int x, int y) { return placement_.stage_to_rank[size_t(x)] < placement_.stage_to_rank[size_t(y)]; });
  }
  return Status::ok();
}

Status Replay::open() {
  PT_RETURN_IF_ERROR(load_config(dir_ + "/config.yaml", {}, &c_));
  PT_RETURN_IF_ERROR(check_config());
  std::vector<Rec> recs;
  PT_RETURN_IF_ERROR(read_records(dir_ + "/versions.jsonl", &recs));
  block_coordinate_ = find_schedule(c_.schedule.kind)->block_coordinate;
  if (block_coordinate_) all_ = recs;
  PT_RETURN_IF_ERROR(build_lowered_schedule(c_, next_drain_step(c_, 0), &placement_));
  V_ = placement_.num_stages;
  L_ = chain_length(placement_);
  m_ = c_.training.microbatches;
  const ScheduleTraits& traits = *find_schedule(c_.schedule.kind);
  copies_ = traits.averaged_copies;
  grad_mb_ = microbatches_per_gradient(traits, placement_, m_);
  PT_RETURN_IF_ERROR(read_average_points());
  act_ = size_t(c_.training.micro_batch_size) * size_t(c_.training.seq_len) * size_t(c_.model.n_embd);
  recompute_ = placement_.recompute_in_backward;  // as the run's executor
  lr_ = lr_schedule_for(c_);
  PT_RETURN_IF_ERROR(open_data_loader(c_, 1, false, &data_));
  PT_RETURN_IF_ERROR(open_stages());
  queue_.resize(size_t(V_));
  for (const Rec& r : recs) {
    if (r.stage < 0 || r.stage >= V_) return Status::error(dir_ + "/versions.jsonl: stage out of range");
    if (block_coordinate_) continue;
    queue_[size_t(r.stage)].push_back(r);
    by_key_[{r.mb, r.stage}] = r;
  }
  in_.resize(size_t(c_.training.micro_batch_size) * size_t(c_.training.seq_len));
  tg_.resize(in_.size());
  version_.assign(size_t(V_), 0);
  next_.assign(size_t(V_), 0);
  return Status::ok();
}

bool Replay::load(int v, int64_t version) {
  auto& versions = snap_[size_t(group(v))];
  auto it = versions.find(version);
  if (it == versions.end()) return false;
  std::copy(it->second.begin(), it->second.end(), st_[size_t(v)].model->params());
  st_[size_t(v)].model->sync_params_to_device();
  return true;
}

// Output of stage v for micro-batch mb at its recorded forward version.
const std::vector<float>* Replay::output_of(int64_t mb, int v) {
  auto it = outputs_.find({mb, v});
  if (it != outputs_.end()) return &it->second;
  auto rk = by_key_.find({mb, v});
  if (rk == by_key_.end()) return nullptr;
  const std::vector<float>* input = nullptr;
  if (!first(v) && !(input = output_of(mb, v - 1))) return nullptr;
  if (!load(v, rk->second.forward)) return nullptr;
  data_.batch(mb / m_, int(mb % m_), 0, in_.data(), tg_.data());
  std::vector<float> out(act_);
  StageModel& mdl = *st_[size_t(v)].model;
  mdl.forward(0, first(v) ? in_.data() : nullptr, first(v) ? nullptr : input->data(), nullptr, out.data());
  mdl.release(0);
  return &(outputs_[{mb, v}] = std::move(out));
}

// Update group s applies update k once every replica has run all its backwards whose
// gradient the record assigns to version k.
bool Replay::try_step(int s) {
  const int64_t k = version_[size_t(s)];
  const std::vector<int>& reps = replicas_[size_t(s)];
  bool any = false;
  for (int v : reps) {
    const std::vector<Rec>& q = queue_[size_t(v)];
    for (size_t i = next_[size_t(v)]; i < q.size(); ++i) {
      if (q[i].applied == k) return false;  // still to run
      if (q[i].applied > k) break;
    }
    for (size_t i = 0; i < next_[size_t(v)]; ++i) any = any || q[i].applied == k;
  }
  if (!any) return false;
  LocalStage& owner = st_[size_t(s)];
  const size_t n = owner.model->num_params();
  for (int v : reps) st_[size_t(v)].model->sync_grads_to_host();  // host reads; the owner's is then written
  const float* g0 = st_[size_t(reps[0])].model->grads();
  sum_.assign(g0, g0 + n);
  for (size_t r = 1; r < reps.size(); ++r) {
    const float* g = st_[size_t(reps[r])].model->grads();
    for (size_t i = 0; i < n; ++i) sum_[i] += g[i];
  }
  std::copy(sum_.begin(), sum_.end(), owner.model->grads());
  load(s, k);
  apply_stage_update_self_clipped(owner, c_, lr_);
  for (int v : reps) st_[size_t(v)].model->zero_grads();
  version_[size_t(s)] = owner.version;
  ++updates_;
  publish(s, owner.version);
  return true;
}

// The group's weights of `version` become readable; at an average point only once every copy of
// its model stage has reached it, averaged as the run's AVERAGE did.
void Replay::publish(int g, int64_t version) {
  const int s = g % L_;
  std::vector<LocalStage*> copies;
  for (int v = s; v < V_; v += L_) copies.push_back(&st_[size_t(v)]);
  if (copies_ && averages_[size_t(s)].count(version)) {
    for (LocalStage* c : copies)
      if (version_[size_t(c->stage)] != version) return;  // the others are not there yet
    average_copies(copies);
  } else {
    copies = {&st_[size_t(g)]};
  }
  for (LocalStage* c : copies)
    snap_[size_t(c->stage)][version].assign(c->model->params(), c->model->params() + c->model->num_params());
}

// Versions (run-global) at which each model stage's copies were averaged: the AVERAGE actions of
// every segment list the run ran (segments end at next_drain_step), after that stage's STEPs.
Status Replay::read_average_points() {
  averages_.assign(size_t(L_), {});
  if (!copies_) return Status::ok();
  for (int64_t step = 0; step < c_.training.steps;) {
    const int64_t end = next_drain_step(c_, step);
    Schedule seg;
    PT_RETURN_IF_ERROR(make_schedule(schedule_spec_for(c_, end - step), &seg).with_context(dir_ + "/config.yaml"));
    for (const auto& list : seg.per_rank) {
      std::map<int, int64_t> live;  // copy 0's stage s: updates so far in the segment
      for (const Action& a : list) {
        if (a.kind == ActionKind::STEP && a.stage < L_) ++live[a.stage];
        if (a.kind == ActionKind::AVERAGE) averages_[size_t(a.stage)].insert(step + live[a.stage]);
      }
    }
    step = end;
  }
  return Status::ok();
}

// Forward at the forward version (PACI mem: the backward version), backward at the backward version.
bool Replay::backward_next(int v, Status* error) {
  const Rec& r = queue_[size_t(v)][next_[size_t(v)]];
  const std::vector<float>* input = nullptr;
  if (!first(v) && !(input = output_of(r.mb, v - 1))) return false;
  if (!last(v) && !dgrad_.count({r.mb, v})) return false;
  const int64_t fwd_version = recompute_ ? r.backward : r.forward;
  const auto& versions = snap_[size_t(group(v))];
  if (!versions.count(fwd_version) || !versions.count(r.backward)) return false;
  data_.batch(r.mb / m_, int(r.mb % m_), 0, in_.data(), tg_.data());
  load(v, fwd_version);
  std::vector<float> out(last(v) ? 0 : act_), dinput(first(v) ? 0 : act_);
  StageModel& mdl = *st_[size_t(v)].model;
  mdl.forward(0, first(v) ? in_.data() : nullptr, first(v) ? nullptr : input->data(), last(v) ? tg_.data() : nullptr,
              last(v) ? nullptr : out.data());
  load(v, r.backward);
  mdl.backward(0, last(v) ? nullptr : dgrad_.at({r.mb, v}).data(), first(v) ? nullptr : dinput.data(),
               1.0f / float(grad_mb_));
  mdl.release(0);
  if (!first(v)) dgrad_[{r.mb, v - 1}] = std::move(dinput);
  dgrad_.erase({r.mb, v});
  ++next_[size_t(v)];
  ++done_;
  if (r.applied >= 0 && r.applied < version_[size_t(group(v))])
    *error = Status::error(dir_ + "/versions.jsonl: stage " + std::to_string(v) + " micro-batch " + std::to_string(r.mb) +
                           " applies its gradient to version " + std::to_string(r.applied) +
                           ", already past in the replay (version " + std::to_string(version_[size_t(group(v))]) + ")");
  return true;
}

Status Replay::block_coordinate_update(const std::vector<const Rec*>& recs) {
  const int64_t k = recs[0]->mb;
  std::string where = dir_ + "/versions.jsonl: update " + std::to_string(k);
  if (int(recs.size()) != V_) return Status::error(where + " has " + std::to_string(recs.size()) + " records, expected one per stage");
  int s = -1;
  for (const Rec* r : recs) {
    if (r->applied >= 0) s = s < 0 ? r->stage : -2;
    if (!load(r->stage, r->forward)) return Status::error(where + ": stage " + std::to_string(r->stage) + " reads version " + std::to_string(r->forward) + ", which never existed");
  }
  if (s < 0) return Status::error(where + " must apply exactly one stage's gradient");
  if (recs[size_t(s)]->applied != version_[size_t(s)]) return Status::error(where + ": applied to a version not current");
  data_.batch(k, 0, 0, in_.data(), tg_.data());
  std::vector<std::vector<float>> act(size_t(V_), std::vector<float>(act_, 0.0f));
  for (int j = 0; j < V_; ++j) {
    load(j, recs[size_t(j)]->forward);
    st_[size_t(j)].model->forward(0, first(j) ? in_.data() : nullptr, first(j) ? nullptr : act[size_t(j - 1)].data(),
                                  last(j) ? tg_.data() : nullptr, last(j) ? nullptr : act[size_t(j)].data());
  }
  std::vector<float> dout(act_), din(act_);
  for (int j = V_ - 1; j >= s; --j) {
    StageModel& mdl = *st_[size_t(j)].model;
    load(j, recs[size_t(j)]->forward);
    if (j > s) mdl.backward_input(0, last(j) ? nullptr : dout.data(), din.data(), 1.0f);
    else mdl.backward(0, last(j) ? nullptr : dout.data(), first(j) ? nullptr : din.data(), 1.0f);
    dout.swap(din);
    ++done_;
  }
  for (int j = 0; j < V_; ++j) st_[size_t(j)].model->release(0);
  LocalStage& owner = st_[size_t(s)];
  load(s, version_[size_t(s)]);
  apply_stage_update_self_clipped(owner, c_, lr_, k);
  owner.model->zero_grads();
  version_[size_t(s)] = owner.version;
  snap_[size_t(s)][owner.version].assign(owner.model->params(), owner.model->params() + owner.model->num_params());
  ++updates_;
  return Status::ok();
}

Status Replay::run_block_coordinate() {
  if (V_ != L_ || m_ != 1) return Status::error(dir_ + ": block-coordinate replay needs one pipeline and m = 1");
  std::sort(all_.begin(), all_.end(), [](const Rec& a, const Rec& b) { return a.mb != b.mb ? a.mb < b.mb : a.stage < b.stage; });
  for (size_t i = 0; i < all_.size();) {
    std::vector<const Rec*> recs;
    for (size_t j = i; j < all_.size() && all_[j].mb == all_[i].mb; ++j) recs.push_back(&all_[j]);
    i += recs.size();
    PT_RETURN_IF_ERROR(block_coordinate_update(recs));
  }
  return Status::ok();
}

Status Replay::run() {
  if (block_coordinate_) return run_block_coordinate();
  std::vector<int> order(static_cast<size_t>(V_));  // downstream chain positions first
  for (int v = 0; v < V_; ++v) order[size_t(v)] = v;
  std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return x % L_ > y % L_; });
  for (bool progressed = true; progressed;) {
    progressed = false;
    for (int v : order)
      while (next_[size_t(v)] < queue_[size_t(v)].size()) {
        Status error;
        if (!backward_next(v, &error)) break;
        PT_RETURN_IF_ERROR(error);
        progressed = true;
        while (try_step(group(v))) {
        }
      }
  }
  for (int v = 0; v < V_; ++v)
    if (next_[size_t(v)] != queue_[size_t(v)].size())
      return Status::error(dir_ + "/versions.jsonl: replay stuck at stage " + std::to_string(v) + " micro-batch " +
                           std::to_string(queue_[size_t(v)][next_[size_t(v)]].mb) +
                           ": a version or input it needs never appears");
  return Status::ok();
}

// The final weights against the run's DIR/params, bit for bit.
Status Replay::compare(std::string* summary) {
  int tensors = 0;
  for (int s = 0; s < L_; ++s) {
    LocalStage& ls = st_[size_t(s)];
    load(s, version_[size_t(s)]);
    for (const auto& t : ls.model->tensors()) {
      if (t.is_tied_head) continue;
      const std::string path = dir_ + "/params/" + std::to_string(t.global_id) + ".bin";
      std::ifstream f(path, std::ios::binary);
      std::vector<float> saved(t.numel);
      if (!f.read(reinterpret_cast<char*>(saved.data()), std::streamsize(t.numel * sizeof(float))))
        return Status::error(path + ": missing or short");
      const float* mine = ls.model->params() + t.offset;
      for (size_t i = 0; i < t.numel; ++i)
        if (std::memcmp(&saved[i], &mine[i], sizeof(float)) != 0)
          return Status::error(path + ": replay differs from the run at element " + std::to_string(i) + " of " + t.name +
                               " (stage " + std::to_string(s) + "): run " + fmt9(saved[i]) + ", replay " +
                               fmt9(mine[i]));
      ++tensors;
    }
  }
  *summary = "replay of " + dir_ + ": " + std::to_string(done_) + " (micro-batch, stage) backwards, " +
             std::to_string(updates_) + " stage updates; all " + std::to_string(tensors) +
             " parameter tensors equal the run's bit for bit";
  return Status::ok();
}

}  // namespace

Status replay_run(const std::string& run_dir, std::string* summary) {
  Replay replay(run_dir);
  PT_RETURN_IF_ERROR(replay.open());
  PT_RETURN_IF_ERROR(replay.run());
  return replay.compare(summary);
}

}  // namespace pt
