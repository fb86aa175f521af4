// Self-test of the emulator (emulator only; nvcc never compiles this file): shuffles
// and atomics give the values CUDA defines, and each kind of kernel bug the emulator
// claims to catch is caught (README.md): a read of shared memory without the barrier
// that orders it (in either thread order), a shuffle naming an exited lane, barrier
// divergence, a block larger than __launch_bounds__, a misaligned vector access, a write
// past the end of a buffer, host code reading device memory, too much dynamic shared
// memory, and stream work read before anything waited for it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/model/cuda/cuda_test_util.h"

namespace {

using pt::testing::DeviceBuffer;

__global__ void shuffle_kernel(int* out) {
  const int lane = threadIdx.x;
  out[lane] = __shfl_xor_sync(0xffffffffu, lane * 10, 5);
  out[32 + lane] = __shfl_down_sync(0xffffffffu, lane * 10, 3);
  out[64 + lane] = __shfl_sync(0xffffffffu, lane * 10, 7);
  out[96 + lane] = __shfl_xor_sync(0xffffffffu, lane * 10, 2, 4);
}

TEST(CudaEmu, ShufflesFollowCudaSemantics) {
  DeviceBuffer<int> out(128);
  shuffle_kernel<<<1, 32>>>(out.get());
  const std::vector<int> v = out.download();
  for (int l = 0; l < 32; ++l) {
    EXPECT_EQ(v[size_t(l)], (l ^ 5) * 10);
    EXPECT_EQ(v[size_t(32 + l)], (l + 3 < 32 ? l + 3 : l) * 10);  // past the warp: own value
    EXPECT_EQ(v[size_t(64 + l)], 70);
    EXPECT_EQ(v[size_t(96 + l)], (l ^ 2) * 10);
  }
}

__global__ void count_kernel(int* counter) { atomicAdd(counter, 1); }

TEST(CudaEmu, AtomicsCountEveryThread) {
  DeviceBuffer<int> c(std::vector<int>{0});
  count_kernel<<<dim3(3, 2), dim3(7, 5)>>>(c.get());
  EXPECT_EQ(c.download()[0], 3 * 2 * 7 * 5);
}

// Each thread reads its neighbour's shared value: neighbour tid + shift (mod 64).
__global__ void neighbour_kernel(float* out, int shift, bool barrier) {
  __shared__ float sh[64];
  sh[threadIdx.x] = float(threadIdx.x);
  if (barrier) __syncthreads();
  out[blockIdx.x * 64 + threadIdx.x] = sh[(threadIdx.x + shift) % 64];
}

int nan_count(const std::vector<float>& v) {
  int n = 0;
  for (float x : v) n += std::isnan(x);
  return n;
}

TEST(CudaEmu, MissingBarrierReadsPoisonInOneOfTheThreadOrders) {
  DeviceBuffer<float> out(128);
  for (int shift : {1, 63}) {  // the next thread's value, and the previous one's
    neighbour_kernel<<<2, 64>>>(out.get(), shift, true);
    EXPECT_EQ(nan_count(out.download()), 0) << "shift " << shift;
    neighbour_kernel<<<2, 64>>>(out.get(), shift, false);
    EXPECT_GT(nan_count(out.download()), 0) << "shift " << shift << ": the race went unnoticed";
  }
}

__global__ void half_warp_exits_kernel(float* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

__global__ void divergent_barrier_kernel() {
  if (threadIdx.x < 16) __syncwarp();
  else __syncthreads();
}

__global__ void __launch_bounds__(32) bounded_kernel(float* out) { out[threadIdx.x] = 0.0f; }

__global__ void misaligned_kernel(float* out) {
  *reinterpret_cast<float2*>(out + 1) = make_float2(0.0f, 0.0f);  // 8-byte type at a 4-byte offset
}

__global__ void overrun_kernel(float* out, int n) { out[n + threadIdx.x] = 1.0f; }
__global__ void far_overrun_kernel(float* out, int n) { out[n + 64 + threadIdx.x] = 1.0f; }

TEST(CudaEmuDeathTest, KernelBugsAbortWithTheKernelNamed) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  DeviceBuffer<float> out(32);
  EXPECT_DEATH(half_warp_exits_kernel<<<1, 32>>>(out.get()), "exited.*half_warp_exits_kernel");
  EXPECT_DEATH(divergent_barrier_kernel<<<1, 32>>>(), "deadlock in kernel divergent_barrier_kernel");
  EXPECT_DEATH(overrun_kernel<<<1, 32>>>(out.get(), 32), "overrun_kernel wrote past the end of the 128-byte buffer");
  EXPECT_DEATH(far_overrun_kernel<<<1, 32>>>(out.get(), 32), "memory fault");
  EXPECT_DEATH(bounded_kernel<<<1, 64>>>(out.get()), "block of 64 threads exceeds __launch_bounds__\\(32\\)");
  EXPECT_DEATH(misaligned_kernel<<<1, 1>>>(out.get()), "needing 8-byte alignment.*misaligned_kernel");
  // Host code reading device memory (a GPU machine faults too).
  EXPECT_DEATH(std::printf("%f\n", double(*static_cast<volatile float*>(out.get()))), "in host code");
}

__global__ void smem_kernel(float* out) {
  extern __shared__ float smem[];
  smem[threadIdx.x] = 2.0f;
  __syncthreads();
  out[threadIdx.x] = smem[31 - threadIdx.x];
}

TEST(CudaEmu, DynamicSharedMemoryAbove48KbNeedsTheOptIn) {
  DeviceBuffer<float> out(32);
  const size_t big = 64 * 1024;
  smem_kernel<<<1, 32, big>>>(out.get());
  EXPECT_NE(cudaGetLastError(), cudaSuccess);
  ASSERT_EQ(cudaFuncSetAttribute(smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(big)), cudaSuccess);
  smem_kernel<<<1, 32, big>>>(out.get());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(out.download(), std::vector<float>(32, 2.0f));
}

__global__ void fill_kernel(float* out, float v) { out[threadIdx.x] = v; }
__global__ void copy_kernel(float* out, const float* in) { out[threadIdx.x] = in[threadIdx.x]; }

// Streams are lazy (runtime.cc): work nothing waited for has not run, so a missing
// synchronize or event wait reads stale data here, as it may on the GPU.
TEST(CudaEmu, StreamWorkRunsOnlyOnceWaitedFor) {
  cudaStream_t a = nullptr, b = nullptr;
  ASSERT_EQ(cudaStreamCreate(&a), cudaSuccess);
  ASSERT_EQ(cudaStreamCreate(&b), cudaSuccess);
  cudaEvent_t e = nullptr;
  ASSERT_EQ(cudaEventCreate(&e), cudaSuccess);
  DeviceBuffer<float> x(32), y(32);
  float* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(&pinned, 32 * sizeof(float)), cudaSuccess);
  pinned[0] = 0.0f;
  fill_kernel<<<1, 32, 0, a>>>(x.get(), 3.0f);
  ASSERT_EQ(cudaMemcpyAsync(pinned, x.get(), 32 * sizeof(float), cudaMemcpyDeviceToHost, a), cudaSuccess);
  EXPECT_EQ(pinned[0], 0.0f) << "a copy into pinned memory completed before its stream was synchronized";
  ASSERT_EQ(cudaStreamSynchronize(a), cudaSuccess);
  EXPECT_EQ(pinned[0], 3.0f);

