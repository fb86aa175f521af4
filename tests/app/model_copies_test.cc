// LocalSGD's averaged copies (app/model_copies.h, algorithms.md §5.4, §5.6 item 5) on a real
// execution: two threads, one pipeline rank each over the in-process `local` transport, run the
// localsgd list of a 2-stage model with M = 2 copies, K = 2 local steps, 4 updates (AdamW steps
// through the app's apply_stage_update). Checked against the actual buffers:
//   * at each AVERAGE, every copy's parameters and optimizer state equal, bit for bit, the mean
//     of the copies' buffers just before it (float(sum in double / M)), and the copies did differ;
//   * the execution's version record has zero staleness (check_localsgd_invariants);
//   * the final parameters equal sequential LocalSGD: M whole-model copies, each running its
//     micro-batches g = kM + p one at a time, averaged after every K updates.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "app/config.h"
#include "app/model_copies.h"
#include "app/optimizer_step.h"
#include "pipeline/executor.h"
#include "pipeline/lower.h"
#include "pipeline/validate.h"
#include "pipeline/versions.h"
#include "tests/pipeline/executor_test_util.h"

namespace pt {
namespace {

constexpr int kS = 2, kM = 2, kK = 2, kUpdates = 4;
constexpr double kLr = 1e-2;

LocalStage make_stage(const ModelConfig& cfg, int stage, StageSpec spec, const OptimizerSection& o) {
  LocalStage ls;
  ls.stage = stage;
  ls.model = make_cpu_stage_model(cfg, spec, testing::kExecB, testing::kExecT);
  ls.model->init_params(3);
  ls.model->zero_grads();
  ls.optimizer_state = make_optimizer_state(o, *ls.model);
  return ls;
}

std::map<int, std::vector<float>> params_by_id(StageModel& m) {
  std::map<int, std::vector<float>> out;
  for (const auto& t : m.tensors()) out[t.global_id].assign(m.params() + t.offset, m.params() + t.offset + t.numel);
  return out;
}

// Every buffer of the copies (params, then each state tensor), as copied floats.
std::vector<std::vector<std::vector<float>>> buffers(const std::vector<LocalStage*>& copies) {
  std::vector<std::vector<std::vector<float>>> out;
  for (LocalStage* ls : copies) {
    std::vector<std::vector<float>> b{{ls->model->params(), ls->model->params() + ls->model->num_params()}};
    for (const StateTensor& t : ls->optimizer_state->tensors()) b.emplace_back(t.data, t.data + t.numel);
    out.push_back(std::move(b));
  }
  return out;
}

// AVERAGE of model stage s: the copies' buffers after it are the mean of those before it.
void average_and_check(const std::vector<LocalStage*>& copies, int* averaged) {
  const auto before = buffers(copies);
  average_copies(copies);
  const auto after = buffers(copies);
  bool differed = false;
  for (size_t k = 0; k < before[0].size(); ++k)
    for (size_t i = 0; i < before[0][k].size(); ++i) {
      double sum = 0;
      for (const auto& c : before) sum += double(c[k][i]);
      differed = differed || before[0][k][i] != before[1][k][i];
      const float mean = float(sum / double(copies.size()));
      for (const auto& c : after) ASSERT_EQ(c[k][i], mean) << "buffer " << k << " element " << i;
    }
  EXPECT_TRUE(differed) << "the copies were equal before the average: nothing was tested";
  ++*averaged;
}

TEST(ModelCopies, AverageIsTheMeanOfTheCopiesAndTheRunIsSequentialLocalSgd) {
  const ModelConfig cfg = testing::executor_test_model(kS);
  OptimizerSection o;
  ScheduleSpec spec;
  spec.kind = "localsgd";
  spec.ranks = kS;
  spec.microbatches = kM;  // one micro-batch per copy and update
  spec.segment_updates = kUpdates;
  spec.localsgd_local_steps = kK;
  Schedule compute, lowered;
  ASSERT_TRUE(make_schedule(spec, &compute).is_ok());
  ASSERT_TRUE(lower_communication(compute, &lowered).is_ok());
  ASSERT_TRUE(validate_lowered(lowered).is_ok());
  ASSERT_EQ(lowered.num_stages, kS * kM);

  std::vector<LocalStage> st;
  for (int v = 0; v < kS * kM; ++v) st.push_back(make_stage(cfg, v, StageSpec{v % kS, v % kS + 1, v % kS == 0, v % kS == kS - 1}, o));
  auto hub = make_local_hub(kS);
  std::vector<StepOutput> outs(kS);
  std::vector<int> averaged(kS, 0);
  std::vector<std::thread> ranks;
  for (int r = 0; r < kS; ++r) {
    ranks.emplace_back([&, r] {
      auto transport = make_local_transport(hub, r);
      std::vector<StageModel*> mine(size_t(kS * kM), nullptr);
      for (int p = 0; p < kM; ++p) mine[size_t(p * kS + r)] = st[size_t(p * kS + r)].model.get();
      Executor ex(lowered, r, mine, transport.get());
      StageCallbacks cb;
      cb.step = [&](int v) {
        apply_stage_update(st[size_t(v)], o, kLr, 1.0f);
        st[size_t(v)].model->zero_grads();
      };
      cb.average = [&, r](int s) {
        EXPECT_EQ(s, r);
        average_and_check(copies_of(st, s, kS), &averaged[size_t(r)]);
      };
      outs[size_t(r)] = ex.run_step(testing::executor_test_batch, 1.0f, cb);  // m/M = 1 micro-batch per gradient
    });
  }
  for (auto& t : ranks) t.join();
  std::vector<VersionRecord> record;
  for (const auto& out : outs) record.insert(record.end(), out.versions.begin(), out.versions.end());
  Status inv = check_localsgd_invariants(record, kS, kM, kM);
  EXPECT_TRUE(inv.is_ok()) << inv.message();
  for (int r = 0; r < kS; ++r) EXPECT_EQ(averaged[size_t(r)], kUpdates / kK) << "rank " << r;

  // Sequential LocalSGD on whole models.
  std::vector<LocalStage> ref;
  for (int p = 0; p < kM; ++p) ref.push_back(make_stage(cfg, 0, StageSpec{0, kS, true, true}, o));
  std::vector<int32_t> in(testing::kExecB * testing::kExecT), tg(in.size());
  for (int k = 0; k < kUpdates; ++k) {
    for (int p = 0; p < kM; ++p) {
      StageModel& mdl = *ref[size_t(p)].model;
      testing::executor_test_batch(k * kM + p, in.data(), tg.data());
      mdl.forward(0, in.data(), nullptr, tg.data(), nullptr);
      mdl.backward(0, nullptr, nullptr, 1.0f);
      mdl.release(0);
      apply_stage_update(ref[size_t(p)], o, kLr, 1.0f);
      mdl.zero_grads();
    }
    if (k % kK == kK - 1) average_copies({&ref[0], &ref[1]});
  }
  const auto want = params_by_id(*ref[0].model);
  int compared = 0;
  for (auto& ls : st)
    for (const auto& [id, p] : params_by_id(*ls.model)) {
      EXPECT_TRUE(p == want.at(id)) << "tensor " << id << " of stage " << ls.stage << " differs from sequential LocalSGD";
      ++compared;
    }
  EXPECT_EQ(compared, kM * int(want.size()));
  std::string what;
  EXPECT_TRUE(copies_identical(st, kS, &what)) << what;
}

}  // namespace
}  // namespace pt
