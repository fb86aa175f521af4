// `pipetrain bench`'s pure parts: the GPU peak table (most specific name first, unknown
// devices and CPUs give 0 so MFU prints n/a) and the FLOPs-per-token formula against a
// hand count of the parameters.
#include "app/bench_command.h"

#include <gtest/gtest.h>

namespace pt {
namespace {

TEST(BenchPeakTable, MatchesCudaDeviceNames) {
  EXPECT_EQ(peak_flops_for_device("NVIDIA H100 80GB HBM3"), 989e12);  // SXM
  EXPECT_EQ(peak_flops_for_device("NVIDIA H100 PCIe"), 756e12);       // not the SXM entry
  EXPECT_EQ(peak_flops_for_device("NVIDIA H100 NVL"), 835e12);
  EXPECT_EQ(peak_flops_for_device("NVIDIA H200"), 989e12);
  EXPECT_EQ(peak_flops_for_device("NVIDIA GH200 480GB"), 989e12);
  EXPECT_EQ(peak_flops_for_device("NVIDIA A100-SXM4-80GB"), 312e12);
  EXPECT_EQ(peak_flops_for_device("nvidia a100 80gb pcie"), 312e12);  // case-insensitive
  EXPECT_EQ(peak_flops_for_device("AMD EPYC 7763 64-Core Processor"), 0.0);
  EXPECT_EQ(peak_flops_for_device("Some Future GPU"), 0.0);
  EXPECT_EQ(peak_flops_for_device(""), 0.0);
}

TEST(BenchFlops, SixNPlusAttentionByHandCount) {
  ModelConfig m;
  m.vocab_size = 8;
  m.max_seq_len = 16;
  m.n_layer = 2;
  m.n_head = 2;
  m.n_embd = 4;
  m.tie_embeddings = true;
  const int T = 16, C = 4, V = 8, L = 2;
  // Per block: ln1 2C, qkv 3C^2+3C, attn proj C^2+C, ln2 2C, fc 4C^2+4C, fc proj 4C^2+C = 12C^2 + 13C.
  const double block = 12.0 * C * C + 13.0 * C;
  // wte counted once (tied), wpe left out, final LayerNorm 2C.
  const double n_tied = V * C + L * block + 2 * C;
  EXPECT_DOUBLE_EQ(training_flops_per_token(m, T), 6 * n_tied + 12.0 * L * T * C);
  // Untied: the head is its own (V, C) matrix.
  m.tie_embeddings = false;
  EXPECT_DOUBLE_EQ(training_flops_per_token(m, T), 6 * (n_tied + V * C) + 12.0 * L * T * C);
  // The attention term grows with T, the 6N term does not.
  EXPECT_DOUBLE_EQ(training_flops_per_token(m, 8) + 12.0 * L * 8 * C, training_flops_per_token(m, 16));
}

}  // namespace
}  // namespace pt
