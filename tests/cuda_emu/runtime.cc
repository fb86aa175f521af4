// Host stand-ins for the CUDA runtime calls the launchers and the gpu tests make,
// with the real <cuda_runtime_api.h> signatures, so unchanged host code links
// against the emulator instead of libcudart. "Device" memory is host memory, 256-byte
// aligned as cudaMalloc guarantees, its contents 0xFF bytes (NaN) until written (up to
// 8 MB); 0xFF canary bytes fill the rest of the last 256
// (checked after every launch: a write past the end aborts naming the kernel), then
// a PROT_NONE guard page (any access beyond faults, naming the block and thread).
// Streams are lazy (see emu.h, submit): work issued to a stream runs only when something
// waits for it (a stream/event/device synchronize, a synchronous copy, an event wait of a
// stream being run, a free), as late as CUDA allows, so a missing wait reads stale data.
// PIPETRAIN_EMU_STREAMS=eager|eager-odd|eager-even makes all or every other stream run its
// work as early as CUDA allows instead (below, "lazy (and eager) streams").
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "tests/cuda_emu/emu.h"

namespace emu {

std::map<const void*, int>& smem_opt_in() {
  static std::map<const void*, int> m;
  return m;
}

namespace {

thread_local cudaError_t g_last_error = cudaSuccess;
int g_current_device = 0;
constexpr size_t kAlign = 256;  // cudaMalloc's alignment guarantee; code paths depend on it
constexpr size_t kPoisonMax = size_t(8) << 20;

struct Mapping {
  void* base;
  size_t len;
  size_t bytes;  // requested; then 0xFF canary bytes up to the guard page
  size_t used;   // bytes from the returned pointer to the guard page
  bool device;   // cudaMalloc (true) or cudaMallocHost (pinned host memory)
  int fd = -1;   // exported (cudaIpcGetMemHandle): the memfd now backing the pages
  int opens = 0;       // opened from another process (cudaIpcOpenMemHandle): reference count
  long owner_pid = 0;  // with opens: the exporting process and its fd, which identify it
  int owner_fd = -1;
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
  if (it->second.fd >= 0) close(it->second.fd);
  g_allocs.erase(it);
  return cudaSuccess;
}

// ---- CUDA IPC between the processes of one host ----
// An exported allocation's pages move to a memfd mapped at the same address (MAP_FIXED),
// contents and protection kept; another process maps that memfd through
// /proc/<pid>/fd/<fd>. The handle carries what the opener needs.
struct IpcMem {
  char magic[8];
  long pid;
  int fd;
  size_t len, offset, bytes, used;
};
static_assert(sizeof(IpcMem) <= sizeof(cudaIpcMemHandle_t), "IpcMem too large for a handle");
constexpr char kIpcMagic[8] = "ptemuIP";

// Requires g_mu held; the allocation at p, exported once.
int share_locked(void* p, Mapping* m) {
  if (m->fd >= 0) return m->fd;
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  const int fd = int(syscall(SYS_memfd_create, "pipetrain_emu_ipc", 0));
  if (fd < 0 || ftruncate(fd, off_t(m->len)) != 0) return -1;
  void* copy = mmap(nullptr, m->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (copy == MAP_FAILED) return -1;
  mprotect(m->base, m->len - page, PROT_READ | PROT_WRITE);
  std::memcpy(copy, m->base, m->len - page);
  munmap(copy, m->len);
  if (mmap(m->base, m->len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) return -1;
  mprotect(static_cast<char*>(m->base) + m->len - page, page, PROT_NONE);
  if (g_device_access.load() == 0) mprotect(m->base, m->len - page, PROT_NONE);
  m->fd = fd;
  return fd;
}

// Another process's export, mapped here (reference counted, as cudaIpcOpenMemHandle).
void* open_shared(const IpcMem& h) {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  std::lock_guard<std::mutex> lock(g_mu);
  for (auto& [p, m] : g_allocs)
    if (m.opens > 0 && m.owner_pid == h.pid && m.owner_fd == h.fd) {
      ++m.opens;
      return p;
    }
  const std::string path = "/proc/" + std::to_string(h.pid) + "/fd/" + std::to_string(h.fd);
  const int fd = open(path.c_str(), O_RDWR);
  if (fd < 0) return nullptr;
  void* base = mmap(nullptr, h.len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (base == MAP_FAILED) return nullptr;
  mprotect(static_cast<char*>(base) + h.len - page, page, PROT_NONE);
  void* p = static_cast<char*>(base) + h.offset;
  Mapping m{base, h.len, h.bytes, h.used, true};
  m.opens = 1;
  m.owner_pid = h.pid;
  m.owner_fd = h.fd;
  g_allocs[p] = m;
  if (g_device_access.load() == 0) mprotect(base, h.len - page, PROT_NONE);
  return p;
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

int device_count() {
  const char* v = std::getenv("PIPETRAIN_EMU_DEVICES");
  const int n = v ? std::atoi(v) : 1;
  if (n < 1 || n > 64) fail("PIPETRAIN_EMU_DEVICES must be 1..64");
  return n;
}
int current_device() { return g_current_device; }

// Device buffers are PROT_NONE while host code runs: the first DeviceAccess opens them
// all, the last closes them (one mprotect per buffer each way).
DeviceAccess::DeviceAccess() {
  if (g_device_access.fetch_add(1) == 0) protect_device_memory(PROT_READ | PROT_WRITE);
}
DeviceAccess::~DeviceAccess() {
  if (g_device_access.fetch_sub(1) == 1) protect_device_memory(PROT_NONE);
}

// ---- lazy (and eager) streams ----
// A created stream's ops run in issue order, each only when work after it is waited
// for. The legacy default stream (0) is synchronous with every (blocking) stream: an op
// issued to it first runs all pending work, then runs at once. An event is a position in
// one stream's order, captured when recorded.
// PIPETRAIN_EMU_STREAMS picks, per created stream, the other extreme CUDA allows: an
// eager stream runs each op as it is issued (after the waits before it, which run their
// producers that far). "lazy" (the default): every stream lazy; "eager": every stream
// eager; "eager-odd" / "eager-even": the 1st, 3rd, ... / the 2nd, 4th, ... created stream
// eager, the others lazy. A lazy stream next to an eager one is how a missing wait
// *before a write* shows: the eager stream's write lands while the lazy stream's earlier
// read of the same buffer is still queued (lazy streams alone never run work early).
struct Stream {
  std::deque<std::function<void()>> ops;
  uint64_t issued = 0, done = 0;
  bool eager = false;
};

enum class StreamPolicy { kLazy, kEager, kEagerOdd, kEagerEven };

// Read at each stream's creation, so a test may give two streams different policies.
StreamPolicy stream_policy() {
  const char* v = std::getenv("PIPETRAIN_EMU_STREAMS");
  const std::string s = v ? v : "";
  if (s.empty() || s == "lazy") return StreamPolicy::kLazy;
  if (s == "eager") return StreamPolicy::kEager;
  if (s == "eager-odd") return StreamPolicy::kEagerOdd;
  if (s == "eager-even") return StreamPolicy::kEagerEven;
  fail(("PIPETRAIN_EMU_STREAMS is '" + s + "'; use lazy, eager, eager-odd or eager-even").c_str());
}

// Whether the n-th created stream (from 1) runs eagerly under the policy.
bool eager_stream(uint64_t n) {
  switch (stream_policy()) {
    case StreamPolicy::kEager: return true;
    case StreamPolicy::kEagerOdd: return n % 2 == 1;
    case StreamPolicy::kEagerEven: return n % 2 == 0;
    case StreamPolicy::kLazy: break;
  }
  return false;
}
// When the stream ran up to an event's record (cudaEventElapsedTime): set by an op queued
// at the record, one per record, so a re-record elsewhere cannot overwrite an older one.
using Stamp = std::shared_ptr<std::chrono::steady_clock::time_point>;
struct Event {
  Stream* stream = nullptr;  // null: recorded on the default stream (complete at once)
  uint64_t seq = 0;          // complete once stream->done >= seq
  Stamp at;                  // null: never recorded
  bool interprocess = false; // cudaEventInterprocess: a record runs its stream up to it at
                             // once (another process cannot run this one's lazy streams),
                             // so an opened copy (cudaIpcOpenEventHandle) is always complete
};
std::recursive_mutex g_exec;  // issue and execution, across host threads
std::vector<Stream*> g_streams;
uint64_t g_drains = 0;

Stream* stream_of(cudaStream_t s) {
  // 0, cudaStreamLegacy (1) and cudaStreamPerThread (2): the default stream.
  return reinterpret_cast<uintptr_t>(s) <= 2 ? nullptr : reinterpret_cast<Stream*>(s);
}

void run_until(Stream* s, uint64_t seq) {
  while (s->done < seq) {
    std::function<void()> op = std::move(s->ops.front());
    s->ops.pop_front();
    ++s->done;
    op();  // may run other streams (an event wait)
  }
}

// Every stream's pending work, streams in creation order or reversed (alternating per
// call), so a missing cross-stream wait is not hidden by one fixed order.
void drain_all() {
  std::vector<Stream*> order = g_streams;
  if (g_drains++ % 2) std::reverse(order.begin(), order.end());
  for (Stream* s : order) run_until(s, s->issued);
}

void sync_stream(cudaStream_t stream) {
  Stream* s = stream_of(stream);
  if (s) run_until(s, s->issued);
  else drain_all();
}

void submit(cudaStream_t stream, std::function<void()> op) {
  const std::lock_guard<std::recursive_mutex> lock(g_exec);
  Stream* s = stream_of(stream);
  if (s == nullptr) {
    drain_all();
    op();
    return;
  }
  s->ops.push_back(std::move(op));
  ++s->issued;
  if (s->eager) run_until(s, s->issued);
}

void synchronize(cudaStream_t stream) {
  const std::lock_guard<std::recursive_mutex> lock(g_exec);
  sync_stream(stream);
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

// PIPETRAIN_EMU_DEVICES (default 1) emulated GPUs per process, each with its own UUID:
// ranks that pick different devices (node-local rank % count) count as on different GPUs
// (transport selection; the NCCL stand-in, nccl_host.cc). Memory is the process's either way.
cudaError_t cudaGetDeviceCount(int* count) {
  *count = emu::device_count();
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = emu::current_device();
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= emu::device_count()) return emu::g_last_error = cudaErrorInvalidDevice;
  emu::g_current_device = device;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int) {
  switch (attr) {
    case cudaDevAttrComputeCapabilityMajor: *value = 9; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = 132; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = 227 * 1024; return cudaSuccess;
    default: return cudaErrorInvalidValue;
  }
}
cudaError_t cudaDeviceSynchronize(void) {
  emu::count(emu::Count::kDeviceSync);
  emu::synchronize(nullptr);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  emu::count(emu::Count::kStreamSync);
  emu::synchronize(s);
  return cudaSuccess;
}

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
  emu::count(emu::Count::kMalloc);
  *p = emu::guarded_alloc(size, true);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaMallocAsync(void** p, size_t size, cudaStream_t) {
  emu::count(emu::Count::kStreamAlloc);
  *p = emu::guarded_alloc(size, true);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
// Memory pools (the NCCL transport's staging): a pool is a tag; its allocations are
// cudaMallocAsync's.
cudaError_t cudaMemPoolCreate(cudaMemPool_t* pool, const cudaMemPoolProps*) {
  static int pools = 0;
  *pool = reinterpret_cast<cudaMemPool_t>(uintptr_t(++pools));
  return cudaSuccess;
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, enum cudaMemPoolAttr, void*) { return cudaSuccess; }
cudaError_t cudaMemPoolDestroy(cudaMemPool_t) { return cudaSuccess; }
cudaError_t cudaMallocFromPoolAsync(void** p, size_t size, cudaMemPool_t, cudaStream_t stream) {
  return cudaMallocAsync(p, size, stream);
}
cudaError_t cudaMallocHost(void** p, size_t size) {
  emu::count(emu::Count::kHostAlloc);
  *p = emu::guarded_alloc(size, false);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
// (cuda_runtime.h's typed cudaMallocHost(T**, size, flags) calls this one.)
cudaError_t cudaHostAlloc(void** p, size_t size, unsigned int) { return cudaMallocHost(p, size); }
cudaError_t cudaFreeHost(void* p) {
  emu::count(emu::Count::kHostFree);
  emu::synchronize(nullptr);  // as cudaFreeHost does
  return emu::guarded_free(p);
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attr, const void* p) {
  *attr = cudaPointerAttributes{};
  const emu::Mapping* m = emu::mapping_of(p);
  attr->type = m == nullptr ? cudaMemoryTypeUnregistered : (m->device ? cudaMemoryTypeDevice : cudaMemoryTypeHost);
  attr->device = emu::current_device();  // every allocation of the process: its device
  attr->devicePointer = m ? const_cast<void*>(p) : nullptr;
  attr->hostPointer = m && !m->device ? const_cast<void*>(p) : nullptr;
  return cudaSuccess;
}

// The emulated device: an sm_90 (H100/H200), the project's target.
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device < 0 || device >= emu::device_count()) return emu::g_last_error = cudaErrorInvalidDevice;
  *prop = cudaDeviceProp{};
  prop->uuid.bytes[0] = static_cast<char>(0xE0);  // "GPU-e0000000-...-0000000000NN": device NN
  prop->uuid.bytes[15] = static_cast<char>(device);
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

// Streams (blocking, whatever the flags: the default stream orders against them) and
// events: see "lazy streams" above.
cudaError_t cudaStreamCreate(cudaStream_t* s) {
  const std::lock_guard<std::recursive_mutex> lock(emu::g_exec);
  static uint64_t created = 0;
  emu::g_streams.push_back(new emu::Stream);
  emu::g_streams.back()->eager = emu::eager_stream(++created);
  *s = reinterpret_cast<cudaStream_t>(emu::g_streams.back());
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int) { return cudaStreamCreate(s); }
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  const std::lock_guard<std::recursive_mutex> lock(emu::g_exec);
  emu::Stream* s = emu::stream_of(stream);
  if (s == nullptr) return cudaErrorInvalidValue;
  emu::run_until(s, s->issued);  // pending work completes, as on the GPU
  emu::g_streams.erase(std::find(emu::g_streams.begin(), emu::g_streams.end(), s));
  delete s;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = reinterpret_cast<cudaEvent_t>(new emu::Event);
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int flags) {
  cudaEventCreate(e);
  reinterpret_cast<emu::Event*>(*e)->interprocess = (flags & cudaEventInterprocess) != 0;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete reinterpret_cast<emu::Event*>(e);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  const std::lock_guard<std::recursive_mutex> lock(emu::g_exec);
  auto* e = reinterpret_cast<emu::Event*>(event);
  e->stream = emu::stream_of(stream);
  e->at = std::make_shared<std::chrono::steady_clock::time_point>();
  if (e->stream) {
    emu::submit(stream, [at = e->at] { *at = std::chrono::steady_clock::now(); });
    e->seq = e->stream->issued;
    if (e->interprocess) emu::run_until(e->stream, e->seq);
  } else {
    emu::drain_all();
    *e->at = std::chrono::steady_clock::now();
  }
  return cudaSuccess;
}
// CUDA IPC (see share_locked/open_shared above). Opening a handle in the process that
// exported it fails, as in CUDA.
cudaError_t cudaIpcGetMemHandle(cudaIpcMemHandle_t* handle, void* p) {
  std::lock_guard<std::mutex> lock(emu::g_mu);
  auto it = emu::g_allocs.find(p);
  if (it == emu::g_allocs.end() || !it->second.device || it->second.opens > 0) return cudaErrorInvalidValue;
  const int fd = emu::share_locked(p, &it->second);
  if (fd < 0) return cudaErrorMemoryAllocation;
  emu::IpcMem h{};
  std::memcpy(h.magic, emu::kIpcMagic, sizeof h.magic);
  h.pid = long(getpid());
  h.fd = fd;
  h.len = it->second.len;
  h.offset = size_t(static_cast<char*>(p) - static_cast<char*>(it->second.base));
  h.bytes = it->second.bytes;
  h.used = it->second.used;
  std::memset(handle, 0, sizeof *handle);
  std::memcpy(handle, &h, sizeof h);
  return cudaSuccess;
}
cudaError_t cudaIpcOpenMemHandle(void** p, cudaIpcMemHandle_t handle, unsigned int) {
  emu::IpcMem h;
  std::memcpy(&h, &handle, sizeof h);
  if (std::memcmp(h.magic, emu::kIpcMagic, sizeof h.magic) != 0) return emu::g_last_error = cudaErrorInvalidValue;
  if (h.pid == long(getpid())) return emu::g_last_error = cudaErrorDeviceUninitialized;
  *p = emu::open_shared(h);
  return *p ? cudaSuccess : (emu::g_last_error = cudaErrorMapBufferObjectFailed);
}
cudaError_t cudaIpcCloseMemHandle(void* p) {
  std::lock_guard<std::mutex> lock(emu::g_mu);
  auto it = emu::g_allocs.find(p);
  if (it == emu::g_allocs.end() || it->second.opens == 0) return cudaErrorInvalidValue;
  if (--it->second.opens > 0) return cudaSuccess;
  munmap(it->second.base, it->second.len);
  emu::g_allocs.erase(it);
  return cudaSuccess;
}
// An interprocess event's records run its stream up to them (cudaEventRecord), so the
// opened copy is an event that is always complete: waits on it order nothing more.
cudaError_t cudaIpcGetEventHandle(cudaIpcEventHandle_t* handle, cudaEvent_t event) {
  if (!reinterpret_cast<const emu::Event*>(event)->interprocess) return cudaErrorInvalidResourceHandle;
  std::memset(handle, 0, sizeof *handle);
  const long pid = long(getpid());
  std::memcpy(handle, emu::kIpcMagic, sizeof emu::kIpcMagic);
  std::memcpy(reinterpret_cast<char*>(handle) + sizeof emu::kIpcMagic, &pid, sizeof pid);
  return cudaSuccess;
}
cudaError_t cudaIpcOpenEventHandle(cudaEvent_t* event, cudaIpcEventHandle_t handle) {
  long pid = 0;
  if (std::memcmp(&handle, emu::kIpcMagic, sizeof emu::kIpcMagic) != 0) return cudaErrorInvalidValue;
  std::memcpy(&pid, reinterpret_cast<const char*>(&handle) + sizeof emu::kIpcMagic, sizeof pid);
  if (pid == long(getpid())) return emu::g_last_error = cudaErrorDeviceUninitialized;
  return cudaEventCreateWithFlags(event, cudaEventInterprocess | cudaEventDisableTiming);
}

// Host time between the two records' execution here (emulated kernels in between).
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  for (cudaEvent_t e : {start, end}) {
    if (reinterpret_cast<const emu::Event*>(e)->at == nullptr) return cudaErrorInvalidResourceHandle;
    if (cudaEventQuery(e) != cudaSuccess) return cudaErrorNotReady;
  }
  const auto* a = reinterpret_cast<const emu::Event*>(start);
  const auto* b = reinterpret_cast<const emu::Event*>(end);
  *ms = std::chrono::duration<float, std::milli>(*b->at - *a->at).count();
  return cudaSuccess;
}
// The wait captures the event's position now; a later re-record does not move it.
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int) {
  const auto* e = reinterpret_cast<const emu::Event*>(event);
  emu::Stream* const producer = e->stream;
  const uint64_t seq = e->seq;
  emu::submit(stream, [producer, seq] {
    if (producer) emu::run_until(producer, seq);
  });
  return cudaSuccess;
}
// Never blocks and never runs work: cudaErrorNotReady until the event's stream has run up
// to it (a synchronize, or another stream's wait, ran it). Recorded on the default
// stream, or never recorded: complete. Not a launch error (cudaGetLastError unchanged).
cudaError_t cudaEventQuery(cudaEvent_t event) {
  const std::lock_guard<std::recursive_mutex> lock(emu::g_exec);
  const auto* e = reinterpret_cast<const emu::Event*>(event);
  return e->stream == nullptr || e->stream->done >= e->seq ? cudaSuccess : cudaErrorNotReady;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  emu::count(emu::Count::kEventSync);
  const std::lock_guard<std::recursive_mutex> lock(emu::g_exec);
  const auto* e = reinterpret_cast<const emu::Event*>(event);
  if (e->stream) emu::run_until(e->stream, e->seq);
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  emu::count(emu::Count::kFree);
  emu::synchronize(nullptr);  // cudaFree synchronizes the device
  return emu::guarded_free(p);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t s) {
  emu::count(emu::Count::kStreamAlloc);
  emu::submit(s, [p] { emu::guarded_free(p); });
  return cudaSuccess;
}

// Synchronous copies and memsets run after all pending work (the default stream).
cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, enum cudaMemcpyKind) {
  emu::count(emu::Count::kSyncCopy);
  emu::submit(nullptr, [=] {
    const emu::DeviceAccess access;
    if (count) std::memmove(dst, src, count);
  });
  return cudaSuccess;
}
// Pinned (cudaMallocHost) or device memory on both sides: queued on the stream. Pageable
// host memory on either side: the copy is synchronous with the host (CUDA stages it), so
// it runs now, after the stream's pending work.
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, enum cudaMemcpyKind, cudaStream_t stream) {
  auto copy = [=] {
    const emu::DeviceAccess access;
    if (count) std::memmove(dst, src, count);
  };
  if (emu::mapping_of(dst) && emu::mapping_of(src)) {
    emu::submit(stream, copy);
  } else {
    emu::count(emu::Count::kSyncCopy);
    const std::lock_guard<std::recursive_mutex> lock(emu::g_exec);
    emu::sync_stream(stream);
    copy();
  }
  return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int value, size_t count) {
  return cudaMemsetAsync(p, value, count, nullptr);
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t count, cudaStream_t stream) {
  emu::submit(stream, [=] {
    const emu::DeviceAccess access;
    if (count) std::memset(p, value, count);
  });
  return cudaSuccess;
}

}  // extern "C"
