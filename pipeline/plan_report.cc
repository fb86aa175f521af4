// plan_report (see plan_report.h). Keeps every number it prints traceable to SimResult fields, so
// tests can check the text against the simulation.
#include "pipeline/plan_report.h"

#include <algorithm>
#include <cstdio>
#include <type_traits>

namespace pt {

namespace {

std::string fixed(double x, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, x);
  return buf;
}

// A per-rank series: all values up to 32 ranks, else the first 16, the last 4 and
// the min/max, so a 1024-rank plan stays readable.
template <class T> std::string series(const std::vector<T>& v, int digits) {
  auto one = [&](T x) { return std::is_integral_v<T> ? std::to_string(x) : fixed(double(x), digits); };
  std::string out;
  if (v.size() <= 32) {
    for (T x : v) out += " " + one(x);
    return out;
  }
  for (size_t i = 0; i < 16; ++i) out += " " + one(v[i]);
  out += " ...";
  for (size_t i = v.size() - 4; i < v.size(); ++i) out += " " + one(v[i]);
  auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  out += "  (min " + one(*lo) + ", max " + one(*hi) + ")";
  return out;
}

constexpr int kMaxListedRanks = 16;

}  // namespace

std::string plan_report(const Schedule& s, const SimResult& unit, const PlanReportInputs& in) {
  std::string out;
  if (!in.resolved_config.empty()) {
    out += "== resolved config ==\n" + in.resolved_config;
    if (out.back() != '\n') out += '\n';
  }
  out += "== schedule ==\n";
  out += "kind: " + s.name + "  ranks: " + std::to_string(s.num_ranks) +
         "  stages: " + std::to_string(s.num_stages) +
         "  micro-batches: " + std::to_string(s.microbatches) +
         "  actions: " + std::to_string(num_actions(s)) + "\n";
  out += "stage -> rank:";
  for (int st = 0; st < s.num_stages && st < 64; ++st) {
    out += ' ';
    out += std::to_string(s.stage_to_rank[st]);
  }
  if (s.num_stages > 64) out += " ...";
  out += "\n";
  if (!in.layer_ranges.empty()) {
    out += "== layer split ==\n";
    for (size_t st = 0; st < in.layer_ranges.size(); ++st) {
      const auto& [l0, l1] = in.layer_ranges[st];
      out +=
          "stage " + std::to_string(st) + " (rank " +
          (st < s.stage_to_rank.size() ? std::to_string(s.stage_to_rank[st]) : std::string("?")) +
          "): layers " + std::to_string(l0) + ".." + std::to_string(l1 - 1) +
          (st == 0 ? " + embedding" : "") +
          (st + 1 == in.layer_ranges.size() ? " + head/loss" : "") + "\n";
    }
  }
  out += "== actions per rank (lowered, in order) ==\n";
  for (int r = 0; r < s.num_ranks && r < kMaxListedRanks; ++r) {
    const auto& list = s.per_rank[r];
    out += "rank " + std::to_string(r) + ":";
    const size_t shown = std::min(list.size(), size_t(std::max(in.max_actions_per_rank, 0)));
    for (size_t t = 0; t < shown; ++t) {
      out += ' ';
      out += format_action(list[t]);
    }
    if (shown < list.size()) out += " ... (" + std::to_string(list.size() - shown) + " more)";
    out += "\n";
  }
  if (s.num_ranks > kMaxListedRanks) out += "... (" + std::to_string(s.num_ranks - kMaxListedRanks) + " more ranks)\n";
  if (!unit.timeline.empty()) {
    out += "== unit-time timeline (F=1, B=2, comm free) ==\n";
    GridOptions grid;
    grid.max_columns = in.max_grid_columns;
    grid.case_by_chunk = s.num_stages > s.num_ranks;
    out += format_timeline(s, unit, grid);
  }
  out += "== prediction ==\n";
  out += "unit-time makespan: " + fixed(unit.makespan, 1) +
         "  bubble fraction: " + fixed(100.0 * unit.bubble_fraction, 2) + "%\n";
  out += "peak in-flight activations per rank (micro-batch x stage units):" + series(unit.peak_in_flight, 0) + "\n";
  if (s.num_stages > s.num_ranks) out += "peak in-flight per stage:" + series(unit.peak_in_flight_stage, 0) + "\n";
  if (in.cost_model != nullptr) {
    const SimResult& c = *in.cost_model;
    out += "cost model: predicted step time " + fixed(c.makespan, 3) + " " + in.cost_model_unit +
           "  bubble fraction: " + fixed(100.0 * c.bubble_fraction, 2) + "%\n";
    out += "cost model idle per rank (" + in.cost_model_unit + "):" + series(c.idle, 3) + "\n";
  }
  return out;
}

}  // namespace pt
