// The outer training loop of one rank: builds the process groups, the stage
// models this rank owns, the lowered schedule and the executor; then per step runs
// the schedule, reduces gradients (data-parallel sum, tied embeddings, global norm
// in canonical order), clips, applies AdamW and logs. Rank 0 writes the run
// directory: config.yaml, metrics.jsonl, summary.json.
#pragma once

#include "app/config.h"
#include "common/status.h"

namespace pt {

// Requires MPI to be initialized. Returns a Status for user-fixable failures.
Status run_training(const Config& config);

}  // namespace pt
