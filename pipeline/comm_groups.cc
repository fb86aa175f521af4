// comm_runs and comm_groups (see comm_groups.h): linear in the number of actions.
#include "pipeline/comm_groups.h"

#include <map>
#include <utility>

namespace pt {

std::vector<CommGroup> comm_runs(const std::vector<Action>& list) {
  std::vector<CommGroup> out;
  const int n = int(list.size());
  for (int t = 0; t < n;) {
    if (!is_comm(list[size_t(t)].kind)) {
      ++t;
      continue;
    }
    int end = t;
    bool sends = false, recvs = false;
    for (; end < n && is_comm(list[size_t(end)].kind); ++end) {
      sends = sends || is_send(list[size_t(end)].kind);
      recvs = recvs || is_recv(list[size_t(end)].kind);
    }
    if (sends && recvs) out.push_back({t, end});
    t = end;
  }
  return out;
}

namespace {

// (sending stage, mb, act|grad): the same for a send and its receive.
int64_t message_key(const Action& a) {
  const bool act = a.kind == ActionKind::SEND_ACT || a.kind == ActionKind::RECV_ACT;
  int from = a.stage;
  if (a.kind == ActionKind::RECV_ACT) from = a.stage - 1;
  if (a.kind == ActionKind::RECV_GRAD) from = a.stage + 1;
  return (int64_t(from) << 33) | (int64_t(uint32_t(a.microbatch)) << 1) | (act ? 0 : 1);
}

}  // namespace

std::vector<std::vector<CommGroup>> comm_groups(const Schedule& lowered) {
  const int R = lowered.num_ranks;
  std::vector<std::vector<CommGroup>> runs(static_cast<size_t>(R)), out(static_cast<size_t>(R));
  std::vector<std::vector<int>> run_of(static_cast<size_t>(R));                // per rank, per tick: run index or -1
  std::map<std::pair<int64_t, bool>, std::pair<int, int>> where;     // (message, is_send) -> (rank, tick)
  for (int r = 0; r < R; ++r) {
    const auto& list = lowered.per_rank[size_t(r)];
    runs[size_t(r)] = comm_runs(list);
    run_of[size_t(r)].assign(list.size(), -1);
    for (size_t k = 0; k < runs[size_t(r)].size(); ++k)
      for (int t = runs[size_t(r)][k].begin; t < runs[size_t(r)][k].end; ++t) run_of[size_t(r)][size_t(t)] = int(k);
    for (int t = 0; t < int(list.size()); ++t)
      if (is_comm(list[size_t(t)].kind)) where[{message_key(list[size_t(t)]), is_send(list[size_t(t)].kind)}] = {r, t};
  }
  for (int r = 0; r < R; ++r) {
    const auto& list = lowered.per_rank[size_t(r)];
    for (const CommGroup& c : runs[size_t(r)]) {
      const int peer = list[size_t(c.begin)].peer_rank;
      int mirror = -1;
      bool ok = true;
      for (int t = c.begin; ok && t < c.end; ++t) {
        const Action& a = list[size_t(t)];
        auto it = where.find({message_key(a), !is_send(a.kind)});
        ok = a.peer_rank == peer && it != where.end() && it->second.first == peer;
        if (!ok) break;
        const int k = run_of[size_t(peer)][size_t(it->second.second)];
        ok = k >= 0 && (mirror < 0 || k == mirror);
        mirror = k;
      }
      if (!ok) continue;
      const CommGroup& h = runs[size_t(peer)][size_t(mirror)];
      if (h.end - h.begin == c.end - c.begin) out[size_t(r)].push_back(c);  // counterparts are injective
    }
  }
  return out;
}

}  // namespace pt
