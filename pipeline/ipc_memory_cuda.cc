// The CUDA IpcMemory (ipc_memory.h), CUDA builds (ipc_memory_cuda_stub.cc otherwise).
// Buffers: cudaMalloc'd device memory exported with cudaIpcGetMemHandle (cudaMalloc, not a
// stream-ordered pool: only cudaMalloc memory has legacy IPC handles; allocated once at
// setup), opened with cudaIpcOpenMemHandle(cudaIpcMemLazyEnablePeerAccess). Fences:
// events created with cudaEventInterprocess | cudaEventDisableTiming (IPC requires both),
// exported with cudaIpcGetEventHandle. The stream is cudaStreamNonBlocking, like the NCCL
// transport's (legacy-default-stream work does not wait for it); copies use
// cudaMemcpyDefault, so either side may be host memory (unified addressing).
// Not verified on a GPU yet (docs/transports.md): in particular whether the driver lets
// MPS clients open each other's handles.
#include <cuda_runtime.h>

#include <cstring>

#include "common/check.h"
#include "pipeline/cuda_rt_check.h"
#include "pipeline/ipc_memory.h"

namespace pt {
namespace {

static_assert(sizeof(cudaIpcMemHandle_t) <= sizeof(IpcHandle::bytes), "IpcHandle too small for cudaIpcMemHandle_t");
static_assert(sizeof(cudaIpcEventHandle_t) <= sizeof(IpcHandle::bytes), "IpcHandle too small for an event handle");

Status cuda_failure(const std::string& what, cudaError_t rc) {
  (void)cudaGetLastError();
  return Status::error(what + " failed: " + cuda_error_detail(rc));
}

class CudaIpcMemory final : public IpcMemory {
 public:
  explicit CudaIpcMemory(int device) : device_(device) {
    PT_CUDA_RT_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    PT_CUDA_RT_CHECK(cudaEventCreateWithFlags(&mark_, cudaEventDisableTiming));
  }
  ~CudaIpcMemory() override {
    cudaStreamSynchronize(stream_);
    cudaEventDestroy(mark_);
    cudaStreamDestroy(stream_);
  }
  std::string name() const override { return "cuda"; }

  float* export_buffer(size_t n, IpcHandle* handle) override {
    void* p = nullptr;
    PT_CUDA_RT_CHECK(cudaMalloc(&p, n * sizeof(float)));
    cudaIpcMemHandle_t h;
    PT_CUDA_RT_CHECK(cudaIpcGetMemHandle(&h, p));
    *handle = IpcHandle{};
    std::memcpy(handle->bytes, &h, sizeof h);
    return static_cast<float*>(p);
  }
  void free_buffer(float* p, size_t) override { cudaFree(p); }
  Status open_buffer(const IpcHandle& handle, size_t, float** out) override {
    cudaIpcMemHandle_t h;
    std::memcpy(&h, handle.bytes, sizeof h);
    void* p = nullptr;
    const cudaError_t rc = cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess);
    if (rc != cudaSuccess) return cuda_failure("cudaIpcOpenMemHandle (device " + std::to_string(device_) + ")", rc);
    *out = static_cast<float*>(p);
    return Status::ok();
  }
  void close_buffer(float* p, size_t) override { cudaIpcCloseMemHandle(p); }

  void* export_fence(IpcHandle* handle) override {
    cudaEvent_t e = nullptr;
    PT_CUDA_RT_CHECK(cudaEventCreateWithFlags(&e, cudaEventInterprocess | cudaEventDisableTiming));
    cudaIpcEventHandle_t h;
    PT_CUDA_RT_CHECK(cudaIpcGetEventHandle(&h, e));
    *handle = IpcHandle{};
    std::memcpy(handle->bytes, &h, sizeof h);
    return e;
  }
  Status open_fence(const IpcHandle& handle, void** out) override {
    cudaIpcEventHandle_t h;
    std::memcpy(&h, handle.bytes, sizeof h);
    cudaEvent_t e = nullptr;
    const cudaError_t rc = cudaIpcOpenEventHandle(&e, h);
    if (rc != cudaSuccess) return cuda_failure("cudaIpcOpenEventHandle", rc);
    *out = e;
    return Status::ok();
  }
  void destroy_fence(void* fence) override {
    if (fence != nullptr) cudaEventDestroy(static_cast<cudaEvent_t>(fence));
  }

  void wait(void* event) override {
    if (event != nullptr) PT_CUDA_RT_CHECK(cudaStreamWaitEvent(stream_, static_cast<cudaEvent_t>(event), 0));
  }
  void copy(float* dst, const float* src, size_t n) override {
    if (n > 0) PT_CUDA_RT_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDefault, stream_));
  }
  void record(void* fence) override {
    if (fence != nullptr) PT_CUDA_RT_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(fence), stream_));
  }
  void* mark() override {
    PT_CUDA_RT_CHECK(cudaEventRecord(mark_, stream_));
    return mark_;
  }
  void synchronize() override { PT_CUDA_RT_CHECK(cudaStreamSynchronize(stream_)); }
  bool is_host(const void* p) const override {
    cudaPointerAttributes attr = {};
    const cudaError_t rc = cudaPointerGetAttributes(&attr, p);
    if (rc != cudaSuccess) {
      (void)cudaGetLastError();
      return true;
    }
    return attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged;
  }

 private:
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t mark_ = nullptr;  // mark()'s event
};

}  // namespace

bool cuda_ipc_built() { return true; }

std::unique_ptr<IpcMemory> make_cuda_ipc_memory(int device, Status* status) {
  *status = use_cuda_device(device);
  if (!status->is_ok()) return nullptr;
  return std::make_unique<CudaIpcMemory>(device);
}

}  // namespace pt
