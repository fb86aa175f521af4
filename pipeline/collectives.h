// Collectives: every reduction, gather and broadcast of a run that is not a stage-boundary
// tensor (those go through transport.h), over the groups of process_groups.h:
//   kWorld     all dp*pp ranks
//   kPipeline  the pp ranks of one data-parallel replica (rank = pipeline rank)
//   kData      the dp ranks holding the same stages (rank = replica index)
//   kReplicas  the pipeline ranks hosting the same model stages when a schedule runs several
//              pipelines over one set of ranks (AMDP); this rank alone otherwise
// app/ reaches other ranks only through this interface and Transport, so the runner is the
// same over MPI, in one process (make_local_collectives) and, for gradients, over NCCL.
//
// Contract: every member of a group calls the same collectives on it in the same order with
// the same sizes. Results are identical bits on every member (sums are formed in one fixed
// order by the implementation). Every wait has the deadline of mpi_wait.h (the watchdog).
#pragma once

#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace pt {

struct ProcessGroups;

enum class Group : uint8_t { kWorld, kPipeline, kData, kReplicas };
const char* group_name(Group g);

class Collectives {
 public:
  virtual ~Collectives() = default;
  virtual int rank(Group g) const = 0;
  virtual int size(Group g) const = 0;
  // In place, element-wise.
  virtual void allreduce_sum(Group g, float* data, size_t n) = 0;
  // Whether allreduce_sum(g, float*) also takes CUDA device memory (NCCL's data-parallel
  // sums); every other call takes host memory only. The caller has finished the work that
  // wrote a device buffer (StageModel::synchronize) before handing it over.
  virtual bool sums_device_memory(Group) const { return false; }
  virtual void allreduce_sum(Group g, double* data, size_t n) = 0;
  virtual void allreduce_max(Group g, double* data, size_t n) = 0;
  virtual void allreduce_max(Group g, int64_t* data, size_t n) = 0;
  // Non-blocking fp32 sum, in place: started now, complete once wait(handle) returns (data
  // untouched until then). Same contract as allreduce_sum: every member starts the same
  // sums in the same order. Default: done at once (the handle is then a no-op to wait for).
  // `ready`: null, or an event of the stream still writing `data` (device memory, a group
  // whose sums take it: sums_device_memory) that the sum waits for on its own stream.
  virtual int64_t start_allreduce_sum(Group g, float* data, size_t n, void* ready = nullptr) {
    (void)ready;
    allreduce_sum(g, data, n);
    return -1;
  }
  virtual void wait(int64_t handle) { (void)handle; }
  // Lets started sums advance without waiting (MPI progresses non-blocking collectives
  // only inside MPI calls); called between pieces of compute. No-op by default.
  virtual void progress() {}
  // `bytes` from every member, concatenated in group-rank order into `recv` (size(g)*bytes).
  virtual void allgather(Group g, const void* send, size_t bytes, void* recv) = 0;
  // The same, on `root` only (`recv` may be null elsewhere).
  virtual void gather(Group g, const void* send, size_t bytes, void* recv, int root) = 0;
  virtual void broadcast(Group g, void* data, size_t bytes, int root) = 0;
  virtual void barrier(Group g) = 0;
  // Sends n floats to group rank `peer` and receives n floats from it (both call it).
  virtual void sendrecv(Group g, int peer, const float* send, float* recv, size_t n) = 0;
  // Defines kReplicas: `members` are the pipeline ranks (ascending, including this one)
  // hosting the same model stages. Collective over kPipeline: every pipeline rank calls it.
  virtual void set_replica_group(const std::vector<int>& members) = 0;
  virtual std::string name() const = 0;
};

// MPI over the communicators of `groups` (not owned; they must outlive the object).
std::unique_ptr<Collectives> make_mpi_collectives(const ProcessGroups& groups);
// One process, every group of size 1: reductions and gathers are copies.
std::unique_ptr<Collectives> make_local_collectives();
// MPI, except fp32 sums over kData, which NCCL does on CUDA device `device`. nullptr and
// *status set when the binary has no NCCL or the device is unusable.
std::unique_ptr<Collectives> make_nccl_collectives(const ProcessGroups& groups, int device, Status* status);

// Variable-length gather of trivially copyable values from every member, in rank order.
template <class T>
std::vector<T> allgatherv(Collectives& c, Group g, const std::vector<T>& mine) {
  const int n = c.size(g);
  std::vector<int64_t> counts(n);
  const int64_t count = int64_t(mine.size());
  c.allgather(g, &count, sizeof count, counts.data());
  int64_t max_count = 0;
  for (int64_t k : counts) max_count = k > max_count ? k : max_count;
  std::vector<T> padded(static_cast<size_t>(max_count));
  std::vector<T> all(static_cast<size_t>(max_count) * size_t(n));
  std::copy(mine.begin(), mine.end(), padded.begin());
  c.allgather(g, padded.data(), size_t(max_count) * sizeof(T), all.data());
  std::vector<T> out;
  for (int r = 0; r < n; ++r) out.insert(out.end(), all.begin() + r * max_count, all.begin() + r * max_count + counts[r]);
  return out;
}

// Broadcasts a string from `root` of `g`.
inline std::string broadcast_string(Collectives& c, Group g, const std::string& s, int root) {
  int64_t len = int64_t(s.size());
  c.broadcast(g, &len, sizeof len, root);
  std::string out = s;
  out.resize(size_t(len));
  if (len > 0) c.broadcast(g, out.data(), size_t(len), root);
  return out;
}

}  // namespace pt
