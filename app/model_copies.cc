#include "app/model_copies.h"

#include <cstring>
#include <string>

#include "common/check.h"

namespace pt {

namespace {

// dst_p[i] = mean over p of src_p[i] for n floats (the formula of the header), for every p.
void average_buffers(const std::vector<float*>& bufs, size_t n) {
  const double M = double(bufs.size());
  for (size_t i = 0; i < n; ++i) {
    double sum = 0.0;
    for (const float* b : bufs) sum += double(b[i]);
    const float mean = float(sum / M);
    for (float* b : bufs) b[i] = mean;
  }
}

}  // namespace

void average_copies(const std::vector<LocalStage*>& copies) {
  PT_CHECK(!copies.empty());
  const size_t n = copies[0]->model->num_params();
  std::vector<float*> params;
  for (LocalStage* ls : copies) {
    PT_CHECK_MSG(ls->model->num_params() == n && ls->version == copies[0]->version,
                 "copies of stage " + std::to_string(copies[0]->stage) + " differ in layout or version");
    params.push_back(ls->model->params());  // host fp32 master weights (no hook needed to read them)
  }
  average_buffers(params, n);
  for (LocalStage* ls : copies) ls->model->sync_params_to_device();
  if (!copies[0]->optimizer_state) return;
  std::vector<std::vector<StateTensor>> state;
  for (LocalStage* ls : copies) {
    PT_CHECK_MSG(ls->optimizer_state != nullptr, "a copy of stage " + std::to_string(ls->stage) + " has no optimizer state");
    ls->optimizer_state->sync_to_host();
    state.push_back(ls->optimizer_state->tensors());
  }
  for (size_t k = 0; k < state[0].size(); ++k) {
    std::vector<float*> bufs;
    for (auto& tensors : state) bufs.push_back(tensors[k].data);
    average_buffers(bufs, state[0][k].numel);
  }
  for (LocalStage* ls : copies) ls->optimizer_state->sync_to_device();
}

std::vector<LocalStage*> copies_of(std::vector<LocalStage>& local, int model_stage, int chain) {
  std::vector<LocalStage*> out;
  for (LocalStage& ls : local)  // ascending global stage = ascending copy
    if (ls.stage % chain == model_stage) out.push_back(&ls);
  return out;
}

namespace {

bool same_floats(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

bool same_stage(LocalStage& a, LocalStage& b) {
  if (!same_floats(a.model->params(), b.model->params(), a.model->num_params())) return false;
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
