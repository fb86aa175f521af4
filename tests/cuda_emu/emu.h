// Host SIMT emulator: what the project's CUDA kernel source needs to compile as host
// C++ (g++, C++20) and run on the CPU. Force-included (-include) into every kernel
// translation unit that rewrite.py produced from a .cu / .cuh file; see README.md.
//
// Execution model (emu.cc): blocks run one at a time, in grid order; the threads of
// a block are cooperative fibers on the calling host thread, switched only at
// __syncthreads, __syncwarp and warp shuffles. So barriers and shuffles have a GPU's
// semantics at the logic level, atomics are trivially atomic, and runs are
// deterministic. Threads first run in ascending, descending or a pseudo-random order,
// varied by block and launch, so a read of shared memory another thread writes
// without a barrier in between sees the poison (0xFF bytes: NaN for floats, -1 for
// ints) in some order, and a rerun (determinism checks) sees other thread orders,
// hence other atomic orders. Shared memory (static and dynamic) is poisoned at every
// block start. Device memory is host memory (runtime.cc: poisoned, canaries and a
// guard page after each buffer, inaccessible to host code between device calls).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

namespace emu {

extern thread_local uint3 tl_threadIdx, tl_blockIdx;
extern thread_local dim3 tl_blockDim, tl_gridDim;

// While one exists, device memory is accessible: kernels, runtime copies and the
// library stand-ins hold one; host code outside them faults on device memory (runtime.cc).
struct DeviceAccess {
  DeviceAccess();
  ~DeviceAccess();
  DeviceAccess(const DeviceAccess&) = delete;
  DeviceAccess& operator=(const DeviceAccess&) = delete;
};

// A kernel launch's configuration; the launch site's <<<grid, block, smem, stream>>>.
struct Config {
  dim3 grid, block;
  size_t smem = 0;
  cudaStream_t stream = nullptr;
  Config(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = nullptr) : grid(g), block(b), smem(s), stream(st) {}
};

// Runs body(ctx) for every thread of every block (emu.cc); sets the last error
// (cudaGetLastError) instead when the configuration would not launch on an H100/H200.
void run_kernel(const char* name, const void* kernel, const Config& cfg, void (*body)(void*), void* ctx);

// Whether the configuration would launch; otherwise sets the last error (emu.cc).
bool launch_ok(const char* name, const void* kernel, const Config& cfg);

// Issues op on `stream` (runtime.cc): a created stream runs its ops in issue order, only
// once something waits for them (stream, event or device synchronize, a synchronous copy,
// another stream's event wait being run, a free); the default stream (0) first runs all
// pending work, then op at once. So work runs as late as CUDA allows it to.
void submit(cudaStream_t stream, std::function<void()> op);
// PIPETRAIN_EMU_DEVICES (default 1) and the one cudaSetDevice made current.
int device_count();
int current_device();
// cudaStreamSynchronize(stream) (0: every stream); for the library stand-ins, which run
// at once after their stream's pending work.
void synchronize(cudaStream_t stream);

// Aborts unless p is null or inside (or one past) a cudaMalloc/cudaMallocHost buffer:
// a kernel handed a host pointer would fault on the GPU but run here.
void check_kernel_pointer(const char* kernel, int index, const void* p);

template <typename T>
void check_argument(const char* kernel, int index, const T& arg) {
  if constexpr (std::is_pointer_v<T>) check_kernel_pointer(kernel, index, static_cast<const void*>(arg));
}

// Host-side costs of the CUDA runtime and library calls made so far (counts.cc), counted
// at the API (a stand-in's own internal synchronization is not a call): what a GPU run
// pays in host waits and allocator calls. PIPETRAIN_EMU_COUNTS=path appends them at exit.
enum class Count {
  kLaunch,        // kernel launches
  kLibraryCall,   // cublasLtMatmul
  kDeviceSync,    // cudaDeviceSynchronize
  kStreamSync,    // cudaStreamSynchronize
  kEventSync,     // cudaEventSynchronize
  kSyncCopy,      // cudaMemcpy, and cudaMemcpyAsync with pageable host memory (both block the host)
  kMalloc,        // cudaMalloc
  kFree,          // cudaFree (synchronizes the device)
  kHostAlloc,     // cudaMallocHost / cudaHostAlloc
  kHostFree,      // cudaFreeHost (synchronizes the device)
  kStreamAlloc,   // cudaMallocAsync / cudaFreeAsync
  kN
};
void count(Count what);

// Both launch forms: checks the pointer arguments, then queues on cfg.stream a run of
// call(params...) by every thread (each gets its own copy of the by-value parameters).
// Params: the tuple the arguments are stored as; key: the kernel's identity for
// launch_ok (cudaFuncSetAttribute).
template <typename Params, typename F, typename... A>
void launch_call(const char* name, const Config& cfg, const void* key, F call, A&&... args) {
  struct Ctx {
    F f;
    Params params;
  };
  auto ctx = std::make_shared<Ctx>(Ctx{call, Params(std::forward<A>(args)...)});
  std::apply([name](const auto&... p) {
    int i = 0;
    (check_argument(name, i++, p), ...);
  }, ctx->params);
  if (!launch_ok(name, key, cfg)) return;
  count(Count::kLaunch);
  submit(cfg.stream, [name, key, cfg, ctx] {
    run_kernel(name, key, cfg, [](void* c) {
      auto* x = static_cast<Ctx*>(c);
      std::apply(x->f, x->params);
    }, ctx.get());
  });
}

template <typename... P, typename... A>
void launch(const char* name, const Config& cfg, void (*kernel)(P...), A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
  launch_call<std::tuple<std::decay_t<P>...>>(name, cfg, reinterpret_cast<const void*>(kernel), kernel,
                                               std::forward<A>(args)...);
}

// A launch of a template kernel without explicit template arguments
// (k<<<...>>>(args), nvcc deduces them from args): the rewrite passes a generic lambda
// calling k, so C++ deduces them per call the same way. Its key (the
// cudaFuncSetAttribute identity) is unique per instantiation; attributes cannot be
// set on such a launch (nvcc sources name the instantiation to set them).
template <typename F, typename... A>
void launch_deduced(const char* name, const Config& cfg, F call, A&&... args) {
  static const char key = 0;
  launch_call<std::tuple<std::decay_t<A>...>>(name, cfg, &key, call, std::forward<A>(args)...);
}

void syncthreads();
void syncwarp(unsigned mask);
// The value `bits` of lane src_lane after every lane of `mask` has deposited its own.
uint64_t warp_exchange(unsigned mask, uint64_t bits, int src_lane);
int lane_id();
// Every lane's `bytes` at `mine`, lane-major into all (32 · bytes), after all 32 lanes deposited.
void warp_gather(const void* mine, size_t bytes, void* all);
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {d} = A · B + {d} for the warp,
// from the fragment layouts of the PTX ISA; fp32 sums in k order (tensor cores add in
// an unspecified order and may truncate: tolerances must allow it).
void mma_m16n8k16_bf16(float& d0, float& d1, float& d2, float& d3, uint32_t a0, uint32_t a1, uint32_t a2,
                       uint32_t a3, uint32_t b0, uint32_t b1);
// Per-block storage of a static __shared__ variable (key: its declaration), poisoned.
void* static_shared(const void* key, size_t bytes);
// The launch's dynamic shared memory (extern __shared__), poisoned.
void* dynamic_shared();
[[noreturn]] void fail(const char* what);


// A kernel's __launch_bounds__(max_threads[, min_blocks]): a launch with a larger block
// fails on the GPU ("too many resources requested for launch").
void check_launch_bounds(int max_threads, int min_blocks = 0);

[[noreturn]] void misaligned(const void* p, size_t align);

// reinterpret_cast in rewritten source: a pointer must be aligned for its pointee, or
// the GPU access faults ("misaligned address"); the host would just load it.
template <typename To, typename From>
To device_cast(From p) {
  if constexpr (std::is_pointer_v<To> && std::is_pointer_v<From>) {
    using T = std::remove_cv_t<std::remove_pointer_t<To>>;
    if constexpr (!std::is_void_v<T>) {
      if (reinterpret_cast<uintptr_t>(p) % alignof(T) != 0) misaligned(p, alignof(T));
    }
  }
  return reinterpret_cast<To>(p);
}

template <typename T>
T& shared_var(const void* key) {
  return *static_cast<T*>(static_shared(key, sizeof(T)));
}

template <typename T>
T shuffle(unsigned mask, T v, int src) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a type wider than 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = warp_exchange(mask, bits, src);
  T r;
  std::memcpy(&r, &bits, sizeof(T));
  return r;
}

