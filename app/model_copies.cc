#include "app/model_copies.h"

#include <cstring>
#include <string>
#include <vector>

#include "common/check.h"
#include "model/cpu/average.h"

namespace pt {

namespace {

// The copies' parameters averaged in backend memory, on copy 0's backend (its stream, after
// every copy's pending work): no host round trip, and the same bits as the host formula.
void average_params(const std::vector<LocalStage*>& copies) {
  const size_t n = copies[0]->model->num_params();
  std::vector<float*> params;
  for (LocalStage* ls : copies) {
    StageModel& m = *ls->model;
    PT_CHECK_MSG(m.num_params() == n && ls->version == copies[0]->version,
                 "copies of stage " + std::to_string(copies[0]->stage) + " differ in layout or version");
    m.synchronize();
    params.push_back(m.params());
  }
  StageModel& first = *copies[0]->model;
  first.average(params.data(), int(params.size()), n);
  first.synchronize();
  for (LocalStage* ls : copies) ls->model->params_written();
}

// The optimizer states averaged tensor by tensor: device states in device memory with the
// backend op (their device_tensors()), host states (or a device state without device
// views: through its host mirror) with the CPU twin of the same formula.
void average_state(const std::vector<LocalStage*>& copies) {
  std::vector<std::vector<StateTensor>> state;
  bool device = true;
  for (LocalStage* ls : copies) {
    PT_CHECK_MSG(ls->optimizer_state != nullptr, "a copy of stage " + std::to_string(ls->stage) + " has no optimizer state");
    state.push_back(ls->optimizer_state->device_tensors());
    device = device && !state.back().empty();
  }
  if (!device) {
    state.clear();
    for (LocalStage* ls : copies) {
      ls->optimizer_state->sync_to_host();
      state.push_back(ls->optimizer_state->tensors());
    }
  }
  for (size_t k = 0; k < state[0].size(); ++k) {
    std::vector<float*> bufs;
    for (auto& tensors : state) bufs.push_back(tensors[k].data);
    if (device) copies[0]->model->average(bufs.data(), int(bufs.size()), state[0][k].numel);
    else cpu::average(bufs.data(), int(bufs.size()), state[0][k].numel);
  }
  copies[0]->model->synchronize();
  if (!device)
    for (LocalStage* ls : copies) ls->optimizer_state->sync_to_device();
}

}  // namespace

void average_copies(const std::vector<LocalStage*>& copies) {
  PT_CHECK(!copies.empty());
  average_params(copies);
  if (copies[0]->optimizer_state) average_state(copies);
}

std::vector<LocalStage*> copies_of(std::vector<LocalStage>& local, int model_stage, int chain) {
  std::vector<LocalStage*> out;
  for (LocalStage& ls : local)  // ascending global stage = ascending copy
    if (ls.stage % chain == model_stage) out.push_back(&ls);
  return out;
}

namespace {

bool same_floats(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

// A drain check: the parameters themselves in host memory, else host copies (explicit transfers).
bool same_params(StageModel& a, StageModel& b) {
  const size_t n = a.num_params();
  if (a.host_memory() && b.host_memory()) return same_floats(a.params(), b.params(), n);
  std::vector<float> pa(n), pb(n);
  a.params_to_host(pa.data());
  b.params_to_host(pb.data());
  return same_floats(pa.data(), pb.data(), n);
}

bool same_stage(LocalStage& a, LocalStage& b) {
  if (!same_params(*a.model, *b.model)) return false;
  if (!a.optimizer_state || !b.optimizer_state) return !a.optimizer_state && !b.optimizer_state;
  a.optimizer_state->sync_to_host();
  b.optimizer_state->sync_to_host();
  const auto ta = a.optimizer_state->tensors(), tb = b.optimizer_state->tensors();
  for (size_t k = 0; k < ta.size(); ++k)
    if (!same_floats(ta[k].data, tb[k].data, ta[k].numel)) return false;
  return true;
}

}  // namespace

bool copies_identical(std::vector<LocalStage>& local, int chain, std::string* what) {
  for (int s = 0; s < chain; ++s) {
    const std::vector<LocalStage*> copies = copies_of(local, s, chain);
    for (size_t p = 1; p < copies.size(); ++p) {
      if (same_stage(*copies[0], *copies[p])) continue;
      *what = "copy " + std::to_string(p) + " of model stage " + std::to_string(s) + " (stage " +
              std::to_string(copies[p]->stage) + ") differs from copy 0";
      return false;
    }
  }
  return true;
}

int microbatches_per_gradient(const ScheduleTraits& traits, const Schedule& placement, int m) {
  return traits.averaged_copies ? m / placement.pipelines : m;
}

}  // namespace pt
