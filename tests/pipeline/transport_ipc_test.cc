// The ipc transport under mpirun -np 2. Argument "shm" (label cpu): the POSIX
// shared-memory stand-in, host buffers. Argument "cuda" (label gpu): CUDA IPC with host
// and device buffers; without a GPU it prints "no usable GPU: ..." and skips.
//  * send-send-recv-recv in both directions at once with messages of many pieces through
//    2 slots of 1000 floats, so sends queue for credits and receives hand them back;
//  * many messages in channel order, an empty message, send buffers reusable after
//    wait_sends;
//  * the executor over the ipc transport (1F1B, interleaved 1F1B with its wrap-around
//    channel, ZB-H1, GPipe) equals one process's gradient accumulation bit for bit, as it
//    does over the in-process and NCCL transports; with slots smaller than a boundary
//    tensor and with one slot per channel.
#include <gtest/gtest.h>
#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "common/check.h"
#include "pipeline/ipc_memory.h"
#include "pipeline/mpi_wait.h"
#include "pipeline/process_groups.h"
#include "pipeline/transport.h"
#include "pipeline/transport_select.h"
#include "tests/pipeline/executor_test_util.h"
#include "tests/pipeline/transport_test_util.h"

namespace pt {
namespace {

int g_rank = 0, g_size = 1, g_device = 0;
std::string g_memory = "shm";
std::string g_skip;

std::string decide_skip() {
  if (g_size != 2) return "this test runs under mpirun -np 2, got " + std::to_string(g_size) + " rank(s)";
  if (g_memory == "shm") return "";
#ifdef PT_TEST_CUDA
  int count = 0, mine = 0, fewest = 0;
  if (cudaGetDeviceCount(&count) == cudaSuccess) mine = count;
  (void)cudaGetLastError();
  MPI_Allreduce(&mine, &fewest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (fewest == 0) return "no usable GPU: no CUDA device is visible on some rank";
  g_device = node_local_rank() % count;  // one GPU: both ranks share it
  return "";
#else
  return "no usable GPU: this binary has no CUDA";
#endif
}

class IpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!g_skip.empty()) GTEST_SKIP() << g_skip;
  }
};

using testing::expect_pattern;
using testing::pattern;

std::unique_ptr<Transport> make_transport(const std::vector<std::pair<int, int>>& channels, size_t slot_floats,
                                          int slots) {
  Status st;
  auto t = make_ipc_transport(MPI_COMM_WORLD, g_memory, g_device, channels, slot_floats, slots, &st);
  EXPECT_TRUE(st.is_ok()) << st.message();
  return t;
}

// Both ranks: send, send, recv, recv to/from the other, then wait_sends. Each message is
// 10 pieces and a remainder; two slots hold two pieces, so most pieces wait for credits
// that the peer returns only from inside its receives.
void send_send_recv_recv(bool send_on_device, bool recv_on_device) {
  auto t = make_transport({}, 1000, 2);
  ASSERT_TRUE(t);
  const bool cuda = g_memory == "cuda";  // shm: every buffer is host memory
  testing::send_send_recv_recv(*t, g_rank, 10 * 1000 + 7, send_on_device && cuda, recv_on_device && cuda, g_memory);
  EXPECT_EQ(t->name(), "ipc");
}

TEST_F(IpcTest, SendSendRecvRecvHostToHost) { send_send_recv_recv(false, false); }
TEST_F(IpcTest, SendSendRecvRecvDeviceToDevice) { send_send_recv_recv(true, true); }
TEST_F(IpcTest, SendSendRecvRecvHostToDevice) { send_send_recv_recv(false, true); }
TEST_F(IpcTest, SendSendRecvRecvDeviceToHost) { send_send_recv_recv(true, false); }

