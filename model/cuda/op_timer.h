// Per-op GPU time of a CUDA backend, for profiling a run without a profiler: with the
// environment variable PIPETRAIN_OP_TIMES set to a path, every Backend op of a CUDA
// backend (model/cuda/cuda_backend.cu: the kernels and cuBLASLt GEMMs each op issues)
// is bracketed by two CUDA events on the backend's stream, and at the backend's end the
// elapsed times are summed per op name and appended to that path as one JSON line:
//   {"rank": R, "device": D, "ops": {"matmul_forward": {"calls": n, "ms": t}, ...}}
// (R: the MPI rank from Open MPI's or PMIx's environment, else -1). scripts/op_times.py
// prints the table. Unset: nothing is recorded (one branch per op).
// Costs when on: two event records per op (no host wait: finished events are collected
// with cudaEventQuery when later ops start; only past kMaxPending outstanding pairs does
// the oldest get waited for), so the step time is a little longer than untimed and the
// split between ops is what to read. Nested ops (an op that calls another) count once,
// under the outer name; a typed entry point that declines (its caller then stages the
// operands and calls the plain op) is not counted. Results of the ops do not change.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <deque>
#include <map>
#include <string>
#include <vector>

namespace pt::cuda {

class OpTimer {
 public:
  static constexpr size_t kMaxPending = 4096;

  OpTimer() = default;
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;
  ~OpTimer();

  // Whether PIPETRAIN_OP_TIMES names a path (read once per process).
  static bool enabled();

  // Brackets one op on `stream` while alive (the outermost of nested scopes only).
  class Scope {
   public:
    Scope(OpTimer* timer, const char* name, cudaStream_t stream);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    OpTimer* timer_;  // null: not timed
    cudaStream_t stream_;
  };

  // Waits for the recorded ops, then appends their sums to the path (once; nothing when
  // no op was timed). `device`: the backend's GPU. The caller's stream must be alive.
  void report(int device);

 private:
  struct Pending {
    const char* name;
    cudaEvent_t start, end;
  };
  struct Total {
    long long calls = 0;
    double ms = 0.0;
  };
  cudaEvent_t take_event();
  void collect(bool wait_all);  // moves finished pairs (all: after waiting) into totals_
  int depth_ = 0;
  const char* open_name_ = nullptr;
  cudaEvent_t open_start_ = nullptr;
  std::deque<Pending> pending_;
  std::vector<cudaEvent_t> spare_;
  std::map<std::string, Total> totals_;
};

}  // namespace pt::cuda
