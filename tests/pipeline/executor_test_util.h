// Shared by the executor tests (executor_local_test over threads, transport_nccl_test
// over NCCL): a tiny untied model with one block per stage, deterministic token
// batches, and the single-process gradient-accumulation reference that a pipelined
// step must equal bit for bit.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/rng.h"
#include "model/stage_model.h"
#include "pipeline/executor.h"
#include "pipeline/lower.h"
#include "pipeline/schedules/schedules.h"
#include "pipeline/transport.h"
#include "pipeline/validate.h"

namespace pt::testing {

constexpr int kExecB = 2, kExecT = 8, kExecVocab = 37;

// The lowered list of `kind` on `ranks` x `chunks` with m micro-batches; false (and *error set) on failure.
inline bool lowered_schedule(const std::string& kind, int ranks, int chunks, int m, Schedule* lowered,
                             std::string* error) {
  ScheduleSpec spec;
  spec.kind = kind;
  spec.ranks = ranks;
  spec.chunks = chunks;
  spec.microbatches = m;
  Schedule compute;
  Status st = make_schedule(spec, &compute);
  if (st.is_ok()) st = lower_communication(compute, lowered);
  *error = st.message();
  return st.is_ok();
}

// The Executor's view of `stages` (one model per global stage) on pipeline rank `rank`:
// the models of the stages `lowered` places there, nullptr elsewhere.
inline std::vector<StageModel*> stages_of_rank(const Schedule& lowered, int rank,
                                               const std::vector<std::unique_ptr<StageModel>>& stages) {
  std::vector<StageModel*> mine(stages.size(), nullptr);
  for (size_t s = 0; s < stages.size(); ++s)
    if (lowered.stage_to_rank[s] == rank) mine[s] = stages[s].get();
  return mine;
}

// n_layer blocks (one per stage), V = 37, C = 16, 2 heads, untied.
inline ModelConfig executor_test_model(int n_layer) {
  ModelConfig c;
  c.vocab_size = kExecVocab;
  c.max_seq_len = kExecT;
  c.n_layer = n_layer;
  c.n_head = 2;
  c.n_embd = 16;
  c.tie_embeddings = false;
  return c;
}

// Deterministic tokens and targets (B, T) of micro-batch mb.
inline void executor_test_batch(int mb, int32_t* in, int32_t* tg) {
  for (int i = 0; i < kExecB * kExecT; ++i) {
    uint32_t r[4];
    Philox4x32::generate(7, uint64_t(mb), uint64_t(i), r);
    in[i] = int32_t(r[0] % kExecVocab);
    tg[i] = int32_t(r[1] % kExecVocab);
  }
}

// A stage's gradients by global tensor id.
// Every tensor's gradient by global id, downloaded from the model's backend memory.
inline std::map<int, std::vector<float>> grads_by_id(StageModel& m) {
  std::map<int, std::vector<float>> out;
  for (const auto& t : m.tensors()) {
    out[t.global_id].resize(t.numel);
    m.download(out[t.global_id].data(), m.grads() + t.offset, t.numel);
  }
  return out;
}

struct AccumulationReference {
  std::vector<float> losses;                   // per micro-batch
  std::map<int, std::vector<float>> grads;     // by global tensor id
};

// One single-stage model (seed 3) running micro-batches 0..m-1 in order, loss scale 1/m.
inline AccumulationReference gradient_accumulation_reference(const ModelConfig& cfg, int m) {
  auto whole = make_cpu_stage_model(cfg, StageSpec{0, cfg.n_layer, true, true}, kExecB, kExecT);
  whole->init_params(3);
  whole->zero_grads();
  AccumulationReference ref;
  std::vector<int32_t> in(kExecB * kExecT), tg(kExecB * kExecT);
  for (int mb = 0; mb < m; ++mb) {
    executor_test_batch(mb, in.data(), tg.data());
    whole->forward(0, in.data(), nullptr, tg.data(), nullptr);
    ref.losses.push_back(whole->loss(0));
    whole->backward(0, nullptr, nullptr, 1.0f / float(m));
    whole->release(0);
  }
  ref.grads = grads_by_id(*whole);
  return ref;
}

// Pipeline rank `rank` of 2 runs `kind` (chunks per rank, m micro-batches) through the
// Executor over the transport `make` returns for the lowered list; its losses (on the last
// stage's rank) and every local gradient must equal gradient accumulation in one process,
// bit for bit. Every rank calls it (the transport is collective).
inline void expect_executor_matches_reference(const std::string& kind, int chunks, int m, int rank,
                                              const std::function<std::unique_ptr<Transport>(const Schedule&)>& make) {
  const int S = 2 * chunks;
  const ModelConfig cfg = executor_test_model(S);
  const AccumulationReference reference = gradient_accumulation_reference(cfg, m);
  Schedule lowered;
  std::string error;
  ASSERT_TRUE(lowered_schedule(kind, 2, chunks, m, &lowered, &error)) << error;
  ASSERT_TRUE(validate_lowered(lowered).is_ok());
  std::vector<std::unique_ptr<StageModel>> owned;
  std::vector<StageModel*> mine(size_t(S), nullptr);
  for (int s = 0; s < S; ++s) {
    if (lowered.stage_to_rank[size_t(s)] != rank) continue;
    owned.push_back(make_cpu_stage_model(cfg, StageSpec{s, s + 1, s == 0, s == S - 1}, kExecB, kExecT));
    owned.back()->init_params(3);
    owned.back()->zero_grads();
    mine[size_t(s)] = owned.back().get();
  }
  std::unique_ptr<Transport> transport = make(lowered);
  ASSERT_TRUE(transport);
  StepOutput out;
  {
    Executor ex(lowered, rank, mine, transport.get());
    out = ex.run_step(executor_test_batch, 1.0f / float(m));
  }
  if (lowered.stage_to_rank[size_t(S - 1)] == rank) {
    ASSERT_EQ(out.losses.size(), size_t(m));
    for (int mb = 0; mb < m; ++mb) EXPECT_EQ(out.losses[size_t(mb)], reference.losses[size_t(mb)]) << kind << " mb " << mb;
  }
  int compared = 0;
  for (const auto& model : owned)
    for (const auto& [id, g] : grads_by_id(*model)) {
      ASSERT_TRUE(reference.grads.count(id));
      EXPECT_TRUE(g == reference.grads.at(id)) << kind << ": tensor " << id << " differs on rank " << rank;
      ++compared;
    }
  EXPECT_GT(compared, 0);
}

}  // namespace pt::testing
