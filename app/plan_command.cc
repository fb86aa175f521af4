#include "app/plan_command.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include "app/config.h"
#include "app/cost_shape.h"
#include "app/run_setup.h"
#include "app/schedule_builder.h"
#include "app/time_accounting.h"
#include "model/param_layout.h"
#include "model/precision.h"
#include "model/stage_model.h"
#include "pipeline/cost_file.h"
#include "pipeline/versions.h"
#include "pipeline/plan_report.h"
#include "pipeline/schedules/schedules.h"
#include "pipeline/simulate.h"
#include "pipeline/time_budget.h"
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

// What one `plan` run computes and prints.
struct Plan {
  Config c;
  std::string config_path, costs_path;
  bool async = false, measured = false, large = false;
  int64_t updates = 1;
  Schedule lowered;
  std::vector<std::pair<int, int>> ranges;
  CostFile cost_file;
  std::vector<size_t> params;
  CostModel costs;
  double act_bytes = 0;
  SimResult sim, unit_sim;
};

// Measured costs (seconds) when a cost file is given, else block-forward units.
Status load_plan_costs(Plan& p) {
  const int S = p.lowered.num_stages, L = chain_length(p.lowered);
  const std::vector<double> model_stage_cost = stage_costs(p.ranges, config_split_costs(p.c));
  std::vector<double> stage_cost(static_cast<size_t>(S));
  for (int v = 0; v < S; ++v) stage_cost[size_t(v)] = model_stage_cost[size_t(v % L)];
  p.act_bytes = double(p.c.training.micro_batch_size) * p.c.training.seq_len * p.c.model.n_embd * sizeof(float);
  if (!p.measured) {
    p.costs = default_costs(stage_cost);
    return Status::ok();
  }
  PT_RETURN_IF_ERROR(read_cost_file(p.costs_path, &p.cost_file));
  const Config& c = p.c;
  PT_RETURN_IF_ERROR(check_cost_shape(p.cost_file, p.costs_path, cost_shape_of(c), p.config_path));
  p.params = model_stage_params(c.model, p.ranges);
  p.costs = cost_model_from_file(p.cost_file, p.ranges, S, p.act_bytes, p.params);
  if (!p.async) p.costs.step = 0;  // a synchronous step is accounted after the flush (after_flush_seconds)
  return Status::ok();
}

// The schedule, its layer split, costs and simulations. Large plans (a 1024-rank pipeline
// has ~25M actions) skip what only a human can read: the unit-time grid and the per-action
// trace; their numbers come from one simulation without a timeline.
Status build_plan(Plan& p, const std::string& trace_path) {
  p.async = find_schedule(p.c.schedule.kind)->asynchronous;
  p.updates = p.async ? kPlanUpdates : 1;  // asynchronous kinds: one drained segment of a few updates
  PT_RETURN_IF_ERROR(build_lowered_schedule(p.c, p.updates, &p.lowered));
  PT_RETURN_IF_ERROR(split_layers_for_config(p.c, chain_length(p.lowered), &p.ranges));
  PT_RETURN_IF_ERROR(load_plan_costs(p));
  p.large = num_actions(p.lowered) > kMaxDetailedActions && trace_path.empty();
  SimOptions sim_options;
  sim_options.record_timeline = !p.large;
  PT_RETURN_IF_ERROR(simulate(p.lowered, CostModel::uniform(p.lowered.num_stages, 1, 1, 1), &p.unit_sim, sim_options));
  if (!p.large) PT_RETURN_IF_ERROR(simulate(p.lowered, p.costs, &p.sim));
  return Status::ok();
}

void print_report(const Plan& p) {
  PlanReportInputs in;
  in.resolved_config = dump_config(p.c);
  in.layer_ranges = p.ranges;
  // Measured costs are reported in ms (the report prints 3 decimals; seconds would show 0.002).
  SimResult sim_ms;
  if (p.measured) {
    sim_ms.makespan = 1e3 * p.sim.makespan;
    sim_ms.bubble_fraction = p.sim.bubble_fraction;
    for (double x : p.sim.idle) sim_ms.idle.push_back(1e3 * x);
    for (double x : p.sim.busy) sim_ms.busy.push_back(1e3 * x);
  }
  in.cost_model = p.large ? nullptr : p.measured ? &sim_ms : &p.sim;
  in.cost_model_unit = p.measured ? "ms" : "block-forward units";
  std::string report = plan_report(p.lowered, p.unit_sim, in);
  if (p.large)
    report += "(large plan: " + std::to_string(num_actions(p.lowered)) +
              " actions; one unit-time simulation without a timeline: grid, cost model and trace skipped; pass --trace "
              "to get them)\n";
  std::printf("%s", report.c_str());
}

