#include "app/plan_command.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include "app/config.h"
#include "app/schedule_builder.h"
#include "model/param_layout.h"
#include "pipeline/cost_file.h"
#include "pipeline/versions.h"
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
constexpr int64_t kMaxPredictedUpdates = 512;  // longest segment simulated for a measured prediction

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

// Parameters of each model stage (the tied head copy included: the optimizer updates it).
std::vector<size_t> model_stage_params(const Config& c, const std::vector<std::pair<int, int>>& ranges) {
  const int L = int(ranges.size());
  std::vector<size_t> out(L, 0);
  for (int s = 0; s < L; ++s)
    for (const auto& t : stage_tensors(c.model, StageSpec{ranges[s].first, ranges[s].second, s == 0, s == L - 1}))
      out[s] += t.numel;
  return out;
}

// What a synchronous step does after its flush, in the trainer's order, in seconds: the
// data-parallel gradient all-reduce (ring: 2(dp-1) messages of 1/dp of the rank's
// gradients), the tied-embedding exchange between the first and last stage's ranks
// (one V·C message), the global-norm, loss and stop collectives (5 of them, each
// ceil(log2 ranks) latency-bound rounds), then every rank's optimizer over its stages
// (the global norm is needed before any update, so the slowest rank sets the step).
struct AfterFlush {
  double reductions = 0;
  double optimizer = 0;
};
AfterFlush after_flush_seconds(const Config& c, const Schedule& lowered, const CostFile& f,
                               const std::vector<size_t>& params) {
  const int L = int(params.size());
  std::vector<double> rank_params(lowered.num_ranks, 0.0);
  for (int v = 0; v < lowered.num_stages; ++v) rank_params[lowered.stage_to_rank[v]] += double(params[v % L]);
  const double most = *std::max_element(rank_params.begin(), rank_params.end());
  AfterFlush a;
  a.optimizer = most * f.optimizer_seconds_per_param;
  const int dp = c.parallel.dp, world = c.parallel.dp * lowered.num_ranks;
  if (dp > 1) a.reductions += 2.0 * (dp - 1) * p2p_seconds(f, most * sizeof(float) / dp);
  if (c.model.tie_embeddings && lowered.stage_to_rank[0] != lowered.stage_to_rank[L - 1])
    a.reductions += p2p_seconds(f, double(c.model.vocab_size) * c.model.n_embd * sizeof(float));
  a.reductions += 5.0 * std::ceil(std::log2(double(world))) * f.p2p_latency_s;
  return a;
}

}  // namespace

