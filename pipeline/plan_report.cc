// plan_report (see plan_report.h). Keeps every number it prints traceable to SimResult fields, so
// tests can check the text against the simulation.
#include "pipeline/plan_report.h"

#include <algorithm>
#include <cstdio>

namespace pt {

namespace {

std::string fixed(double x, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, x);
  return buf;
}

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
  for (int r = 0; r < s.num_ranks; ++r) {
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
  out += "== unit-time timeline (F=1, B=2, comm free) ==\n";
  GridOptions grid;
  grid.max_columns = in.max_grid_columns;
  grid.case_by_chunk = s.num_stages > s.num_ranks;
  out += format_timeline(s, unit, grid);
  out += "== prediction ==\n";
  out += "unit-time makespan: " + fixed(unit.makespan, 1) +
         "  bubble fraction: " + fixed(100.0 * unit.bubble_fraction, 2) + "%\n";
  out += "peak in-flight activations per rank (micro-batch x stage units):";
  for (int v : unit.peak_in_flight) {
    out += ' ';
    out += std::to_string(v);
  }
  out += "\n";
  if (s.num_stages > s.num_ranks) {
    out += "peak in-flight per stage:";
    for (int v : unit.peak_in_flight_stage) {
      out += ' ';
      out += std::to_string(v);
    }
    out += "\n";
  }
  if (in.cost_model != nullptr) {
    const SimResult& c = *in.cost_model;
    out += "cost model: predicted step time " + fixed(c.makespan, 6) + " " + in.cost_model_unit +
           "  bubble fraction: " + fixed(100.0 * c.bubble_fraction, 2) + "%\n";
    out += "cost model idle per rank (" + in.cost_model_unit + "):";
    for (double v : c.idle) {
      out += ' ';
      out += fixed(v, 6);
    }
    out += "\n";
  }
  return out;
}

}  // namespace pt
