// The worker-loop event simulation and version assignment shared by the asynchronous generators
// (contract in async_common.h). Integer time, one tick at a time: makespans are O(3N + S) ticks of
// O(S) work, so a segment of 10^5 micro-batches on 64 stages stays well under a second.
#include "pipeline/schedules/async_common.h"

#include <map>
#include <string>

#include "pipeline/schedules/common.h"

namespace pt::schedules_internal {

std::vector<std::vector<Action>> run_worker_loop(const WorkerLoopRule& rule) {
  const int S = rule.stages, N = rule.total;
  std::vector<std::vector<Action>> lists(static_cast<size_t>(S));
  // f_end[s][g] / b_end[s][g]: tick at which F/B of g on s finished, -1 before it ran.
  std::vector<std::vector<int>> f_end(size_t(S), std::vector<int>(size_t(N), -1));
  std::vector<std::vector<int>> b_end(size_t(S), std::vector<int>(size_t(N), -1));
  std::vector<int> busy_until(size_t(S), 0), fwd(size_t(S), 0), bwd(size_t(S), 0);
  int finished = 0;
  for (int t = 0; finished < S; ++t) {
    for (int s = 0; s < S; ++s) {
      if (busy_until[s] > t || bwd[s] == N) continue;
      // 1. Backward first: the oldest pending micro-batch, once its output gradient is here (the
      //    last stage's loss is local, so its gradient exists when its forward ends).
      const int gb = bwd[s];
      if (gb < fwd[s]) {
        const int ready = s == S - 1 ? f_end[s][gb] : b_end[s + 1][gb];
        if (ready >= 0 && ready <= t) {
          lists[s].push_back(compute(ActionKind::B, s, gb));
          b_end[s][gb] = busy_until[s] = t + rule.backward_cost;
          if (++bwd[s] % rule.step_every == 0) lists[s].push_back(compute(ActionKind::STEP, s, -1));
          if (bwd[s] == N) ++finished;
          continue;
        }
      }
      // 2. Then a forward, if its input is here and the stage may hold one more activation.
      const int gf = fwd[s];
      if (gf == N) continue;
      if (s > 0 && (f_end[s - 1][gf] < 0 || f_end[s - 1][gf] > t)) continue;
      const int in_flight = fwd[s] - bwd[s];
      if (in_flight >= rule.allowed_lagging[s]) continue;
      if (rule.may_forward && !rule.may_forward(s, gf, bwd)) continue;
      if (s == 0 && rule.flush_group > 0 &&
          !(in_flight < S && (gf % rule.flush_group != 0 || fwd[s] == bwd[s]))) {
        continue;
      }
      lists[s].push_back(compute(ActionKind::F, s, gf));
      f_end[s][gf] = busy_until[s] = t + rule.forward_cost;
      ++fwd[s];
    }
  }
  return lists;
}

void assign_live_versions(Schedule* s, bool stash) {
  for (auto& list : s->per_rank) {
    std::map<int, int> live;                      // stage -> live version
    std::map<std::pair<int, int>, int> fwd_read;  // (stage, mb) -> version its F read
    for (Action& a : list) {
      switch (a.kind) {
        case ActionKind::STEP:
          ++live[a.stage];
          break;
        case ActionKind::F:
          a.version = live[a.stage];
          fwd_read[{a.stage, a.microbatch}] = a.version;
          break;
        case ActionKind::B:
        case ActionKind::Bx:
        case ActionKind::Bw:
          a.version = stash ? fwd_read[{a.stage, a.microbatch}] : live[a.stage];
          break;
        default:
          break;
      }
    }
  }
}

}  // namespace pt::schedules_internal
