// Bucket plan and the bucketed all-reduce (see grad_buckets.h).
#include "pipeline/grad_buckets.h"

#include "common/check.h"

namespace pt {

std::vector<GradBucket> plan_grad_buckets(const std::vector<std::pair<size_t, size_t>>& tensors,
                                          size_t cap_floats) {
  std::vector<GradBucket> out;
  for (size_t k = tensors.size(); k-- > 0;) {
    const auto [offset, numel] = tensors[k];
    if (numel == 0) continue;
    GradBucket* b = out.empty() ? nullptr : &out.back();
    // Extend the open bucket downwards when the tensor is adjacent and the cap allows.
    if (b && offset + numel == b->offset && (cap_floats == 0 || b->count + numel <= cap_floats)) {
      b->offset = offset;
      b->count += numel;
    } else {
      out.push_back({offset, numel});
    }
  }
  return out;
}

BucketedAllReduce::BucketedAllReduce(Collectives& coll, Group group, std::vector<GradBucket> plan)
    : coll_(coll), group_(group), plan_(std::move(plan)) {}

void BucketedAllReduce::arm(float* grads) {
  PT_CHECK_MSG(next_ == 0 && pending_.empty(), "bucketed all-reduce armed twice in one update");
  armed_ = grads;
}

void BucketedAllReduce::start(float* grads, void* ready) {
  const GradBucket& b = plan_[next_++];
  pending_.push_back(coll_.start_allreduce_sum(group_, grads + b.offset, b.count, ready));
}

void BucketedAllReduce::ready_from(size_t from, void* ready) {
  if (armed_ == nullptr) return;
  while (next_ < plan_.size() && plan_[next_].offset >= from) {
    start(armed_, ready);
    ++early_count_;
  }
  if (!pending_.empty()) coll_.progress();  // advance the started sums between blocks of the backward
}

void BucketedAllReduce::finish(float* grads) {
  PT_CHECK_MSG(armed_ == nullptr || armed_ == grads, "bucketed all-reduce finished on another buffer");
  while (next_ < plan_.size()) start(grads, nullptr);  // the caller synchronized the producer
  for (int64_t h : pending_) coll_.wait(h);
  pending_.clear();
  next_ = 0;
  armed_ = nullptr;
  started_early_ = early_count_;
  early_count_ = 0;
}

}  // namespace pt
