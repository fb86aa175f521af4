// The NCCL transport under mpirun -np 2 (label gpu): NCCL needs a GPU of its own per
// rank, so without two distinct GPUs every test skips with "no usable GPU: ...".
//  * send-send-recv-recv in both directions at once (the shape that deadlocks when a
//    pending send holds up the rank's next receive), with messages far beyond NCCL's
//    internal buffering, for host -> host, device -> device, host -> device and
//    device -> host buffers; contents checked element by element;
//  * the host buffer of a send may be reused once wait_sends returns;
//  * the fp32 all-reducer sums host and device buffers;
//  * the executor over the NCCL transport (1F1B, interleaved 1F1B with its wrap-around
//    channel, ZB-H1) equals one process's gradient accumulation bit for bit, as
//    executor_local_test checks for the in-process transport.
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/rng.h"
#include "model/stage_model.h"
#include "pipeline/executor.h"
#include "pipeline/lower.h"
#include "pipeline/process_groups.h"
#include "pipeline/schedules/schedules.h"
#include "pipeline/transport.h"
#include "pipeline/transport_select.h"
#include "pipeline/validate.h"
#include "tests/pipeline/executor_test_util.h"
#include "tests/pipeline/transport_test_util.h"

namespace pt {
namespace {

int g_rank = 0, g_size = 1, g_device = -1;
std::string g_skip;  // empty when the two ranks have a GPU each

// Decided once, identically on both ranks (the device table is gathered).
std::string decide_skip() {
  if (g_size != 2) return "this test runs under mpirun -np 2, got " + std::to_string(g_size) + " rank(s)";
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  int mine = rc == cudaSuccess ? count : 0, fewest = 0;
  if (rc != cudaSuccess) (void)cudaGetLastError();
  MPI_Allreduce(&mine, &fewest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (fewest == 0)
    return std::string("no usable GPU: ") +
           (rc != cudaSuccess ? std::string("cudaGetDeviceCount failed with ") + cudaGetErrorName(rc)
                              : "no CUDA device is visible on some rank");
  std::vector<RankDevice> ranks;
  if (!gather_rank_devices(MPI_COMM_WORLD, true, node_local_rank(), &g_device, &ranks).is_ok()) return "no usable GPU: gather failed";
  TransportRequest req;
  req.requested = "nccl";
  req.backend = "cuda";
  req.pp = 2;
  req.nccl_built = nccl_transport_built();
  req.ranks = ranks;
  TransportChoice choice;
  if (!select_transport(req, &choice).is_ok())
    return "no usable GPU: need 2 GPUs for NCCL p2p, found " + std::to_string(fewest) +
           " (the 2 ranks would share one)";
  return "";
}

class NcclTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!g_skip.empty()) GTEST_SKIP() << g_skip;
  }
};

using testing::expect_pattern;
using testing::pattern;

std::unique_ptr<Transport> make_transport() {
  Status st;
  auto t = make_nccl_transport(MPI_COMM_WORLD, g_device, {}, &st);
  EXPECT_TRUE(st.is_ok()) << st.message();
  return t;
}

// Both ranks: send, send, recv, recv to/from the other, then wait_sends. 8 Mi floats
// (32 MiB) per message: far more than NCCL buffers for a pending send.
void send_send_recv_recv(bool send_on_device, bool recv_on_device) {
  auto t = make_transport();
  ASSERT_TRUE(t);
  testing::send_send_recv_recv(*t, g_rank, size_t(8) << 20, send_on_device, recv_on_device, "nccl");
  EXPECT_EQ(t->name(), "nccl");
}

TEST_F(NcclTest, SendSendRecvRecvHostToHost) { send_send_recv_recv(false, false); }
TEST_F(NcclTest, SendSendRecvRecvDeviceToDevice) { send_send_recv_recv(true, true); }
TEST_F(NcclTest, SendSendRecvRecvHostToDevice) { send_send_recv_recv(false, true); }
TEST_F(NcclTest, SendSendRecvRecvDeviceToHost) { send_send_recv_recv(true, false); }

TEST_F(NcclTest, ManySmallMessagesKeepChannelOrderAndBuffersAreReusable) {
  auto t = make_transport();
  ASSERT_TRUE(t);
  const int peer = 1 - g_rank;
  const size_t n = 1000;
  std::vector<float> buf(n);
  for (int round = 0; round < 3; ++round) {
    for (int k = 0; k < 20; ++k) {
      std::vector<float> v(n);
      for (size_t i = 0; i < n; ++i) v[i] = pattern(g_rank, round * 100 + k, i);
      std::vector<std::vector<float>> keep;  // one buffer per pending send
      keep.push_back(v);
      t->send(keep.back().data(), n, peer, k);
      std::vector<float> got(n);
      t->recv(got.data(), n, peer, k);
      expect_pattern(got, peer, round * 100 + k, "round " + std::to_string(round) + " message " + std::to_string(k));
      t->wait_sends();
    }
  }
}

TEST_F(NcclTest, AllReduceSumsHostAndDeviceBuffers) {
  Status st;
  auto ar = make_nccl_all_reducer(MPI_COMM_WORLD, g_device, &st);
  ASSERT_TRUE(st.is_ok()) << st.message();
  const size_t n = (size_t(1) << 20) + 3;
  std::vector<float> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = float(g_rank + 1) * float(i % 1024);  // sums are exact in fp32
  ar->all_reduce_sum(h.data(), n);
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) bad += h[i] != 3.0f * float(i % 1024);
  EXPECT_EQ(bad, 0u) << "host all-reduce";
  testing::Buf d(true, n);
  d.fill(g_rank, 5);
  ar->all_reduce_sum(d.ptr(), n);
  const std::vector<float> got = d.read();
  bad = 0;
  for (size_t i = 0; i < n; ++i) bad += got[i] != pattern(0, 5, i) + pattern(1, 5, i);
  EXPECT_EQ(bad, 0u) << "device all-reduce";
}

// The executor over NCCL equals gradient accumulation in one process, bitwise.
constexpr int kM = 6;

void executor_matches_reference(const std::string& kind, int chunks) {
  testing::expect_executor_matches_reference(kind, chunks, kM, g_rank, [](const Schedule& lowered) {
    Status st;
    auto transport = make_nccl_transport(MPI_COMM_WORLD, g_device, pipeline_channels(lowered), &st);
    EXPECT_TRUE(st.is_ok()) << st.message();
    return transport;
  });
}

TEST_F(NcclTest, ExecutorOneFOneBEqualsGradientAccumulationBitwise) { executor_matches_reference("1f1b", 1); }
TEST_F(NcclTest, ExecutorInterleavedEqualsGradientAccumulationBitwise) {
  executor_matches_reference("interleaved_1f1b", 2);
}
TEST_F(NcclTest, ExecutorZeroBubbleEqualsGradientAccumulationBitwise) { executor_matches_reference("zb_h1", 1); }

}  // namespace
}  // namespace pt

// MPI around gtest: every rank runs every test; the job fails when any rank fails.
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &pt::g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &pt::g_size);
  pt::set_reporting_rank(pt::g_rank);
  pt::g_skip = pt::decide_skip();
  if (!pt::g_skip.empty() && pt::g_rank == 0) std::printf("%s\n", pt::g_skip.c_str());
  return pt::testing::run_tests_on_every_rank();
}