// Source lanes of the shuffle variants (CUDA Programming Guide, "Warp Shuffle
// Functions"): a source outside the lane's width-segment returns the lane's own value.
inline int seg_base(int lane, int width) { return lane / width * width; }

}  // namespace emu

#define threadIdx (::emu::tl_threadIdx)
#define blockIdx (::emu::tl_blockIdx)
#define blockDim (::emu::tl_blockDim)
#define gridDim (::emu::tl_gridDim)
constexpr int warpSize = 32;

#undef __forceinline__
#define __forceinline__ inline
#undef __align__
#define __align__(n) alignas(n)

inline void __syncthreads() { ::emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::emu::syncwarp(mask); }

template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  const int lane = ::emu::lane_id();
  return ::emu::shuffle(mask, v, ::emu::seg_base(lane, width) + (src % width));
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = ::emu::lane_id(), src = lane ^ lane_mask;
  return ::emu::shuffle(mask, v, src >= ::emu::seg_base(lane, width) + width ? lane : src);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = ::emu::lane_id(), src = lane + int(delta);
  return ::emu::shuffle(mask, v, src >= ::emu::seg_base(lane, width) + width ? lane : src);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = ::emu::lane_id(), src = lane - int(delta);
  return ::emu::shuffle(mask, v, src < ::emu::seg_base(lane, width) ? lane : src);
}

