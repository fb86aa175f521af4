#include "app/schedule_builder.h"

#include <algorithm>

#include "pipeline/lower.h"
#include "pipeline/validate.h"

namespace pt {

ScheduleSpec schedule_spec_for(const Config& c, int64_t segment_updates, int64_t first_update) {
  ScheduleSpec spec;
  spec.kind = c.schedule.kind;
  spec.ranks = c.parallel.pp;
  spec.chunks = c.schedule.chunks;
  spec.microbatches = c.training.microbatches;
  spec.bfpp_breadth = c.schedule.bfpp_breadth;
  spec.segment_updates = int(segment_updates);
  spec.pipedream_lr_correction = c.schedule.pipedream_lr_correction;
  spec.pipedream_lr_correction_steps = c.schedule.pipedream_lr_correction_steps;
  spec.paci_allowed_lagging = c.schedule.paci_allowed_lagging;
  spec.paci_mode = c.schedule.paci_mode;
  spec.amdp_step_slot = c.schedule.amdp_step_slot;
  spec.tie_embeddings = c.model.tie_embeddings;
  spec.amdp_zero_owner = c.schedule.amdp_zero_owner;
  spec.localsgd_copies = c.schedule.localsgd_copies;
  spec.localsgd_local_steps = c.schedule.localsgd_local_steps;
  spec.rpd_max_delay = c.schedule.rpd_max_delay;
  spec.rpd_stage_sampling = c.schedule.rpd_stage_sampling;
  spec.rpd_delay_sampling = c.schedule.rpd_delay_sampling;
  spec.seed = uint64_t(c.run.seed);
  spec.first_update = first_update;
  return spec;
}

Status build_lowered_schedule(const Config& c, int64_t segment_updates, Schedule* out, int64_t first_update) {
  Schedule compute;
  PT_RETURN_IF_ERROR(make_schedule(schedule_spec_for(c, segment_updates, first_update), &compute).with_context(c.source_file));
  PT_RETURN_IF_ERROR(lower_communication(compute, out));
  PT_RETURN_IF_ERROR(validate_lowered(*out));
  return validate_comm_groups(*out);  // the executor issues comm_groups() as transport groups
}

int64_t next_drain_step(const Config& c, int64_t step) {
  int64_t end = c.training.steps;
  const int64_t eval_every = c.data.val.empty() ? 0 : c.training.eval_every;
  for (int64_t every : {eval_every, c.checkpoint.every_steps, c.schedule.drain_every})
    if (every > 0) end = std::min(end, (step / every + 1) * every);
  return end;
}

SplitCosts config_split_costs(const Config& c) {
  SplitCosts costs;
  costs.embedding_layers = 0.0;
  costs.head_layers = head_cost_in_layers(c.model.vocab_size, c.model.n_embd);
  return costs;
}

Status split_layers_for_config(const Config& c, int model_stages, std::vector<std::pair<int, int>>* ranges) {
  return split_layers(c.model.n_layer, model_stages, c.parallel.layer_split, ranges, config_split_costs(c))
      .with_context(c.source_file);
}

}  // namespace pt
