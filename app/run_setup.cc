#include "app/run_setup.h"

#include "app/optimizer_step.h"
#include "model/stage_model_factory.h"

namespace pt {

Status open_data_loader(const Config& c, int dp_size, bool with_val, DataLoader* out) {
  DataLoaderOptions d;
  d.train_pattern = c.data.train;
  d.val_pattern = with_val ? c.data.val : "";
  d.batch_size = c.training.micro_batch_size;
  d.seq_len = c.training.seq_len;
  d.microbatches = c.training.microbatches;
  d.dp_size = dp_size;
  d.seed = uint64_t(c.run.seed);
  d.shuffle = c.data.shuffle;
  d.vocab_size = c.model.vocab_size;
  PT_RETURN_IF_ERROR(out->open(d).with_context(c.source_file + ": data"));
  if (with_val && !c.data.val.empty() && out->num_eval_batches() < c.training.eval_batches)
    return Status::error(c.source_file + ": key 'training.eval_batches': the validation split holds only " +
                         std::to_string(out->num_eval_batches()) +
                         " micro-batches of B*T tokens; lower eval_batches");
  return Status::ok();
}

StageNeeds stage_needs(const Config& c, const Schedule& lowered, int stage) {
  StageNeeds needs;
  needs.keep_logits = c.runtime.keep_logits;
  // A partial_backward (block-coordinate) list is drawn per segment: any stage may run a Bx in a
  // later segment's list even when this one has none.
  needs.split_backward = lowered.partial_backward;
  for (const auto& list : lowered.per_rank)
    for (const Action& a : list)
      if (a.stage == stage && (a.kind == ActionKind::Bx || a.kind == ActionKind::Bw)) needs.split_backward = true;
  return needs;
}

Status make_local_stage(const Config& c, const std::string& backend, int gpu, int stage, int chain,
                        const std::vector<std::pair<int, int>>& ranges, bool with_state, const StageNeeds& needs,
                        LocalStage* out) {
  const int ms = stage % chain;
  const StageSpec spec{ranges[size_t(ms)].first, ranges[size_t(ms)].second, ms == 0, ms == chain - 1};
  out->stage = stage;
  out->layers = ranges[size_t(ms)];
  Precision precision = Precision::kFp32;
  PT_RETURN_IF_ERROR(run_precision(c, &precision));
  PT_RETURN_IF_ERROR(make_stage_model(backend, gpu, c.model, spec, c.training.micro_batch_size, c.training.seq_len,
                                      &out->model, precision, needs, BackendOptions{c.runtime.tf32})
                         .with_context(c.source_file));
  out->model->init_params(uint64_t(c.run.seed));  // leaves host and device copies consistent
  if (with_state) out->optimizer_state = make_optimizer_state(c.optimizer, *out->model);
  return Status::ok();
}

}  // namespace pt
