// RPD lists run by the executor over the in-process transport (threads as ranks), against
// references written directly on StageModel objects (algorithms.md §5.6 invariants 3 and 4):
//   * delta = 0, cyclic s = k mod S: equals sequential block-coordinate SGD (forward through all
//     stages at the current weights, backward from the loss down to block s, SGD on block s only)
//     bit for bit, losses and every parameter;
//   * delta = 3, uniform draws: equals the algorithm written out with the full iterate history
//     x^0, x^1, ... (block j read at x^{k - d_j}), bit for bit;
//   * each update changes exactly one block: the STEPs of all ranks cover each update once, and a
//     block's parameters never change between its own STEPs (forward-only passes, input-gradient-only
//     Bx and the stale-snapshot swaps leave them as they were), nor after its last one; no weight
//     gradient is left behind.
#include <gtest/gtest.h>

#include <memory>
#include <thread>
#include <vector>

#include "model/stage_model.h"
#include "pipeline/executor.h"
#include "pipeline/lower.h"
#include "pipeline/schedules/rpd.h"
#include "pipeline/validate.h"
#include "tests/pipeline/executor_test_util.h"

namespace pt {
namespace {

using testing::executor_test_batch;
constexpr int kB = testing::kExecB, kT = testing::kExecT, kS = 4;
constexpr float kLr = 0.05f;

using Params = std::vector<float>;

std::vector<std::unique_ptr<StageModel>> make_stages() {
  const ModelConfig cfg = testing::executor_test_model(kS);
  std::vector<std::unique_ptr<StageModel>> stages;
  for (int s = 0; s < kS; ++s) {
    stages.push_back(make_cpu_stage_model(cfg, StageSpec{s, s + 1, s == 0, s == kS - 1}, kB, kT));
    stages.back()->init_params(3);
    stages.back()->zero_grads();
  }
  return stages;
}

Params params_of(StageModel& m) { return Params(m.params(), m.params() + m.num_params()); }

// p -= lr * g, then zero g: the update both the run and the references apply.
void sgd_step(StageModel& m) {
  for (size_t i = 0; i < m.num_params(); ++i) m.params()[i] -= kLr * m.grads()[i];
  m.zero_grads();
}

// One update of the reference: block j forwards at `read[j]`, the backward goes down to s
// (input gradients only above s), and SGD updates block s from `live_s`.
float reference_update(std::vector<std::unique_ptr<StageModel>>& st, int k, int s, const std::vector<Params>& read,
                       const Params& live_s) {
  std::vector<int32_t> in(kB * kT), tg(kB * kT);
  executor_test_batch(k, in.data(), tg.data());
  std::vector<std::vector<float>> act(kS, std::vector<float>(size_t(kB) * kT * 16, 0.0f));
  for (int j = 0; j < kS; ++j) {
    std::copy(read[size_t(j)].begin(), read[size_t(j)].end(), st[size_t(j)]->params());
    st[size_t(j)]->forward(0, j == 0 ? in.data() : nullptr, j == 0 ? nullptr : act[size_t(j - 1)].data(),
                           j == kS - 1 ? tg.data() : nullptr, j == kS - 1 ? nullptr : act[size_t(j)].data());
  }
  const float loss = st[kS - 1]->loss(0);
  std::vector<float> dout(act[0].size()), din(act[0].size());
  for (int j = kS - 1; j >= s; --j) {
    if (j > s) st[size_t(j)]->backward_input(0, j == kS - 1 ? nullptr : dout.data(), din.data(), 1.0f);
    else st[size_t(j)]->backward(0, j == kS - 1 ? nullptr : dout.data(), j == 0 ? nullptr : din.data(), 1.0f);
    dout.swap(din);
  }
  for (auto& m : st) m->release(0);
  std::copy(live_s.begin(), live_s.end(), st[size_t(s)]->params());
  sgd_step(*st[size_t(s)]);
  return loss;
}

struct RunResult {
  std::vector<float> losses;
  std::vector<Params> final_params;
  std::vector<int> step_updates_seen;  // how many STEPs each update got over all ranks
};

// Runs the rpd segment of `spec` on kS threads with SGD at every STEP, checking on each rank that its
// block changes only at its own STEPs.
RunResult run_rpd(const ScheduleSpec& spec) {
  Schedule compute, lowered;
  EXPECT_TRUE(make_schedule(spec, &compute).is_ok());
  EXPECT_TRUE(lower_communication(compute, &lowered).is_ok());
  EXPECT_TRUE(validate_lowered(lowered).is_ok());
  auto stages = make_stages();
  auto hub = make_local_hub(kS);
  std::vector<StepOutput> outs(kS);
  std::vector<std::vector<int>> steps_of_rank(kS);
  std::vector<std::thread> ranks;
  for (int r = 0; r < kS; ++r) {
    ranks.emplace_back([&, r] {
      auto transport = make_local_transport(hub, r);
      std::vector<StageModel*> mine(kS, nullptr);
      mine[r] = stages[size_t(r)].get();
      Executor ex(lowered, r, mine, transport.get());
      StageModel& m = *stages[size_t(r)];
      Params after = params_of(m);  // the block as its last STEP left it
      int last_backward = -1;
      for (const Action& a : lowered.per_rank[size_t(r)]) {
        if (a.kind == ActionKind::B) last_backward = a.microbatch;
        if (a.kind == ActionKind::STEP) steps_of_rank[size_t(r)].push_back(last_backward);
      }
      StageCallbacks cb;
      cb.step = [&](int s) {
        EXPECT_EQ(s, r);
        EXPECT_TRUE(params_of(m) == after) << "block " << r << " changed outside its own STEP";
        sgd_step(m);
        EXPECT_FALSE(params_of(m) == after) << "block " << r << "'s STEP changed nothing";
        after = params_of(m);
      };
      outs[size_t(r)] = ex.run_step(executor_test_batch, 1.0f, cb);
      EXPECT_TRUE(params_of(m) == after) << "block " << r << " changed after its last STEP";
      for (size_t i = 0; i < m.num_params(); ++i) ASSERT_EQ(m.grads()[i], 0.0f) << "weight gradient left on " << r;
    });
  }
  for (auto& t : ranks) t.join();
  RunResult res;
  res.losses = outs[kS - 1].losses;
  res.step_updates_seen.assign(size_t(spec.segment_updates), 0);
  for (const auto& v : steps_of_rank)
    for (int k : v) ++res.step_updates_seen[size_t(k)];
  for (auto& m : stages) res.final_params.push_back(params_of(*m));
  return res;
}

ScheduleSpec spec_of(int delay, const char* stage_sampling, int updates) {
  ScheduleSpec s;
  s.kind = "rpd";
  s.ranks = kS;
  s.microbatches = 1;
  s.segment_updates = updates;
  s.rpd_max_delay = delay;
  s.rpd_stage_sampling = stage_sampling;
  s.seed = 11;
  return s;
}

void expect_one_block_per_update(const RunResult& r) {
  for (size_t k = 0; k < r.step_updates_seen.size(); ++k)
    EXPECT_EQ(r.step_updates_seen[k], 1) << "update " << k << " must update exactly one block";
}

TEST(RpdExecutor, DelayZeroCyclicEqualsSequentialBlockCoordinateSgdBitwise) {
  const int N = 12;
  const RunResult run = run_rpd(spec_of(0, "cyclic", N));
  expect_one_block_per_update(run);
  auto ref = make_stages();
  std::vector<float> losses;
  for (int k = 0; k < N; ++k) {
    std::vector<Params> now;
    for (auto& m : ref) now.push_back(params_of(*m));
    losses.push_back(reference_update(ref, k, k % kS, now, now[size_t(k % kS)]));
  }
  ASSERT_EQ(run.losses.size(), size_t(N));
  for (int k = 0; k < N; ++k) EXPECT_EQ(run.losses[size_t(k)], losses[size_t(k)]) << "update " << k;
  for (int j = 0; j < kS; ++j) EXPECT_TRUE(run.final_params[size_t(j)] == params_of(*ref[size_t(j)])) << "block " << j;
}

TEST(RpdExecutor, StaleUniformDrawsEqualTheAlgorithmOnTheIterateHistoryBitwise) {
  const int N = 24;
  const ScheduleSpec spec = spec_of(3, "uniform", N);
  const RunResult run = run_rpd(spec);
  expect_one_block_per_update(run);
  auto ref = make_stages();
  std::vector<std::vector<Params>> history(1);  // history[k][j] = x_j^k
  for (auto& m : ref) history[0].push_back(params_of(*m));
  std::vector<float> losses;
  int stale_reads = 0;
  for (int k = 0; k < N; ++k) {
    const RpdDraw d = rpd_draw(spec, kS, k);
    std::vector<Params> read;
    for (int j = 0; j < kS; ++j) {
      read.push_back(history[size_t(k - d.delays[size_t(j)])][size_t(j)]);
      stale_reads += read.back() != history[size_t(k)][size_t(j)];
    }
    losses.push_back(reference_update(ref, k, d.stage, read, history[size_t(k)][size_t(d.stage)]));
    history.push_back(history[size_t(k)]);
    history.back()[size_t(d.stage)] = params_of(*ref[size_t(d.stage)]);
  }
  EXPECT_GT(stale_reads, 5) << "the test must exercise stale reads";
  for (int k = 0; k < N; ++k) EXPECT_EQ(run.losses[size_t(k)], losses[size_t(k)]) << "update " << k;
  for (int j = 0; j < kS; ++j) EXPECT_TRUE(run.final_params[size_t(j)] == history[size_t(N)][size_t(j)]) << "block " << j;
}

}  // namespace
}  // namespace pt
