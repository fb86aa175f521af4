// Global gradient norm in a canonical, layout-independent order: the sum of squares
// of each tensor is computed in double over its elements in order; the per-tensor
// values are then added in ascending global tensor id. Any pipeline layout that
// gathers the same per-tensor values gets the same bits as a single rank.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace pt {

double sum_of_squares(const float* x, size_t n);

// entries: (global tensor id, sum of squares); ids need not be sorted or unique
// across calls but each id must appear once. Returns sqrt of the ordered sum.
double combine_norm(std::vector<std::pair<int, double>> entries);

// Clip factor: 1 when max_norm <= 0 (off) or norm <= max_norm; else max_norm / (norm + 1e-6)
// (the 1e-6 keeps the clipped norm just under the limit, as torch.nn.utils.clip_grad_norm_).
float clip_scale(double norm, double max_norm);

}  // namespace pt
