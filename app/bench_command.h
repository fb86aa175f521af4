// `pipetrain bench --config C`: measures what `pipetrain plan --costs FILE` needs to predict
// a step in seconds on this machine, writes the cost file (pipeline/cost_file.h), and
// prints single-stage (pp = 1) throughput, FLOPs per token, MFU and peak memory.
//
// Run it like training, under mpirun with the ranks the pipeline will use: every rank
// measures the stage components at the same time (so the measurement sees the sharing of
// cores, memory bandwidth or a GPU that a pipeline run sees); ranks 0 and 1 then measure
// point-to-point latency and bandwidth. One rank (no mpirun) records p2p as free.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "model/config.h"

namespace pt {

struct BenchOptions {
  std::string config_path;
  std::vector<std::string> overrides;  // --set key=value
  std::string out;                     // cost file; empty = run_dir/costs.json
  int iters = 20;                      // timed repetitions; costs are medians
  int warmup = 3;                      // untimed repetitions first
  double peak_tflops = 0;              // > 0 overrides the peak table (MFU denominator)
};

// Requires MPI to be initialized. Rank 0 prints and writes the cost file; progress goes
// to stderr. Every rank returns the same Status for measurement failures.
Status run_bench_command(const BenchOptions& options);

// Dense bf16 tensor-core peak FLOP/s of a GPU by its device name (case-insensitive
// substring match, most specific first, e.g. "NVIDIA H100 PCIe" -> 756e12); 0 = unknown
// (CPUs included).
double peak_flops_for_device(const std::string& device_name);

// Training FLOPs per token, the PaLM / nanoGPT estimate:
//   6·N + 12·L·T·C
// N = parameters without the position table (wte counted once: with tied embeddings it is
// the head's matmul), 6 = 2 (multiply-add) × 3 (forward + two backward matmuls);
// 12·L·T·C = attention scores and weighted sum, 2·2·T·C per token per layer forward, ×3,
// with no discount for the causal mask.
double training_flops_per_token(const ModelConfig& model, int seq_len);

}  // namespace pt
