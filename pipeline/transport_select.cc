#include "pipeline/transport_select.h"

#include <algorithm>
#include <map>

namespace pt {
namespace {

Status bad(const std::string& why) { return Status::error("key 'runtime.transport': " + why); }

// Empty when each of the n ranks of a group ("pipeline", "data-parallel") has a GPU of its
// own; otherwise why not (the first rank without a GPU, or the first two that share one).
std::string gpu_sharing_problem(const std::vector<RankDevice>& ranks, int n, const std::string& group) {
  if (int(ranks.size()) != n)
    return "the GPU of each of the " + std::to_string(n) + " " + group + " ranks is unknown (got " +
           std::to_string(ranks.size()) + " entries)";
  std::map<std::pair<std::string, std::string>, int> owner;
  for (int i = 0; i < n; ++i) {
    const RankDevice& d = ranks[size_t(i)];
    if (d.gpu.empty()) return group + " rank " + std::to_string(i) + " (host " + d.host + ") has no GPU";
    auto [it, fresh] = owner.emplace(std::make_pair(d.host, d.gpu), i);
    if (!fresh)
      return group + " ranks " + std::to_string(it->second) + " and " + std::to_string(i) + " share GPU " + d.gpu +
             " on host " + d.host;
  }
  return "";
}

std::string gpu_sharing_problem(const TransportRequest& r) { return gpu_sharing_problem(r.ranks, r.pp, "pipeline"); }

// Empty when every pipeline rank runs on one host (and, with `gpu`, has a GPU); otherwise why not.
std::string one_host_problem(const TransportRequest& r, bool gpu) {
  if (int(r.ranks.size()) != r.pp)
    return "where each of the " + std::to_string(r.pp) + " pipeline ranks runs is unknown (got " +
           std::to_string(r.ranks.size()) + " entries)";
  for (int i = 0; i < r.pp; ++i) {
    const RankDevice& d = r.ranks[size_t(i)];
    if (d.host != r.ranks[0].host)
      return "pipeline rank " + std::to_string(i) + " runs on host " + d.host + ", pipeline rank 0 on " +
             r.ranks[0].host;
    if (gpu && d.gpu.empty()) return "pipeline rank " + std::to_string(i) + " (host " + d.host + ") has no GPU";
  }
  return "";
}

// ipc: one-sided copies between the processes of one node; CUDA IPC with the cuda
// backend, POSIX shared memory (the CPU stand-in of the same protocol) with cpu.
Status select_ipc(const TransportRequest& r, TransportChoice* choice) {
  const bool cuda = r.backend == "cuda";
  const std::string problem = one_host_problem(r, cuda);
  if (!problem.empty())
    return bad("ipc copies between the processes of one node, but " + problem + "; use mpi (or nccl across nodes)");
  *choice = {"ipc", cuda ? "requested ipc; CUDA IPC between the pipeline ranks of one node"
                         : "requested ipc; the cpu backend shares host memory (POSIX shm) between the pipeline ranks"};
  return Status::ok();
}

}  // namespace

Status select_transport(const TransportRequest& r, TransportChoice* choice) {
  const std::string& want = r.requested;
  if (want != "auto" && want != "mpi" && want != "local" && want != "nccl" && want != "ipc")
    return bad("'" + want + "' is not one of: auto, mpi, local, nccl, ipc");
  if (r.backend != "cpu" && r.backend != "cuda")
    return bad("unknown backend '" + r.backend + "' (expected cpu or cuda)");
  if (r.pp < 1) return bad("parallel.pp must be at least 1, got " + std::to_string(r.pp));

  if (want == "local") {
    if (r.pp != 1)
      return bad("local runs a pipeline inside one process and needs parallel.pp = 1; use mpi (or auto) for " +
                 std::to_string(r.pp) + " pipeline ranks");
    *choice = {"local", "requested local (pp = 1)"};
    return Status::ok();
  }
  if (want == "mpi") {
    *choice = {"mpi", "requested mpi"};
    return Status::ok();
  }
  if (want == "ipc") return select_ipc(r, choice);
  if (want == "nccl") {
    if (!r.nccl_built)
      return bad("nccl: this binary was built without CUDA (no NCCL); rebuild with -DPIPETRAIN_CUDA=ON or use mpi");
    if (r.backend != "cuda")
      return bad("nccl needs the cuda backend (the run uses " + r.backend + "); use mpi or auto");
    const std::string problem = gpu_sharing_problem(r);
    if (!problem.empty())
      return bad("nccl needs a GPU of its own for every pipeline rank, but " + problem +
                 ": NCCL cannot put two ranks of one communicator on one GPU; use mpi (as the MPS one-GPU "
                 "pipeline emulation, scripts/mps_pipeline.sh, does)");
    *choice = {"nccl", "requested nccl; every pipeline rank has a GPU of its own"};
    return Status::ok();
  }
  // auto
  if (r.backend != "cuda") {
    *choice = {"mpi", "auto: the " + r.backend + " backend keeps activations in host memory"};
    return Status::ok();
  }
  if (!r.nccl_built) {
    *choice = {"mpi", "auto: this binary has no NCCL"};
    return Status::ok();
  }
  const std::string problem = gpu_sharing_problem(r);
  if (!problem.empty()) {
    *choice = {"mpi", "auto: " + problem + " (NCCL needs one GPU per rank)"};
    return Status::ok();
  }
  *choice = {"nccl", "auto: cuda backend and every pipeline rank has a GPU of its own"};
  return Status::ok();
}

TransportChoice select_data_sums(bool nccl_built, const std::vector<RankDevice>& data_ranks) {
  if (!nccl_built) return {"mpi", "this binary has no NCCL"};
  const std::string problem = gpu_sharing_problem(data_ranks, int(data_ranks.size()), "data-parallel");
  if (!problem.empty()) return {"mpi", problem + " (NCCL needs one GPU per rank)"};
  return {"nccl", "every data-parallel rank has a GPU of its own"};
}

std::vector<std::pair<int, int>> pipeline_channels(const Schedule& s) {
  std::vector<std::pair<int, int>> out;
  const int len = chain_length(s);
  if (len < 1) return out;
  for (int v = 0; v < s.num_stages && v < int(s.stage_to_rank.size()); ++v) {
    const int n = chain_next(v, len);
    if (n < 0 || n >= int(s.stage_to_rank.size())) continue;
    const int a = s.stage_to_rank[size_t(v)], b = s.stage_to_rank[size_t(n)];
    if (a == b) continue;
    out.push_back({a, b});
    out.push_back({b, a});
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<std::pair<int, int>> channels_or_all(const std::vector<std::pair<int, int>>& channels, int ranks) {
  if (!channels.empty()) return channels;
  std::vector<std::pair<int, int>> all;
  for (int a = 0; a < ranks; ++a)
    for (int b = 0; b < ranks; ++b)
      if (a != b) all.push_back({a, b});
  return all;
}

}  // namespace pt
