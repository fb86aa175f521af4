// Layer split: which consecutive transformer layers each global pipeline stage holds. Stage 0 also
// holds the token/position embedding, the last stage the final norm, the LM head and the loss;
// `auto` balances the cost of each stage counting those as fractional layers. (The rank topology --
// rank -> (dp, stages, device) -- is added here later by the executor work.)
#pragma once

#include <utility>
#include <vector>

#include "common/status.h"

namespace pt {

// Costs in units of one transformer layer's forward+backward time.
struct SplitCosts {
  // The embedding is a gather (forward) and a scatter-add (backward): memory-bound, a fraction of a
  // layer.
  double embedding_layers = 0.5;
  // The head is a (T, C) x (C, V) matmul plus softmax-cross-entropy; see head_cost_in_layers().
  double head_layers = 0.5;
};

// A layer's matmuls are 12 C^2 multiply-adds per token (QKV 3C^2, attention projection C^2, MLP
// 8C^2); the head is V*C, so it costs V / (12 C) layers (GPT-2 124M: 50257 / (12*768) = 5.45
// layers).
double head_cost_in_layers(int vocab_size, int channels);

// ranges[i] = [first layer, end layer) of stage i, covering [0, n_layer) in order, each stage >= 1
// layer. explicit_split empty = auto: minimizes the largest stage cost (layers + embedding on stage
// 0 + head on the last stage); among optimal splits the later stages get the extra layers (they
// hold fewer in-flight activations in 1F1B-like schedules). explicit_split = per-stage layer counts
// (YAML parallel.layer_split): one entry per stage, each >= 1, summing to n_layer.
Status split_layers(int n_layer, int num_stages, const std::vector<int>& explicit_split,
                    std::vector<std::pair<int, int>>* ranges, const SplitCosts& costs = {});

// Cost of each stage of a split under `costs` (for plan output and tests).
std::vector<double> stage_costs(const std::vector<std::pair<int, int>>& ranges,
                                const SplitCosts& costs);

}  // namespace pt
