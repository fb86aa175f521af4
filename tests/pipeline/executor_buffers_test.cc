// The executor's buffer interface (model/boundary_memory.h, transport.h) on the CPU:
// stage models whose boundary memory calls itself "device" and records its events,
// over a transport that accepts device buffers and returns an event per receive (as
// NCCL does). Checks, for 1f1b, zb_h1 and interleaved_1f1b (two local stages per
// rank, so local stage-to-stage ordering is exercised):
//   * numbers equal, bit for bit, one thread's gradient accumulation;
//   * every send carries the event its stage recorded right before it, with no compute
//     issued in between (the producer's work is covered);
//   * every receive's event is waited on by the consuming stage before that stage's
//     next compute, and, inside a group, only after group_end;
//   * groups are opened and closed exactly at comm_groups()'s boundaries;
//   * grads_final_next comes once per stage, right before its last weight backward.
// And the same models over the host-only local transport (staged through host copies).
// Evaluation (forward_only) records each loss in backend memory and reads them with one
// take_losses() per pass, never loss() per micro-batch, with the reference's bits.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "model/stage_model.h"
#include "pipeline/comm_groups.h"
#include "pipeline/executor.h"
#include "pipeline/lower.h"
#include "pipeline/schedules/schedules.h"
#include "tests/pipeline/executor_test_util.h"

namespace pt {
namespace {

constexpr int kB = testing::kExecB, kT = testing::kExecT, kM = 4;

// One rank's record of ordering calls, in issue order.
struct Entry {
  char what;  // 'C' compute, 'P' producer event, 'W' consumer wait, 'S' send, 'R' recv, '(' ')' group,
              // 'L' loss(), 'T' take_losses()
  int stage;
  intptr_t event;
};
struct Log {
  std::vector<Entry> entries;
  intptr_t next = 1;
  void add(char w, int stage, intptr_t e = 0) { entries.push_back({w, stage, e}); }
};

class RecordingMemory final : public BoundaryMemory {
 public:
  RecordingMemory(Log* log, int stage) : log_(log), stage_(stage) {}
  MemorySpace space() const override { return MemorySpace::kDevice; }
  float* alloc(size_t n) override { return static_cast<float*>(std::calloc(n, sizeof(float))); }
  void free(float* p) override { std::free(p); }
  float* alloc_host(size_t n) override { return alloc(n); }
  void free_host(float* p) override { free(p); }
  void to_host(float* d, const float* s, size_t n) override { std::memcpy(d, s, n * sizeof(float)); }
  void from_host(float* d, const float* s, size_t n) override { std::memcpy(d, s, n * sizeof(float)); }
  void* producer_event() override {
    const intptr_t e = log_->next++;
    log_->add('P', stage_, e);
    return reinterpret_cast<void*>(e);
  }
  void consumer_wait(void* e) override { log_->add('W', stage_, reinterpret_cast<intptr_t>(e)); }

 private:
  Log* log_;
  int stage_;
};

// A CPU stage model that logs its compute and hands out a RecordingMemory.
class RecordingStage final : public StageModel {
 public:
  RecordingStage(std::unique_ptr<StageModel> m, Log* log, int stage) : m_(std::move(m)), log_(log), stage_(stage) {}
  const ModelConfig& config() const override { return m_->config(); }
  const StageSpec& spec() const override { return m_->spec(); }
  int batch_size() const override { return m_->batch_size(); }
  int seq_len() const override { return m_->seq_len(); }
  const std::vector<ParamTensor>& tensors() const override { return m_->tensors(); }
  size_t num_params() const override { return m_->num_params(); }
  float* params() override { return m_->params(); }
  float* grads() override { return m_->grads(); }
  void init_params(uint64_t seed) override { m_->init_params(seed); }
  void zero_grads() override { m_->zero_grads(); }
  std::unique_ptr<BoundaryMemory> boundary_memory() override {
    return std::make_unique<RecordingMemory>(log_, stage_);
  }
  void forward(int slot, const int32_t* tok, const float* in, const int32_t* tg, float* out) override {
    log_->add('C', stage_);
    m_->forward(slot, tok, in, tg, out);
  }
  float loss(int slot) const override {
    log_->add('L', stage_);
    return m_->loss(slot);
  }
  void record_loss(int slot) override { m_->record_loss(slot); }
  std::vector<float> take_losses() override {
    log_->add('T', stage_);
    return m_->take_losses();
  }
  bool host_memory() const override { return m_->host_memory(); }
  void* stream() const override { return m_->stream(); }
  void download(float* h, const float* s, size_t n) override { m_->download(h, s, n); }
  void upload(float* d, const float* h, size_t n) override { m_->upload(d, h, n); }
  void params_written() override { m_->params_written(); }
  Transfers transfers() const override { return m_->transfers(); }
  void grad_sums_of_squares(double* out) override { m_->grad_sums_of_squares(out); }
  void add(float* o, const float* a, const float* b, size_t n) override { m_->add(o, a, b, n); }
  void copy(float* d, const float* s, size_t n) override { m_->copy(d, s, n); }
  void average(float* const* b, int c, size_t n) override { m_->average(b, c, n); }
  void stash_params(int key) override { m_->stash_params(key); }
  void swap_stashed_params(int key) override { m_->swap_stashed_params(key); }
  void drop_stashed_params(int key) override { m_->drop_stashed_params(key); }
  void backward(int slot, const float* d, float* di, float s) override {
    log_->add('C', stage_);
    m_->backward(slot, d, di, s);
  }
  void backward_input(int slot, const float* d, float* di, float s) override {
    log_->add('C', stage_);
    m_->backward_input(slot, d, di, s);
  }
  void backward_weight(int slot) override {
    log_->add('C', stage_);
    m_->backward_weight(slot);
  }
  void release(int slot) override { m_->release(slot); }
  size_t activation_floats_per_slot() const override { return m_->activation_floats_per_slot(); }

