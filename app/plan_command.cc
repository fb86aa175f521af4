#include "app/plan_command.h"

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "app/config.h"
#include "app/schedule_builder.h"
#include "pipeline/versions.h"
#include <map>
#include "pipeline/plan_report.h"
#include "pipeline/schedules/schedules.h"
#include "pipeline/simulate.h"
#include "pipeline/topology.h"
#include "pipeline/validate.h"

namespace pt {
namespace {

// Default cost model, in units of one transformer block's forward: a stage costs
// its blocks, plus the LM head on the last stage (head_cost_in_layers: 2·B·T·C·V
// FLOPs against ~24·B·T·C² for a block). Backward-for-input and backward-for-weights
// each cost as much as the forward (B = 2F overall).
constexpr int64_t kMaxDetailedActions = 2'000'000;
constexpr int64_t kPlanUpdates = 4;  // updates per planned asynchronous segment

// Versions of every (micro-batch, stage) of the planned segment, their per-stage
// summary, and the steady-state idle time per update: the idle that one more
// update adds, (idle(2n) - idle(n)) / n with unit costs, so warm-up and drain
// (paid once per segment) cancel out.
Status print_async_versions(const Config& c, const Schedule& lowered) {
  const int S = lowered.num_stages;
  const int m = c.training.microbatches;
  std::vector<VersionRecord> rec = versions_from_schedule(lowered);
  std::printf("== weight versions (planned segment of %lld updates; F = version read by the forward, B = by the backward,"
              " A = version the gradient is applied to) ==\n", (long long)kPlanUpdates);
  std::map<std::pair<int, int>, VersionRecord> by;
  for (const auto& r : rec) by[{r.microbatch, r.stage}] = r;
  const int show = std::min(lowered.microbatches, 4 * m);
  for (int g = 0; g < show; ++g) {
    std::printf("mb %3d:", g);
    for (int s = 0; s < S; ++s) {
      auto it = by.find({g, s});
      if (it == by.end()) continue;
      const VersionRecord& r = it->second;
      std::printf("  s%d F%d B%d A%d", s, r.forward, r.backward, r.applied);
    }
    std::printf("\n");
  }
  if (show < lowered.microbatches) std::printf("... (%d more micro-batches)\n", lowered.microbatches - show);
  std::printf("stage | max drift | mean drift | drifted | max delay | mean delay\n");
  for (const auto& sum : summarize_versions(rec, S))
    std::printf("%5d | %9d | %10.3f | %7d | %9d | %10.3f\n", sum.stage, sum.max_drift, sum.mean_drift, sum.drifted,
                sum.max_delay, sum.mean_delay);
  Schedule longer;
  PT_RETURN_IF_ERROR(build_lowered_schedule(c, 2 * kPlanUpdates, &longer));
  SimResult a, b;
  PT_RETURN_IF_ERROR(simulate(lowered, CostModel::uniform(S, 1, 1, 1), &a));
  PT_RETURN_IF_ERROR(simulate(longer, CostModel::uniform(S, 1, 1, 1), &b));
  std::printf("steady-state idle per update per rank (unit costs F=1, B=2):");
  for (int r = 0; r < lowered.num_ranks; ++r) std::printf(" %.2f", (b.idle[r] - a.idle[r]) / double(kPlanUpdates));
  std::printf("\n");
  return Status::ok();
}

CostModel default_costs(const std::vector<double>& stage_cost) {
  const int S = int(stage_cost.size());
  CostModel cm = CostModel::uniform(S);
  for (int s = 0; s < S; ++s) cm.forward[s] = cm.backward_input[s] = cm.backward_weight[s] = stage_cost[s];
  return cm;
}

}  // namespace

Status run_plan_command(const std::string& config_path, const std::vector<std::string>& overrides, int ranks_override,
                        const std::string& trace_path) {
  Config c;
  std::vector<std::string> all = overrides;
  if (ranks_override > 0) all.push_back("parallel.pp=" + std::to_string(ranks_override));
  PT_RETURN_IF_ERROR(load_config(config_path, all, &c));

  const auto t0 = std::chrono::steady_clock::now();
  // Asynchronous kinds: plan one drained segment of a few updates.
  const bool async = is_async_kind(c.schedule.kind);
  const int64_t updates = async ? kPlanUpdates : 1;
  Schedule lowered;
  PT_RETURN_IF_ERROR(build_lowered_schedule(c, updates, &lowered));
  const int S = lowered.num_stages;
  const int L = chain_length(lowered);
  std::vector<std::pair<int, int>> ranges;
  PT_RETURN_IF_ERROR(split_layers_for_config(c, L, &ranges));
  std::vector<double> model_stage_cost = stage_costs(ranges, config_split_costs(c)), stage_cost(S);
  for (int v = 0; v < S; ++v) stage_cost[v] = model_stage_cost[v % L];
  const CostModel costs = default_costs(stage_cost);
  // Large plans (a 1024-rank pipeline has ~25M actions) skip what only a human can
  // read: the unit-time grid and the per-action trace. Their numbers come from one
  // simulation without a timeline.
  const bool large = num_actions(lowered) > kMaxDetailedActions && trace_path.empty();
  SimOptions sim_options;
  sim_options.record_timeline = !large;
  SimResult sim, unit_sim;
  PT_RETURN_IF_ERROR(simulate(lowered, CostModel::uniform(S, 1, 1, 1), &unit_sim, sim_options));
  if (!large) PT_RETURN_IF_ERROR(simulate(lowered, costs, &sim));
  const double plan_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  PlanReportInputs in;
  in.resolved_config = dump_config(c);
  in.layer_ranges = ranges;
  in.cost_model = large ? nullptr : &sim;
  in.cost_model_unit = "block-forward units";
  std::string report = plan_report(lowered, unit_sim, in);
  if (large) {
    report += "(large plan: " + std::to_string(num_actions(lowered)) +
              " actions; one unit-time simulation without a timeline: grid, cost model and trace skipped; pass --trace "
              "to get them)\n";
  }
  std::printf("%s", report.c_str());
  if (async) PT_RETURN_IF_ERROR(print_async_versions(c, lowered));
  std::printf("planned in %.3f s (%lld actions)\n", plan_s, (long long)num_actions(lowered));

  if (large) return Status::ok();
  std::string trace = trace_path;
  if (trace.empty()) {
    const std::string dir = c.run.out_dir + "/" + c.run.name;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return Status::error(dir + ": cannot create: " + ec.message());
    trace = dir + "/plan_trace.json";
  }
  PT_RETURN_IF_ERROR(write_chrome_trace(trace, lowered, sim, 1000.0));
  std::printf("trace: %s (open in https://ui.perfetto.dev or chrome://tracing)\n", trace.c_str());
  return Status::ok();
}

}  // namespace pt
