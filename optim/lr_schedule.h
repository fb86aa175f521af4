// Learning-rate schedule: linear warm-up from lr/warmup to lr over `warmup_steps`,
// then `cosine` decay to min_lr_ratio·lr at the last step, `linear` decay, or
// `constant`. A pure function of the 0-based step.
//
// PipeDream-LR (algorithms.md §4.2, the basis-rotation paper's baseline): with
// `stagewise_stages` = S > 0 the asynchronous STEP of stage s scales that learning rate by
//   1 / (n_s − 1)^(1 − min(u / T_corr, 1)),   n_s = (S − s) / m (integer division),
// n_s = the stage's stashed weight versions (S − s at m = 1: its delay + 1; the reference
// divides them by the accumulation m), u = the 1-based number of the stage's update being
// applied (its version + 1, the reference's `1 + step`), T_corr = `stagewise_steps`. A stage
// with n_s <= 1 (no delay: the last stage, or m >= S − s) is not corrected, and from update
// T_corr on no stage is. The stage's version is checkpointed, so a resume continues exactly.
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
  int stagewise_stages = 0;         // S of the PipeDream-LR correction; 0 = no correction
  int stagewise_accumulation = 1;   // m: micro-batches per update (>= 1)
  int64_t stagewise_steps = 1;      // T_corr: updates over which the correction fades (>= 1)
};

double learning_rate(const LrSchedule& s, int64_t step);

// n_s of the file comment: weight versions stage `stage` of `stages` keeps at accumulation m.
int stagewise_num_versions(int stages, int stage, int accumulation);

// The PipeDream-LR factor (0, 1] for a stage keeping `num_versions` versions at its
// 1-based update `update`; 1 when num_versions <= 1 or update >= correction_steps.
double stagewise_lr_factor(int num_versions, int64_t update, int64_t correction_steps);

// learning_rate(s, step) of stage `stage`'s update at its 0-based version `step`, times
// the stagewise factor when s.stagewise_stages > 0.
double stage_learning_rate(const LrSchedule& s, int stage, int64_t step);

}  // namespace pt
