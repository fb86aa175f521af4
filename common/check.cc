#include "common/check.h"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>

namespace pt {
namespace {
int g_rank = -1;
}

void set_reporting_rank(int rank) { g_rank = rank; }
int reporting_rank() { return g_rank; }

void fatal_error(const char* expr, const char* file, int line, const std::string& detail) {
  std::fprintf(stderr, "[rank %d] %s:%d: %s: %s\n", g_rank, file, line, expr, detail.c_str());
  std::fflush(stderr);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) {
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > 1) MPI_Abort(MPI_COMM_WORLD, 1);
  }
  std::abort();
}

}  // namespace pt
