// Learning-rate schedule: linear warm-up from lr/warmup to lr over `warmup_steps`,
// then `cosine` decay to min_lr_ratio·lr at the last step, `linear` decay, or
// `constant`. A pure function of the 0-based step.
#pragma once

#include <cstdint>
#include <string>

namespace pt {

struct LrSchedule {
  std::string kind = "cosine";  // cosine | linear | constant
  double lr = 6e-4;
  double min_lr_ratio = 0.1;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
};

double learning_rate(const LrSchedule& s, int64_t step);

}  // namespace pt
