// Transport: point-to-point tensors between pipeline ranks. The executor calls
// send() (non-blocking: the buffer must stay untouched until wait_sends()) and
// recv() (blocking). A lowered schedule is deadlock-free under exactly these
// semantics (checked by simulate), so any transport that honours them runs it.
// Messages between a pair of ranks with the same tag arrive in send order.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <memory>
#include <string>

namespace pt {

class Transport {
 public:
  virtual ~Transport() = default;
  virtual int rank() const = 0;  // rank inside the pipeline group
  virtual int size() const = 0;
  virtual void send(const float* data, size_t count, int peer, int tag) = 0;
  virtual void recv(float* data, size_t count, int peer, int tag) = 0;
  virtual void wait_sends() = 0;
  virtual std::string name() const = 0;
};

// Host-staged MPI over `comm` (the pipeline group). Does not own the communicator.
std::unique_ptr<Transport> make_mpi_transport(MPI_Comm comm);

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
