// Transport: point-to-point tensors between pipeline ranks. The executor calls
// send() (non-blocking: the buffer must stay untouched until wait_sends()) and
// recv() (blocking, or ordered by the event it returns, below). A lowered schedule
// is deadlock-free under exactly these semantics (checked by simulate), so any
// transport that honours them runs it. Messages between a pair of ranks with the
// same tag arrive in send order.
//
// Buffers (model/boundary_memory.h): a BufferRef says where the data lives and when
// it is final. send() makes its communication wait for ref.ready (the producer's
// event) before reading; recv() returns the event after which ref.data holds the
// message (nullptr: it already does when recv returns). The caller orders the
// consumer on that event (BoundaryMemory::consumer_wait), so a device transport
// receives on its own stream while compute goes on. accepts(kDevice) false means the
// transport reads and writes only host memory (the executor stages device buffers
// through host copies for it). The float* forms are host buffers, ready at once, and
// return from recv with the data in place, as before buffers had a space.
//
// Groups (pipeline/comm_groups.h): group_begin()/group_end() bracket adjacent comm
// actions the executor issues as one group; a device transport launches them together
// (ncclGroupStart/End). An event returned by recv() inside a group is valid once
// group_end() returned. Host transports ignore groups (their sends never wait).
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "model/boundary_memory.h"
#include "pipeline/transport_select.h"

namespace pt {

class Transport {
 public:
  virtual ~Transport() = default;
  virtual int rank() const = 0;  // rank inside the pipeline group
  virtual int size() const = 0;
  virtual void send(const BufferRef& buf, int peer, int tag) = 0;
  [[nodiscard]] virtual void* recv(const BufferRef& buf, int peer, int tag) = 0;
  virtual void wait_sends() = 0;
  virtual std::string name() const = 0;
  virtual bool accepts(MemorySpace space) const { return space == MemorySpace::kHost; }
  virtual void group_begin() {}
  virtual void group_end() {}
  // Blocks the host until `event` (from recv) completed; no-op for nullptr.
  virtual void host_wait(void* event) { (void)event; }

