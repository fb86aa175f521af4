#include "app/run_trace.h"

#include <algorithm>
#include <cstdio>

#include "common/json.h"

namespace pt {

void RunTrace::add_segment(const std::vector<ActionSpan>& spans, double offset, int64_t first_step) {
  for (const ActionSpan& a : spans) {
    TraceSpan t;
    t.start = offset + a.start;
    t.end = offset + a.end;
    t.first_step = first_step;
    t.stage = a.stage;
    t.microbatch = a.microbatch;
    t.world_rank = world_rank_;
    t.kind = a.kind;
    t.device = a.device;
    spans_.push_back(t);
  }
}

void RunTrace::add(uint8_t kind, double start, double end, int64_t step) {
  TraceSpan t;
  t.start = start;
  t.end = end;
  t.first_step = step;
  t.world_rank = world_rank_;
  t.kind = kind;
  spans_.push_back(t);
}

std::string RunTrace::gather_json(Collectives& coll) const {
  const std::vector<TraceSpan> all = allgatherv(coll, Group::kWorld, spans_);
  if (coll.rank(Group::kWorld) != 0) return "";
  return trace_json(all, coll.size(Group::kWorld), pp_, m_);
}

namespace {

const char* span_name(uint8_t kind) {
  if (kind == kSpanWaitSends) return "WAIT_SENDS";
  if (kind == kSpanEval) return "EVAL";
  if (kind == kSpanCheckpoint) return "CHECKPOINT";
  return action_kind_name(ActionKind(kind));
}

const char* span_category(uint8_t kind) {
  if (kind == kSpanWaitSends) return "wait";
  if (kind == kSpanEval) return "eval";
  if (kind == kSpanCheckpoint) return "checkpoint";
  switch (ActionKind(kind)) {
    case ActionKind::F:
    case ActionKind::B:
    case ActionKind::Bx:
    case ActionKind::Bw: return "compute";
    case ActionKind::RECV_ACT:
    case ActionKind::RECV_GRAD: return "wait";
    case ActionKind::SEND_ACT:
    case ActionKind::SEND_GRAD: return "send";
    case ActionKind::ALLREDUCE_GRAD: return "reduce";
    case ActionKind::STEP:
    case ActionKind::AVERAGE: return "step";
  }
  return "other";
}

// Flow id of the message a SEND/RECV span carries; -1 for other spans.
int64_t flow_id(const TraceSpan& t, int pp, int m) {
  int sender = -1, grad = 0;
  switch (ActionKind(t.kind)) {
    case ActionKind::SEND_ACT: sender = t.stage; break;
    case ActionKind::RECV_ACT: sender = t.stage - 1; break;
    case ActionKind::SEND_GRAD: sender = t.stage, grad = 1; break;
    case ActionKind::RECV_GRAD: sender = t.stage + 1, grad = 1; break;
    default: return -1;
  }
  if (t.kind >= kSpanEval || t.kind == kSpanWaitSends) return -1;
  const int64_t dp = t.world_rank / pp, g = t.first_step * m + t.microbatch;
  return (((dp << 28) + g) << 13 | int64_t(sender) << 1 | grad);
}

std::string event(const char* ph, const std::string& name, const char* cat, int pid, double ts_us) {
  JsonWriter j;
  j.field("ph", ph).field("name", name).field("cat", cat).field("pid", pid).field("tid", 0).field("ts", ts_us);
  return j.str();
}

}  // namespace

std::string trace_json(const std::vector<TraceSpan>& spans, int world, int pp, int m) {
  std::string out = "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  for (int r = 0; r < world; ++r) {
    char meta[256];
    std::snprintf(meta, sizeof meta,
                  "{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":%d,\"tid\":0,\"args\":{\"name\":\"rank %d (pp %d, dp %d)\"}},\n"
                  "{\"ph\":\"M\",\"name\":\"process_sort_index\",\"pid\":%d,\"tid\":0,\"args\":{\"sort_index\":%d}},\n",
                  r, r, r % pp, r / pp, r, r);
    out += meta;
  }
  for (const TraceSpan& t : spans) {
    const bool between = t.kind == kSpanEval || t.kind == kSpanCheckpoint;  // between segments
    std::string name = span_name(t.kind);
    if (!between && t.microbatch >= 0) name += std::to_string(t.first_step * m + t.microbatch);
    if (t.stage >= 0) name.append(" s").append(std::to_string(t.stage));
    const double ts = 1e6 * t.start, dur = std::max(0.0, 1e6 * (t.end - t.start));
    JsonWriter x;
    x.field("ph", "X").field("name", name).field("cat", span_category(t.kind)).field("pid", t.world_rank)
        .field("tid", 0).field("ts", ts).field("dur", dur);
    JsonWriter args;
    // 1-based update of the span: from the micro-batch; a STEP/ALLREDUCE_GRAD or the send wait
    // counts to the segment's first update; evaluations and checkpoints to the step they follow.
    const int64_t step = between ? t.first_step : t.microbatch >= 0 ? t.first_step + t.microbatch / m + 1 : t.first_step + 1;
    args.field("step", step);
    if (t.device) args.field("clock", "device");  // a CUDA compute action: the GPU's interval
    x.raw("args", args.str());
    out += x.str() + ",\n";
    const int64_t id = flow_id(t, pp, m);
    if (id < 0) continue;
    const bool send = ActionKind(t.kind) == ActionKind::SEND_ACT || ActionKind(t.kind) == ActionKind::SEND_GRAD;
    const bool grad = ActionKind(t.kind) == ActionKind::SEND_GRAD || ActionKind(t.kind) == ActionKind::RECV_GRAD;
    std::string f = event(send ? "s" : "f", grad ? "grad" : "act", "flow", t.world_rank,
                          send ? ts : ts + 0.5 * dur);
    f.pop_back();
    f.append(",\"id\":").append(std::to_string(id)).append(send ? "}" : ",\"bp\":\"e\"}");
    out += f + ",\n";
  }
  if (out.size() >= 2 && out[out.size() - 2] == ',') out.erase(out.size() - 2, 1);
  return out + "]}\n";
}

}  // namespace pt
