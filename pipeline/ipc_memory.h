// IpcMemory: what the ipc transport (transport_ipc.cc) needs of memory that processes of
// one node share, so that the transport's protocol does not depend on CUDA:
//   - shared buffers: one process allocates and exports a buffer (a 64-byte handle sent
//     over MPI), another opens it and writes into it;
//   - fences: an event one process records and another process's copies wait for;
//   - one in-order copy stream per process: wait (for a local producer event or a
//     fence), copy, record a fence, and a host-side synchronize.
// Two implementations:
//   cuda (ipc_memory_cuda.cc, CUDA builds): cudaIpcGetMemHandle/cudaIpcOpenMemHandle
//        buffers in device memory, cudaEventInterprocess events exported with
//        cudaIpcGetEventHandle, a cudaStreamNonBlocking stream with cudaMemcpyAsync
//        (cudaMemcpyDefault: device or host source/destination);
//   shm  (ipc_memory_shm.cc): POSIX shared memory (shm_open + mmap) and memcpy, which is
//        synchronous, so fences are nullptr: the MPI message that follows a copy orders
//        it (the CPU stand-in that lets CI run the protocol).
// Handles of everything a process exported stay valid until it frees them; sealed()
// is called once every peer has opened them (shm removes the names then, so a crash
// leaves nothing behind in /dev/shm).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "common/status.h"

namespace pt {

// Opaque bytes naming a buffer or fence for another process (cudaIpcMemHandle_t and
// cudaIpcEventHandle_t are 64 bytes; shm: the object's name).
struct IpcHandle {
  char bytes[64] = {};
};

class IpcMemory {
 public:
  virtual ~IpcMemory() = default;
  virtual std::string name() const = 0;  // "cuda" | "shm"

  // n floats (n >= 1) owned by this process, exported as *handle; freed with free_buffer.
  virtual float* export_buffer(size_t n, IpcHandle* handle) = 0;
  virtual void free_buffer(float* p, size_t n) = 0;
  // Another process's exported buffer of n floats; a Status that says why not.
  virtual Status open_buffer(const IpcHandle& handle, size_t n, float** out) = 0;
  virtual void close_buffer(float* p, size_t n) = 0;
  virtual void sealed() {}

  // A fence this process records (export) or waits for (open). nullptr is a valid fence
  // that orders nothing (shm).
  virtual void* export_fence(IpcHandle* handle) = 0;
  virtual Status open_fence(const IpcHandle& handle, void** out) = 0;
  virtual void destroy_fence(void* fence) = 0;  // exported or opened

  // The copy stream, in issue order. wait(nullptr) is a no-op; `event` may be a local
  // producer event (BufferRef::ready) or an opened fence.
  virtual void wait(void* event) = 0;
  virtual void copy(float* dst, const float* src, size_t n) = 0;
  virtual void record(void* fence) = 0;
  // An event of this process marking the stream's work so far, valid until the next
  // call (recv's return value, transport.h); nullptr when that work is already done.
  virtual void* mark() = 0;
  virtual void synchronize() = 0;  // the host waits for the stream's work
  virtual bool is_host(const void* p) const = 0;
};

// POSIX shared memory; never fails.
std::unique_ptr<IpcMemory> make_shm_ipc_memory();
// CUDA IPC on `device` (made current). nullptr and *status set when the binary has no
// CUDA or the device cannot be used.
std::unique_ptr<IpcMemory> make_cuda_ipc_memory(int device, Status* status);
bool cuda_ipc_built();

}  // namespace pt
