// Bucketed data-parallel gradient all-reduce, started during the backward.
//
// A stage's gradients are one flat buffer laid out as its tensor list (StageModel::
// tensors(): embedding, blocks in order, final LayerNorm and head), and the weight
// backward produces them last tensor first, so "final" grows as a suffix
// [from, end) of the buffer (StageModel::set_grads_ready_hook). A bucket is a
// contiguous range of whole tensors taken in that completion order (highest offsets
// first) up to a size cap; a tensor larger than the cap is a bucket by itself.
//
// BucketedAllReduce sums a stage's buckets over a Collectives group. arm() before the
// stage's last weight backward of an update (the executor's StageCallbacks::
// grads_final_next); each ready_from(from) during it starts, with a non-blocking sum
// (Collectives::start_allreduce_sum), every bucket lying wholly in [from, end); finish()
// at the ALLREDUCE_GRAD action starts the rest (all of them when no hook fired:
// gradients in device memory, or arm() not called) and waits for all.
// Each ready_from also calls Collectives::progress(), so MPI advances the sums already
// started between the blocks of the backward (it has no progress thread of its own).
// Every member of the group starts the same buckets in the same order, so the
// collectives match.
//
// Bits: each element is summed by one all-reduce over the same members either way. For
// two members the sum a + b is one IEEE addition, the same whatever algorithm or
// message size the library picks, so bucketed == unbucketed bit for bit (dp = 2, what
// the tests check). For more members the library may associate the sum differently
// for different message sizes: deterministic run to run for one plan, not necessarily
// equal to the unbucketed bits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pipeline/collectives.h"

namespace pt {

struct GradBucket {
  size_t offset = 0;  // floats, into the stage's gradient buffer
  size_t count = 0;
};

// Tensor extents (offset, numel) in layout order (contiguous, ascending offsets);
// buckets in completion order (descending offset). cap_floats == 0: one bucket of all.
std::vector<GradBucket> plan_grad_buckets(const std::vector<std::pair<size_t, size_t>>& tensors,
                                          size_t cap_floats);

class BucketedAllReduce {
 public:
  BucketedAllReduce(Collectives& coll, Group group, std::vector<GradBucket> plan);
  // The next backward's ready_from calls start buckets of `grads` (the stage's host gradients).
  void arm(float* grads);
  // `ready`: the hook's event (device gradients; null on host memory), passed to each sum started.
  void ready_from(size_t from, void* ready = nullptr);
  // Starts every bucket not started (on `grads`) and waits for all of them; disarms.
  void finish(float* grads);
  const std::vector<GradBucket>& plan() const { return plan_; }
  int started_early() const { return started_early_; }  // by ready_from, in the last finish()'s update

 private:
  void start(float* grads, void* ready);
  Collectives& coll_;
  Group group_;
  std::vector<GradBucket> plan_;
  float* armed_ = nullptr;
  size_t next_ = 0;  // buckets [0, next_) started
  std::vector<int64_t> pending_;
  int started_early_ = 0, early_count_ = 0;
};

}  // namespace pt