  // b reads x without waiting for a's write: the old value.
  fill_kernel<<<1, 32, 0, a>>>(x.get(), 5.0f);
  copy_kernel<<<1, 32, 0, b>>>(y.get(), x.get());
  ASSERT_EQ(cudaStreamSynchronize(b), cudaSuccess);
  EXPECT_EQ(y.download()[0], 3.0f);
  // With the event wait, the new one; the wait keeps the position recorded when it was
  // issued (the later re-record and write are not waited for).
  fill_kernel<<<1, 32, 0, a>>>(x.get(), 7.0f);
  ASSERT_EQ(cudaEventRecord(e, a), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(b, e, 0), cudaSuccess);
  fill_kernel<<<1, 32, 0, a>>>(x.get(), 9.0f);
  ASSERT_EQ(cudaEventRecord(e, a), cudaSuccess);
  copy_kernel<<<1, 32, 0, b>>>(y.get(), x.get());
  ASSERT_EQ(cudaStreamSynchronize(b), cudaSuccess);
  EXPECT_EQ(y.download()[0], 7.0f);
  EXPECT_EQ(x.download()[0], 9.0f);  // a device synchronize runs everything

  EXPECT_EQ(cudaFreeHost(pinned), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(e), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(a), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(b), cudaSuccess);
}

