#include "app/time_accounting.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "app/cost_shape.h"
#include "common/check.h"
#include "common/json.h"
#include "model/param_layout.h"
#include "pipeline/cost_file.h"

namespace pt {

const char* time_kind_name(int k) {
  static const char* names[kNumTimeKinds] = {"forward_s", "backward_s", "backward_input_s", "backward_weight_s",
                                             "wait_s",    "send_s",     "reduce_s",         "step_s",
                                             "other_s",   "wall_s",     "eval_s",           "checkpoint_s",
                                             "accounting_s"};
  return names[k];
}

namespace {

int kind_of_span(uint8_t kind) {
  if (kind == kSpanWaitSends) return kTimeWait;
  switch (ActionKind(kind)) {
    case ActionKind::F: return kTimeForward;
    case ActionKind::B: return kTimeBackward;
    case ActionKind::Bx: return kTimeBackwardInput;
    case ActionKind::Bw: return kTimeBackwardWeight;
    case ActionKind::RECV_ACT:
    case ActionKind::RECV_GRAD: return kTimeWait;
    case ActionKind::SEND_ACT:
    case ActionKind::SEND_GRAD: return kTimeSend;
    case ActionKind::ALLREDUCE_GRAD: return kTimeReduce;
    case ActionKind::STEP:
    case ActionKind::AVERAGE: return kTimeStep;  // both rewrite the model state
  }
  return kTimeOther;
}

}  // namespace

std::string number_array(const std::vector<double>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%.6g", i ? "," : "", v[i]);
    out += buf;
  }
  return out + "]";
}

namespace {

// The union of the device spans' intervals, merged and sorted; each device span's share
// of it is added to its category (the part no earlier-starting device span covered:
// stages on two streams of one device may overlap).
std::vector<std::pair<double, double>> device_busy(const std::vector<ActionSpan>& spans, RankTimes* t) {
  std::vector<const ActionSpan*> dev;
  for (const ActionSpan& s : spans)
    if (s.device) dev.push_back(&s);
  std::sort(dev.begin(), dev.end(), [](const ActionSpan* a, const ActionSpan* b) { return a->start < b->start; });
  std::vector<std::pair<double, double>> merged;
  for (const ActionSpan* s : dev) {
    const double covered_to = merged.empty() ? s->start : std::max(s->start, merged.back().second);
    t->s[size_t(kind_of_span(s->kind))] += std::max(0.0, s->end - covered_to);
    if (!merged.empty() && s->start <= merged.back().second) merged.back().second = std::max(merged.back().second, s->end);
    else merged.push_back({s->start, s->end});
  }
  return merged;
}

// Length of [a, b] outside the sorted disjoint intervals `busy`.
double outside(double a, double b, const std::vector<std::pair<double, double>>& busy) {
  double len = std::max(0.0, b - a);
  for (const auto& [x, y] : busy) len -= std::max(0.0, std::min(b, y) - std::max(a, x));
  return std::max(0.0, len);
}

}  // namespace

RankTimes split_spans(const std::vector<ActionSpan>& spans, double wall) {
  RankTimes t;
  const std::vector<std::pair<double, double>> busy = device_busy(spans, &t);
  for (const ActionSpan& s : spans)
    if (!s.device) t.s[size_t(kind_of_span(s.kind))] += outside(s.start, s.end, busy);
  double sum = 0;
  for (int k = 0; k < kTimeOther; ++k) sum += t.s[size_t(k)];
  t.s[kTimeWall] = wall;
  t.s[kTimeOther] = std::max(0.0, wall - sum);
  return t;
}

std::string time_split_json(const std::vector<RankTimes>& per_rank, const std::vector<double>& planned_bubble) {
  JsonWriter j;
  for (int k = 0; k < kNumTimeKinds; ++k) {
    std::vector<double> v;
    bool any = false;
    for (const RankTimes& r : per_rank) {
      v.push_back(r.s[size_t(k)]);
      any = any || r.s[size_t(k)] != 0;
    }
    if (any || k <= kTimeWall) j.raw(time_kind_name(k), number_array(v));
  }
  std::vector<double> bubble;
  for (const RankTimes& r : per_rank) bubble.push_back(r.bubble());
  j.raw("bubble", number_array(bubble));
  if (!planned_bubble.empty()) j.raw("planned_bubble", number_array(planned_bubble));
  return j.str();
}

Status SimClock::init(const Config& c, const Schedule& lowered, const std::vector<std::pair<int, int>>& ranges) {
  const int S = lowered.num_stages, L = int(ranges.size());
  if (c.training.sim_costs.empty()) {
    // A rank's share of one pipeline chain costs F = 1: with v chain stages per rank
    // (interleaved, BFPP) each costs 1/v, so layouts of the same model compare.
    const double share = double(lowered.num_ranks) / double(L);
    costs_ = CostModel::uniform(S, share, share, share);
    return Status::ok();
  }
  const std::string& path = c.training.sim_costs;
  CostFile f;
  PT_RETURN_IF_ERROR(read_cost_file(path, &f).with_context(c.source_file + ": key 'training.sim_costs'"));
  PT_RETURN_IF_ERROR(check_cost_shape(f, path, cost_shape_of(c), c.source_file));
  const std::vector<size_t> params = model_stage_params(c.model, ranges);  // the optimizer's work of a STEP
  const double act_bytes = double(c.training.micro_batch_size) * c.training.seq_len * c.model.n_embd * sizeof(float);
  costs_ = cost_model_from_file(f, ranges, S, act_bytes, params);
  unit_ = "s";
  return Status::ok();
}

