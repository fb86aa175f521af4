// Transport selection (pipeline/transport_select.h): every branch of select_transport,
// the errors naming runtime.transport with the reason, and the channel list the NCCL
// transport opens for plain, looped and multi-pipeline placements.
#include "pipeline/transport_select.h"

#include <gtest/gtest.h>

namespace pt {
namespace {

// pp ranks on one host, each with its own GPU unless `shared`.
TransportRequest request(const std::string& want, const std::string& backend, int pp, bool built = true,
                         bool shared = false) {
  TransportRequest r;
  r.requested = want;
  r.backend = backend;
  r.pp = pp;
  r.nccl_built = built;
  for (int i = 0; i < pp; ++i) r.ranks.push_back({"node0", shared ? "GPU-aaaa" : "GPU-" + std::to_string(i)});
  return r;
}

std::string chosen(const TransportRequest& r) {
  TransportChoice c;
  Status s = select_transport(r, &c);
  EXPECT_TRUE(s.is_ok()) << s.message();
  EXPECT_FALSE(c.reason.empty());
  return c.transport;
}

std::string error_of(const TransportRequest& r) {
  TransportChoice c;
  Status s = select_transport(r, &c);
  EXPECT_FALSE(s.is_ok()) << "chose " << c.transport;
  if (!s.is_ok()) {
    EXPECT_NE(s.message().find("runtime.transport"), std::string::npos) << s.message();
  }
  return s.message();
}

TEST(TransportSelect, MpiIsAlwaysPossible) {
  EXPECT_EQ(chosen(request("mpi", "cpu", 4)), "mpi");
  EXPECT_EQ(chosen(request("mpi", "cuda", 4, true, /*shared=*/true)), "mpi");
  EXPECT_EQ(chosen(request("mpi", "cuda", 4)), "mpi");
  EXPECT_EQ(chosen(request("mpi", "cpu", 1, false)), "mpi");
}

TEST(TransportSelect, LocalNeedsOnePipelineRank) {
  EXPECT_EQ(chosen(request("local", "cpu", 1)), "local");
  EXPECT_EQ(chosen(request("local", "cuda", 1)), "local");
  const std::string e = error_of(request("local", "cpu", 4));
  EXPECT_NE(e.find("parallel.pp = 1"), std::string::npos) << e;
}

TEST(TransportSelect, IpcNeedsOneHost) {
  EXPECT_EQ(chosen(request("ipc", "cuda", 4, true, /*shared=*/true)), "ipc");  // MPS: one GPU
  EXPECT_EQ(chosen(request("ipc", "cuda", 4)), "ipc");                         // GPUs of one node
  TransportRequest cpu = request("ipc", "cpu", 2);
  cpu.ranks = {{"node0", ""}, {"node0", ""}};
  EXPECT_EQ(chosen(cpu), "ipc");
  TransportRequest two = request("ipc", "cuda", 2);
  two.ranks = {{"node0", "GPU-0"}, {"node1", "GPU-0"}};
  std::string e = error_of(two);
  EXPECT_NE(e.find("pipeline rank 1 runs on host node1, pipeline rank 0 on node0"), std::string::npos) << e;
  EXPECT_NE(e.find("use mpi"), std::string::npos) << e;
  TransportRequest gpuless = request("ipc", "cuda", 2);
  gpuless.ranks[1].gpu = "";
  e = error_of(gpuless);
  EXPECT_NE(e.find("pipeline rank 1 (host node0) has no GPU"), std::string::npos) << e;
  TransportRequest unknown = request("ipc", "cpu", 3);
  unknown.ranks.pop_back();
  e = error_of(unknown);
  EXPECT_NE(e.find("unknown"), std::string::npos) << e;
}

TEST(TransportSelect, AutoNeverPicksIpc) {
  EXPECT_EQ(chosen(request("auto", "cuda", 4, true, /*shared=*/true)), "mpi");
  EXPECT_EQ(chosen(request("auto", "cpu", 4)), "mpi");
}

TEST(TransportSelect, NcclWithOwnGpus) {
  EXPECT_EQ(chosen(request("nccl", "cuda", 4)), "nccl");
  EXPECT_EQ(chosen(request("nccl", "cuda", 1)), "nccl");
  // Same device ordinal on two hosts is two GPUs.
  TransportRequest r = request("nccl", "cuda", 2);
  r.ranks = {{"node0", "0"}, {"node1", "0"}};
  EXPECT_EQ(chosen(r), "nccl");
}

TEST(TransportSelect, NcclNeedsTheCudaBackend) {
  const std::string e = error_of(request("nccl", "cpu", 4));
  EXPECT_NE(e.find("cuda backend"), std::string::npos) << e;
}

TEST(TransportSelect, NcclNeedsACudaBuild) {
  const std::string e = error_of(request("nccl", "cuda", 4, /*built=*/false));
  EXPECT_NE(e.find("without CUDA"), std::string::npos) << e;
}

TEST(TransportSelect, NcclRejectsRanksSharingAGpu) {
  const std::string e = error_of(request("nccl", "cuda", 4, true, /*shared=*/true));
  EXPECT_NE(e.find("pipeline ranks 0 and 1 share GPU GPU-aaaa on host node0"), std::string::npos) << e;
  EXPECT_NE(e.find("NCCL cannot put two ranks of one communicator on one GPU"), std::string::npos) << e;
  EXPECT_NE(e.find("use mpi"), std::string::npos) << e;
  // Only the last two share.
  TransportRequest r = request("nccl", "cuda", 3);
  r.ranks[2].gpu = r.ranks[1].gpu;
  const std::string e2 = error_of(r);
  EXPECT_NE(e2.find("pipeline ranks 1 and 2 share"), std::string::npos) << e2;
}

TEST(TransportSelect, NcclRejectsARankWithoutGpuOrUnknownLayout) {
  TransportRequest r = request("nccl", "cuda", 3);
  r.ranks[1].gpu.clear();
  const std::string e = error_of(r);
  EXPECT_NE(e.find("pipeline rank 1 (host node0) has no GPU"), std::string::npos) << e;
  r = request("nccl", "cuda", 3);
  r.ranks.pop_back();
  const std::string e2 = error_of(r);
  EXPECT_NE(e2.find("unknown"), std::string::npos) << e2;
}

TEST(TransportSelect, AutoPicksNcclOnlyForCudaWithOwnGpus) {
  EXPECT_EQ(chosen(request("auto", "cuda", 4)), "nccl");
  EXPECT_EQ(chosen(request("auto", "cuda", 1)), "nccl");
  EXPECT_EQ(chosen(request("auto", "cpu", 4)), "mpi");
  EXPECT_EQ(chosen(request("auto", "cpu", 1)), "mpi");
  EXPECT_EQ(chosen(request("auto", "cuda", 4, /*built=*/false)), "mpi");
  // MPS emulation: every rank on one GPU.
  TransportChoice c;
  ASSERT_TRUE(select_transport(request("auto", "cuda", 4, true, /*shared=*/true), &c).is_ok());
  EXPECT_EQ(c.transport, "mpi");
  EXPECT_NE(c.reason.find("share GPU"), std::string::npos) << c.reason;
  TransportRequest r = request("auto", "cuda", 2);
  r.ranks[0].gpu.clear();
  EXPECT_EQ(chosen(r), "mpi");
}

TEST(TransportSelect, RejectsUnknownValues) {
  const std::string e = error_of(request("gloo", "cpu", 1));
  EXPECT_NE(e.find("'gloo' is not one of: auto, mpi, local, nccl, ipc"), std::string::npos) << e;
  const std::string e2 = error_of(request("auto", "rocm", 1));
  EXPECT_NE(e2.find("rocm"), std::string::npos) << e2;
  const std::string e3 = error_of(request("auto", "cpu", 0));
  EXPECT_NE(e3.find("parallel.pp"), std::string::npos) << e3;
}

Schedule placement(std::vector<int> stage_to_rank, int num_ranks, int pipelines = 1) {
  Schedule s;
  s.num_ranks = num_ranks;
  s.num_stages = int(stage_to_rank.size());
  s.stage_to_rank = std::move(stage_to_rank);
  s.pipelines = pipelines;
  s.model_stages = s.num_stages / pipelines;
  return s;
}

using Channels = std::vector<std::pair<int, int>>;

// Data-parallel sums (dp > 1, cuda): NCCL only when every data rank has a GPU of its own;
// ranks sharing one (MPS), a rank without one, or a binary without NCCL: MPI, with the why.
TEST(DataSumsSelect, NcclOnlyWithAGpuPerDataRank) {
  const std::vector<RankDevice> own = {{"node0", "GPU-0"}, {"node0", "GPU-1"}, {"node1", "GPU-0"}};
  EXPECT_EQ(select_data_sums(true, own).transport, "nccl");
  const TransportChoice no_build = select_data_sums(false, own);
  EXPECT_EQ(no_build.transport, "mpi");
  EXPECT_NE(no_build.reason.find("no NCCL"), std::string::npos) << no_build.reason;
  const TransportChoice shared = select_data_sums(true, {{"node0", "GPU-0"}, {"node1", "GPU-0"}, {"node0", "GPU-0"}});
  EXPECT_EQ(shared.transport, "mpi");
  EXPECT_NE(shared.reason.find("data-parallel ranks 0 and 2 share GPU GPU-0 on host node0"), std::string::npos)
      << shared.reason;
  const TransportChoice none = select_data_sums(true, {{"node0", "GPU-0"}, {"node0", ""}});
  EXPECT_EQ(none.transport, "mpi");
  EXPECT_NE(none.reason.find("data-parallel rank 1 (host node0) has no GPU"), std::string::npos) << none.reason;
}

TEST(PipelineChannels, PlainPipelineIsBothDirectionsBetweenNeighbours) {
  EXPECT_EQ(pipeline_channels(placement({0, 1, 2, 3}, 4)), (Channels{{0, 1}, {1, 0}, {1, 2}, {2, 1}, {2, 3}, {3, 2}}));
  EXPECT_TRUE(pipeline_channels(placement({0}, 1)).empty());
  EXPECT_TRUE(pipeline_channels(placement({0, 0, 0}, 1)).empty());  // several stages, one rank
}

TEST(PipelineChannels, LoopedPlacementWrapsAround) {
  // 2 ranks x 2 chunks: stages 0 1 2 3 on ranks 0 1 0 1; stage 1 -> 2 goes back to rank 0.
  EXPECT_EQ(pipeline_channels(placement(looping_stage_to_rank(2, 2), 2)), (Channels{{0, 1}, {1, 0}}));
  // 3 ranks x 2 chunks adds the 2 -> 0 wrap.
  EXPECT_EQ(pipeline_channels(placement(looping_stage_to_rank(3, 2), 3)),
            (Channels{{0, 1}, {0, 2}, {1, 0}, {1, 2}, {2, 0}, {2, 1}}));
}

TEST(PipelineChannels, PipelinesDoNotTalkAcrossChainEnds) {
  // Two pipelines of 2 model stages: 0 1 | 1 0. Chain ends (stage 1 -> 2) exchange nothing.
  EXPECT_EQ(pipeline_channels(placement({0, 1, 1, 0}, 2, 2)), (Channels{{0, 1}, {1, 0}}));
  // 3 ranks, chains 0 1 2 | 0 1 2: the end of chain 0 (rank 2) and the start of chain 1
  // (rank 0) exchange nothing, so there is no 2 <-> 0 channel (a looped placement has one).
  EXPECT_EQ(pipeline_channels(placement({0, 1, 2, 0, 1, 2}, 3, 2)), (Channels{{0, 1}, {1, 0}, {1, 2}, {2, 1}}));
}

}  // namespace
}  // namespace pt
