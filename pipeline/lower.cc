// Lowering pass (rules in lower.h). Linear in the number of actions: sender sequence numbers live
// in flat per-(stage, mb) arrays, receives are bucketed by the compute tick they must precede, and
// only tiny buckets are ever sorted.
#include "pipeline/lower.h"

#include <algorithm>
#include <thread>
#include <vector>

#include "pipeline/prefault.h"
#include "pipeline/validate.h"

namespace pt {

namespace {

struct PendingRecv {
  Action action;
  int src;       // sending rank
  int seq;       // index in src's sends to this rank
  int deadline;  // compute tick (in the compute list) it must precede
};

Action comm(ActionKind kind, int stage, int mb, int peer) {
  Action a;
  a.kind = kind;
  a.stage = stage;
  a.microbatch = mb;
  a.peer_rank = peer;
  return a;
}

}  // namespace

Status lower_communication(const Schedule& compute, Schedule* lowered) {
  PT_RETURN_IF_ERROR(validate_compute(compute));
  const int n = compute.num_ranks;
  const int num_stages = compute.num_stages;
  const int m = compute.microbatches;
  const auto& owner = compute.stage_to_rank;
  // Chain neighbours (several pipelines: a virtual stage talks only inside its pipeline).
  const int len = chain_length(compute);
  auto has_next = [&](int st) { return chain_next(st, len) >= 0; };
  auto has_prev = [&](int st) { return chain_prev(st, len) >= 0; };
  const size_t keys = size_t(num_stages) * size_t(m);
  // partial_backward (action.h): a backward sends its input gradient only to a stage that runs a
  // backward of that micro-batch.
  std::vector<uint8_t> backward_runs;
  if (compute.partial_backward) {
    backward_runs.assign(keys, 0);
    for (const auto& list : compute.per_rank)
      for (const Action& a : list)
        if (a.kind == ActionKind::B || a.kind == ActionKind::Bx)
          backward_runs[size_t(a.stage) * size_t(m) + size_t(a.microbatch)] = 1;
  }
  auto sends_grad = [&](const Action& a, int r) {
    return (a.kind == ActionKind::B || a.kind == ActionKind::Bx) && has_prev(a.stage) && owner[a.stage - 1] != r &&
           (backward_runs.empty() || backward_runs[size_t(a.stage - 1) * size_t(m) + size_t(a.microbatch)]);
  };

  // Pass 1: the send each compute action produces, and its sequence number on its (sender,
  // receiver) channel. seq_act[key(s, mb)] = seq of SEND_ACT(s, mb); seq_grad[key(s, mb)] = seq of
  // SEND_GRAD(s, mb).
  std::vector<int> seq_act, seq_grad;
  assign_prefaulted(&seq_act, keys, -1);
  assign_prefaulted(&seq_grad, keys, -1);
  std::vector<int> per_peer(size_t(n), 0);
  for (int r = 0; r < n; ++r) {
    std::fill(per_peer.begin(), per_peer.end(), 0);
    for (const Action& a : compute.per_rank[r]) {
      const size_t key = size_t(a.stage) * size_t(m) + size_t(a.microbatch);
      if (a.kind == ActionKind::F && has_next(a.stage) && owner[a.stage + 1] != r) {
        seq_act[key] = per_peer[owner[a.stage + 1]]++;
      } else if (sends_grad(a, r)) {
        seq_grad[key] = per_peer[owner[a.stage - 1]]++;
      }
    }
  }

  Schedule out;
  out.num_ranks = n;
  out.num_stages = num_stages;
  out.microbatches = m;
  out.stage_to_rank = owner;
  out.name = compute.name;
  out.pipelines = compute.pipelines;
  out.model_stages = compute.model_stages;
  out.recompute_in_backward = compute.recompute_in_backward;
  out.partial_backward = compute.partial_backward;
  out.per_rank.assign(size_t(n), {});

  // Pass 2 and 3 touch only receiver r's list: ranks are lowered independently, split
  // across hardware threads (the output does not depend on the split).
  auto lower_ranks = [&](int r_begin, int r_end) {
    std::vector<PendingRecv> recvs;
    std::vector<int> src_slot(size_t(n), -1);  // rank -> index into channels, for this receiver
    std::vector<std::vector<PendingRecv>> channels;
    std::vector<int> bucket_start;
    std::vector<PendingRecv> bucketed;

    for (int r = r_begin; r < r_end; ++r) {
      const auto& list = compute.per_rank[r];
      const int n_actions = int(list.size());
      // Pass 2: this rank's receives, grouped per sending rank, each with its latest allowed
      // position.
      channels.clear();
      std::vector<int> touched;
      int sends = 0;
      for (int t = 0; t < n_actions; ++t) {
        const Action& a = list[t];
        sends += (a.kind == ActionKind::F && has_next(a.stage) && owner[a.stage + 1] != r) || sends_grad(a, r);
        PendingRecv p{};
        if (a.kind == ActionKind::F && has_prev(a.stage) && owner[a.stage - 1] != r) {
          p = {comm(ActionKind::RECV_ACT, a.stage, a.microbatch, owner[a.stage - 1]),
               owner[a.stage - 1], seq_act[size_t(a.stage - 1) * size_t(m) + size_t(a.microbatch)],
               t};
        } else if ((a.kind == ActionKind::B || a.kind == ActionKind::Bx) && has_next(a.stage) &&
                   owner[a.stage + 1] != r) {
          p = {comm(ActionKind::RECV_GRAD, a.stage, a.microbatch, owner[a.stage + 1]),
               owner[a.stage + 1], seq_grad[size_t(a.stage + 1) * size_t(m) + size_t(a.microbatch)],
               t};
        } else {
          continue;
        }
        if (src_slot[p.src] < 0) {
          src_slot[p.src] = int(channels.size());
          channels.emplace_back();
          touched.push_back(p.src);
        }
        channels[size_t(src_slot[p.src])].push_back(p);
      }
      for (int src : touched) src_slot[src] = -1;
      // FIFO: receive in send order; a message needed later than a later-sent one is pulled up to
      // it.
      recvs.clear();
      for (auto& ch : channels) {
        auto by_seq = [](const PendingRecv& x, const PendingRecv& y) { return x.seq < y.seq; };
        if (!std::is_sorted(ch.begin(), ch.end(), by_seq))
          std::stable_sort(ch.begin(), ch.end(), by_seq);
        for (int j = int(ch.size()) - 2; j >= 0; --j) {
          ch[size_t(j)].deadline = std::min(ch[size_t(j)].deadline, ch[size_t(j) + 1].deadline);
        }
        recvs.insert(recvs.end(), ch.begin(), ch.end());
      }
      // Bucket by deadline (counting sort); inside a bucket order by (peer, channel seq).
      bucket_start.assign(size_t(n_actions) + 2, 0);
      for (const auto& p : recvs) ++bucket_start[size_t(p.deadline) + 1];
      for (int t = 0; t <= n_actions; ++t) bucket_start[size_t(t) + 1] += bucket_start[size_t(t)];
      bucketed.resize(recvs.size());
      {
        std::vector<int> fill(bucket_start.begin(), bucket_start.end() - 1);
        for (const auto& p : recvs) bucketed[size_t(fill[size_t(p.deadline)]++)] = p;
      }
      // Pass 3: emit [sends of the previous compute][receives due here] compute, per tick.
      auto& dst = out.per_rank[r];
      dst.reserve(size_t(n_actions) + recvs.size() + size_t(sends));
      prefault(dst.data(), dst.capacity() * sizeof(Action));
      for (int t = 0; t < n_actions; ++t) {
        auto b0 = bucketed.begin() + bucket_start[size_t(t)];
        auto b1 = bucketed.begin() + bucket_start[size_t(t) + 1];
        if (b1 - b0 > 1) {
          std::sort(b0, b1, [](const PendingRecv& x, const PendingRecv& y) {
            return x.src != y.src ? x.src < y.src : x.seq < y.seq;
          });
        }
        for (auto it = b0; it != b1; ++it) dst.push_back(it->action);
        const Action& a = list[t];
        dst.push_back(a);
        // Each compute action produces at most one send, so the sends of a group are trivially
        // peer-sorted.
        if (a.kind == ActionKind::F && has_next(a.stage) && owner[a.stage + 1] != r) {
          dst.push_back(comm(ActionKind::SEND_ACT, a.stage, a.microbatch, owner[a.stage + 1]));
        } else if (sends_grad(a, r)) {
          dst.push_back(comm(ActionKind::SEND_GRAD, a.stage, a.microbatch, owner[a.stage - 1]));
        }
      }
    }
  };
  const int threads =
      n < 64 ? 1 : int(std::max(1u, std::min(8u, std::thread::hardware_concurrency())));
  std::vector<std::thread> workers;
  for (int w = 1; w < threads; ++w)
    workers.emplace_back(lower_ranks, int(int64_t(n) * w / threads),
                         int(int64_t(n) * (w + 1) / threads));
  lower_ranks(0, int(int64_t(n) / threads));
  for (auto& t : workers) t.join();
  *lowered = std::move(out);
  return Status::ok();
}

}  // namespace pt
