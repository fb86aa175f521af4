// The one interpreter (see executor.h). Stages are chain positions: with several
// pipelines (AMDP) stage v is model stage v % chain of pipeline v / chain, and data
// flows only between chain neighbours; with one pipeline, v is the global stage.
#include "pipeline/executor.h"

#include <algorithm>
#include <chrono>
#include <set>

#include "common/check.h"
#include "pipeline/comm_groups.h"

namespace pt {
namespace {
constexpr int kActTag = 0;
constexpr int kGradTag = 1;
int64_t key(int stage, int mb) { return (int64_t(stage) << 32) | uint32_t(mb); }

// Ticks before which StageCallbacks::grads_final_next runs: per ALLREDUCE_GRAD(s) over the
// data group alone, the last B/Bw of s before it (after the previous ALLREDUCE_GRAD(s)).
std::vector<uint8_t> grads_final_ticks(const std::vector<Action>& actions, int num_stages) {
  std::vector<uint8_t> out(actions.size(), 0);
  std::vector<int64_t> last_weight(size_t(num_stages), -1);
  for (size_t i = 0; i < actions.size(); ++i) {
    const Action& a = actions[i];
    int64_t& last = last_weight[size_t(a.stage)];
    if (a.kind == ActionKind::B || a.kind == ActionKind::Bw) last = int64_t(i);
    if (a.kind != ActionKind::ALLREDUCE_GRAD) continue;
    if (a.group == kGroupData && last >= 0) out[size_t(last)] = 1;
    last = -1;
  }
  return out;
}
}  // namespace

Executor::Executor(const Schedule& lowered, int pipeline_rank, std::vector<StageModel*> stages, Transport* transport)
    : schedule_(lowered), rank_(pipeline_rank), stages_(std::move(stages)), transport_(transport) {
  PT_CHECK(int(stages_.size()) == schedule_.num_stages);
  chain_ = chain_length(schedule_);
  for (int s = 0; s < schedule_.num_stages; ++s) {
    PT_CHECK_MSG((stages_[s] != nullptr) == (schedule_.stage_to_rank[s] == rank_),
                 "stage " + std::to_string(s) + " ownership disagrees with the schedule");
    if (stages_[s]) {
      const StageModel& m = *stages_[s];
      tokens_ = size_t(m.batch_size()) * m.seq_len();
      act_floats_ = tokens_ * m.config().n_embd;
    }
  }
  memory_.resize(size_t(schedule_.num_stages));
  for (int s = 0; s < schedule_.num_stages; ++s)
    if (stages_[s]) memory_[size_t(s)] = stages_[s]->boundary_memory();
  const std::vector<Action>& list = schedule_.per_rank[size_t(rank_)];
  group_open_.assign(list.size(), 0);
  group_close_.assign(list.size(), 0);
  const std::vector<std::vector<CommGroup>> groups = comm_groups(schedule_);
  for (const CommGroup& g : groups[size_t(rank_)]) {
    group_open_[size_t(g.begin)] = 1;
    group_close_[size_t(g.end - 1)] = 1;
  }
  inputs_.resize(tokens_);
  targets_.resize(tokens_);
  free_slots_.resize(schedule_.num_stages);
  slots_in_use_.assign(schedule_.num_stages, 0);
  next_slot_.assign(schedule_.num_stages, 0);
}

Executor::~Executor() {
  transport_->wait_sends();  // no pending send may still read a buffer freed here
  for (Pool* p : {&act_in_, &act_out_, &grad_in_, &grad_out_}) free_pool(*p);
}

void Executor::free_pool(Pool& pool) {
  for (auto& [k, b] : pool) {
    BoundaryMemory& mem = *memory_[size_t(k >> 32)];
    mem.free(b.data);
    if (b.host) mem.free_host(b.host);
  }
  pool.clear();
}

Executor::Boundary& Executor::boundary(Pool& pool, int stage, int mb) {
  Boundary& b = pool[key(stage, mb)];
  if (b.data == nullptr) {
    PT_CHECK(memory_[size_t(stage)] != nullptr);
    b.data = memory_[size_t(stage)]->alloc(act_floats_);
  }
  return b;
}

bool Executor::staged(int stage) const {
  return memory_[size_t(stage)]->space() != MemorySpace::kHost && !transport_->accepts(MemorySpace::kDevice);
}

void Executor::send_boundary(Pool& pool, int stage, int mb, int peer, int tag) {
  BoundaryMemory& mem = *memory_[size_t(stage)];
  Boundary& b = boundary(pool, stage, mb);
  if (mem.space() == MemorySpace::kHost) {
    transport_->send(BufferRef::host(b.data, act_floats_), peer, tag);
  } else if (!staged(stage)) {
    transport_->send(BufferRef{b.data, act_floats_, MemorySpace::kDevice, mem.producer_event()}, peer, tag);
  } else {
    if (b.host == nullptr) b.host = mem.alloc_host(act_floats_);
    mem.to_host(b.host, b.data, act_floats_);  // waits for the producer
    transport_->send(BufferRef::host(b.host, act_floats_), peer, tag);
  }
}

void Executor::recv_boundary(Pool& pool, int stage, int mb, int peer, int tag) {
  BoundaryMemory& mem = *memory_[size_t(stage)];
  Boundary& b = boundary(pool, stage, mb);
  PendingRecv r{stage, &b, nullptr};
  if (mem.space() == MemorySpace::kHost) {
    r.event = transport_->recv(BufferRef::host(b.data, act_floats_), peer, tag);
  } else if (!staged(stage)) {
    // ready: the buffer's previous reader (this stage's stream) is done before it is overwritten.
    r.event = transport_->recv(BufferRef{b.data, act_floats_, MemorySpace::kDevice, mem.producer_event()}, peer, tag);
  } else {
    if (b.host == nullptr) b.host = mem.alloc_host(act_floats_);
    r.event = transport_->recv(BufferRef::host(b.host, act_floats_), peer, tag);
  }
  pending_recvs_.push_back(r);
}

// After a receive (or its group) returned: the consumer stage waits for the data.
void Executor::finish_receives() {
  for (const PendingRecv& r : pending_recvs_) {
    BoundaryMemory& mem = *memory_[size_t(r.stage)];
    if (staged(r.stage)) {
      transport_->host_wait(r.event);
      mem.from_host(r.buffer->data, r.buffer->host, act_floats_);
    } else {
      mem.consumer_wait(r.event);
    }
  }
  pending_recvs_.clear();
}

void Executor::local_order(int producer, int consumer) {
  if (memory_[size_t(producer)] != memory_[size_t(consumer)])
    memory_[size_t(consumer)]->consumer_wait(memory_[size_t(producer)]->producer_event());
}

int Executor::take_slot(int stage) {
  int slot;
  if (!free_slots_[stage].empty()) {
    // Lowest free slot first, so slot use is a pure function of the schedule.
    auto it = std::min_element(free_slots_[stage].begin(), free_slots_[stage].end());
    slot = *it;
    free_slots_[stage].erase(it);
  } else {
    slot = next_slot_[stage]++;
  }
  ++slots_in_use_[stage];
  return slot;
}

void Executor::give_slot(int stage, int slot) {
  stages_[stage]->release(slot);
  free_slots_[stage].push_back(slot);
  --slots_in_use_[stage];
}

template <class Fn> void Executor::with_version(int stage, int version, Fn&& fn) {
  if (version == live_version_[stage]) {
    fn();
    return;
  }
  PT_CHECK_MSG(stashed_[stage].count(version), "stage " + std::to_string(stage) + " has no snapshot of version " +
                                                  std::to_string(version) + " (live " +
                                                  std::to_string(live_version_[stage]) + ")");
  StageModel* m = stages_[stage];
  m->swap_stashed_params(version);  // in backend memory (stage_model.h, weight stashing)
  fn();
  m->swap_stashed_params(version);
}

int Executor::forward_into_slot(int s, int mb, int version, const BatchFn& batch) {
  StageModel* model = stages_[s];
  PT_CHECK(model != nullptr);
  if (is_first(s) || is_last(s)) batch(mb, inputs_.data(), targets_.data());
  const float* input = nullptr;
  if (!is_first(s)) {
    // Input of stage s: the local output of its predecessor, or what RECV_ACT delivered.
    if (stages_[s - 1]) local_order(s - 1, s);
    input = stages_[s - 1] ? buffer(act_out_, s - 1, mb) : buffer(act_in_, s, mb);
  }
  float* output = is_last(s) ? nullptr : buffer(act_out_, s, mb);
  const int slot = take_slot(s);
  slot_of_[key(s, mb)] = slot;
  with_version(s, version, [&] {
    model->forward(slot, is_first(s) ? inputs_.data() : nullptr, input, is_last(s) ? targets_.data() : nullptr, output);
  });
  return slot;
}

// AVERAGE of model stage s: its replicas are all here, none holds a micro-batch in flight or a
// snapshot of an older version (that version's weights would predate the average).
void Executor::check_average(int s) const {
  const int pipelines = int(stages_.size()) / chain_;
  for (int p = 0; p < pipelines; ++p) {
    const int v = p * chain_ + s;
    PT_CHECK_MSG(stages_[size_t(v)] != nullptr, "AVERAGE of stage " + std::to_string(s) + ": replica " +
                                                    std::to_string(v) + " is not on this rank");
    PT_CHECK_MSG(slots_in_use_[size_t(v)] == 0 && stashed_[size_t(v)].empty(),
                 "AVERAGE of stage " + std::to_string(s) + ": replica " + std::to_string(v) +
                     " has micro-batches in flight or a stashed older version");
  }
}

namespace {

// A device stage's compute action: its span and the marks before and after its ops.
struct DeviceMark {
  size_t span;
  int stage, before, after;
};

// Gives each marked span the interval the device spent on it (ActionSpan::device), from
// each stage's marks read once (a wait for its stream, where the step ends anyway).
void apply_device_marks(const std::vector<DeviceMark>& marks, const std::vector<StageModel*>& stages,
                        const std::function<double()>& now, std::vector<ActionSpan>* spans) {
  std::vector<double> before;
  for (size_t s = 0; s < stages.size(); ++s) {
    bool any = false;
    for (const DeviceMark& d : marks) any = any || d.stage == int(s);
    if (!any) continue;
    stages[s]->timing_marks(&before);
    const double t = now();
    for (const DeviceMark& d : marks) {
      if (d.stage != int(s)) continue;
      ActionSpan& span = (*spans)[d.span];
      span.start = t - before.at(size_t(d.before));
      span.end = t - before.at(size_t(d.after));
      span.device = 1;
    }
  }
}

}  // namespace

StepOutput Executor::run_step(const BatchFn& batch, float loss_scale, const StageCallbacks& callbacks) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  const int S = schedule_.num_stages;
  const int m = schedule_.microbatches;
  const bool recompute = schedule_.recompute_in_backward;
  const std::vector<Action>& actions = schedule_.per_rank[rank_];
  StepOutput out;
  out.started = t0;
  auto since_t0 = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  if (timing_) out.spans.reserve(actions.size() + 1);
  bool has_last = false;
  for (int s = 0; s < S; ++s) has_last = has_last || (stages_[s] && is_last(s));
  if (has_last) {
    out.losses.assign(m, 0.0f);
    out.loss_times.assign(m, 0.0);
  }
  int peak = 0;
  std::vector<std::vector<int>> loss_order(S);  // per last stage: micro-batches in record_loss order