// Only channel 0 -> 1 exists. First rank 0 sends 20 messages (one empty) before rank 1
// receives any: they queue for credits and must arrive in order. Then rank 0 refills one
// buffer after each wait_sends: a message must hold what the buffer held at its send.
TEST_F(IpcTest, ManyMessagesKeepChannelOrderAndBuffersAreReusable) {
  auto t = make_transport({{0, 1}}, 300, 3);
  ASSERT_TRUE(t);
  const size_t n = 1000;
  auto len = [&](int k) { return k == 5 ? size_t(0) : n; };
  std::vector<std::vector<float>> sent(20, std::vector<float>(n));
  std::vector<float> got(n), one(n);
  for (int k = 0; k < 20 && g_rank == 0; ++k) {
    for (size_t i = 0; i < n; ++i) sent[size_t(k)][i] = pattern(0, k, i);
    t->send(sent[size_t(k)].data(), len(k), 1, k);
  }
  for (int k = 0; k < 20 && g_rank == 1; ++k) {
    t->recv(got.data(), len(k), 0, k);
    if (len(k) > 0) expect_pattern(got, 0, k, "queued message " + std::to_string(k));
  }
  t->wait_sends();
  for (int k = 0; k < 20; ++k) {
    if (g_rank == 0) {
      for (size_t i = 0; i < n; ++i) one[i] = pattern(0, 100 + k, i);
      t->send(one.data(), n, 1, k);
      t->wait_sends();
    } else {
      t->recv(got.data(), n, 0, k);
      expect_pattern(got, 0, 100 + k, "reused buffer, message " + std::to_string(k));
    }
  }
}

// The shm memory, except that on `failing_rank` opening a peer's buffer fails.
class FailingOpen final : public IpcMemory {
 public:
  explicit FailingOpen(bool fail) : inner_(make_shm_ipc_memory()), fail_(fail) {}
  std::string name() const override { return "test"; }
  float* export_buffer(size_t n, IpcHandle* h) override { return inner_->export_buffer(n, h); }
  void free_buffer(float* p, size_t n) override { inner_->free_buffer(p, n); }
  Status open_buffer(const IpcHandle& h, size_t n, float** out) override {
    if (fail_) return Status::error("refused by the test");
    return inner_->open_buffer(h, n, out);
  }
  void close_buffer(float* p, size_t n) override { inner_->close_buffer(p, n); }
  void sealed() override { inner_->sealed(); }
  void* export_fence(IpcHandle* h) override { return inner_->export_fence(h); }
  Status open_fence(const IpcHandle& h, void** out) override { return inner_->open_fence(h, out); }
  void destroy_fence(void* f) override { inner_->destroy_fence(f); }
  void wait(void* e) override { inner_->wait(e); }
  void copy(float* dst, const float* src, size_t n) override { inner_->copy(dst, src, n); }
  void record(void* f) override { inner_->record(f); }
  void* mark() override { return inner_->mark(); }
  void synchronize() override { inner_->synchronize(); }
  bool is_host(const void* p) const override { return inner_->is_host(p); }

 private:
  std::unique_ptr<IpcMemory> inner_;
  bool fail_;
};

