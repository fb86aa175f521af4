#include "app/step_reductions.h"

#include "app/backend_staging.h"
#include "app/optimizer_step.h"
#include "common/check.h"
#include "optim/grad_norm.h"

namespace pt {
namespace {

// Tensor that holds the embedding's wte (first stage) or the head's tied copy (last stage).
const ParamTensor* find_wte(const StageModel& m, bool tied_head) {
  for (const auto& t : m.tensors())
    if (t.name == "wte" && t.is_tied_head == tied_head) return &t;
  return nullptr;
}

}  // namespace

void reduce_tied_embeddings(Collectives& coll, const TiedEmbeddings& tied, std::vector<LocalStage>& local) {
  if (!tied.enabled) return;
  StageModel* first = nullptr;
  StageModel* last = nullptr;
  for (auto& ls : local) {
    if (ls.stage == 0) first = ls.model.get();
    if (ls.stage == tied.last_stage) last = ls.model.get();
  }
  if (first && last) {  // one rank (pp = 1): both copies on the backend
    const ParamTensor* e = find_wte(*first, false);
    const ParamTensor* h = find_wte(*last, true);
    PT_CHECK(e && h && e->numel == h->numel);
    float* ge = first->grads() + e->offset;
    float* gh = last->grads() + h->offset;
    // Two models compute on their own streams (CUDA): each waits for the other's writes,
    // and first's later writes of ge (the next zero_grads) for last's read, on the device.
    // One model (pp = 1, one stage): one stream orders it all.
    const bool two = first != last;
    if (two) first->wait_event(last->record_event());  // the head part is written
    first->add(ge, ge, gh, e->numel);                   // embedding part + head part
    if (two) last->wait_event(first->record_event());
    last->copy(gh, ge, e->numel);
    if (two) first->wait_event(last->record_event());
    return;
  }
  if (!first && !last) return;
  StageModel* mine = first ? first : last;
  const ParamTensor* t = find_wte(*mine, last != nullptr);
  PT_CHECK(t != nullptr);
  // The exchange is an MPI sendrecv (host memory): staged where the gradients are device memory.
  on_host(*mine, mine->grads() + t->offset, t->numel, HostAccess::kReadWrite, [&](float* grad) {
    std::vector<float> other(t->numel);
    coll.sendrecv(Group::kPipeline, first ? tied.last_rank : tied.first_rank, grad, other.data(), t->numel);
    for (size_t i = 0; i < t->numel; ++i) grad[i] = first ? grad[i] + other[i] : other[i] + grad[i];
  });
}

double global_grad_norm(Collectives& coll, std::vector<LocalStage>& local) {
  std::vector<std::pair<int64_t, double>> mine;
  for (auto& ls : local)
    for (const auto& [id, sq] : stage_grad_sumsq(ls)) mine.push_back({int64_t(id), sq});
  std::vector<std::pair<int64_t, double>> all = allgatherv(coll, Group::kPipeline, mine);
  std::vector<std::pair<int, double>> entries;
  for (const auto& [id, sq] : all) entries.push_back({int(id), sq});
  return combine_norm(std::move(entries));
}

std::vector<double> reduce_update_losses(Collectives& coll, const std::vector<float>& losses, int total, int m) {
  // Each micro-batch's loss lives on one rank of the pipeline: a SUM of (value, zeros) is exact.
  std::vector<double> loss(size_t(total), 0.0);
  for (size_t g = 0; g < losses.size() && g < loss.size(); ++g) loss[g] = losses[g];
  coll.allreduce_sum(Group::kPipeline, loss.data(), loss.size());
  const int dp = coll.size(Group::kData);
  std::vector<double> all(size_t(total) * size_t(dp));
  coll.allgather(Group::kData, loss.data(), loss.size() * sizeof(double), all.data());
  std::vector<double> out;
  for (int k = 0; k < total / m; ++k) {
    double sum = 0.0;
    for (int r = 0; r < dp; ++r)
      for (int j = 0; j < m; ++j) sum += all[size_t(r) * size_t(total) + size_t(k) * size_t(m) + size_t(j)];
    out.push_back(sum / double(m * dp));
  }
  return out;
}

}  // namespace pt
