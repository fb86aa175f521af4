// Host stand-ins for the CUDA runtime calls the launchers and the gpu tests make,
// with the real <cuda_runtime_api.h> signatures, so unchanged host code links
// against the emulator instead of libcudart. "Device" memory is host memory, 256-byte
// aligned as cudaMalloc guarantees, its contents 0xFF bytes (NaN) until written (up to
// 8 MB); 0xFF canary bytes fill the rest of the last 256
// (checked after every launch: a write past the end aborts naming the kernel), then
// a PROT_NONE guard page (any access beyond faults, naming the block and thread).
// All work is synchronous: streams are ignored, a launch has finished when it returns.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>

#include "tests/cuda_emu/emu.h"

namespace emu {

std::map<const void*, int>& smem_opt_in() {
  static std::map<const void*, int> m;
  return m;
}

namespace {

thread_local cudaError_t g_last_error = cudaSuccess;
constexpr size_t kAlign = 256;  // cudaMalloc's alignment guarantee; code paths depend on it
constexpr size_t kPoisonMax = size_t(8) << 20;

struct Mapping {
  void* base;
  size_t len;
  size_t bytes;  // requested; then 0xFF canary bytes up to the guard page
  size_t used;   // bytes from the returned pointer to the guard page
  bool device;   // cudaMalloc (true) or cudaMallocHost (pinned host memory)
};
std::mutex g_mu;
std::map<void*, Mapping> g_allocs;

std::atomic<int> g_device_access{0};  // > 0 while device code (a kernel, a copy) runs

void on_fault(int sig, siginfo_t* info, void*) {
  char buf[512];
  const int n =
      g_device_access.load() == 0
          ? std::snprintf(buf, sizeof buf,
                          "emu: memory fault at %p in host code: device memory dereferenced outside a kernel "
                          "or cudaMemcpy (a GPU machine faults too), or a null/wild pointer\n",
                          info->si_addr)
          : std::snprintf(buf, sizeof buf,
                          "emu: memory fault at %p (past the end of a cudaMalloc buffer, or a fiber stack "
                          "overflow) in block (%u,%u,%u) thread (%u,%u,%u)\n",
                          info->si_addr, tl_blockIdx.x, tl_blockIdx.y, tl_blockIdx.z, tl_threadIdx.x,
                          tl_threadIdx.y, tl_threadIdx.z);
  if (n > 0) (void)!write(2, buf, size_t(n));
  signal(sig, SIG_DFL);
  raise(sig);
}

void install_fault_handler() {
  static bool done = false;
  if (done) return;
  done = true;
  static char alt[64 * 1024];
  stack_t ss{};
  ss.ss_sp = alt;
  ss.ss_size = sizeof alt;
  sigaltstack(&ss, nullptr);
  struct sigaction sa{};
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);
}

void* guarded_alloc(size_t bytes, bool device) {
  install_fault_handler();
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  const size_t used = (std::max<size_t>(bytes, 1) + kAlign - 1) / kAlign * kAlign;
  const size_t len = (used + page - 1) / page * page + page;
  void* base = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return nullptr;
  char* guard = static_cast<char*>(base) + len - page;
  mprotect(guard, page, PROT_NONE);
  char* p = guard - used;
  // Contents poisoned (NaN), as cudaMalloc's are undefined, then the canaries. Not the
  // large ones (the 32 MB cuBLASLt workspace, never read here): untouched pages keep
  // the per-launch protection switch cheap.
  std::memset(bytes <= kPoisonMax ? p : p + bytes, 0xFF, bytes <= kPoisonMax ? used : used - bytes);
  std::lock_guard<std::mutex> lock(g_mu);
  g_allocs[p] = Mapping{base, len, bytes, used, device};
  if (device && g_device_access.load() == 0) mprotect(base, len - page, PROT_NONE);
  return p;
}

cudaError_t guarded_free(void* p) {
  if (!p) return cudaSuccess;
  std::lock_guard<std::mutex> lock(g_mu);
  const auto it = g_allocs.find(p);
  if (it == g_allocs.end()) return cudaErrorInvalidValue;
  munmap(it->second.base, it->second.len);
  g_allocs.erase(it);
  return cudaSuccess;
}

void protect_device_memory(int prot) {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  std::lock_guard<std::mutex> lock(g_mu);
  for (const auto& [p, m] : g_allocs) {
    if (m.device) mprotect(m.base, m.len - page, prot);
  }
}

// The allocation holding p (its end included: a one-past-the-end pointer), or null.
const Mapping* mapping_of(const void* p) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_allocs.upper_bound(const_cast<void*>(p));
  if (it == g_allocs.begin()) return nullptr;
  --it;
  const char* start = static_cast<const char*>(it->first);
  return static_cast<const char*>(p) <= start + it->second.bytes ? &it->second : nullptr;
}