  // Last action index that reads each (stage, version): a snapshot of a version is
  // kept at STEP only if a later action still reads it, and dropped after that read.
  std::map<int64_t, size_t> last_read;
  int64_t last_compute = -1;
  for (size_t i = 0; i < actions.size(); ++i)
    if (is_compute(actions[i].kind)) {
      last_read[key(actions[i].stage, actions[i].version)] = i;
      last_compute = int64_t(i);
    }
  const std::vector<uint8_t> final_next = grads_final_ticks(actions, S);
  // Block-coordinate lists (Schedule::partial_backward): which (stage, mb) run a backward / a Bw.
  std::set<int64_t> has_backward, has_bw;
  if (schedule_.partial_backward)
    for (const Action& a : actions) {
      if (a.kind == ActionKind::B || a.kind == ActionKind::Bx) has_backward.insert(key(a.stage, a.microbatch));
      if (a.kind == ActionKind::Bw) has_bw.insert(key(a.stage, a.microbatch));
    }
  live_version_.assign(S, 0);
  for (size_t s = 0; s < stashed_.size(); ++s)
    for (int v : stashed_[s]) stages_[s]->drop_stashed_params(v);
  stashed_.assign(S, {});
  std::map<int64_t, size_t> record_of;            // (stage, mb) -> index in `records`
  std::vector<VersionRecord> records;             // in forward order
  std::vector<size_t> backward_order;             // record indices in the order backwards ran
  std::vector<std::vector<size_t>> unapplied(S);  // per stage: records whose gradient awaits a STEP
  bool in_group = false;                          // between group_open_ and group_close_ ticks
  std::vector<DeviceMark> device_marks;           // timing_: compute actions of device stages

