// The reductions of an optimizer update that cross stages, over Collectives:
//   tied embeddings  grad(wte) = embedding part + head part, summed in that order on every
//                    layout, so both copies get identical gradients and identical updates;
//   global norm      per-tensor sums of squares gathered over the pipeline group and added
//                    in global tensor order (the tied head copy is not counted);
//   losses           the mean over an update's m·dp micro-batches, summed in global
//                    micro-batch order (replica-major), so dp×m and 1×(dp·m) runs agree.
#pragma once

#include <vector>

#include "app/train_state.h"
#include "pipeline/collectives.h"

namespace pt {

// Rank-local view of where the tied copies of wte live. `first_rank`/`last_rank`: the
// pipeline ranks of model stage 0 and of the last model stage.
struct TiedEmbeddings {
  bool enabled = false;
  int first_rank = 0, last_rank = 0;
  int last_stage = 0;  // the (virtual) stage index of the last model stage
};

// Sums the two wte gradients (collective between first_rank and last_rank; others return).
void reduce_tied_embeddings(Collectives& coll, const TiedEmbeddings& tied, std::vector<LocalStage>& local);

// Global gradient norm over the pipeline group (collective).
double global_grad_norm(Collectives& coll, std::vector<LocalStage>& local);

// Per update k of `updates`, the mean loss over the update's m micro-batches of every
// data-parallel replica. `losses[g]` is micro-batch g's loss where this rank computed it
// (0 elsewhere). Collective over the pipeline and data groups; valid on every rank.
std::vector<double> reduce_update_losses(Collectives& coll, const std::vector<float>& losses, int total, int m);

}  // namespace pt
