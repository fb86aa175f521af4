// BoundaryMemory: where the executor keeps stage-boundary tensors (stage inputs and
// outputs and their gradients, (B, T, C) each) and how work on them is ordered.
//
// A stage model hands the executor its BoundaryMemory (StageModel::boundary_memory):
// host memory for a model whose backend computes on the host (CPU), backend (device)
// memory otherwise (CUDA), so a boundary tensor goes from the producing kernel to the
// transport and on to the consuming kernel without a host crossing.
//
// Ordering. Compute on a device backend is asynchronous on the backend's stream:
//   - producer_event() marks "every op issued so far on this stage's stream"; a send of
//     a buffer the stage just wrote carries it (BufferRef::ready) and the transport
//     makes its communication wait for it (transport.h).
//   - consumer_wait(e) makes every op issued from now on wait for event e (a receive's
//     completion, or another local stage's producer_event).
// An event handle is valid until the next producer_event() call on the same memory
// (the transport waits on it at once), and is nullptr wherever work is synchronous:
// on host memory both hooks are no-ops and nothing else changes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "common/memory_space.h"

namespace pt {

class Backend;

// One contiguous fp32 buffer and when its contents are final.
struct BufferRef {
  float* data = nullptr;
  size_t count = 0;  // floats
  MemorySpace space = MemorySpace::kHost;
  void* ready = nullptr;  // event after which `data` holds its value; nullptr: it does now
  static BufferRef host(float* p, size_t n) { return BufferRef{p, n, MemorySpace::kHost, nullptr}; }
};

class BoundaryMemory {
 public:
  virtual ~BoundaryMemory() = default;
  virtual MemorySpace space() const = 0;
  virtual float* alloc(size_t n) = 0;  // n floats, zeroed
  virtual void free(float* p) = 0;
  // Host staging copies of boundary buffers (pinned where the backend has it).
  virtual float* alloc_host(size_t n) = 0;
  virtual void free_host(float* p) = 0;
  // Host <-> this memory; return when the host side may be read or reused.
  virtual void to_host(float* host_dst, const float* src, size_t n) = 0;
  virtual void from_host(float* dst, const float* host_src, size_t n) = 0;
  virtual void* producer_event() { return nullptr; }
  virtual void consumer_wait(void* event) { (void)event; }
};

// Host memory (calloc); every hook a no-op.
std::unique_ptr<BoundaryMemory> make_host_boundary_memory();
// Memory of `backend` (not owned; must outlive the result): host when
// backend->host_memory(), else kDevice memory from backend->alloc, ordered by the
// backend's record_event/wait_event.
std::unique_ptr<BoundaryMemory> make_backend_boundary_memory(Backend* backend);

}  // namespace pt
