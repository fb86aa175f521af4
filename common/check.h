// One fatal reporter for programming errors and library failures (CUDA, cuBLAS,
// NCCL, MPI). It prints "[rank R] file:line: what failed: detail" to stderr and
// aborts the whole job (MPI_Abort when MPI is initialized), so a failing rank never
// leaves its peers hanging. Expected, user-fixable failures use Status instead.
#pragma once

#include <string>

namespace pt {

[[noreturn]] void fatal_error(const char* expr, const char* file, int line, const std::string& detail);

// The rank shown in messages; set once after MPI_Init (-1 = not an MPI job yet).
void set_reporting_rank(int rank);
int reporting_rank();

}  // namespace pt

#define PT_CHECK(cond)                                                        \
  do {                                                                        \
    if (!(cond)) ::pt::fatal_error(#cond, __FILE__, __LINE__, "check failed"); \
  } while (0)

#define PT_CHECK_MSG(cond, msg)                                               \
  do {                                                                        \
    if (!(cond)) ::pt::fatal_error(#cond, __FILE__, __LINE__, (msg));         \
  } while (0)

// MPI calls: any return other than MPI_SUCCESS is fatal.
#define PT_MPI_CHECK(call)                                                    \
  do {                                                                        \
    int pt_mpi_rc_ = (call);                                                  \
    if (pt_mpi_rc_ != 0)                                                      \
      ::pt::fatal_error(#call, __FILE__, __LINE__, "MPI error code " + std::to_string(pt_mpi_rc_)); \
  } while (0)