// A stream created under PIPETRAIN_EMU_STREAMS=eager runs each op as it is issued (after
// the waits before it). Next to a lazy stream that shows a missing wait before a write:
// b overwrites x while a's read of x is still queued. Lazy streams alone hide it when a
// is drained first; with the wait, the read sees the old value under both.
cudaStream_t stream_with_policy(const char* policy) {
  const char* old = std::getenv("PIPETRAIN_EMU_STREAMS");
  const std::string saved = old ? old : "";
  setenv("PIPETRAIN_EMU_STREAMS", policy, 1);
  cudaStream_t s = nullptr;
  EXPECT_EQ(cudaStreamCreate(&s), cudaSuccess);
  if (old) setenv("PIPETRAIN_EMU_STREAMS", saved.c_str(), 1);
  else unsetenv("PIPETRAIN_EMU_STREAMS");
  return s;
}

// y = x read on a, then x = 2 written on b, with or without b waiting for the read; returns y.
float read_then_overwrite(cudaStream_t a, cudaStream_t b, bool wait) {
  DeviceBuffer<float> x(32), y(32);
  fill_kernel<<<1, 32>>>(x.get(), 1.0f);  // default stream: runs now
  copy_kernel<<<1, 32, 0, a>>>(y.get(), x.get());
  cudaEvent_t read = nullptr;
  EXPECT_EQ(cudaEventCreate(&read), cudaSuccess);
  EXPECT_EQ(cudaEventRecord(read, a), cudaSuccess);
  if (wait) {
    EXPECT_EQ(cudaStreamWaitEvent(b, read, 0), cudaSuccess);
  }
  fill_kernel<<<1, 32, 0, b>>>(x.get(), 2.0f);
  EXPECT_EQ(cudaStreamSynchronize(a), cudaSuccess);  // a first: the order that hides the bug
  EXPECT_EQ(cudaStreamSynchronize(b), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(read), cudaSuccess);
  return y.download()[0];
}

