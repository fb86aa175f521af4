#include "app/delays_command.h"

#include <cstdio>

#include "pipeline/schedules/delay_law.h"

namespace pt {

Status run_delays_command(int max_stages) {
  if (max_stages < 2) return Status::error("--max-stages = " + std::to_string(max_stages) + ": must be >= 2");
  std::printf("PipeDream global delay, steady state (make_schedule pipedream, accumulation 1, simulated with F = B = 1)\n");
  std::printf("| S | max delay | S^2 - S/2 | mean delay | S^2/2 |\n|---|---|---|---|---|\n");
  for (int S = 2; S <= max_stages; ++S) {
    GlobalDelayLaw law;
    PT_RETURN_IF_ERROR(pipedream_global_delay(S, 16 * S, &law));
    std::printf("| %d | %d | %g | %.2f | %g |\n", S, law.max_delay, S * S - S / 2.0, law.mean_delay, S * S / 2.0);
  }
  return Status::ok();
}

}  // namespace pt
