// Shared by the transport tests under mpirun -np 2 (transport_nccl_test, transport_ipc_test):
// patterned host or device buffers, the send-send-recv-recv exchange both ranks run at
// once, and main()'s end (every rank runs every test; the job fails when any rank fails).
// Device buffers need PT_TEST_CUDA (the test links the CUDA runtime); without it a
// buffer asked for on the device stays in host memory.
#pragma once

#include <gtest/gtest.h>
#include <mpi.h>

#include <string>
#include <vector>

#include "pipeline/transport.h"

#ifdef PT_TEST_CUDA
#include <cuda_runtime.h>
#endif

namespace pt::testing {

inline float pattern(int sender, int msg, size_t i) {
  return float(sender * 1000003 + msg * 7919) + float(i % 4093) * 0.25f;
}

inline void expect_pattern(const std::vector<float>& got, int sender, int msg, const std::string& what) {
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] != pattern(sender, msg, i) && bad++ < 3)
      ADD_FAILURE() << what << "[" << i << "] = " << got[i] << ", expected " << pattern(sender, msg, i);
  EXPECT_EQ(bad, 0u) << what;
}

// n floats in host memory, or in device memory (cudaMalloc) when `on_device` and PT_TEST_CUDA.
struct Buf {
  bool device = false;
  std::vector<float> host;
  float* dev = nullptr;
  Buf(bool on_device, size_t n) : host(n, -1.0f) {
#ifdef PT_TEST_CUDA
    device = on_device;
    if (device) {
      EXPECT_EQ(cudaMalloc(&dev, n * sizeof(float)), cudaSuccess);
    }
#else
    (void)on_device;
#endif
  }
  ~Buf() {
#ifdef PT_TEST_CUDA
    if (dev) cudaFree(dev);
#endif
  }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  float* ptr() { return device ? dev : host.data(); }
  void fill(int sender, int msg) {
    for (size_t i = 0; i < host.size(); ++i) host[i] = pattern(sender, msg, i);
#ifdef PT_TEST_CUDA
    if (device) {
      EXPECT_EQ(cudaMemcpy(dev, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    }
#endif
  }
  std::vector<float> read() {
#ifdef PT_TEST_CUDA
    if (device) {
      EXPECT_EQ(cudaMemcpy(host.data(), dev, host.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    }
#endif
    return host;
  }
};

// Rank r of 2: send, send, recv, recv of n floats to/from the other rank, then
// wait_sends; both messages must arrive intact.
inline void send_send_recv_recv(Transport& t, int rank, size_t n, bool send_on_device, bool recv_on_device,
                                const std::string& label) {
  const int peer = 1 - rank;
  Buf s0(send_on_device, n), s1(send_on_device, n), r0(recv_on_device, n), r1(recv_on_device, n);
  s0.fill(rank, 0);
  s1.fill(rank, 1);
  t.send(s0.ptr(), n, peer, 11);
  t.send(s1.ptr(), n, peer, 12);
  t.recv(r0.ptr(), n, peer, 11);
  t.recv(r1.ptr(), n, peer, 12);
  t.wait_sends();
  const std::string what = label + " " + (send_on_device ? "device" : "host") + " -> " +
                           (recv_on_device ? "device" : "host") + " rank " + std::to_string(rank);
  expect_pattern(r0.read(), peer, 0, what + " message 0");
  expect_pattern(r1.read(), peer, 1, what + " message 1");
  EXPECT_EQ(t.rank(), rank);
  EXPECT_EQ(t.size(), 2);
}

// main()'s end: runs the tests on this rank, then MPI_Finalize; nonzero when any rank failed.
inline int run_tests_on_every_rank() {
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0, any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any;
}

}  // namespace pt::testing
