// Independent model copies that are averaged (LocalSGD, algorithms.md §5.4; schedule traits
// `averaged_copies`): M copies of every model stage live on the stage's rank as virtual stages
// p*S + s, each with its own parameters and optimizer state, each stepping on its own share of
// the micro-batches. At every round barrier (the AVERAGE action) a rank replaces the parameters
// AND the optimizer state of its copies of a stage by their element-wise mean:
//   x[i] = float( (sum over copies p = 0..M-1, ascending, of double(x_p[i])) / M )
// written to every copy, so the copies leave the barrier bit-identical. It runs in backend memory
// (StageModel::average, on copy 0's backend; device optimizer states through device_tensors()),
// so on CUDA the barrier moves nothing between host and device. The optimizer state is
// averaged too (not kept per copy) because a drain then holds ONE model: evaluation runs on
// pipeline 0's copy, a checkpoint saves it and a resume loads it into every copy, bitwise what the
// uninterrupted run holds; averaged moments are also the natural state of the averaged point
// (each copy's Adam moments estimate the same gradient statistics). Adam's bias correction
// counts the stage's updates (LocalStage::version), which are equal on every copy. With
// basis_rotation the bases are averaged element-wise as well (no longer orthonormal until
// their next refresh).
#pragma once

#include <string>
#include <vector>

#include "app/train_state.h"
#include "pipeline/action.h"
#include "pipeline/schedules/schedules.h"

namespace pt {

// The mean of `copies` (>= 1, same layout, same optimizer) into every copy (file comment).
void average_copies(const std::vector<LocalStage*>& copies);

// This rank's copies of model stage `model_stage` in `local` (virtual stage v with
// v % chain == model_stage), in ascending copy order.
std::vector<LocalStage*> copies_of(std::vector<LocalStage>& local, int model_stage, int chain);

// Whether every model stage's copies in `local` hold bit-identical parameters and optimizer
// state (the drain check; reading a device state's host view syncs it, hence non-const); `what`
// names the first stage that differs.
bool copies_identical(std::vector<LocalStage>& local, int chain, std::string* what);

// Micro-batches behind one applied gradient, the loss scale's denominator per data-parallel
// replica: m, or m / pipelines for averaged copies (each copy steps on its m/M micro-batches).
int microbatches_per_gradient(const ScheduleTraits& traits, const Schedule& placement, int m);

}  // namespace pt
