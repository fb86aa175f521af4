// Stage replicas of schedules that run several pipelines over one set of ranks (AMDP,
// algorithms.md §2.2 "Stage ownership", §2.4 items 4 and 5). A model stage's K replicas
// live on the K pipeline ranks of one replica group (Group::kReplicas of collectives.h).
// With schedule.amdp.zero_owner (default) model stage s is OWNED by the rank hosting it in
// pipeline 0: ALLREDUCE_GRAD(replicas) gathers the K gradients on the owner, which sums them
// in replica-group rank order; STEP runs the optimizer on the owner only and broadcasts the
// new parameters; non-owners hold no optimizer state and only advance their version.
// Without it every replica sums all gradients in the same order and steps itself. Both
// give bit-identical parameters. At every drain check() verifies that replicas are
// bit-identical (item 4) and, in owner mode, that each model stage's optimizer state exists
// on exactly one rank (item 5); world rank 0 writes run_dir/optimizer_state.jsonl, one line
// per (rank, stage): {"rank", "stage", "model_stage", "params", "moment_floats"}.
#pragma once

#include <string>
#include <vector>

#include "app/config.h"
#include "app/train_state.h"
#include "pipeline/collectives.h"

namespace pt {

class StageReplicas {
 public:
  // `stage_to_rank` and `chain` (model stages per pipeline) of the placement; `enabled` is
  // the schedule's trait (replicas with one owner). Collective over the pipeline group.
  StageReplicas(Collectives& coll, const std::vector<int>& stage_to_rank, int chain, int pp_rank, bool enabled,
                bool zero_owner, const OptimizerSection& optimizer);

  bool enabled() const { return enabled_; }
  bool owner_mode() const { return enabled_ && zero_owner_; }
  // Whether this rank owns model stage (stage % chain), i.e. hosts it in pipeline 0.
  bool owns(const LocalStage& ls) const { return stage_to_rank_[size_t(ls.stage % chain_)] == pp_rank_; }
  // Whether this rank keeps optimizer state for `ls` (everyone, except non-owners in owner mode).
  bool keeps_state(const LocalStage& ls) const { return !owner_mode() || owns(ls); }

  // ALLREDUCE_GRAD(replicas): sum of the K replica gradients (see the file comment).
  void reduce(LocalStage& ls);
  // Owner mode, at every replica's STEP: the owner's parameters to the other replicas.
  void broadcast_params(LocalStage& ls);
  // Owner mode: frees non-owners' optimizer state.
  void release_non_owner_state(TrainState* state) const;
  // At a drain: items 4 and 5, and optimizer_state.jsonl in `run_dir` (world rank 0 writes).
  void check(const TrainState& state, bool world_root, const std::string& run_dir) const;

 private:
  int owner_rank_in_group(const LocalStage& ls) const;
  void check_identical(const TrainState& state) const;
  void check_and_record_state(const TrainState& state, bool world_root, const std::string& run_dir) const;
  Collectives& coll_;
  std::vector<int> stage_to_rank_;
  int chain_, pp_rank_;
  bool enabled_, zero_owner_;
  OptimizerSection optimizer_;  // what an owner's state must hold (optimizer_state_floats)
  std::vector<int> members_;  // pipeline ranks of this rank's replica group, ascending
};

// Pipeline ranks hosting the same set of model stages as `pp_rank` (ascending). Checks that
// every replica of a model stage lives in one such group.
std::vector<int> replica_group_members(const std::vector<int>& stage_to_rank, int chain, int pp_rank, int pp);

}  // namespace pt
