// Set-up pieces shared by `train`, `replay` and `bench`: the data loader of a config and
// one stage of the model with its initial parameters and optimizer state.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "app/config.h"
#include "app/train_state.h"
#include "common/status.h"
#include "data/loader.h"
#include "model/stage_model.h"
#include "pipeline/action.h"

namespace pt {

// Opens the train (and, with `with_val`, validation) shards of `c` for `dp_size` replicas;
// checks that the validation split holds training.eval_batches micro-batches.
Status open_data_loader(const Config& c, int dp_size, bool with_val, DataLoader* out);

// What (virtual) stage `stage` of the lowered schedule asks of its model
// (model/stage_model.h): split-backward buffers only when some rank's list runs a
// Bx or Bw of it (every stage of a partial_backward list: its next segment may);
// keep_logits from runtime.keep_logits.
StageNeeds stage_needs(const Config& c, const Schedule& lowered, int stage);

// (Virtual) stage `stage` = model stage stage % chain, blocks `ranges[stage % chain]`:
// a StageModel on `backend` (GPU `gpu` for cuda) allocating for `needs`, with
// parameters initialized from run.seed and, when `with_state`, zeroed optimizer state.
Status make_local_stage(const Config& c, const std::string& backend, int gpu, int stage, int chain,
                        const std::vector<std::pair<int, int>>& ranges, bool with_state, const StageNeeds& needs,
                        LocalStage* out);

}  // namespace pt
