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
  MPI_Comm pipeline = MPI_COMM_NULL;  // size pp
  MPI_Comm data = MPI_COMM_NULL;      // size dp
};

// Requires MPI to be initialized. Fails (Status) when the world size is not dp*pp.
Status make_process_groups(int dp, int pp, ProcessGroups* out);
void free_process_groups(ProcessGroups* g);

}  // namespace pt