// Fibers never run concurrently and switch only at barriers: read-modify-write is atomic.
namespace emu {
template <typename T, typename F>
T atomic_rmw(T* p, F f) {
  const T old = *p;
  *p = f(old);
  return old;
}
}  // namespace emu
template <typename T>
T atomicAdd(T* p, T v) {
  return ::emu::atomic_rmw(p, [v](T old) { return T(old + v); });
}
template <typename T>
T atomicOr(T* p, T v) {
  return ::emu::atomic_rmw(p, [v](T old) { return T(old | v); });
}

template <typename T>
T __ldg(const T* p) {
  return *p;
}

// Math intrinsics: the IEEE-rounded host functions. The GPU's fast approximations
// (__expf, __fdividef, rsqrtf, ...) are a few ulp off these; tolerances must allow it.
// glibc declares __expf and __logf itself, hence macros for those.
#define __expf(x) ::expf(x)
#define __logf(x) ::logf(x)
#define __sinf(x) ::sinf(x)
#define __cosf(x) ::cosf(x)
#define __powf(x, y) ::powf(x, y)
inline float rsqrtf(float x) { return 1.0f / ::sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / ::sqrt(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return ::sqrtf(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return ::fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline float __double2float_rn(double x) { return float(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }

// CUDA's integer and floating min/max overloads (device code calls them unqualified).
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a < b ? b : a; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a < b ? b : a; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a < b ? b : a; }
inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
inline unsigned long max(unsigned long a, unsigned long b) { return a < b ? b : a; }
inline float min(float a, float b) { return ::fminf(a, b); }
inline float max(float a, float b) { return ::fmaxf(a, b); }

// cuda_runtime.h's template overload of cudaFuncSetAttribute exists for nvcc only.
template <typename T>
cudaError_t cudaFuncSetAttribute(T* kernel, cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), attr, value);
}
