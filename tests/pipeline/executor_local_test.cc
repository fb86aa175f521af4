// The executor over the in-process `local` transport: four threads, one pipeline
// rank each, run 1F1B (and ZB-H1's split backward) for one step of a 4-stage model;
// every stage's gradients and every micro-batch loss must equal, bit for bit, those of
// one thread running the same micro-batches through a single-stage model. This checks
// the interpreter (slots, boundary buffers, SEND/RECV ordering) without MPI.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/rng.h"
#include "model/stage_model.h"
#include "pipeline/executor.h"
#include "pipeline/lower.h"
#include "pipeline/schedules/schedules.h"
#include "pipeline/validate.h"
#include "tests/pipeline/executor_test_util.h"

namespace pt {
namespace {

using testing::executor_test_batch;
using testing::grads_by_id;
constexpr int kB = testing::kExecB, kT = testing::kExecT, kM = 6, kS = 4;

// One span per action, in list order with its stage, micro-batch and kind, then the send wait;
// spans are measured one after another on the rank: start <= end <= next start.
void check_spans(const std::vector<Action>& actions, const std::vector<ActionSpan>& spans) {
  ASSERT_EQ(spans.size(), actions.size() + 1);
  for (size_t i = 0; i < actions.size(); ++i) {
    EXPECT_EQ(spans[i].kind, uint8_t(actions[i].kind)) << "span " << i;
    EXPECT_EQ(spans[i].stage, actions[i].stage) << "span " << i;
    EXPECT_EQ(spans[i].microbatch, actions[i].microbatch) << "span " << i;
  }
  EXPECT_EQ(spans.back().kind, kSpanWaitSends);
  for (size_t i = 0; i < spans.size(); ++i) {
    EXPECT_LE(0.0, spans[i].start);
    EXPECT_LE(spans[i].start, spans[i].end) << "span " << i;
    if (i > 0) {
      EXPECT_LE(spans[i - 1].end, spans[i].start) << "span " << i;
    }
  }
}

// With `callbacks`, each rank records its ALLREDUCE_GRAD/STEP calls and the gradients its stage
// holds at the reduce: the step tail of a synchronous list runs after every backward.
// With `timing`, the executor records its ActionSpans (pipeline/trace.h) and the numbers stay
// bitwise those of the reference; the spans are then checked against the list.
void run_pipeline_and_compare(const std::string& kind, bool callbacks = false, bool timing = false) {
  const ModelConfig cfg = testing::executor_test_model(kS);
  // Reference: one stage, micro-batches in order (gradient accumulation).
  const testing::AccumulationReference reference = testing::gradient_accumulation_reference(cfg, kM);
  const std::vector<float>& ref_losses = reference.losses;
  const auto& ref = reference.grads;

  ScheduleSpec spec;
  spec.kind = kind;
  spec.ranks = kS;
  spec.microbatches = kM;
  Schedule compute, lowered;
  ASSERT_TRUE(make_schedule(spec, &compute).is_ok());
  ASSERT_TRUE(lower_communication(compute, &lowered).is_ok());
  ASSERT_TRUE(validate_lowered(lowered).is_ok());

  std::vector<std::unique_ptr<StageModel>> stages;
  for (int s = 0; s < kS; ++s) {
    stages.push_back(make_cpu_stage_model(cfg, StageSpec{s, s + 1, s == 0, s == kS - 1}, kB, kT));
    stages.back()->init_params(3);
    stages.back()->zero_grads();
  }
  auto hub = make_local_hub(kS);
  std::vector<StepOutput> outs(kS);
  std::vector<std::vector<std::string>> calls(kS);
  std::vector<std::map<int, std::vector<float>>> at_reduce(kS);
  std::vector<std::thread> ranks;
  for (int r = 0; r < kS; ++r) {
    ranks.emplace_back([&, r] {
      auto transport = make_local_transport(hub, r);
      std::vector<StageModel*> mine(kS, nullptr);
      mine[r] = stages[r].get();
      Executor ex(lowered, r, mine, transport.get());
      ex.set_timing(timing);
      StageCallbacks cb;
      if (callbacks) {
        cb.reduce = [&, r](int s, uint8_t group) {
          calls[r].push_back("R" + std::to_string(s) + ":" + std::to_string(group));
          at_reduce[r] = grads_by_id(*stages[s]);
        };
        cb.step = [&, r](int s) { calls[r].push_back("S" + std::to_string(s)); };
      }
      outs[r] = ex.run_step(executor_test_batch, 1.0f / kM, cb);
    });
  }
  for (auto& t : ranks) t.join();
  if (callbacks) {
    for (int r = 0; r < kS; ++r) {
      EXPECT_EQ(calls[r], (std::vector<std::string>{"R" + std::to_string(r) + ":" + std::to_string(kGroupData),
                                                    "S" + std::to_string(r)}))
          << "rank " << r;
      for (const auto& [id, g] : at_reduce[r]) EXPECT_TRUE(g == ref.at(id)) << "tensor " << id << " at the reduce";
    }
  }

  ASSERT_EQ(outs[kS - 1].losses.size(), size_t(kM));
  for (int mb = 0; mb < kM; ++mb) EXPECT_EQ(outs[kS - 1].losses[mb], ref_losses[mb]) << kind << " micro-batch " << mb;
  int compared = 0;
  for (int s = 0; s < kS; ++s)
    for (const auto& [id, g] : grads_by_id(*stages[s])) {
      ASSERT_TRUE(ref.count(id));
      EXPECT_TRUE(g == ref.at(id)) << kind << ": tensor " << id << " of stage " << s << " differs from the reference";
      ++compared;
    }
  EXPECT_EQ(compared, int(ref.size()));
  for (int r = 0; r < kS; ++r) {
    if (timing) check_spans(lowered.per_rank[size_t(r)], outs[size_t(r)].spans);
    else EXPECT_TRUE(outs[size_t(r)].spans.empty()) << "spans recorded without set_timing";
  }
  // 1F1B keeps at most S - r micro-batches in flight on rank r (algorithms.md §1.2).
  if (kind == "1f1b") {
    for (int r = 0; r < kS; ++r) EXPECT_LE(outs[r].peak_slots, kS - r) << "rank " << r;
  }
}

TEST(ExecutorLocal, OneFOneBEqualsGradientAccumulationBitwise) { run_pipeline_and_compare("1f1b"); }
TEST(ExecutorLocal, ZeroBubbleSplitBackwardEqualsGradientAccumulationBitwise) { run_pipeline_and_compare("zb_h1"); }
TEST(ExecutorLocal, GPipeEqualsGradientAccumulationBitwise) { run_pipeline_and_compare("gpipe"); }
TEST(ExecutorLocal, SyncStepTailCallsReduceThenStepAfterTheFlush) { run_pipeline_and_compare("1f1b", true); }
TEST(ExecutorLocal, TimingRecordsOneSpanPerActionAndChangesNoNumber) {
  run_pipeline_and_compare("1f1b", true, true);
  run_pipeline_and_compare("zb_h1", false, true);
}

}  // namespace
}  // namespace pt
