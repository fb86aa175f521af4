#include "app/schedule_builder.h"

#include "pipeline/lower.h"
#include "pipeline/schedules/schedules.h"
#include "pipeline/validate.h"

namespace pt {

Status build_lowered_schedule(const Config& c, int64_t segment_updates, Schedule* out) {
  ScheduleSpec spec;
  spec.kind = c.schedule.kind;
  spec.ranks = c.parallel.pp;
  spec.chunks = c.schedule.chunks;
  spec.microbatches = c.training.microbatches;
  spec.bfpp_breadth = c.schedule.bfpp_breadth;
  spec.segment_updates = int(segment_updates);
  spec.paci_allowed_lagging = c.schedule.paci_allowed_lagging;
  spec.paci_mode = c.schedule.paci_mode;
  Schedule compute;
  PT_RETURN_IF_ERROR(make_schedule(spec, &compute).with_context(c.source_file));
  PT_RETURN_IF_ERROR(lower_communication(compute, out));
  return validate_lowered(*out);
}

}  // namespace pt
