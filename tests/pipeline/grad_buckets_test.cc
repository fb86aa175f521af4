// Bucket plans (pipeline/grad_buckets.h) on real stage layouts and on hand-made ones: the
// cap is respected (a bucket exceeds it only as a single tensor), every tensor lies in
// exactly one bucket, buckets are contiguous whole tensors in completion order (highest
// offsets first); and BucketedAllReduce starts a bucket exactly when the backward reports
// its range final, starts the rest at finish, and waits for every one it started.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "model/param_layout.h"
#include "model/stage_model.h"
#include "pipeline/grad_buckets.h"
#include "tests/pipeline/executor_test_util.h"

namespace pt {
namespace {

using Extents = std::vector<std::pair<size_t, size_t>>;

void check_plan(const Extents& tensors, size_t cap, const std::vector<GradBucket>& plan, const std::string& what) {
  // Buckets in descending offset, contiguous, covering the buffer once.
  size_t end = tensors.empty() ? 0 : tensors.back().first + tensors.back().second;
  for (const GradBucket& b : plan) {
    EXPECT_EQ(b.offset + b.count, end) << what << ": buckets must tile the buffer from the top";
    end = b.offset;
  }
  EXPECT_EQ(end, 0u) << what;
  // Each tensor in exactly one bucket; a bucket over the cap holds a single tensor.
  for (const GradBucket& b : plan) {
    int inside = 0;
    for (const auto& [o, n] : tensors) {
      const bool in = o >= b.offset && o + n <= b.offset + b.count;
      const bool overlaps = o < b.offset + b.count && b.offset < o + n;
      EXPECT_EQ(in, overlaps) << what << ": a tensor is split between buckets";
      inside += in && n > 0;
    }
    if (cap > 0 && b.count > cap) {
      EXPECT_EQ(inside, 1) << what << ": bucket over the cap with several tensors";
    }
    EXPECT_GE(inside, 1) << what;
  }
}

TEST(GradBuckets, PlansOnStageLayoutsRespectTheCapAndCoverEveryTensorOnce) {
  const ModelConfig cfg = testing::executor_test_model(4);
  for (const StageSpec& spec : {StageSpec{0, 2, true, false}, StageSpec{2, 4, false, true}, StageSpec{0, 4, true, true}})
    for (size_t cap : {size_t(0), size_t(1), size_t(100), size_t(1000), size_t(5000), size_t(1) << 30}) {
      Extents t;
      for (const ParamTensor& p : stage_tensors(cfg, spec)) t.push_back({p.offset, p.numel});
      const std::vector<GradBucket> plan = plan_grad_buckets(t, cap);
      const std::string what = "stage [" + std::to_string(spec.first_layer) + ", " + std::to_string(spec.last_layer) +
                               ") cap " + std::to_string(cap);
      check_plan(t, cap, plan, what);
      if (cap == 0 || cap == (size_t(1) << 30)) {
        EXPECT_EQ(plan.size(), 1u) << what;
      }
      if (cap == 1) {
        EXPECT_EQ(plan.size(), t.size()) << what << ": one bucket per tensor";
      }
    }
}

TEST(GradBuckets, GreedyFromTheTop) {
  // Tensors of 3, 4, 2, 5 floats; cap 6: {5} (2+5 > 6), {2, 4}, {3}.
  const Extents t = {{0, 3}, {3, 4}, {7, 2}, {9, 5}};
  const std::vector<GradBucket> plan = plan_grad_buckets(t, 6);
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].offset, 9u);
  EXPECT_EQ(plan[0].count, 5u);
  EXPECT_EQ(plan[1].offset, 3u);
  EXPECT_EQ(plan[1].count, 6u);
  EXPECT_EQ(plan[2].offset, 0u);
  EXPECT_EQ(plan[2].count, 3u);
}