bool canaries_intact(const char* p, const Mapping& m) {
  for (size_t i = m.bytes; i < m.used; ++i) {
    if (static_cast<unsigned char>(p[i]) != 0xFF) return false;
  }
  return true;
}

}  // namespace

void set_last_error(cudaError_t e) { g_last_error = e; }

// Device buffers are PROT_NONE while host code runs: the first DeviceAccess opens them
// all, the last closes them (one mprotect per buffer each way).
DeviceAccess::DeviceAccess() {
  if (g_device_access.fetch_add(1) == 0) protect_device_memory(PROT_READ | PROT_WRITE);
}
DeviceAccess::~DeviceAccess() {
  if (g_device_access.fetch_sub(1) == 1) protect_device_memory(PROT_NONE);
}

template <typename Handle>
cudaError_t new_token(Handle* h) {
  *h = reinterpret_cast<Handle>(new char);
  return cudaSuccess;
}
template <typename Handle>
cudaError_t delete_token(Handle h) {
  delete reinterpret_cast<char*>(h);
  return cudaSuccess;
}

void check_canaries(const char* kernel) {
  std::lock_guard<std::mutex> lock(g_mu);
  for (const auto& [p, m] : g_allocs) {
    if (canaries_intact(static_cast<const char*>(p), m)) continue;
    char buf[256];
    std::snprintf(buf, sizeof buf, "kernel %s wrote past the end of the %zu-byte buffer at %p", kernel, m.bytes, p);
    fail(buf);
  }
}

void check_kernel_pointer(const char* kernel, int index, const void* p) {
  if (p == nullptr || mapping_of(p) != nullptr) return;
  char buf[256];
  std::snprintf(buf, sizeof buf, "kernel %s argument %d is %p, not device memory (cudaMalloc/cudaMallocHost)",
                kernel, index, p);
  fail(buf);
}

}  // namespace emu

extern "C" {

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int) { return cudaSuccess; }
cudaError_t cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int) {
  switch (attr) {
    case cudaDevAttrComputeCapabilityMajor: *value = 9; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = 132; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = 227 * 1024; return cudaSuccess;
    default: return cudaErrorInvalidValue;
  }
}
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = emu::g_last_error;
  emu::g_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return emu::g_last_error; }
const char* cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : "cudaError(emulated)"; }
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument (emulator)";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (emulator)";
    default: return "error (emulator)";
  }
}

cudaError_t cudaFuncSetAttribute(const void* func, enum cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) emu::smem_opt_in()[func] = value;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** p, size_t size) {
  *p = emu::guarded_alloc(size, true);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaMallocAsync(void** p, size_t size, cudaStream_t) { return cudaMalloc(p, size); }
cudaError_t cudaMallocHost(void** p, size_t size) {
  *p = emu::guarded_alloc(size, false);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void* p) { return emu::guarded_free(p); }

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attr, const void* p) {
  *attr = cudaPointerAttributes{};
  const emu::Mapping* m = emu::mapping_of(p);
  attr->type = m == nullptr ? cudaMemoryTypeUnregistered : (m->device ? cudaMemoryTypeDevice : cudaMemoryTypeHost);
  attr->devicePointer = m ? const_cast<void*>(p) : nullptr;
  attr->hostPointer = m && !m->device ? const_cast<void*>(p) : nullptr;
  return cudaSuccess;
}

// The emulated device: an sm_90 (H100/H200), the project's target.
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int) {
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof prop->name, "pipetrain cuda_emu (host SIMT emulator)");
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = 132;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->sharedMemPerBlockOptin = 227 * 1024;
  prop->totalGlobalMem = size_t(141) << 30;
  return cudaSuccess;
}

// Streams and events are tokens: every call is synchronous, so ordering holds.
cudaError_t cudaStreamCreate(cudaStream_t* s) { return emu::new_token(s); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int) { return emu::new_token(s); }
cudaError_t cudaStreamDestroy(cudaStream_t s) { return emu::delete_token(s); }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned int) { return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t* e) { return emu::new_token(e); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int) { return emu::new_token(e); }
cudaError_t cudaEventDestroy(cudaEvent_t e) { return emu::delete_token(e); }
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaFree(void* p) { return emu::guarded_free(p); }
cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return emu::guarded_free(p); }

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, enum cudaMemcpyKind) {
  const emu::DeviceAccess access;
  if (count) std::memmove(dst, src, count);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, enum cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpy(dst, src, count, kind);
}
cudaError_t cudaMemset(void* p, int value, size_t count) {
  const emu::DeviceAccess access;
  if (count) std::memset(p, value, count);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t count, cudaStream_t) { return cudaMemset(p, value, count); }

}  // extern "C"
