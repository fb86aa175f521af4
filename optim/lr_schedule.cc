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

}  // namespace pt