// Records non-blocking sums; a sum adds 1 to each element when waited for.
class RecordingCollectives final : public Collectives {
 public:
  int rank(Group) const override { return 0; }
  int size(Group) const override { return 2; }
  void allreduce_sum(Group, float*, size_t) override { ADD_FAILURE() << "blocking sum"; }
  void allreduce_sum(Group, double*, size_t) override {}
  void allreduce_max(Group, double*, size_t) override {}
  void allreduce_max(Group, int64_t*, size_t) override {}
  void allgather(Group, const void*, size_t, void*) override {}
  void gather(Group, const void*, size_t, void*, int) override {}
  void broadcast(Group, void*, size_t, int) override {}
  void barrier(Group) override {}
  void sendrecv(Group, int, const float*, float*, size_t) override {}
  void set_replica_group(const std::vector<int>&) override {}
  std::string name() const override { return "recording"; }
  int64_t start_allreduce_sum(Group, float* d, size_t n, void*) override {
    started.push_back({d, n});
    return int64_t(started.size() - 1);
  }
  void wait(int64_t h) override {
    auto [d, n] = started[size_t(h)];
    for (size_t i = 0; i < n; ++i) d[i] += 1;
    ++waited;
  }
  std::vector<std::pair<float*, size_t>> started;
  int waited = 0;
};

TEST(GradBuckets, BucketsStartWhenTheirRangeIsFinalAndFinishWaitsForAll) {
  const Extents t = {{0, 3}, {3, 4}, {7, 2}, {9, 5}};
  RecordingCollectives coll;
  BucketedAllReduce b(coll, Group::kData, plan_grad_buckets(t, 6));
  std::vector<float> g(14, 0.0f);
  b.ready_from(0);  // not armed: nothing starts
  EXPECT_TRUE(coll.started.empty());
  b.arm(g.data());
  b.ready_from(12);  // part of the top tensor only
  EXPECT_TRUE(coll.started.empty());
  b.ready_from(9);  // the top bucket is final
  ASSERT_EQ(coll.started.size(), 1u);
  EXPECT_EQ(coll.started[0].first, g.data() + 9);
  b.ready_from(7);  // bucket {3..9) still open
  EXPECT_EQ(coll.started.size(), 1u);
  b.finish(g.data());  // starts the other two, waits for all three
  ASSERT_EQ(coll.started.size(), 3u);
  EXPECT_EQ(coll.started[1].first, g.data() + 3);
  EXPECT_EQ(coll.started[2].first, g.data() + 0);
  EXPECT_EQ(coll.waited, 3);
  EXPECT_EQ(b.started_early(), 1);
  for (size_t i = 0; i < g.size(); ++i) EXPECT_EQ(g[i], 1.0f) << "element " << i << " summed once";
  // Next update: no hook at all (a mirrored backend): finish starts every bucket itself.
  b.finish(g.data());
  EXPECT_EQ(coll.started.size(), 6u);
  EXPECT_EQ(b.started_early(), 0);
}

// The stage model's hook: offsets fall to 0 and every reported suffix already holds its
// final values (for the full backward and for the split Bw), so a bucket started then is safe.
TEST(GradBuckets, GradsReadyHookReportsOnlyFinalSuffixes) {
  const ModelConfig cfg = testing::executor_test_model(4);
  for (bool split : {false, true}) {
    auto m = make_cpu_stage_model(cfg, StageSpec{0, 4, true, true}, testing::kExecB, testing::kExecT);
    m->init_params(5);
    m->zero_grads();
    std::vector<std::pair<size_t, std::vector<float>>> seen;
    m->set_grads_ready_hook([&](size_t from, void* ready) {
      EXPECT_EQ(ready, nullptr) << "host-memory gradients are final when the hook runs";
      seen.push_back({from, std::vector<float>(m->grads() + from, m->grads() + m->num_params())});
    });
    std::vector<int32_t> in(size_t(testing::kExecB * testing::kExecT)), tg(in.size());
    testing::executor_test_batch(0, in.data(), tg.data());
    m->forward(0, in.data(), nullptr, tg.data(), nullptr);
    if (split) {
      m->backward_input(0, nullptr, nullptr, 1.0f);
      EXPECT_TRUE(seen.empty()) << "backward_input finalizes no weight gradient";
      m->backward_weight(0);
    } else {
      m->backward(0, nullptr, nullptr, 1.0f);
    }
    ASSERT_GE(seen.size(), 3u);
    EXPECT_EQ(seen.back().first, 0u);
    for (size_t k = 0; k < seen.size(); ++k) {
      if (k > 0) {
        EXPECT_LT(seen[k].first, seen[k - 1].first) << "suffixes must grow";
      }
      const size_t from = seen[k].first;
      EXPECT_TRUE(seen[k].second == std::vector<float>(m->grads() + from, m->grads() + m->num_params()))
          << "report " << k << " (from " << from << ") was not final";
    }
  }
}

}  // namespace
}  // namespace pt
