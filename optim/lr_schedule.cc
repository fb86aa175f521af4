#include "optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace pt {

double learning_rate(const LrSchedule& s, int64_t step) {
  if (step < s.warmup_steps) return s.lr * double(step + 1) / double(s.warmup_steps);
  if (s.kind == "constant") return s.lr;
  const double min_lr = s.lr * s.min_lr_ratio;
  const int64_t decay_steps = std::max<int64_t>(1, s.total_steps - s.warmup_steps - 1);
  const double progress = std::min(1.0, double(step - s.warmup_steps) / double(decay_steps));
  if (s.kind == "linear") return s.lr + (min_lr - s.lr) * progress;
  return min_lr + 0.5 * (s.lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

int stagewise_num_versions(int stages, int stage, int accumulation) {
  return (stages - stage) / std::max(1, accumulation);
}

double stagewise_lr_factor(int num_versions, int64_t update, int64_t correction_steps) {
  if (num_versions <= 1) return 1.0;  // no delay: nothing to correct (and no 0^x)
  const double progress = std::min(1.0, double(update) / double(std::max<int64_t>(1, correction_steps)));
  if (progress >= 1.0) return 1.0;
  return 1.0 / std::pow(double(num_versions - 1), 1.0 - progress);
}

double stage_learning_rate(const LrSchedule& s, int stage, int64_t step) {
  const double lr = learning_rate(s, step);
  if (s.stagewise_stages <= 0) return lr;
  const int n = stagewise_num_versions(s.stagewise_stages, stage, s.stagewise_accumulation);
  return lr * stagewise_lr_factor(n, step + 1, s.stagewise_steps);
}

}  // namespace pt