  for (size_t i = 0; i < actions.size(); ++i) {
    const Action& a = actions[i];
    const int s = a.stage, mb = a.microbatch;
    const double span_start = timing_ ? since_t0() : 0.0;
    if (final_next[i] && callbacks.grads_final_next) callbacks.grads_final_next(s);
    if (group_open_[i]) {
      transport_->group_begin();
      in_group = true;
    }
    const int mark = timing_ && is_compute(a.kind) ? stages_[s]->timing_mark() : -1;
    switch (a.kind) {
      case ActionKind::F: {
        const int slot = forward_into_slot(s, mb, a.version, batch);
        if (is_last(s)) {  // read once after the list (no wait per micro-batch on a device)
          stages_[s]->record_loss(slot);
          loss_order[s].push_back(mb);
          out.loss_times[mb] = since_t0();
        }
        record_of[key(s, mb)] = records.size();
        records.push_back(VersionRecord{mb, s, a.version, -1, -1});
        int in_use = 0;
        for (int x : slots_in_use_) in_use += x;
        peak = std::max(peak, in_use);
        const bool forward_only = schedule_.partial_backward && !has_backward.count(key(s, mb));
        if (recompute || forward_only) {
          // Keep only the stage input (in the boundary pools); the backward recomputes. Or no backward.
          give_slot(s, slot);
          slot_of_.erase(key(s, mb));
        }
        break;
      }
      case ActionKind::B:
      case ActionKind::Bx: {
        StageModel* model = stages_[s];
        PT_CHECK(model != nullptr);
        const float* dout = nullptr;
        if (!is_last(s) && stages_[s + 1]) local_order(s + 1, s);
        if (!is_last(s)) dout = stages_[s + 1] ? buffer(grad_in_, s + 1, mb) : buffer(grad_out_, s, mb);
        float* dinput = is_first(s) ? nullptr : buffer(grad_in_, s, mb);
        if (recompute) {
          PT_CHECK_MSG(a.kind == ActionKind::B, "recompute mode needs full backwards");
          forward_into_slot(s, mb, a.version, batch);  // live weights: the stage is self-consistent
        }
        auto it = slot_of_.find(key(s, mb));
        PT_CHECK_MSG(it != slot_of_.end(), "backward of stage " + std::to_string(s) + " micro-batch " +
                                               std::to_string(mb) + " before its forward");
        const int slot = it->second;
        if (a.kind == ActionKind::B) {
          with_version(s, a.version, [&] { model->backward(slot, dout, dinput, loss_scale); });
          give_slot(s, slot);
          slot_of_.erase(it);
        } else {
          with_version(s, a.version, [&] { model->backward_input(slot, dout, dinput, loss_scale); });
          if (schedule_.partial_backward && !has_bw.count(key(s, mb))) {  // input gradient only
            give_slot(s, slot);
            slot_of_.erase(it);
          }
        }
        const size_t r = record_of.at(key(s, mb));
        records[r].backward = a.version;
        if (a.kind == ActionKind::B) {
          unapplied[s].push_back(r);
          backward_order.push_back(r);
        }
        break;
      }
      case ActionKind::Bw: {
        auto it = slot_of_.find(key(s, mb));
        PT_CHECK_MSG(it != slot_of_.end(), "Bw before F for stage " + std::to_string(s));
        const int slot = it->second;
        with_version(s, a.version, [&] { stages_[s]->backward_weight(slot); });
        give_slot(s, slot);
        slot_of_.erase(it);
        const size_t r = record_of.at(key(s, mb));
        unapplied[s].push_back(r);
        backward_order.push_back(r);
        break;
      }
      case ActionKind::SEND_ACT:
        send_boundary(act_out_, s, mb, a.peer_rank, message_tag(kActTag, s, mb, S));
        break;
      case ActionKind::RECV_ACT:
        recv_boundary(act_in_, s, mb, a.peer_rank, message_tag(kActTag, s - 1, mb, S));
        break;
      case ActionKind::SEND_GRAD:
        send_boundary(grad_in_, s, mb, a.peer_rank, message_tag(kGradTag, s, mb, S));
        break;
      case ActionKind::RECV_GRAD:
        recv_boundary(grad_out_, s, mb, a.peer_rank, message_tag(kGradTag, s + 1, mb, S));
        break;
      case ActionKind::ALLREDUCE_GRAD:
        if (callbacks.reduce) callbacks.reduce(s, a.group);
        break;
      case ActionKind::AVERAGE:
        PT_CHECK_MSG(callbacks.average != nullptr || int64_t(i) > last_compute,
                     "schedule has AVERAGE actions between compute actions but no average callback");
        check_average(s);
        if (callbacks.average) callbacks.average(s);
        break;
      case ActionKind::STEP: {
        PT_CHECK_MSG(callbacks.step != nullptr || int64_t(i) > last_compute,
                     "schedule has STEP actions between compute actions but no step callback");
        StageModel* model = stages_[s];
        PT_CHECK(model != nullptr);
        const int live = live_version_[s];
        auto lr = last_read.find(key(s, live));
        if (lr != last_read.end() && lr->second > i) {
          model->stash_params(live);
          stashed_[s].insert(live);
        }
        for (size_t r : unapplied[s]) records[r].applied = live;
        unapplied[s].clear();
        if (callbacks.step) callbacks.step(s);
        ++live_version_[s];
        // Drop stashes no later action reads.
        for (auto it = stashed_[s].begin(); it != stashed_[s].end();) {
          auto last = last_read.find(key(s, *it));
          if (last != last_read.end() && last->second > i) {
            ++it;
            continue;
          }
          model->drop_stashed_params(*it);
          it = stashed_[s].erase(it);
        }
        break;
      }
    }
    if (group_close_[i]) {
      transport_->group_end();
      in_group = false;
    }
    if (!in_group && !pending_recvs_.empty()) finish_receives();
    if (mark >= 0) device_marks.push_back({out.spans.size(), s, mark, stages_[s]->timing_mark()});
    if (timing_) {
      ActionSpan span;
      span.start = span_start;
      span.end = since_t0();
      span.stage = s;
      span.microbatch = mb;
      span.kind = uint8_t(a.kind);
      span.group = a.group;
      out.spans.push_back(span);
    }
  }
  const double wait_start = timing_ ? since_t0() : 0.0;
  transport_->wait_sends();
  if (timing_) {
    ActionSpan span;
    span.start = wait_start;
    span.end = since_t0();
    span.kind = kSpanWaitSends;
    out.spans.push_back(span);
  }
  PT_CHECK_MSG(slot_of_.empty(), "schedule left micro-batches without a backward");
  for (int s = 0; s < S; ++s) {
    if (loss_order[s].empty()) continue;
    const std::vector<float> l = stages_[s]->take_losses();
    PT_CHECK(l.size() == loss_order[s].size());
    for (size_t k = 0; k < l.size(); ++k) out.losses[loss_order[s][k]] = l[k];
  }
  apply_device_marks(device_marks, stages_, since_t0, &out.spans);
  out.peak_slots = peak;
  out.versions.reserve(backward_order.size());
  for (size_t r : backward_order) out.versions.push_back(records[r]);
  if (schedule_.partial_backward) {  // then the forward-only and input-gradient-only records
    std::vector<bool> listed(records.size(), false);
    for (size_t r : backward_order) listed[r] = true;
    for (size_t r = 0; r < records.size(); ++r)
      if (!listed[r]) out.versions.push_back(records[r]);
  }
  return out;
}

