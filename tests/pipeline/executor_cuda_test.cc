// The executor with CUDA stage models on one GPU (label gpu; skips without one): boundary
// buffers in device memory (StageModel::boundary_memory), each stage model on its own
// stream, ranks as threads over the in-process hub. Two transports:
//   * the local transport (host memory only): the executor stages every boundary buffer
//     through pinned host copies (the MPI / MPS path);
//   * a test transport that takes device buffers: a send makes its own stream wait for
//     BufferRef::ready before copying out, a receive copies in on its own stream and
//     returns an event, which the consuming stage's stream must wait for (the NCCL
//     ordering, without NCCL, which cannot put two ranks on one GPU).
// For 1f1b (4 ranks), zb_h1 (4 ranks) and interleaved_1f1b (2 ranks x 2 chunks: two local
// stages, two streams) the losses and every gradient must equal, bit for bit, one CUDA
// model of the whole network running the micro-batches in order: splitting a network
// into stages changes no kernel's inputs, and a missing wait shows as a wrong value.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "model/stage_model_factory.h"
#include "pipeline/executor.h"
#include "pipeline/lower.h"
#include "pipeline/schedules/schedules.h"
#include "tests/pipeline/executor_test_util.h"

namespace pt {
namespace {

constexpr int kB = testing::kExecB, kT = testing::kExecT, kM = 4;

std::string skip_reason() {
  std::string why;
  return usable_gpu_count(&why) > 0 ? "" : "no usable GPU: " + why;
}

#define CUDA_OK(call) ASSERT_EQ((call), cudaSuccess) << #call

std::unique_ptr<StageModel> cuda_model(const ModelConfig& cfg, const StageSpec& spec) {
  std::unique_ptr<StageModel> m;
  const Status st = make_stage_model("cuda", 0, cfg, spec, kB, kT, &m);
  EXPECT_TRUE(st.is_ok()) << st.message();
  if (m) {
    m->init_params(3);
    m->zero_grads();
  }
  return m;
}

// Device buffers through host copies on this transport's own stream, ordered by events.
class DeviceLocalTransport final : public Transport {
 public:
  explicit DeviceLocalTransport(std::unique_ptr<Transport> inner) : in_(std::move(inner)) {
    cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking);
    cudaEventCreateWithFlags(&done_, cudaEventDisableTiming);
  }
  ~DeviceLocalTransport() override {
    cudaStreamSynchronize(stream_);
    cudaEventDestroy(done_);
    cudaStreamDestroy(stream_);
  }
  int rank() const override { return in_->rank(); }
  int size() const override { return in_->size(); }
  std::string name() const override { return "device-local"; }
  bool accepts(MemorySpace) const override { return true; }
  void send(const BufferRef& b, int peer, int tag) override {
    std::vector<float> host(b.count);
    if (b.ready) cudaStreamWaitEvent(stream_, static_cast<cudaEvent_t>(b.ready), 0);
    cudaMemcpyAsync(host.data(), b.data, b.count * sizeof(float), cudaMemcpyDeviceToHost, stream_);
    cudaStreamSynchronize(stream_);
    in_->send(host.data(), host.size(), peer, tag);
  }
  void* recv(const BufferRef& b, int peer, int tag) override {
    staged_.emplace_back(b.count);
    in_->recv(staged_.back().data(), b.count, peer, tag);
    if (b.ready) cudaStreamWaitEvent(stream_, static_cast<cudaEvent_t>(b.ready), 0);
    cudaMemcpyAsync(b.data, staged_.back().data(), b.count * sizeof(float), cudaMemcpyHostToDevice, stream_);
    cudaEventRecord(done_, stream_);
    return done_;
  }
  void host_wait(void* e) override {
    if (e) cudaEventSynchronize(static_cast<cudaEvent_t>(e));
  }
  void wait_sends() override {
    cudaStreamSynchronize(stream_);
    staged_.clear();
  }

 private:
  std::unique_ptr<Transport> in_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t done_ = nullptr;
  std::vector<std::vector<float>> staged_;  // pageable sources of pending uploads
};

void run(const std::string& kind, int ranks, int chunks, bool device_transport) {
  const int S = ranks * chunks;
  const ModelConfig cfg = testing::executor_test_model(S);
  // Reference: the whole network as one CUDA stage, micro-batches in order.
  auto whole = cuda_model(cfg, StageSpec{0, S, true, true});
  ASSERT_TRUE(whole);
  std::vector<float> ref_losses;
  std::vector<int32_t> in(size_t(kB * kT)), tg(in.size());
  for (int mb = 0; mb < kM; ++mb) {
    testing::executor_test_batch(mb, in.data(), tg.data());
    whole->forward(0, in.data(), nullptr, tg.data(), nullptr);
    ref_losses.push_back(whole->loss(0));
    whole->backward(0, nullptr, nullptr, 1.0f / kM);
    whole->release(0);
  }
  const auto ref = testing::grads_by_id(*whole);

  Schedule lowered;
  std::string error;
  ASSERT_TRUE(testing::lowered_schedule(kind, ranks, chunks, kM, &lowered, &error)) << error;
  std::vector<std::unique_ptr<StageModel>> stages;
  for (int s = 0; s < S; ++s) {
    stages.push_back(cuda_model(cfg, StageSpec{s, s + 1, s == 0, s == S - 1}));
    ASSERT_TRUE(stages.back());
  }
  auto hub = make_local_hub(ranks);
  std::vector<StepOutput> outs(static_cast<size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      std::unique_ptr<Transport> t = make_local_transport(hub, r);
      if (device_transport) t = std::make_unique<DeviceLocalTransport>(std::move(t));
      Executor ex(lowered, r, testing::stages_of_rank(lowered, r, stages), t.get());
      outs[size_t(r)] = ex.run_step(testing::executor_test_batch, 1.0f / kM);
    });
  for (auto& t : threads) t.join();
  const std::string what = kind + (device_transport ? " (device transport)" : " (staged)");
  const int last = lowered.stage_to_rank[size_t(S - 1)];
  ASSERT_EQ(outs[size_t(last)].losses.size(), size_t(kM));
  for (int mb = 0; mb < kM; ++mb) EXPECT_EQ(outs[size_t(last)].losses[size_t(mb)], ref_losses[size_t(mb)]) << what;
  for (int s = 0; s < S; ++s) {
    for (const auto& [id, g] : testing::grads_by_id(*stages[size_t(s)]))
      EXPECT_TRUE(g == ref.at(id)) << what << ": tensor " << id << " of stage " << s << " differs";
  }
}

class ExecutorCuda : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = skip_reason();
    if (!why.empty()) GTEST_SKIP() << why;
  }
};

TEST_F(ExecutorCuda, StagedThroughHostEqualsWholeModelBitwise) {
  run("1f1b", 4, 1, false);
  run("interleaved_1f1b", 2, 2, false);
}
TEST_F(ExecutorCuda, DeviceBuffersOrderedByEventsEqualWholeModelBitwise) {
  run("1f1b", 4, 1, true);
  run("zb_h1", 4, 1, true);
  run("interleaved_1f1b", 2, 2, true);
}

}  // namespace
}  // namespace pt