void print_cost_source(const Plan& p) {
  const CostFile& f = p.cost_file;
  std::printf("== prediction from %s (%s: %s, %d rank(s) measured at once, %s) ==\n", p.costs_path.c_str(),
              f.backend.c_str(), f.device.c_str(), f.ranks, f.created.c_str());
  const int world = p.c.parallel.dp * p.lowered.num_ranks;
  if (f.ranks != world)
    std::printf("note: the costs were measured with %d rank(s) computing at once; this plan runs %d: re-run bench "
                "under mpirun -np %d if the ranks share cores or a GPU\n",
                f.ranks, world, world);
  if (world > 1 && f.p2p_bandwidth_bytes_per_s <= 0)
    std::printf("note: the cost file has no p2p measurement (bench ran on 1 rank): messages are treated as free\n");
  std::printf("stage costs (ms per micro-batch, F / Bx / Bw):");
  for (int v = 0; v < p.lowered.num_stages; ++v)
    std::printf("  s%d %.3f / %.3f / %.3f", v, 1e3 * p.costs.forward[size_t(v)], 1e3 * p.costs.backward_input[size_t(v)],
                1e3 * p.costs.backward_weight[size_t(v)]);
  std::printf("\nboundary message (B*T*C fp32 = %.0f bytes): %.2f us\n", p.act_bytes, 1e6 * p.costs.p2p_latency);
}

// The run's first drained segment (next_drain_step: evaluation, checkpoint, drain_every or
// the end), so fill and drain are amortized as in training; capped to keep planning fast
// (the per-update time converges with length).
Status print_async_prediction(const Plan& p, double tokens_per_update) {
  const int64_t run_updates = std::min<int64_t>(next_drain_step(p.c, 0), kMaxPredictedUpdates);
  SimResult seg_sim = p.sim;
  if (run_updates != p.updates) {
    Schedule segment;
    PT_RETURN_IF_ERROR(build_lowered_schedule(p.c, run_updates, &segment));
    PT_RETURN_IF_ERROR(simulate(segment, p.costs, &seg_sim, SimOptions{false}));
  }
  const double per_update = seg_sim.makespan / double(run_updates);
  std::printf("the run's first drained segment, %lld updates (fill and drain included, each STEP %.3f ms): "
              "%.3f ms  bubble fraction: %.2f%%\n",
              (long long)run_updates, 1e3 * p.costs.step, 1e3 * seg_sim.makespan, 100.0 * seg_sim.bubble_fraction);
  std::printf("predicted time per update: %.3f ms  (%.0f tokens/update -> %.0f tokens/s)\n", 1e3 * per_update,
              tokens_per_update, tokens_per_update / per_update);
  return Status::ok();
}

void print_sync_prediction(const Plan& p, double tokens_per_update) {
  const AfterFlush after = after_flush_seconds(p.c, p.lowered, p.cost_file, p.params);
  const double step = p.sim.makespan + after.reductions + after.optimizer;
  std::printf("pipeline (forwards, backwards, messages): %.3f ms  bubble fraction: %.2f%%\n", 1e3 * p.sim.makespan,
              100.0 * p.sim.bubble_fraction);
  std::printf("after the flush: reductions %.3f ms + optimizer %.3f ms (slowest rank)\n", 1e3 * after.reductions,
              1e3 * after.optimizer);
  std::printf("predicted step time: %.3f ms  (%.0f tokens/step -> %.0f tokens/s)\n", 1e3 * step, tokens_per_update,
              tokens_per_update / step);
}

// Backend memory of the stage models per pipeline rank, from their own layout
// (stage_memory) on runtime.backend (auto counts as cuda, the run this plans for):
// parameters + gradients, activations at the simulated peak in-flight micro-batches
// of each stage, and each model's workspaces. Optimizer state, boundary buffers and
// library workspaces are not included.
Status print_memory_estimate(const Plan& p) {
  const Config& c = p.c;
  Precision precision = Precision::kFp32;
  PT_RETURN_IF_ERROR(run_precision(c, &precision));
  const bool cpu = c.runtime.backend == "cpu";
  const BackendSizes sizes = cpu ? cpu_backend_sizes() : cuda_backend_sizes();
  const int S = p.lowered.num_stages, L = chain_length(p.lowered);
  const double mib = 1.0 / (1 << 20);
  std::printf("memory estimate (%s stage-model buffers, MiB; optimizer state and boundary buffers not included):\n",
              cpu ? "cpu" : "cuda");
  std::vector<double> rank_total(size_t(p.lowered.num_ranks), 0.0);
  for (int v = 0; v < S; ++v) {
    const int ms = v % L;
    const StageSpec spec{p.ranges[size_t(ms)].first, p.ranges[size_t(ms)].second, ms == 0, ms == L - 1};
    const StageNeeds needs = stage_needs(c, p.lowered, v);
    StageNeeds split = needs;
    split.split_backward = true;
    const int B = c.training.micro_batch_size, T = c.training.seq_len;
    const StageMemory m = stage_memory(c.model, spec, B, T, precision, needs, sizes);
    const StageMemory with_split = stage_memory(c.model, spec, B, T, precision, split, sizes);
    const int slots = p.unit_sim.peak_in_flight_stage[size_t(v)];
    const double total = 4.0 * (double(m.param_floats) + double(slots) * double(m.slot_floats) + m.workspace_floats);
    rank_total[size_t(p.lowered.stage_to_rank[size_t(v)])] += total;
    std::printf("  stage %d: params+grads %.3f + %d x %.3f activations per in-flight micro-batch (%s; %.3f with "
                "split backward) + workspace %.3f = %.3f\n",
                v, 4.0 * double(m.param_floats) * mib, slots, 4.0 * double(m.slot_floats) * mib,
                needs.split_backward ? "split backward" : "no split backward",
                4.0 * double(with_split.slot_floats) * mib, 4.0 * double(m.workspace_floats) * mib, total * mib);
  }
  for (size_t r = 0; r < rank_total.size(); ++r) std::printf("  rank %zu: %.3f\n", r, rank_total[r] * mib);
  return Status::ok();
}