Status run_plan_command(const std::string& config_path, const std::vector<std::string>& overrides, int ranks_override,
                        const std::string& trace_path, const std::string& costs_path) {
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
  // Measured costs (seconds) when a cost file is given, else block-forward units.
  const bool measured = !costs_path.empty();
  CostFile cost_file;
  std::vector<size_t> params;
  CostModel costs;
  const double act_bytes = double(c.training.micro_batch_size) * c.training.seq_len * c.model.n_embd * sizeof(float);
  if (measured) {
    PT_RETURN_IF_ERROR(read_cost_file(costs_path, &cost_file));
    PT_RETURN_IF_ERROR(check_cost_shape(cost_file, costs_path,
                                        CostShape{c.model.n_layer, c.model.n_embd, c.model.n_head, c.model.vocab_size,
                                                  c.training.micro_batch_size, c.training.seq_len},
                                        config_path));
    params = model_stage_params(c, ranges);
    costs = cost_model_from_file(cost_file, ranges, S, act_bytes, params);
    if (!async) costs.step = 0;  // a synchronous step is accounted after the flush (after_flush_seconds)
  } else {
    costs = default_costs(stage_cost);
  }
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
  // Measured costs are reported in ms (the report prints 3 decimals; seconds would show 0.002).
  SimResult sim_ms;
  if (measured) {
    sim_ms.makespan = 1e3 * sim.makespan;
    sim_ms.bubble_fraction = sim.bubble_fraction;
    for (double x : sim.idle) sim_ms.idle.push_back(1e3 * x);
    for (double x : sim.busy) sim_ms.busy.push_back(1e3 * x);
  }
  in.cost_model = large ? nullptr : measured ? &sim_ms : &sim;
  in.cost_model_unit = measured ? "ms" : "block-forward units";
  std::string report = plan_report(lowered, unit_sim, in);
  if (large) {
    report += "(large plan: " + std::to_string(num_actions(lowered)) +
              " actions; one unit-time simulation without a timeline: grid, cost model and trace skipped; pass --trace "
              "to get them)\n";
  }
  std::printf("%s", report.c_str());
  if (measured && !large) {
    std::printf("== prediction from %s (%s: %s, %d rank(s) measured at once, %s) ==\n", costs_path.c_str(),
                cost_file.backend.c_str(), cost_file.device.c_str(), cost_file.ranks, cost_file.created.c_str());
    const int world = c.parallel.dp * lowered.num_ranks;
    if (cost_file.ranks != world)
      std::printf("note: the costs were measured with %d rank(s) computing at once; this plan runs %d: re-run bench "
                  "under mpirun -np %d if the ranks share cores or a GPU\n",
                  cost_file.ranks, world, world);
    if (world > 1 && cost_file.p2p_bandwidth_bytes_per_s <= 0)
      std::printf("note: the cost file has no p2p measurement (bench ran on 1 rank): messages are treated as free\n");
    std::printf("stage costs (ms per micro-batch, F / Bx / Bw):");
    for (int v = 0; v < S; ++v)
      std::printf("  s%d %.3f / %.3f / %.3f", v, 1e3 * costs.forward[v], 1e3 * costs.backward_input[v],
                  1e3 * costs.backward_weight[v]);
    std::printf("\nboundary message (B*T*C fp32 = %.0f bytes): %.2f us\n", act_bytes, 1e6 * costs.p2p_latency);
    const double tokens_per_update =
        double(c.training.micro_batch_size) * c.training.seq_len * c.training.microbatches * c.parallel.dp;
    if (async) {
      // The run's first drained segment (next_drain_step: evaluation, checkpoint,
      // drain_every or the end), so fill and drain are amortized as in training;
      // capped to keep planning fast (the per-update time converges with length).
      const int64_t run_updates = std::min<int64_t>(next_drain_step(c, 0), kMaxPredictedUpdates);
      SimResult seg_sim = sim;
      if (run_updates != updates) {
        Schedule segment;
        PT_RETURN_IF_ERROR(build_lowered_schedule(c, run_updates, &segment));
        PT_RETURN_IF_ERROR(simulate(segment, costs, &seg_sim, SimOptions{false}));
      }
      const double per_update = seg_sim.makespan / double(run_updates);
      std::printf("the run's first drained segment, %lld updates (fill and drain included, each STEP %.3f ms): "
                  "%.3f ms  bubble fraction: %.2f%%\n",
                  (long long)run_updates, 1e3 * costs.step, 1e3 * seg_sim.makespan, 100.0 * seg_sim.bubble_fraction);
      std::printf("predicted time per update: %.3f ms  (%.0f tokens/update -> %.0f tokens/s)\n", 1e3 * per_update,
                  tokens_per_update, tokens_per_update / per_update);
    } else {
      const AfterFlush after = after_flush_seconds(c, lowered, cost_file, params);
      const double step = sim.makespan + after.reductions + after.optimizer;
      std::printf("pipeline (forwards, backwards, messages): %.3f ms  bubble fraction: %.2f%%\n", 1e3 * sim.makespan,
                  100.0 * sim.bubble_fraction);
      std::printf("after the flush: reductions %.3f ms + optimizer %.3f ms (slowest rank)\n", 1e3 * after.reductions,
                  1e3 * after.optimizer);
      std::printf("predicted step time: %.3f ms  (%.0f tokens/step -> %.0f tokens/s)\n", 1e3 * step,
                  tokens_per_update, tokens_per_update / step);
    }
  }
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
  // Trace time: 1 unit = 1 ms for the unit model; seconds -> microseconds for measured costs.
  PT_RETURN_IF_ERROR(write_chrome_trace(trace, lowered, sim, measured ? 1e6 : 1000.0));
  std::printf("trace: %s (open in https://ui.perfetto.dev or chrome://tracing)\n", trace.c_str());
  return Status::ok();
}

}  // namespace pt
