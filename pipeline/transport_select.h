// Transport selection (runtime.transport), a pure function of the request, the backend
// in use, the pipeline size, the build and where each pipeline rank runs:
//   local  one process (parallel.pp = 1); in-process hand-over.
//   mpi    host-staged MPI; always possible, and the only choice when two pipeline
//          ranks share a GPU (the MPS one-GPU pipeline emulation, scripts/mps_pipeline.sh).
//   nccl   needs a CUDA build, the cuda backend and a GPU of its own for every pipeline
//          rank: NCCL cannot put two ranks of one communicator on one GPU.
//   ipc    one-sided copies into the receiver's memory between the processes of one node
//          (transport_ipc.cc): CUDA IPC with the cuda backend (ranks sharing a GPU under
//          MPS included), POSIX shared memory with cpu. Needs every pipeline rank on one
//          host (and, with cuda, a GPU); never chosen by auto.
//   auto   nccl when the backend is cuda, the build has NCCL and every pipeline rank has
//          a GPU of its own; mpi otherwise (pp = 1 included: no messages cross ranks).
// Errors name the key runtime.transport and say what to use instead.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "pipeline/action.h"

namespace pt {

// Where one pipeline rank runs. gpu: the CUDA device's UUID (or any id unique on the
// host); empty when the rank uses no GPU (cpu backend) or has none.
struct RankDevice {
  std::string host;
  std::string gpu;
};

struct TransportRequest {
  std::string requested = "auto";  // runtime.transport: auto | mpi | local | nccl | ipc
  std::string backend = "cpu";     // the backend actually used: cpu | cuda
  int pp = 1;                      // pipeline ranks
  bool nccl_built = false;         // this binary has the NCCL transport (CUDA build)
  std::vector<RankDevice> ranks;   // per pipeline rank; only read for nccl, ipc and auto + cuda
};

struct TransportChoice {
  std::string transport;  // mpi | local | nccl | ipc
  std::string reason;     // one line for the log
};

Status select_transport(const TransportRequest& request, TransportChoice* choice);

// How the data-parallel gradient sums run on the cuda backend (dp > 1), from each data-group
// rank's host and GPU: "nccl" (on the device) when the binary has NCCL and every rank has a
// GPU of its own; "mpi" (staged through the host) otherwise, e.g. dp ranks sharing one GPU
// through MPS, which NCCL refuses ("Duplicate GPU"). The reason is one line for the log.
TransportChoice select_data_sums(bool nccl_built, const std::vector<RankDevice>& data_ranks);

// The directed channels (from, to) in pipeline ranks that a schedule's messages use:
// both directions between the ranks of chain-neighbour stages on different ranks
// (activations forward, gradients back), sorted, without duplicates.
std::vector<std::pair<int, int>> pipeline_channels(const Schedule& schedule);

// `channels` itself, or every ordered pair (a, b), a != b, of `ranks` ranks when it is empty.
std::vector<std::pair<int, int>> channels_or_all(const std::vector<std::pair<int, int>>& channels, int ranks);

}  // namespace pt
