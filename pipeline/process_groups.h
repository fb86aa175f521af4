// Rank -> (data-parallel replica, pipeline rank). World = dp × pp; the pp ranks of
// one replica are consecutive world ranks: world = dp_rank·pp + pp_rank. The
// pipeline group joins the pp ranks of one replica, the data group the dp ranks
// that hold the same stages.
#pragma once

#include <mpi.h>

#include "common/status.h"

namespace pt {

struct ProcessGroups {
  int world_rank = 0, world_size = 1;
  int dp_rank = 0, dp = 1;
  int pp_rank = 0, pp = 1;
  int node_rank = 0;  // among the processes on this node (node_local_rank): picks the GPU
  MPI_Comm pipeline = MPI_COMM_NULL;  // size pp
  MPI_Comm data = MPI_COMM_NULL;      // size dp
};

// Requires MPI to be initialized. Fails (Status) when the world size is not dp*pp.
Status make_process_groups(int dp, int pp, ProcessGroups* out);
void free_process_groups(ProcessGroups* g);

// Rank among the processes of this node (MPI_COMM_TYPE_SHARED, ordered by world
// rank). Collective over MPI_COMM_WORLD. The CUDA backend and the NCCL transport use
// GPU (node rank % GPUs on the node).
int node_local_rank();

// Ranks in MPI_COMM_WORLD (requires MPI to be initialized).
int world_size();

}  // namespace pt
