#include "pipeline/status_agree.h"

#include <vector>

#include "common/check.h"

namespace pt {

Status agree_status(MPI_Comm comm, const Status& mine, const std::string& what, const std::string& failed) {
  int size = 1;
  PT_MPI_CHECK(MPI_Comm_size(comm, &size));
  int ok = mine.is_ok() ? 1 : 0;
  std::vector<int> all(size_t(size), 0);
  PT_MPI_CHECK(MPI_Allgather(&ok, 1, MPI_INT, all.data(), 1, MPI_INT, comm));
  if (!mine.is_ok()) return mine;
  std::string failing;
  for (int r = 0; r < size; ++r)
    if (!all[size_t(r)]) failing += (failing.empty() ? "" : ", ") + std::to_string(r);
  if (failing.empty()) return Status::ok();
  return Status::error(what + ": rank(s) " + failing + " of the communicator " + failed + " (see their message)");
}

}  // namespace pt
