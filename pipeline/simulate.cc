// Event simulation, ASCII timeline and Chrome trace of a lowered schedule (semantics in
// simulate.h). Each rank advances through its list until it must wait for a message; a posted send
// re-queues its waiting receiver, so the work is linear in the number of actions and the result
// does not depend on the order in which ranks are visited (start times are max() of dependency
// times). Per-(stage, mb) state lives in flat arrays keyed stage * microbatches + mb; -1 means "not
// happened yet".
#include "pipeline/simulate.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <unordered_map>

#include "pipeline/prefault.h"

namespace pt {

CostModel CostModel::uniform(int num_stages, double forward, double backward_input,
                             double backward_weight, double p2p_latency) {
  CostModel c;
  c.forward.assign(size_t(num_stages), forward);
  c.backward_input.assign(size_t(num_stages), backward_input);
  c.backward_weight.assign(size_t(num_stages), backward_weight);
  c.p2p_latency = p2p_latency;
  return c;
}

namespace {

constexpr double kNotYet = -1;

// What a rank stopped on.
enum class Block { kNone, kMessage, kLocal, kCollective };

// One ALLREDUCE_GRAD collective: the k-th reduction of one model stage over its replicas.
struct Collective {
  int arrived = 0;
  double ready = 0;        // latest arrival
  std::vector<int> ranks;  // members that arrived (re-queued when the last one comes)
};

struct RankState {
  size_t pc = 0;
  double clock = 0;
  int in_flight = 0;
  bool queued = false;
  Block block = Block::kNone;
  bool joined = false;  // registered at the collective it is blocked on
};

std::string block_reason(const Schedule& s, const Action& a, Block why) {
  std::string what = format_action(a);
  if (why == Block::kCollective) {
    return what + " waits for a replica that never reaches the matching ALLREDUCE_GRAD";
  }
  if (why == Block::kMessage) {
    return what + " waits for a message that is never sent (missing or misordered SEND on rank " +
           std::to_string(a.peer_rank) + ")";
  }
  switch (a.kind) {
    case ActionKind::F:
      return what + " has no input: no RECV_ACT/F of the previous stage ran before it";
    case ActionKind::B:
    case ActionKind::Bx:
      return what + " lacks its forward or its output gradient (RECV_GRAD or next-stage backward)";
    case ActionKind::Bw:
      return what + " runs before its Bx";
    default:
      return what + " runs before the compute that produces its data";
  }
}

}  // namespace

Status simulate(const Schedule& s, const CostModel& costs, SimResult* result,
                const SimOptions& options) {
  const int n = s.num_ranks;
  const int num_stages = s.num_stages;
  const int m = s.microbatches;
  if (n < 1 || int(s.per_rank.size()) != n || int(s.stage_to_rank.size()) != num_stages || m < 1) {
    return Status::error("simulate: malformed schedule shape (ranks/stages/microbatches)");
  }
  if (int(costs.forward.size()) != num_stages || int(costs.backward_input.size()) != num_stages ||
      int(costs.backward_weight.size()) != num_stages) {
    return Status::error("simulate: the cost model has " + std::to_string(costs.forward.size()) +
                         " stages, the schedule " + std::to_string(num_stages));
  }
  const auto& owner = s.stage_to_rank;
  const int len = chain_length(s);  // chain neighbours stay inside one pipeline
  if (len < 1 || num_stages % len != 0) {
    return Status::error("simulate: model_stages does not divide num_stages");
  }
  const size_t keys = size_t(num_stages) * size_t(m);
  // ALLREDUCE_GRAD collectives, keyed (model stage, occurrence); occurrences counted per stage.
  std::unordered_map<int64_t, Collective> collectives;
  std::vector<int> reductions_done(size_t(num_stages), 0);
  // A dependency on the same rank was met earlier in that rank's list, so it ended before the
  // rank's clock: per key only "has it happened" bits are needed, and times only for messages
  // (arrival, keyed by the SENDING stage). 17 bytes per (stage, mb) keeps S=1024 x m=4096 at ~70
  // MB.
  constexpr uint8_t kFDone = 1, kBackDone = 2, kActIn = 4, kGradIn = 8;
  std::vector<uint8_t> flags;
  std::vector<double> msg_act, msg_grad;
  assign_prefaulted(&flags, keys, uint8_t(0));
  assign_prefaulted(&msg_act, keys, kNotYet);
  assign_prefaulted(&msg_grad, keys, kNotYet);

  SimResult res;
  res.busy.assign(size_t(n), 0);
  res.peak_in_flight.assign(size_t(n), 0);
  res.peak_in_flight_stage.assign(size_t(num_stages), 0);
  std::vector<int> stage_in_flight(static_cast<size_t>(num_stages), 0);
  // partial_backward lists (action.h): the activation of a forward-only F or a Bx without Bw is
  // freed by that action itself, as the executor does.
  constexpr uint8_t kHasBack = 1, kHasBw = 2;
  std::vector<uint8_t> frees_late;
  if (s.partial_backward) {
    frees_late.assign(keys, 0);
    for (const auto& list : s.per_rank)
      for (const Action& a : list) {
        const size_t k = size_t(a.stage) * size_t(m) + size_t(a.microbatch);
        if (a.kind == ActionKind::B || a.kind == ActionKind::Bx) frees_late[k] |= kHasBack;
        if (a.kind == ActionKind::Bw) frees_late[k] |= kHasBw;
      }
  }
  auto release = [&](int stg, RankState& st) {
    stage_in_flight[size_t(stg)]--;
    st.in_flight--;
  };
  if (options.record_timeline) {
    res.timeline.resize(size_t(n));
    for (int r = 0; r < n; ++r)
      assign_prefaulted(&res.timeline[r], s.per_rank[r].size(), SimEvent{});
  }

  std::vector<RankState> ranks(static_cast<size_t>(n));
  std::vector<int> work;
  work.reserve(size_t(n));
  for (int r = n - 1; r >= 0; --r) {
    work.push_back(r);
    ranks[r].queued = true;
  }
  auto wake = [&](int peer) {
    if (peer >= 0 && peer < n && !ranks[peer].queued && ranks[peer].block == Block::kMessage) {
      ranks[peer].queued = true;
      work.push_back(peer);
    }
  };
  auto wake_collective = [&](int peer) {
    if (!ranks[peer].queued && ranks[peer].block == Block::kCollective) {
      ranks[peer].queued = true;
      work.push_back(peer);
    }
  };

  while (!work.empty()) {
    const int r = work.back();
    work.pop_back();
    RankState& st = ranks[r];
    st.queued = false;
    st.block = Block::kNone;
    const auto& list = s.per_rank[r];
    SimEvent* events = options.record_timeline ? res.timeline[r].data() : nullptr;
    while (st.pc < list.size()) {
      const Action& a = list[st.pc];
      const bool needs_mb = !is_state_action(a.kind);
      if (a.stage < 0 || a.stage >= num_stages ||
          (needs_mb && (a.microbatch < 0 || a.microbatch >= m))) {
        return Status::error("simulate: " + format_action(a) + " out of range\n" +
                             format_schedule(s, r, int(st.pc)));
      }
      const size_t key = size_t(a.stage) * size_t(m) + size_t(std::max(a.microbatch, 0));
      const int stg = a.stage;
      const double start = st.clock;
      double end = st.clock;
      bool ready = true;
      switch (a.kind) {
        case ActionKind::F: {
          if (chain_prev(stg, len) >= 0) {
            ready = owner[stg - 1] == r ? (flags[key - size_t(m)] & kFDone) : (flags[key] & kActIn);
          }
          if (!ready) break;
          end = start + costs.forward[stg];
          flags[key] |= kFDone;
          res.busy[r] += end - start;
          stage_in_flight[stg]++;
          res.peak_in_flight_stage[stg] =
              std::max(res.peak_in_flight_stage[stg], stage_in_flight[stg]);
          res.peak_in_flight[r] = std::max(res.peak_in_flight[r], ++st.in_flight);
          if (!frees_late.empty() && !(frees_late[key] & kHasBack)) release(stg, st);  // forward only
          break;
        }
        case ActionKind::B:
        case ActionKind::Bx: {
          ready = flags[key] & kFDone;
          if (chain_next(stg, len) >= 0) {
            ready = ready && (owner[stg + 1] == r ? (flags[key + size_t(m)] & kBackDone)
                                                  : (flags[key] & kGradIn));
          }
          if (!ready) break;
          end = start + (a.kind == ActionKind::B
                             ? costs.backward_input[stg] + costs.backward_weight[stg]
                             : costs.backward_input[stg]);
          flags[key] |= kBackDone;
          res.busy[r] += end - start;
          if (a.kind == ActionKind::B || (!frees_late.empty() && !(frees_late[key] & kHasBw))) release(stg, st);
          break;
        }
        case ActionKind::Bw: {
          ready = flags[key] & kBackDone;
          if (!ready) break;
          end = start + costs.backward_weight[stg];
          res.busy[r] += end - start;
          release(stg, st);
          break;
        }
        case ActionKind::SEND_ACT:
        case ActionKind::SEND_GRAD: {
          const bool act = a.kind == ActionKind::SEND_ACT;
          const int to_stage = act ? chain_next(stg, len) : chain_prev(stg, len);
          ready =
              (flags[key] & (act ? kFDone : kBackDone)) && to_stage >= 0 && to_stage < num_stages;
          if (!ready) break;
          (act ? msg_act : msg_grad)[key] = start + costs.p2p_latency;
          wake(owner[to_stage]);
          break;
        }
        case ActionKind::RECV_ACT:
        case ActionKind::RECV_GRAD: {
          const bool act = a.kind == ActionKind::RECV_ACT;
          const int from_stage = act ? chain_prev(stg, len) : chain_next(stg, len);
          const double arrival =
              from_stage < 0 || from_stage >= num_stages
                  ? kNotYet
                  : (act ? msg_act
                         : msg_grad)[size_t(from_stage) * size_t(m) + size_t(a.microbatch)];
          if (arrival < 0) {
            st.block = Block::kMessage;
            break;
          }
          end = std::max(st.clock, arrival);
          flags[key] |= act ? kActIn : kGradIn;
          break;
        }
        case ActionKind::STEP:
        case ActionKind::AVERAGE:  // local: every replica is on this rank, none in flight (validate.h)
          end = start + costs.step;
          break;
        case ActionKind::ALLREDUCE_GRAD: {
          if (!(a.group & kGroupReplicas)) {  // data-parallel only: the dp replicas are not simulated
            end = start + costs.allreduce_data;
            break;
          }
          if (s.pipelines <= 1) {
            end = start + costs.allreduce;
            break;
          }
          const int64_t ckey = int64_t(stg % len) * (int64_t(1) << 32) + reductions_done[stg];
          Collective& c = collectives[ckey];
          if (!st.joined) {
            st.joined = true;
            c.arrived++;
            c.ready = std::max(c.ready, start);
            c.ranks.push_back(r);
            if (c.arrived == s.pipelines) {
              for (int q : c.ranks)
                if (q != r) wake_collective(q);
            }
          }
          if (c.arrived < s.pipelines) {
            st.block = Block::kCollective;
            break;
          }
          end = c.ready + costs.allreduce;
          st.joined = false;
          reductions_done[stg]++;
          break;
        }
      }
      if (!ready) st.block = Block::kLocal;
      if (st.block != Block::kNone) break;
      st.clock = end;
      if (events != nullptr) events[st.pc] = {start, end};
      ++st.pc;
    }
  }

  // Deadlock: some rank still has work and nothing can wake it.
  int first = -1;
  std::string blocked_ranks;
  int listed = 0;
  for (int r = 0; r < n; ++r) {
    if (ranks[r].pc >= s.per_rank[r].size()) continue;
    if (first < 0) first = r;
    if (listed++ < 8) {
      blocked_ranks += "  rank " + std::to_string(r) + " tick " + std::to_string(ranks[r].pc) +
                       ": " + block_reason(s, s.per_rank[r][ranks[r].pc], ranks[r].block) + "\n";
    }
  }
  if (first >= 0) {
    return Status::error("deadlock in schedule '" + s.name + "': " + std::to_string(listed) +
                         " rank(s) blocked forever\n" + blocked_ranks +
                         format_schedule(s, first, int(ranks[first].pc)));
  }

  res.idle.assign(size_t(n), 0);
  for (int r = 0; r < n; ++r) res.makespan = std::max(res.makespan, ranks[r].clock);
  double idle_total = 0;
  for (int r = 0; r < n; ++r) {
    res.idle[r] = res.makespan - res.busy[r];
    idle_total += res.idle[r];
  }
  res.bubble_fraction = res.makespan > 0 ? idle_total / (double(n) * res.makespan) : 0;
  *result = std::move(res);
  return Status::ok();
}

namespace {

char kind_letter(ActionKind k) {
  switch (k) {
    case ActionKind::F:
      return 'F';
    case ActionKind::Bw:
      return 'W';
    default:
      return 'B';
  }
}

}  // namespace

std::string format_timeline(const Schedule& s, const SimResult& result,
                            const GridOptions& options) {
  if (result.timeline.size() != s.per_rank.size()) return "(no timeline recorded)\n";
  const long total = std::lround(std::ceil(result.makespan / options.unit - 1e-9));
  const long columns = std::min<long>(total, options.max_columns);
  size_t width = 2;
  for (const auto& list : s.per_rank) {
    for (const Action& a : list) {
      if (is_compute(a.kind)) width = std::max(width, 1 + std::to_string(a.microbatch).size());
    }
  }
  std::string out;
  for (int r = 0; r < int(s.per_rank.size()); ++r) {
    std::vector<std::string> cells(size_t(columns), std::string(width - 1, ' ') + ".");
    const auto& list = s.per_rank[r];
    for (size_t t = 0; t < list.size(); ++t) {
      const Action& a = list[t];
      if (is_state_action(a.kind)) {
        // The step slot: 'U' cells over its duration (zero-cost steps print nothing).
        const long c0 = std::lround(result.timeline[r][t].start / options.unit);
        const long c1 = std::lround(result.timeline[r][t].end / options.unit);
        for (long c = std::max(0L, c0); c < std::min(c1, columns); ++c)
          cells[size_t(c)] = std::string(width, 'U');
        continue;
      }
      if (!is_compute(a.kind)) continue;
      char letter = kind_letter(a.kind);
      if (options.case_by_chunk && (a.stage / s.num_ranks) % 2 == 0)
        letter = char(std::tolower(letter));
      std::string label = letter + std::to_string(a.microbatch);
      label.insert(label.begin(), width - label.size(), ' ');
      const long c0 = std::lround(result.timeline[r][t].start / options.unit);
      const long c1 = std::lround(result.timeline[r][t].end / options.unit);
      for (long c = std::max(0L, c0); c < std::min(c1, columns); ++c) cells[size_t(c)] = label;
    }
    out += "GPU" + std::to_string(r) + "|";
    for (const auto& c : cells) out += c;
    if (columns < total) out += " ...";
    out += "\n";
  }
  return out;
}

std::string chrome_trace_json(const Schedule& s, const SimResult& result, double us_per_unit) {
  std::string out = "{\"traceEvents\":[";
  bool first = true;
  char buf[160];
  for (int r = 0; r < int(s.per_rank.size()) && r < int(result.timeline.size()); ++r) {
    const auto& list = s.per_rank[r];
    for (size_t t = 0; t < list.size(); ++t) {
      const Action& a = list[t];
      if (!is_compute(a.kind)) continue;
      const SimEvent& e = result.timeline[r][t];
      std::snprintf(
          buf, sizeof(buf),
          "%s{\"name\":\"%s%d s%d\",\"ph\":\"X\",\"ts\":%.3f,\"dur\":%.3f,\"pid\":0,\"tid\":%d}",
          first ? "" : ",", action_kind_name(a.kind), a.microbatch, a.stage, e.start * us_per_unit,
          (e.end - e.start) * us_per_unit, r);
      out += buf;
      first = false;
    }
  }
  out += "]}";
  return out;
}

Status write_chrome_trace(const std::string& path, const Schedule& s, const SimResult& result,
                          double us_per_unit) {
  std::ofstream f(path, std::ios::binary);
  if (!f) return Status::error(path + ": cannot open for writing the Chrome trace");
  f << chrome_trace_json(s, result, us_per_unit);
  f.close();
  if (!f) return Status::error(path + ": write failed");
  return Status::ok();
}

}  // namespace pt
