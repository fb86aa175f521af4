// `pipetrain delays`: prints PipeDream's global delay law (algorithms.md §5.2) as measured on
// the schedule this project builds (pipeline/schedules/delay_law.h).
#pragma once

#include "common/status.h"

namespace pt {

// Prints one row per S = 2..max_stages: S, max, S^2 - S/2, mean, S^2/2.
Status run_delays_command(int max_stages);

}  // namespace pt