std::vector<float> Executor::forward_only(int count, const BatchFn& batch) {
  const int S = schedule_.num_stages;
  StageModel* last = nullptr;  // pipeline 0's last stage, when on this rank
  std::vector<float> in(act_floats_), out(act_floats_);
  // Every rank walks (micro-batch, stage of pipeline 0) in the same order: receives
  // are matched by sends issued earlier in that order, so no rank waits on a later one.
  for (int mb = 0; mb < count; ++mb) {
    for (int s = 0; s < chain_; ++s) {
      StageModel* model = stages_[s];
      if (!model) continue;
      if (is_first(s) || is_last(s)) batch(mb, inputs_.data(), targets_.data());
      if (!is_first(s) && !stages_[s - 1])
        transport_->recv(in.data(), act_floats_, schedule_.stage_to_rank[s - 1], message_tag(kActTag, s - 1, mb, S));
      else if (!is_first(s))
        in.swap(out);
      const int slot = take_slot(s);
      model->forward(slot, is_first(s) ? inputs_.data() : nullptr, is_first(s) ? nullptr : in.data(),
                     is_last(s) ? targets_.data() : nullptr, is_last(s) ? nullptr : out.data());
      if (is_last(s)) {
        model->record_loss(slot);  // kept in backend memory: one download for all, below
        last = model;
      }
      give_slot(s, slot);
      if (!is_last(s) && !stages_[s + 1]) {
        transport_->send(out.data(), act_floats_, schedule_.stage_to_rank[s + 1], message_tag(kActTag, s, mb, S));
        transport_->wait_sends();  // `out` is reused by the next forward
      }
    }
  }
  return last ? last->take_losses() : std::vector<float>{};
}

}  // namespace pt
