// `pipetrain replay --run DIR`: verifies an asynchronous run from its version
// record alone. In one process it rebuilds every stage from the seed and, for each
// (micro-batch, stage) in each stage's recorded backward order, runs the forward
// with the weights of the recorded forward version (PACI mem mode: the backward
// version, as its recompute does), the backward with the weights of the recorded
// backward version, and applies the accumulated gradient when the record says it
// was applied (same clip, learning rate and AdamW as the run). The final
// parameters must equal the run's (DIR/params, written with run.save_params: true)
// bit for bit. Averaged copies (localsgd): the versions where the copies were averaged
// are read off the segment lists of the run's final config, so a run resumed with another
// schedule.localsgd.* or (when it was not a multiple of local_steps) training.steps replays
// with the wrong averages and is reported as differing.
// Block-coordinate runs (rpd) replay update by update: every stage forwards
// at its recorded version, input gradients go down to the one stage whose record is applied,
// which runs its full backward and its step.
#pragma once

#include <string>

#include "common/status.h"

namespace pt {

// On success `summary` says how many micro-batches, updates and tensors matched.
Status replay_run(const std::string& run_dir, std::string* summary);

}  // namespace pt
