#include "optim/grad_norm.h"

#include <algorithm>
#include <cmath>

namespace pt {

double sum_of_squares(const float* x, size_t n) {
  double s = 0.0;
  for (size_t i = 0; i < n; ++i) s += double(x[i]) * double(x[i]);
  return s;
}

double combine_norm(std::vector<std::pair<int, double>> entries) {
  std::sort(entries.begin(), entries.end());
  double total = 0.0;
  for (const auto& [id, s] : entries) total += s;
  return std::sqrt(total);
}

float clip_scale(double norm, double max_norm) {
  if (max_norm <= 0.0 || !(norm > max_norm)) return 1.0f;
  return float(max_norm / (norm + 1e-6));
}

}  // namespace pt
