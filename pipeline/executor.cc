#include "pipeline/executor.h"

#include <algorithm>

#include "common/check.h"

namespace pt {
namespace {
constexpr int kActTag = 0;
constexpr int kGradTag = 1;
int64_t key(int stage, int mb) { return (int64_t(stage) << 32) | uint32_t(mb); }
}  // namespace

Executor::Executor(const Schedule& lowered, int pipeline_rank, std::vector<StageModel*> stages, Transport* transport)
    : schedule_(lowered), rank_(pipeline_rank), stages_(std::move(stages)), transport_(transport) {
  PT_CHECK(int(stages_.size()) == schedule_.num_stages);
  for (int s = 0; s < schedule_.num_stages; ++s) {
    PT_CHECK_MSG((stages_[s] != nullptr) == (schedule_.stage_to_rank[s] == rank_),
                 "stage " + std::to_string(s) + " ownership disagrees with the schedule");
    if (stages_[s]) {
      const StageModel& m = *stages_[s];
      tokens_ = size_t(m.batch_size()) * m.seq_len();
      act_floats_ = tokens_ * m.config().n_embd;
    }
  }
  free_slots_.resize(schedule_.num_stages);
  slots_in_use_.assign(schedule_.num_stages, 0);
  next_slot_.assign(schedule_.num_stages, 0);
}

std::vector<float>& Executor::buffer(std::map<int64_t, std::vector<float>>& pool, int stage, int mb) {
  std::vector<float>& b = pool[key(stage, mb)];
  if (b.size() != act_floats_) b.assign(act_floats_, 0.0f);
  return b;
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

StepOutput Executor::run_step(const BatchFn& batch, float loss_scale) {
  const int S = schedule_.num_stages;
  const int m = schedule_.microbatches;
  StepOutput out;
  std::vector<int32_t> inputs(tokens_), targets(tokens_);
  const bool has_last = stages_[S - 1] != nullptr;
  if (has_last) out.losses.assign(m, 0.0f);
  int peak = 0;

  for (const Action& a : schedule_.per_rank[rank_]) {
    const int s = a.stage, mb = a.microbatch;
    switch (a.kind) {
      case ActionKind::F: {
        StageModel* model = stages_[s];
        PT_CHECK(model != nullptr);
        const float* input = nullptr;
        if (s == 0 || s == S - 1) batch(mb, inputs.data(), targets.data());
        if (s > 0) {
          // Input of stage s: the local output of stage s-1, or what RECV_ACT delivered.
          input = stages_[s - 1] ? buffer(act_out_, s - 1, mb).data() : buffer(act_in_, s, mb).data();
        }
        float* output = s < S - 1 ? buffer(act_out_, s, mb).data() : nullptr;
        const int slot = take_slot(s);
        slot_of_[key(s, mb)] = slot;
        model->forward(slot, s == 0 ? inputs.data() : nullptr, input, s == S - 1 ? targets.data() : nullptr, output);
        if (s == S - 1) out.losses[mb] = model->loss(slot);
        int in_use = 0;
        for (int x : slots_in_use_) in_use += x;
        peak = std::max(peak, in_use);
        break;
      }
      case ActionKind::B:
      case ActionKind::Bx: {
        StageModel* model = stages_[s];
        PT_CHECK(model != nullptr);
        const float* dout = nullptr;
        if (s < S - 1) dout = stages_[s + 1] ? buffer(grad_in_, s + 1, mb).data() : buffer(grad_out_, s, mb).data();
        float* dinput = s > 0 ? buffer(grad_in_, s, mb).data() : nullptr;
        auto it = slot_of_.find(key(s, mb));
        PT_CHECK_MSG(it != slot_of_.end(), "backward of stage " + std::to_string(s) + " micro-batch " +
                                               std::to_string(mb) + " before its forward");
        if (a.kind == ActionKind::B) {
          model->backward(it->second, dout, dinput, loss_scale);
          give_slot(s, it->second);
          slot_of_.erase(it);
        } else {
          model->backward_input(it->second, dout, dinput, loss_scale);
        }
        break;
      }
      case ActionKind::Bw: {
        auto it = slot_of_.find(key(s, mb));
        PT_CHECK_MSG(it != slot_of_.end(), "Bw before F for stage " + std::to_string(s));
        stages_[s]->backward_weight(it->second);
        give_slot(s, it->second);
        slot_of_.erase(it);
        break;
      }
      case ActionKind::SEND_ACT:
        transport_->send(buffer(act_out_, s, mb).data(), act_floats_, a.peer_rank, message_tag(kActTag, s, mb, S));
        break;
      case ActionKind::RECV_ACT:
        transport_->recv(buffer(act_in_, s, mb).data(), act_floats_, a.peer_rank, message_tag(kActTag, s - 1, mb, S));
        break;
      case ActionKind::SEND_GRAD:
        transport_->send(buffer(grad_in_, s, mb).data(), act_floats_, a.peer_rank, message_tag(kGradTag, s, mb, S));
        break;
      case ActionKind::RECV_GRAD:
        transport_->recv(buffer(grad_out_, s, mb).data(), act_floats_, a.peer_rank,
                         message_tag(kGradTag, s + 1, mb, S));
        break;
      case ActionKind::STEP:
      case ActionKind::ALLREDUCE_GRAD:
        // Synchronous schedules reduce and step after the action list (trainer).
        break;
    }
  }
  transport_->wait_sends();
  PT_CHECK_MSG(slot_of_.empty(), "schedule left micro-batches without a backward");
  out.peak_slots = peak;
  return out;
}

std::vector<float> Executor::forward_only(int count, const BatchFn& batch) {
  const int S = schedule_.num_stages;
  std::vector<float> losses;
  std::vector<int32_t> inputs(tokens_), targets(tokens_);
  std::vector<float> in(act_floats_), out(act_floats_);
  // Every rank walks (micro-batch, stage) in the same order: receives are matched by
  // sends issued earlier in that order, so no rank can wait on a later one.
  for (int mb = 0; mb < count; ++mb) {
    for (int s = 0; s < S; ++s) {
      StageModel* model = stages_[s];
      if (!model) continue;
      if (s == 0 || s == S - 1) batch(mb, inputs.data(), targets.data());
      if (s > 0 && !stages_[s - 1])
        transport_->recv(in.data(), act_floats_, schedule_.stage_to_rank[s - 1], message_tag(kActTag, s - 1, mb, S));
      else if (s > 0)
        in = out;
      const int slot = take_slot(s);
      model->forward(slot, s == 0 ? inputs.data() : nullptr, s > 0 ? in.data() : nullptr,
                     s == S - 1 ? targets.data() : nullptr, s < S - 1 ? out.data() : nullptr);
      if (s == S - 1) losses.push_back(model->loss(slot));
      give_slot(s, slot);
      if (s < S - 1 && !stages_[s + 1]) {
        transport_->send(out.data(), act_floats_, schedule_.stage_to_rank[s + 1], message_tag(kActTag, s, mb, S));
        transport_->wait_sends();  // `out` is reused by the next forward
      }
    }
  }
  return losses;
}

}  // namespace pt
