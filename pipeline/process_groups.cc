#include "pipeline/process_groups.h"

#include <string>

#include "common/check.h"

namespace pt {

Status make_process_groups(int dp, int pp, ProcessGroups* g) {
  PT_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &g->world_rank));
  PT_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &g->world_size));
  if (g->world_size != dp * pp)
    return Status::error("the job has " + std::to_string(g->world_size) +
                         " ranks but parallel.dp * parallel.pp = " + std::to_string(dp) + " * " +
                         std::to_string(pp) + " = " + std::to_string(dp * pp) +
                         "; launch with mpirun -np " + std::to_string(dp * pp) +
                         " or change the config");
  g->dp = dp;
  g->pp = pp;
  g->dp_rank = g->world_rank / pp;
  g->pp_rank = g->world_rank % pp;
  PT_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, g->dp_rank, g->pp_rank, &g->pipeline));
  PT_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, g->pp_rank, g->dp_rank, &g->data));
  g->node_rank = node_local_rank();
  return Status::ok();
}

int node_local_rank() {
  MPI_Comm node = MPI_COMM_NULL;
  PT_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int rank = 0;
  PT_MPI_CHECK(MPI_Comm_rank(node, &rank));
  PT_MPI_CHECK(MPI_Comm_free(&node));
  return rank;
}

int world_size() {
  int n = 1;
  PT_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &n));
  return n;
}

void free_process_groups(ProcessGroups* g) {
  if (g->pipeline != MPI_COMM_NULL) MPI_Comm_free(&g->pipeline);
  if (g->data != MPI_COMM_NULL) MPI_Comm_free(&g->data);
}

}  // namespace pt