// A rank that cannot open its peer's mailbox: every rank gets no transport and a Status;
// the failing rank's names itself and the peer and says to use mpi, the other names it.
TEST_F(IpcTest, AFailedOpenFailsEveryRankNamingTheRankAndSuggestingMpi) {
  if (g_memory != "shm") GTEST_SKIP() << "the protocol's failure path is memory-independent";
  Status st;
  auto t = make_ipc_transport_over(MPI_COMM_WORLD, std::make_unique<FailingOpen>(g_rank == 1), {}, 64, 2, &st);
  EXPECT_EQ(t, nullptr);
  ASSERT_FALSE(st.is_ok());
  if (g_rank == 1) {
    EXPECT_NE(st.message().find("pipeline rank 1 could not open what pipeline rank 0 shares over test IPC: refused "
                                "by the test"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("use runtime.transport=mpi"), std::string::npos) << st.message();
  } else {
    EXPECT_NE(st.message().find("rank(s) 1 of the communicator could not open a peer's shared memory"),
              std::string::npos) << st.message();
  }
  // The ranks are in step again: a working transport can be made at once.
  auto ok = make_transport({}, 64, 2);
  EXPECT_NE(ok, nullptr);
}

// Rank 0 sends two messages through one slot, so the second waits in its queue, and then
// blocks in an MPI collective (a barrier through wait_request) that rank 1 joins only after
// receiving both: the collective's wait must deliver the queued message, as MPI's progress
// engine would. Without the poll hook this deadlocks (the watchdog ends it after 20 s).
TEST_F(IpcTest, AQueuedMessageIsDeliveredWhileTheSenderWaitsInACollective) {
  auto t = make_transport({{0, 1}}, 500, 1);
  ASSERT_TRUE(t);
  const double deadline = wait_deadline_seconds();
  set_wait_deadline_seconds(20);
  std::vector<float> a(500), b(500);
  for (size_t i = 0; i < 500; ++i) a[i] = pattern(0, 1, i), b[i] = pattern(0, 2, i);
  if (g_rank == 0) {
    t->send(a.data(), a.size(), 1, 1);
    t->send(b.data(), b.size(), 1, 2);
  } else {
    std::vector<float> got(500);
    t->recv(got.data(), got.size(), 0, 1);
    expect_pattern(got, 0, 1, "first message");
    t->recv(got.data(), got.size(), 0, 2);
    expect_pattern(got, 0, 2, "queued message");
  }
  MPI_Request barrier;
  MPI_Ibarrier(MPI_COMM_WORLD, &barrier);
  wait_request(&barrier, nullptr, [] { return std::string("the test's barrier"); });
  t->wait_sends();
  set_wait_deadline_seconds(deadline);
}

TEST_F(IpcTest, AChannelListedTwiceIsRefusedOnEveryRank) {
  Status st;
  auto t = make_ipc_transport(MPI_COMM_WORLD, g_memory, g_device, {{0, 1}, {1, 0}, {0, 1}}, 64, 2, &st);
  EXPECT_EQ(t, nullptr);
  EXPECT_NE(st.message().find("the ipc channel list names a channel twice"), std::string::npos) << st.message();
}

constexpr int kM = 6;

// slot_floats below a boundary tensor's 2 x 8 x 16 = 256 floats: every message in pieces.
void executor_matches_reference(const std::string& kind, int chunks, size_t slot_floats, int slots) {
  testing::expect_executor_matches_reference(kind, chunks, kM, g_rank, [&](const Schedule& lowered) {
    return make_transport(pipeline_channels(lowered), slot_floats, slots);
  });
}

TEST_F(IpcTest, ExecutorOneFOneBEqualsGradientAccumulationBitwise) { executor_matches_reference("1f1b", 1, 256, 4); }
TEST_F(IpcTest, ExecutorInterleavedEqualsGradientAccumulationBitwise) {
  executor_matches_reference("interleaved_1f1b", 2, 256, 4);
}
TEST_F(IpcTest, ExecutorZeroBubbleEqualsGradientAccumulationBitwise) { executor_matches_reference("zb_h1", 1, 256, 4); }
TEST_F(IpcTest, ExecutorGpipeInPiecesThroughOneSlotEqualsGradientAccumulationBitwise) {
  executor_matches_reference("gpipe", 1, 100, 1);
}

}  // namespace
}  // namespace pt

// MPI around gtest: every rank runs every test; the job fails when any rank fails.
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &pt::g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &pt::g_size);
  pt::set_reporting_rank(pt::g_rank);
  if (argc > 1) pt::g_memory = argv[1];
  PT_CHECK_MSG(pt::g_memory == "shm" || pt::g_memory == "cuda", "usage: transport_ipc_test shm|cuda");
  pt::set_wait_deadline_seconds(120);  // a protocol deadlock fails the test instead of hanging it
  pt::g_skip = pt::decide_skip();
  if (!pt::g_skip.empty() && pt::g_rank == 0) std::printf("%s\n", pt::g_skip.c_str());
  return pt::testing::run_tests_on_every_rank();
}