TEST(CudaEmu, EagerStreamShowsAMissingWaitBeforeAWrite) {
  cudaStream_t lazy_a = stream_with_policy("lazy"), lazy_b = stream_with_policy("lazy");
  cudaStream_t eager_b = stream_with_policy("eager");
  EXPECT_EQ(read_then_overwrite(lazy_a, lazy_b, false), 1.0f) << "lazy streams alone hide this order";
  EXPECT_EQ(read_then_overwrite(lazy_a, eager_b, false), 2.0f) << "the eager write did not overtake the queued read";
  EXPECT_EQ(read_then_overwrite(lazy_a, eager_b, true), 1.0f) << "the wait did not order the write after the read";
  // An eager stream's work has run when issued: no synchronize needed to see it.
  DeviceBuffer<float> z(32);
  fill_kernel<<<1, 32, 0, eager_b>>>(z.get(), 4.0f);
  cudaEvent_t done = nullptr;
  ASSERT_EQ(cudaEventCreate(&done), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(done, eager_b), cudaSuccess);
  EXPECT_EQ(cudaEventQuery(done), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(done), cudaSuccess);
  for (cudaStream_t s : {lazy_a, lazy_b, eager_b}) EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

// CUDA IPC in one process: an export keeps the buffer's contents and address (its pages
// move to a memfd), opening it in the exporting process fails as in CUDA, and an
// interprocess event's record runs its stream at once (no other process could).
TEST(CudaEmu, IpcExportKeepsTheBufferAndInterprocessEventsCompleteAtRecord) {
  DeviceBuffer<float> x(32);
  fill_kernel<<<1, 32>>>(x.get(), 6.0f);
  cudaIpcMemHandle_t h;
  ASSERT_EQ(cudaIpcGetMemHandle(&h, x.get()), cudaSuccess);
  EXPECT_EQ(x.download()[0], 6.0f) << "the export lost the contents";
  fill_kernel<<<1, 32>>>(x.get(), 7.0f);  // still device memory at the same address
  EXPECT_EQ(x.download()[31], 7.0f);
  void* opened = nullptr;
  EXPECT_NE(cudaIpcOpenMemHandle(&opened, h, cudaIpcMemLazyEnablePeerAccess), cudaSuccess);
  (void)cudaGetLastError();
  cudaStream_t s = stream_with_policy("lazy");
  cudaEvent_t local = nullptr, shared = nullptr;
  ASSERT_EQ(cudaEventCreateWithFlags(&local, cudaEventDisableTiming), cudaSuccess);
  ASSERT_EQ(cudaEventCreateWithFlags(&shared, cudaEventInterprocess | cudaEventDisableTiming), cudaSuccess);
  fill_kernel<<<1, 32, 0, s>>>(x.get(), 8.0f);
  ASSERT_EQ(cudaEventRecord(local, s), cudaSuccess);
  EXPECT_EQ(cudaEventQuery(local), cudaErrorNotReady);
  ASSERT_EQ(cudaEventRecord(shared, s), cudaSuccess);
  EXPECT_EQ(cudaEventQuery(shared), cudaSuccess) << "an interprocess record did not run its stream";
  EXPECT_EQ(cudaEventQuery(local), cudaSuccess);
  cudaIpcEventHandle_t eh;
  EXPECT_EQ(cudaIpcGetEventHandle(&eh, shared), cudaSuccess);
  EXPECT_NE(cudaIpcGetEventHandle(&eh, local), cudaSuccess) << "only interprocess events export";
  for (cudaEvent_t e : {local, shared}) EXPECT_EQ(cudaEventDestroy(e), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
}

// cudaEventQuery never blocks and runs nothing: not ready until a wait ran the stream up
// to the event (here another stream's wait, which runs only the work before it); a
// pinned->device copy queued before it has then read its source, later ones have not.
TEST(CudaEmu, EventQueryReportsOnlyWorkThatRan) {
  cudaStream_t a = nullptr, b = nullptr;
  ASSERT_EQ(cudaStreamCreate(&a), cudaSuccess);
  ASSERT_EQ(cudaStreamCreate(&b), cudaSuccess);
  cudaEvent_t e1 = nullptr, e2 = nullptr, never = nullptr, legacy = nullptr;
  for (cudaEvent_t* e : {&e1, &e2, &never, &legacy}) ASSERT_EQ(cudaEventCreate(e), cudaSuccess);
  EXPECT_EQ(cudaEventQuery(never), cudaSuccess);  // never recorded
  DeviceBuffer<float> x(32), y(32);
  float* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(&pinned, 32 * sizeof(float)), cudaSuccess);
  pinned[0] = 1.0f;
  ASSERT_EQ(cudaMemcpyAsync(x.get(), pinned, 32 * sizeof(float), cudaMemcpyHostToDevice, a), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(e1, a), cudaSuccess);
  fill_kernel<<<1, 32, 0, a>>>(y.get(), 4.0f);
  ASSERT_EQ(cudaEventRecord(e2, a), cudaSuccess);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(cudaEventQuery(e1), cudaErrorNotReady) << "a query ran the stream";
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "not ready is not an error";
  ASSERT_EQ(cudaStreamWaitEvent(b, e1, 0), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(b), cudaSuccess);  // runs a up to e1 only
  EXPECT_EQ(cudaEventQuery(e1), cudaSuccess);
  EXPECT_EQ(cudaEventQuery(e2), cudaErrorNotReady);
  pinned[0] = 2.0f;  // the copy before e1 has read the old value
  EXPECT_EQ(x.download()[0], 1.0f);
  EXPECT_EQ(cudaEventQuery(e2), cudaSuccess);  // the download drained every stream
  ASSERT_EQ(cudaEventRecord(legacy, nullptr), cudaSuccess);
  EXPECT_EQ(cudaEventQuery(legacy), cudaSuccess);  // the default stream is synchronous

  EXPECT_EQ(cudaFreeHost(pinned), cudaSuccess);
  for (cudaEvent_t e : {e1, e2, never, legacy}) EXPECT_EQ(cudaEventDestroy(e), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(a), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(b), cudaSuccess);
}

}  // namespace