  // Host buffers (see above).
  void send(const float* data, size_t count, int peer, int tag) {
    send(BufferRef::host(const_cast<float*>(data), count), peer, tag);
  }
  void recv(float* data, size_t count, int peer, int tag) {
    host_wait(recv(BufferRef{data, count, MemorySpace::kHost, nullptr}, peer, tag));
  }
};

// Host-staged MPI over `comm` (the pipeline group). Does not own the communicator.
std::unique_ptr<Transport> make_mpi_transport(MPI_Comm comm);

// NCCL over the CUDA devices of the ranks of `comm` (the pipeline group), one per rank:
// NCCL cannot put two ranks of one communicator on one GPU (use mpi there, e.g. for the
// MPS one-GPU emulation; pipeline/transport_select.h decides). Each directed channel
// (from, to) in `channels` (pipeline ranks; empty = every ordered pair) gets its own
// two-rank communicator and CUDA stream, so a pending send never holds up a receive
// (transport_nccl.cc explains why this keeps the semantics above). Buffers may be host
// or device memory (detected per call; host memory is staged through device buffers).
// A device buffer handed to send() must hold its data or carry its producer's event
// (BufferRef::ready); a device recv() returns an event of the channel's stream. Tags are not sent: messages of one channel match in send order, which
// lowering guarantees (pipeline/lower.h, "FIFO channels"). Collective over `comm`:
// every rank calls it with the same `channels`. On failure (no such device, a
// binary built without CUDA) returns nullptr and sets *status on every rank.
std::unique_ptr<Transport> make_nccl_transport(MPI_Comm comm, int device,
                                               const std::vector<std::pair<int, int>>& channels,
                                               Status* status);

// One-sided copies between the processes of one node (transport_ipc.cc explains the
// protocol): every receiving rank exports `slots` mailbox buffers of `slot_floats` floats
// per channel, which the sender copies into; MPI carries only the small control and credit
// messages. memory "cuda": CUDA IPC on `device` (device-to-device copies between ranks
// that share a GPU, e.g. under MPS, or GPUs of one node); "shm": POSIX shared memory (the
// cpu backend; the CPU stand-in of the same protocol). Host or device buffers; a device
// recv() returns an event of the transport's stream, a host recv() completes on return.
// Messages larger than a slot go in pieces. channels as for make_nccl_transport (empty =
// every ordered pair); messages of one channel are received in send order with the same
// tag and size (else fatal). Collective over `comm`, and so is destruction. On failure
// (no GPU, a peer's handle cannot be opened) returns nullptr and sets *status on every
// rank; the failing rank's message names it and suggests runtime.transport=mpi.
std::unique_ptr<Transport> make_ipc_transport(MPI_Comm comm, const std::string& memory, int device,
                                              const std::vector<std::pair<int, int>>& channels, size_t slot_floats,
                                              int slots, Status* status);
// The same over an IpcMemory each rank made (pipeline/ipc_memory.h; tests pass one that fails).
class IpcMemory;
std::unique_ptr<Transport> make_ipc_transport_over(MPI_Comm comm, std::unique_ptr<IpcMemory> memory,
                                                   const std::vector<std::pair<int, int>>& channels,
                                                   size_t slot_floats, int slots, Status* status);

// fp32 sum all-reduce over the ranks of `comm` (data-parallel gradients, tied
// embeddings), NCCL on CUDA device `device`. In place, blocking; host or device buffer.
// Every rank of `comm` calls all_reduce_sum in the same order with the same count.
class AllReducer {
 public:
  virtual ~AllReducer() = default;
  virtual void all_reduce_sum(float* data, size_t count) = 0;
  // Non-blocking form (bucketed data-parallel sums, pipeline/grad_buckets.h): enqueued on the
  // reducer's stream after `ready` (the producer's event; nullptr: the data is final now),
  // complete (host data written back) once wait(handle) returns. Same order on every rank.
  // Default: blocking at start.
  virtual int64_t start_all_reduce_sum(float* data, size_t count, void* ready) {
    (void)ready;
    all_reduce_sum(data, count);
    return -1;
  }
  virtual void wait(int64_t handle) { (void)handle; }
  virtual std::string name() const = 0;
};
// Collective over `comm`; nullptr and *status set (on every rank) on failure.
std::unique_ptr<AllReducer> make_nccl_all_reducer(MPI_Comm comm, int device, Status* status);

// Whether this binary has the NCCL transport (built with CUDA).
bool nccl_transport_built();

// The CUDA device this process uses: node_rank (node_local_rank, process_groups.h)
// modulo the visible device count, and that device's UUID ("GPU-...", which names
// the physical GPU whatever CUDA_VISIBLE_DEVICES renumbers). Not collective.
// Fails (Status) when no device is usable or the binary has no CUDA.
Status local_cuda_device(int node_rank, int* device, std::string* uuid);

// Every pipeline rank's (host name, GPU UUID) in pipeline-rank order, gathered with
// MPI_Allgather over `comm` (collective). With `use_gpu` false the GPU fields stay
// empty and CUDA is never touched; with it, *device receives this rank's CUDA device
// (local_cuda_device of node_rank), or -1 and an empty field when it has none.
Status gather_rank_devices(MPI_Comm comm, bool use_gpu, int node_rank, int* device, std::vector<RankDevice>* out);

// In-process transport for tests: `size` ranks in one process (one thread each)
// share a LocalHub; each thread makes its own endpoint.
class LocalHub;
std::shared_ptr<LocalHub> make_local_hub(int size);
std::unique_ptr<Transport> make_local_transport(std::shared_ptr<LocalHub> hub, int rank);

// Message tags: unique per (kind, stage, micro-batch) within a step, below the
// MPI-guaranteed tag bound 32767 (wraps; same-tag messages keep send order).
inline int message_tag(int kind, int stage, int microbatch, int num_stages) {
  return int(((long long)microbatch * num_stages + stage) * 2 + kind) % 32768;
}

}  // namespace pt