// Async: update k's time is when the last stage's F of its last micro-batch ends (as time_s).
const SimClock::Segment& SimClock::segment(const Schedule& lowered, bool asynchronous, int m) {
  auto it = cache_.find(&lowered);
  if (it != cache_.end()) return it->second;
  SimResult r;
  const Status st = simulate(lowered, costs_, &r);
  PT_CHECK_MSG(st.is_ok(), "simulating the list that ran failed: " + st.message());
  Segment seg;
  seg.makespan = r.makespan;
  const int updates = lowered.microbatches / m, chain = chain_length(lowered);
  seg.update_end.assign(size_t(updates), r.makespan);
  if (asynchronous) {
    for (int rank = 0; rank < lowered.num_ranks; ++rank)
      for (size_t i = 0; i < lowered.per_rank[size_t(rank)].size(); ++i) {
        const Action& a = lowered.per_rank[size_t(rank)][i];
        // The last stage of any pipeline (the micro-batch's own: AMDP, localsgd run several).
        if (a.kind != ActionKind::F || a.stage % chain != chain - 1 || a.microbatch % m != m - 1) continue;
        seg.update_end[size_t(a.microbatch / m)] = r.timeline[size_t(rank)][i].end;
      }
  }
  for (int rank = 0; rank < lowered.num_ranks; ++rank)
    seg.planned_bubble.push_back(r.makespan > 0 ? r.idle[size_t(rank)] / r.makespan : 0.0);
  return cache_.emplace(&lowered, std::move(seg)).first->second;
}

void StageCosts::add(const std::vector<ActionSpan>& spans, int num_stages) {
  sum.resize(size_t(num_stages) * 4, 0.0);
  count.resize(size_t(num_stages) * 4, 0.0);
  for (const ActionSpan& s : spans) {
    if (s.kind > uint8_t(ActionKind::Bw) || s.stage < 0) continue;  // F, B, Bx, Bw are 0..3
    sum[size_t(s.stage) * 4 + s.kind] += s.end - s.start;
    count[size_t(s.stage) * 4 + s.kind] += 1;
  }
}

bool StageCosts::cost_model(int num_stages, CostModel* out) const {
  if (sum.size() != size_t(num_stages) * 4) return false;
  *out = CostModel::uniform(num_stages, 0, 0, 0);
  auto mean = [&](int s, ActionKind k) {
    const size_t i = size_t(s) * 4 + size_t(k);
    return count[i] > 0 ? sum[i] / count[i] : -1.0;
  };
  for (int s = 0; s < num_stages; ++s) {
    const double f = mean(s, ActionKind::F), b = mean(s, ActionKind::B);
    double bx = mean(s, ActionKind::Bx), bw = mean(s, ActionKind::Bw);
    if (f < 0) return false;
    if (bx < 0 || bw < 0) {
      if (b < 0) return false;
      bx = bw = b / 2;
    }
    out->forward[size_t(s)] = f;
    out->backward_input[size_t(s)] = bx;
    out->backward_weight[size_t(s)] = bw;
  }
  return true;
}

bool json_number(const std::string& line, const std::string& key, double* out) {
  const std::string k = "\"" + key + "\":";
  const size_t at = line.find(k);
  if (at == std::string::npos) return false;
  const char* p = line.c_str() + at + k.size();
  if (std::strncmp(p, "NaN", 3) == 0 || std::strncmp(p, "nan", 3) == 0 || std::strncmp(p, "null", 4) == 0) {
    *out = NAN;
    return true;
  }
  char* end = nullptr;
  *out = std::strtod(p, &end);
  return end != p;
}

std::vector<TargetCrossing> target_crossings(const std::string& metrics_path, const std::vector<double>& targets) {
  std::vector<TargetCrossing> out;
  for (double t : targets) out.push_back(TargetCrossing{t});
  std::ifstream in(metrics_path);
  std::string line;
  while (std::getline(in, line)) {
    double v = NAN, step = 0, tokens = 0, time_s = 0, sim = NAN;
    if (!json_number(line, "val_loss", &v) || !std::isfinite(v)) continue;
    json_number(line, "step", &step);
    json_number(line, "tokens", &tokens);
    json_number(line, "time_s", &time_s);
    json_number(line, "sim_time", &sim);
    for (TargetCrossing& t : out) {
      if (t.reached || v > t.target) continue;
      t.reached = true;
      t.step = int64_t(step);
      t.tokens = int64_t(tokens);
      t.time_s = time_s;
      t.sim_time = sim;
      t.val_loss = v;
    }
  }
  return out;
}

std::string target_crossings_json(const std::vector<TargetCrossing>& ts) {
  std::string out = "[";
  for (size_t i = 0; i < ts.size(); ++i) {
    const TargetCrossing& t = ts[i];
    JsonWriter j;
    j.field("target_val_loss", t.target).field("reached", t.reached);
    if (t.reached)
      j.field("step", t.step).field("tokens", t.tokens).field("time_s", t.time_s).field("sim_time", t.sim_time)
          .field("val_loss", t.val_loss);
    out.append(i ? "," : "").append(j.str());
  }
  return out + "]";
}

}  // namespace pt