 private:
  std::unique_ptr<StageModel> m_;
  Log* log_;
  int stage_;
};

// Device-accepting transport over the local one: sends log the event they wait on,
// receives return a fresh event.
class RecordingTransport final : public Transport {
 public:
  RecordingTransport(std::unique_ptr<Transport> inner, Log* log) : in_(std::move(inner)), log_(log) {}
  int rank() const override { return in_->rank(); }
  int size() const override { return in_->size(); }
  std::string name() const override { return "recording"; }
  bool accepts(MemorySpace) const override { return true; }
  void send(const BufferRef& b, int peer, int tag) override {
    log_->add('S', -1, reinterpret_cast<intptr_t>(b.ready));
    in_->send(BufferRef::host(b.data, b.count), peer, tag);
  }
  void* recv(const BufferRef& b, int peer, int tag) override {
    const intptr_t e = log_->next++;
    log_->add('R', -1, e);
    in_->recv(b.data, b.count, peer, tag);
    return reinterpret_cast<void*>(e);
  }
  void wait_sends() override { in_->wait_sends(); }
  void group_begin() override { log_->add('(', -1); }
  void group_end() override { log_->add(')', -1); }

 private:
  std::unique_ptr<Transport> in_;
  Log* log_;
};

void check_log(const Schedule& lowered, const Log& log, int rank) {
  const std::vector<Action>& list = lowered.per_rank[size_t(rank)];
  const auto& e = log.entries;
  // Comm entries in list order: S, R, and group brackets where comm_groups puts them.
  std::string want, got;
  const std::vector<CommGroup> groups = comm_groups(lowered)[size_t(rank)];
  size_t g = 0;
  for (int t = 0; t < int(list.size()); ++t) {
    if (g < groups.size() && groups[g].begin == t) want += '(';
    if (is_send(list[size_t(t)].kind)) want += 'S';
    if (is_recv(list[size_t(t)].kind)) want += 'R';
    if (g < groups.size() && groups[g].end - 1 == t) want += ')', ++g;
  }
  for (const Entry& x : e)
    if (x.what == 'S' || x.what == 'R' || x.what == '(' || x.what == ')') got += x.what;
  EXPECT_EQ(got, want) << "rank " << rank;
  for (size_t i = 0; i < e.size(); ++i) {
    if (e[i].what == 'S') {
      // The event was recorded right before, with no compute since.
      ASSERT_GT(i, 0u);
      EXPECT_EQ(e[i - 1].what, 'P') << "rank " << rank << " entry " << i;
      EXPECT_EQ(e[i - 1].event, e[i].event) << "rank " << rank << " entry " << i;
      EXPECT_NE(e[i].event, 0) << "rank " << rank;
    }
    if (e[i].what != 'R') continue;
    // Waited on by some stage before any compute, and after the enclosing group closed.
    bool open = false;
    for (size_t j = 0; j < i; ++j) open = e[j].what == '(' ? true : e[j].what == ')' ? false : open;
    size_t j = i + 1;
    for (; j < e.size(); ++j) {
      if (e[j].what == ')') open = false;
      if (e[j].what == 'W' && e[j].event == e[i].event) break;
      EXPECT_NE(e[j].what, 'C') << "rank " << rank << ": compute before the wait on receive event " << e[i].event;
    }
    ASSERT_LT(j, e.size()) << "rank " << rank << ": receive event " << e[i].event << " never waited on";
    EXPECT_FALSE(open) << "rank " << rank << ": receive event waited on inside its group";
  }
}

// One RecordingStage per stage of `lowered`, logging into its rank's log.
std::vector<std::unique_ptr<StageModel>> recording_stages(const ModelConfig& cfg, const Schedule& lowered,
                                                          std::vector<Log>* logs) {
  const int S = lowered.num_stages;
  std::vector<std::unique_ptr<StageModel>> stages;
  for (int s = 0; s < S; ++s) {
    auto m = make_cpu_stage_model(cfg, StageSpec{s, s + 1, s == 0, s == S - 1}, kB, kT);
    stages.push_back(
        std::make_unique<RecordingStage>(std::move(m), &(*logs)[size_t(lowered.stage_to_rank[size_t(s)])], s));
    stages.back()->init_params(3);
    stages.back()->zero_grads();
  }
  return stages;
}

void run(const std::string& kind, int ranks, int chunks, bool device_transport) {
  const int S = ranks * chunks;
  const ModelConfig cfg = testing::executor_test_model(S);
  const testing::AccumulationReference ref = testing::gradient_accumulation_reference(cfg, kM);
  Schedule lowered;
  std::string error;
  ASSERT_TRUE(testing::lowered_schedule(kind, ranks, chunks, kM, &lowered, &error)) << error;
  std::vector<Log> logs(static_cast<size_t>(ranks));
  std::vector<std::unique_ptr<StageModel>> stages = recording_stages(cfg, lowered, &logs);
  auto hub = make_local_hub(ranks);
  std::vector<StepOutput> outs(static_cast<size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      std::unique_ptr<Transport> t = make_local_transport(hub, r);
      if (device_transport) t = std::make_unique<RecordingTransport>(std::move(t), &logs[size_t(r)]);
      Executor ex(lowered, r, testing::stages_of_rank(lowered, r, stages), t.get());
      StageCallbacks cb;
      cb.grads_final_next = [&, r](int s) { logs[size_t(r)].add('G', s); };
      outs[size_t(r)] = ex.run_step(testing::executor_test_batch, 1.0f / kM, cb);
    });
  for (auto& t : threads) t.join();
  const int last = lowered.stage_to_rank[size_t(S - 1)];
  ASSERT_EQ(outs[size_t(last)].losses.size(), size_t(kM));
  for (int mb = 0; mb < kM; ++mb) EXPECT_EQ(outs[size_t(last)].losses[size_t(mb)], ref.losses[size_t(mb)]) << kind;
  for (int s = 0; s < S; ++s)
    for (const auto& [id, g] : testing::grads_by_id(*stages[size_t(s)]))
      EXPECT_TRUE(g == ref.grads.at(id)) << kind << ": tensor " << id << " differs from the reference";
  // grads_final_next: once per stage, right before its last compute (the last B or Bw: the
  // lists end with ALLREDUCE_GRAD:dp then STEP).
  for (int r = 0; r < ranks; ++r) {
    std::map<int, int> total, seen, calls;
    for (const Entry& x : logs[size_t(r)].entries)
      if (x.what == 'C') ++total[x.stage];
    for (const Entry& x : logs[size_t(r)].entries) {
      if (x.what == 'C') ++seen[x.stage];
      if (x.what != 'G') continue;
      ++calls[x.stage];
      EXPECT_EQ(seen[x.stage], total[x.stage] - 1) << kind << " stage " << x.stage << ": not before its last backward";
    }
    for (const auto& [st, n] : total) EXPECT_EQ(calls[st], 1) << kind << " stage " << st;
  }
  if (!device_transport) return;
  for (int r = 0; r < ranks; ++r) check_log(lowered, logs[size_t(r)], r);
}

TEST(ExecutorBuffers, DeviceBuffersOrderedByEventsOneFOneB) { run("1f1b", 4, 1, true); }
TEST(ExecutorBuffers, DeviceBuffersOrderedByEventsZeroBubble) { run("zb_h1", 4, 1, true); }
TEST(ExecutorBuffers, DeviceBuffersOrderedByEventsInterleaved) { run("interleaved_1f1b", 2, 2, true); }
TEST(ExecutorBuffers, EvaluationReadsRecordedLossesOnce) {
  const int ranks = 2;
  const ModelConfig cfg = testing::executor_test_model(ranks);
  const testing::AccumulationReference ref = testing::gradient_accumulation_reference(cfg, kM);
  Schedule lowered;
  std::string error;
  ASSERT_TRUE(testing::lowered_schedule("1f1b", ranks, 1, kM, &lowered, &error)) << error;
  std::vector<Log> logs(static_cast<size_t>(ranks));
  std::vector<std::unique_ptr<StageModel>> stages = recording_stages(cfg, lowered, &logs);
  auto hub = make_local_hub(ranks);
  std::vector<std::vector<float>> losses(static_cast<size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      std::unique_ptr<Transport> t = make_local_transport(hub, r);
      std::vector<StageModel*> mine(size_t(ranks), nullptr);
      mine[size_t(r)] = stages[size_t(r)].get();
      Executor ex(lowered, r, mine, t.get());
      losses[size_t(r)] = ex.forward_only(kM, testing::executor_test_batch);
    });
  for (auto& t : threads) t.join();
  EXPECT_TRUE(losses[0].empty());
  ASSERT_EQ(losses[1].size(), size_t(kM));
  for (int mb = 0; mb < kM; ++mb) EXPECT_EQ(losses[1][size_t(mb)], ref.losses[size_t(mb)]) << "micro-batch " << mb;
  std::string reads;
  for (const Entry& x : logs[1].entries)
    if (x.what == 'L' || x.what == 'T') reads += x.what;
  EXPECT_EQ(reads, "T") << "one take_losses per evaluation, no loss() per micro-batch";
}

TEST(ExecutorBuffers, DeviceBuffersStagedThroughHostForAHostTransport) {
  run("1f1b", 4, 1, false);
  run("interleaved_1f1b", 2, 2, false);
}

}  // namespace
}  // namespace pt