// Trace time: 1 unit = 1 ms for the unit model; seconds -> microseconds for measured costs.
Status write_plan_trace(const Plan& p, const std::string& trace_path) {
  std::string trace = trace_path;
  if (trace.empty()) {
    const std::string dir = p.c.run.out_dir + "/" + p.c.run.name;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return Status::error(dir + ": cannot create: " + ec.message());
    trace = dir + "/plan_trace.json";
  }
  PT_RETURN_IF_ERROR(write_chrome_trace(trace, p.lowered, p.sim, p.measured ? 1e6 : 1000.0));
  std::printf("trace: %s (open in https://ui.perfetto.dev or chrome://tracing)\n", trace.c_str());
  return Status::ok();
}

// Simulated-time budget matching (pipeline/time_budget.h) at the costs of the run's sim_time
// (SimClock: unit costs or training.sim_costs), per chain stage. First a key=value line for the
// config's kind (scripts parse it), then a table over every registered kind with the config
// otherwise unchanged ("-" and the reason where that kind rejects it).
Status print_time_budget(const Plan& p, double budget) {
  SimClock clock;
  PT_RETURN_IF_ERROR(clock.init(p.c, p.lowered, p.ranges));
  CostModel costs = clock.costs();
  const size_t L = size_t(chain_length(p.lowered));
  for (auto* v : {&costs.forward, &costs.backward_input, &costs.backward_weight}) v->resize(L);
  std::printf("== time budget %g (sim_time unit: %s; one update = training.microbatches = %d micro-batches) ==\n",
              budget, clock.unit().c_str(), p.c.training.microbatches);
  BudgetFit fit;
  PT_RETURN_IF_ERROR(fit_time_budget(schedule_spec_for(p.c), costs, budget, &fit));
  std::printf("time budget fit: kind=%s updates=%lld microbatches=%lld length=%.10g next_length=%.10g\n",
              p.c.schedule.kind.c_str(), (long long)fit.updates, (long long)fit.microbatches, fit.length,
              fit.next_length);
  std::printf("| schedule.kind | updates | micro-batches | length | one more update |\n|---|---|---|---|---|\n");
  int count = 0;
  const char* const* kinds = schedule_kinds(&count);
  for (int k = 0; k < count; ++k) {
    ScheduleSpec spec = schedule_spec_for(p.c);
    spec.kind = kinds[k];
    const Status st = fit_time_budget(spec, costs, budget, &fit);
    if (!st.is_ok()) {
      std::printf("| %s | - | - | - | %s |\n", kinds[k], st.message().c_str());
      continue;
    }
    std::printf("| %s | %lld | %lld | %.10g | %.10g |\n", kinds[k], (long long)fit.updates, (long long)fit.microbatches,
                fit.length, fit.next_length);
  }
  return Status::ok();
}

}  // namespace

Status run_plan_command(const std::string& config_path, const std::vector<std::string>& overrides, int ranks_override,
                        const std::string& trace_path, const std::string& costs_path, double time_budget) {
  Plan p;
  p.config_path = config_path;
  p.costs_path = costs_path;
  p.measured = !costs_path.empty();
  std::vector<std::string> all = overrides;
  if (ranks_override > 0) all.push_back("parallel.pp=" + std::to_string(ranks_override));
  PT_RETURN_IF_ERROR(load_config(config_path, all, &p.c));
  const auto t0 = std::chrono::steady_clock::now();
  PT_RETURN_IF_ERROR(build_plan(p, trace_path));
  const double plan_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  print_report(p);
  PT_RETURN_IF_ERROR(print_memory_estimate(p));
  if (p.measured && !p.large) {
    print_cost_source(p);
    const Config& c = p.c;
    const double tokens_per_update =
        double(c.training.micro_batch_size) * c.training.seq_len * c.training.microbatches * c.parallel.dp;
    if (p.async) PT_RETURN_IF_ERROR(print_async_prediction(p, tokens_per_update));
    else print_sync_prediction(p, tokens_per_update);
  }
  if (p.async) PT_RETURN_IF_ERROR(print_async_versions(p.c, p.lowered));
  if (time_budget >= 0) PT_RETURN_IF_ERROR(print_time_budget(p, time_budget));
  std::printf("planned in %.3f s (%lld actions)\n", plan_s, (long long)num_actions(p.lowered));
  if (p.large) return Status::ok();
  return write_plan_trace(p, trace_path);
}

}  // namespace pt
