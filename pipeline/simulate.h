// Event simulation of a lowered schedule (PyTorch pipelining's _simulate_comms_compute, with time).
// Each rank runs its list in order; an action starts when the rank is free and its inputs exist:
//   F(s, mb)     needs its input: stage 0 none; RECV_ACT(s, mb) done on this rank, or F(s-1, mb)
//   when s-1 is
//                on the same rank;
//   B/Bx(s, mb)  needs F(s, mb) and the output gradient: last stage none (the loss is local);
//   RECV_GRAD(s, mb)
//                done, or B/Bx(s+1, mb) when s+1 is on the same rank;
//   Bw(s, mb)    needs Bx(s, mb);
//   SEND_*       non-blocking and free for the rank: posted once its producer is done, arrives
//   p2p_latency
//                later;
//   RECV_*       blocking: the rank waits until the matching SEND has arrived;
//   STEP         costs CostModel::step on its rank (AMDP's step slot), no dependency;
//   AVERAGE      costs CostModel::step too (it rewrites the parameters and the optimizer state);
//                local, no dependency: its replicas are all on its rank (validate.h);
//   ALLREDUCE_GRAD(v) over the replicas (group kGroupReplicas): a collective of the `pipelines`
//                replicas of v's model stage: the k-th such ALLREDUCE_GRAD of each replica forms
//                one collective, which starts when the last replica reaches it and costs
//                CostModel::allreduce (one pipeline: no wait). Over the data-parallel group only:
//                costs CostModel::allreduce_data, no wait (one dp replica is simulated).
// Stages exchange data only with their chain neighbours (Schedule::pipelines, action.h).
// These are the transport's semantics (non-blocking send, blocking receive), so a lowered schedule
// is executable iff simulate() returns ok. No progress with work left is a deadlock, reported with
// the rank x tick listing and the blocked tick marked. Busy time counts compute only; bubble
// fraction = idle / (ranks x makespan).
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "pipeline/action.h"

namespace pt {

// Per-stage costs in any time unit (units for the unit-time model, seconds for a calibrated one).
// A full B costs backward_input + backward_weight; Bx costs backward_input, Bw backward_weight.
struct CostModel {
  std::vector<double> forward;          // per stage
  std::vector<double> backward_input;   // per stage
  std::vector<double> backward_weight;  // per stage
  double p2p_latency = 0;               // send post -> arrival at the receiver
  double step = 0;       // one STEP or AVERAGE action (AMDP's timeline: 1 unit per step slot on a GPU)
  double allreduce = 0;  // one replica ALLREDUCE_GRAD collective, after its last member arrives
  double allreduce_data = 0;  // one data-parallel-only ALLREDUCE_GRAD

  // Unit-time default of algorithms.md: F = 1, B = 2 (Bx = 1, Bw = 1), free communication.
  static CostModel uniform(int num_stages, double forward = 1, double backward_input = 1,
                           double backward_weight = 1, double p2p_latency = 0);
};

struct SimEvent {
  double start = 0;
  double end = 0;
};

struct SimOptions {
  bool record_timeline = true;  // fill SimResult::timeline (16 bytes per action)
};

struct SimResult {
  double makespan = 0;
  std::vector<double> busy;    // per rank: compute time (F/B/Bx/Bw; not STEP/ALLREDUCE_GRAD)
  std::vector<double> idle;    // per rank: makespan - busy
  double bubble_fraction = 0;  // sum(idle) / (ranks x makespan)
  std::vector<int>
      peak_in_flight;  // per rank: max (mb, stage) pairs with F done and B (or Bw) not done
  std::vector<int> peak_in_flight_stage;  // per stage, same count restricted to the stage
  std::vector<std::vector<SimEvent>>
      timeline;  // per rank, parallel to the lowered lists (if recorded)
};

// `lowered` must be a lowered schedule (validate_lowered); the simulator re-checks what it relies
// on and reports a broken dependency as a deadlock instead of hanging.
Status simulate(const Schedule& lowered, const CostModel& costs, SimResult* result,
                const SimOptions& options = {});

// ASCII timeline in the style of algorithms.md: one row "GPU<r>|" per rank, one cell per `unit` of
// time, a compute action of k units printed k times ("B0B0"), idle cells " .". Letters: F, B (B or
// Bx), W (Bw). With case_by_chunk, even chunks (stage / num_ranks) print lower case and odd chunks
// upper case, as the doc's interleaved and BFPP timelines do. STEP/ALLREDUCE_GRAD actions with a
// nonzero duration print 'U' cells (the doc's "UU" step slot). Rows are cut at max_columns cells
// (with "...").
struct GridOptions {
  double unit = 1;
  bool case_by_chunk = false;
  int max_columns = 400;
};
std::string format_timeline(const Schedule& lowered, const SimResult& result,
                            const GridOptions& options = {});

// Chrome/Perfetto trace: {"traceEvents":[{"name":"F3
// s2","ph":"X","ts":..,"dur":..,"pid":0,"tid":rank}, ...]} with one complete event per compute
// action; ts/dur are time x us_per_unit (1e6 for a model in seconds).
std::string chrome_trace_json(const Schedule& lowered, const SimResult& result, double us_per_unit);
Status write_chrome_trace(const std::string& path, const Schedule& lowered, const SimResult& result,
                          double us_per_unit);

}  // namespace pt
