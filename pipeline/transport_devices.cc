// gather_rank_devices (transport.h): each pipeline rank's host name and GPU UUID,
// the input of transport selection (transport_select.h).
#include <unistd.h>

#include <cstring>
#include <vector>

#include "common/check.h"
#include "pipeline/transport.h"

namespace pt {

Status gather_rank_devices(MPI_Comm comm, bool use_gpu, int node_rank, int* device, std::vector<RankDevice>* out) {
  constexpr int kHost = 256, kGpu = 64;  // fixed-width fields for one MPI_Allgather
  char mine[kHost + kGpu] = {0};
  gethostname(mine, kHost - 1);
  if (device) *device = -1;
  if (use_gpu) {
    std::string uuid;
    int dev = -1;
    // A rank without a usable GPU keeps an empty field: every rank then sees the same
    // table and selection decides alike everywhere (it names that rank).
    if (local_cuda_device(node_rank, &dev, &uuid).is_ok()) {
      if (device) *device = dev;
      std::strncpy(mine + kHost, uuid.c_str(), kGpu - 1);
    }
  }
  int size = 1;
  PT_MPI_CHECK(MPI_Comm_size(comm, &size));
  std::vector<char> all(size_t(size) * (kHost + kGpu), 0);
  PT_MPI_CHECK(MPI_Allgather(mine, kHost + kGpu, MPI_CHAR, all.data(), kHost + kGpu, MPI_CHAR, comm));
  out->assign(size_t(size), RankDevice{});
  for (int r = 0; r < size; ++r) {
    const char* row = all.data() + size_t(r) * (kHost + kGpu);
    (*out)[size_t(r)].host.assign(row, strnlen(row, kHost));
    (*out)[size_t(r)].gpu.assign(row + kHost, strnlen(row + kHost, kGpu));
  }
  return Status::ok();
}

}  // namespace pt
