// Static schedule checks (see validate.h for the rules). Cost is linear in the number of actions
// with one byte of "seen" bits per (stage, mb) (key = stage * microbatches + mb) plus two send
// sequence numbers for the FIFO check, so 1024 stages x 4096 micro-batches validate in well under a
// second. Order rules are checked while scanning each rank's list in order: a consumer must find
// its producer's bit already set. Error paths rescan a list to find the tick they mark; that is
// only paid on failure.
#include "pipeline/validate.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "pipeline/comm_groups.h"
#include "pipeline/prefault.h"

namespace pt {

namespace {

// Bits per (stage, mb) key.
constexpr uint8_t kF = 1, kB = 2, kBx = 4, kBw = 8, kSendAct = 16, kRecvAct = 32, kSendGrad = 64,
                  kRecvGrad = 128;

uint8_t bit_of(ActionKind k) {
  switch (k) {
    case ActionKind::F:
      return kF;
    case ActionKind::B:
      return kB;
    case ActionKind::Bx:
      return kBx;
    case ActionKind::Bw:
      return kBw;
    case ActionKind::SEND_ACT:
      return kSendAct;
    case ActionKind::RECV_ACT:
      return kRecvAct;
    case ActionKind::SEND_GRAD:
      return kSendGrad;
    case ActionKind::RECV_GRAD:
      return kRecvGrad;
    default:
      return 0;
  }
}

Status fail_at(const Schedule& s, int rank, int tick, const std::string& why) {
  return Status::error("invalid schedule: " + why + "\n" + format_schedule(s, rank, tick));
}

std::string key_name(const char* kind, int stage, int mb) {
  return std::string(kind) + "(stage " + std::to_string(stage) + ", mb " + std::to_string(mb) + ")";
}

// Tick of the first action of `kind` for (stage, mb) on `rank`, or the list's end.
int find_tick(const Schedule& s, int rank, ActionKind kind, int stage, int mb) {
  const auto& list = s.per_rank[rank];
  for (int t = 0; t < int(list.size()); ++t) {
    if (list[t].kind == kind && list[t].stage == stage && list[t].microbatch == mb) return t;
  }
  return int(list.size());
}

Status check_shape(const Schedule& s) {
  if (s.num_ranks < 1 || int(s.per_rank.size()) != s.num_ranks) {
    return Status::error("invalid schedule: num_ranks = " + std::to_string(s.num_ranks) + " but " +
                         std::to_string(s.per_rank.size()) + " rank lists");
  }
  if (s.num_stages < 1 || int(s.stage_to_rank.size()) != s.num_stages) {
    return Status::error("invalid schedule: num_stages = " + std::to_string(s.num_stages) +
                         " but stage_to_rank has " + std::to_string(s.stage_to_rank.size()) +
                         " entries");
  }
  for (int st = 0; st < s.num_stages; ++st) {
    if (s.stage_to_rank[st] < 0 || s.stage_to_rank[st] >= s.num_ranks) {
      return Status::error("invalid schedule: stage " + std::to_string(st) + " mapped to rank " +
                           std::to_string(s.stage_to_rank[st]) + ", outside [0, " +
                           std::to_string(s.num_ranks) + ")");
    }
  }
  if (s.microbatches < 1) return Status::error("invalid schedule: microbatches must be >= 1");
  if (s.pipelines < 1 || chain_length(s) < 1 || chain_length(s) * s.pipelines != s.num_stages) {
    return Status::error("invalid schedule: pipelines = " + std::to_string(s.pipelines) +
                         " x model_stages = " + std::to_string(chain_length(s)) +
                         " does not equal num_stages = " + std::to_string(s.num_stages));
  }
  return Status::ok();
}

// Why AVERAGE `a` on rank r is malformed ("" when it is not): it averages over the replicas only,
// names a model stage, finds every replica of it on rank r and none with a micro-batch in flight
// (`open`: per stage, forwards minus completed backwards so far in r's list).
std::string average_error(const Schedule& s, int r, const Action& a, const std::vector<int>& open) {
  const int len = chain_length(s);
  if (a.group != kGroupReplicas) return "AVERAGE averages over the replicas only (:rep)";
  if (a.stage >= len) return "AVERAGE names a model stage (< " + std::to_string(len) + ")";
  for (int p = 0; p < s.pipelines; ++p) {
    const int v = p * len + a.stage;
    if (s.stage_to_rank[size_t(v)] != r)
      return "replica " + std::to_string(v) + " lives on rank " + std::to_string(s.stage_to_rank[size_t(v)]) +
             " (every replica must be on the rank that averages)";
    if (open[size_t(v)] != 0)
      return "replica " + std::to_string(v) + " has " + std::to_string(open[size_t(v)]) +
             " micro-batch(es) in flight across the average";
  }
  return "";
}

// One in-order pass over every rank. `lowered` adds the comm rules. seq_act/seq_grad receive, per
// sending (stage, mb), the message's index among its sender's sends to that peer (lowered only).
Status scan(const Schedule& s, bool lowered, std::vector<uint8_t>* seen, std::vector<int>* seq_act,
            std::vector<int>* seq_grad) {
  const int m = s.microbatches;
  const int num_stages = s.num_stages;
  const auto& owner = s.stage_to_rank;
  const int len = chain_length(s);  // chain neighbours stay inside one pipeline
  assign_prefaulted(seen, size_t(num_stages) * size_t(m), uint8_t(0));
  if (lowered) {
    assign_prefaulted(seq_act, seen->size(), -1);
    assign_prefaulted(seq_grad, seen->size(), -1);
  }
  std::vector<int> per_peer(static_cast<size_t>(s.num_ranks), 0);
  std::vector<int> open(static_cast<size_t>(num_stages), 0);  // per stage: micro-batches in flight
  for (int r = 0; r < s.num_ranks; ++r) {
    std::fill(per_peer.begin(), per_peer.end(), 0);
    const auto& list = s.per_rank[r];
    for (int t = 0; t < int(list.size()); ++t) {
      const Action& a = list[t];
      if (int(a.kind) >= kNumActionKinds) return fail_at(s, r, t, "unknown action kind");
      if (a.stage < 0 || a.stage >= num_stages) {
        return fail_at(s, r, t, "stage " + std::to_string(a.stage) + " out of range");
      }
      if (owner[a.stage] != r) {
        return fail_at(s, r, t,
                       format_action(a) + " runs on rank " + std::to_string(r) + " but stage " +
                           std::to_string(a.stage) + " is owned by rank " +
                           std::to_string(owner[a.stage]));
      }
      if ((a.group != 0) != is_group_action(a.kind)) {
        return fail_at(s, r, t, format_action(a) + (a.group != 0 ? ": only ALLREDUCE_GRAD and AVERAGE name a group"
                                                                  : ": names no group (:dp, :rep)"));
      }
      if (a.kind == ActionKind::AVERAGE) {
        const std::string why = average_error(s, r, a, open);
        if (!why.empty()) return fail_at(s, r, t, format_action(a) + ": " + why);
      }
      if (is_state_action(a.kind)) continue;
      if (a.version < 0) {
        return fail_at(s, r, t, format_action(a) + " reads a negative weight version");
      }
      if (a.microbatch < 0 || a.microbatch >= m) {
        return fail_at(s, r, t,
                       "micro-batch " + std::to_string(a.microbatch) + " out of range [0, " +
                           std::to_string(m) + ")");
      }
      if (is_comm(a.kind) && !lowered) {
        return fail_at(s, r, t, "communication action in a compute-only schedule");
      }
      const int st = a.stage, mb = a.microbatch;
      const size_t key = size_t(st) * size_t(m) + size_t(mb);
      uint8_t& bits = (*seen)[key];
      const uint8_t bit = bit_of(a.kind);
      if (bits & bit) return fail_at(s, r, t, "duplicate " + format_action(a));
      // Does this stage exchange data with a neighbour on another rank?
      const bool from_prev = chain_prev(st, len) >= 0 && owner[st - 1] != r;
      const bool from_next = chain_next(st, len) >= 0 && owner[st + 1] != r;
      switch (a.kind) {
        case ActionKind::F:
          if (lowered && from_prev && !(bits & kRecvAct)) {
            return fail_at(s, r, t,
                           key_name("F", st, mb) + " has no RECV_ACT from rank " +
                               std::to_string(owner[st - 1]) + " before it");
          }
          break;
        case ActionKind::B:
        case ActionKind::Bx:
          if (!(bits & kF)) {
            return fail_at(s, r, t,
                           "backward of (stage " + std::to_string(st) + ", mb " +
                               std::to_string(mb) + ") runs before its forward");
          }
          if (bits & (kB | kBx))
            return fail_at(s, r, t, "second backward of " + key_name("F", st, mb));
          if (lowered && from_next && !(bits & kRecvGrad)) {
            return fail_at(s, r, t,
                           "backward of (stage " + std::to_string(st) + ", mb " +
                               std::to_string(mb) + ") has no RECV_GRAD from rank " +
                               std::to_string(owner[st + 1]) + " before it");
          }
          break;
        case ActionKind::Bw:
          if (!(bits & kBx))
            return fail_at(s, r, t, key_name("Bw", st, mb) + " runs before its Bx");
          break;
        default: {  // comm
          const bool act = a.kind == ActionKind::SEND_ACT || a.kind == ActionKind::RECV_ACT;
          const int other = a.kind == ActionKind::SEND_ACT || a.kind == ActionKind::RECV_GRAD
                                ? chain_next(st, len)
                                : chain_prev(st, len);
          if (other < 0 || other >= num_stages) {
            return fail_at(
                s, r, t, format_action(a) + " has no neighbouring stage " + std::to_string(other));
          }
          if (owner[other] == r) {
            return fail_at(s, r, t,
                           format_action(a) + " communicates between stages " + std::to_string(st) +
                               " and " + std::to_string(other) + ", which are both on rank " +
                               std::to_string(r));
          }
          if (a.peer_rank != owner[other]) {
            return fail_at(s, r, t,
                           format_action(a) + " names peer " + std::to_string(a.peer_rank) +
                               " but stage " + std::to_string(other) + " is on rank " +
                               std::to_string(owner[other]));
          }
          if (a.kind == ActionKind::SEND_ACT && !(bits & kF)) {
            return fail_at(s, r, t, "SEND_ACT before the forward that produces it");
          }
          if (a.kind == ActionKind::SEND_GRAD && !(bits & (kB | kBx))) {
            return fail_at(s, r, t, "SEND_GRAD before the backward that produces it");
          }
          if (is_send(a.kind)) (act ? *seq_act : *seq_grad)[key] = per_peer[a.peer_rank]++;
          break;
        }
      }
      bits |= bit;
      if (a.kind == ActionKind::F) ++open[size_t(st)];
      if (a.kind == ActionKind::B || a.kind == ActionKind::Bw) --open[size_t(st)];
    }
  }
  return Status::ok();
}

// Counts per (stage, mb), stage-major so the first error is deterministic: one F, one B or one Bx +
// one Bw, and for lowered schedules one SEND per cross-rank edge (the matching receive was required
// by scan()).
Status check_counts(const Schedule& s, const std::vector<uint8_t>& seen, bool lowered) {
  const int m = s.microbatches;
  const auto& owner = s.stage_to_rank;
  const int len = chain_length(s);
  // Several pipelines (AMDP): a micro-batch runs on the stages of exactly one pipeline, the one
  // whose first stage forwards it; the other pipelines' stages must not touch it.
  std::vector<int> pipe_of;
  if (s.pipelines > 1) {
    pipe_of.assign(size_t(m), -1);
    for (int mb = 0; mb < m; ++mb) {
      for (int p = 0; p < s.pipelines; ++p) {
        if (!(seen[size_t(p * len) * size_t(m) + size_t(mb)] & kF)) continue;
        if (pipe_of[size_t(mb)] >= 0) {
          return fail_at(s, owner[p * len], find_tick(s, owner[p * len], ActionKind::F, p * len, mb),
                         "micro-batch " + std::to_string(mb) + " enters pipelines " +
                             std::to_string(pipe_of[size_t(mb)]) + " and " + std::to_string(p) +
                             " (each micro-batch runs through one pipeline)");
        }
        pipe_of[size_t(mb)] = p;
      }
      if (pipe_of[size_t(mb)] < 0) {
        return fail_at(s, owner[0], int(s.per_rank[size_t(owner[0])].size()),
                       "micro-batch " + std::to_string(mb) + " enters no pipeline (no F on any "
                       "pipeline's first stage)");
      }
    }
  }
  for (int st = 0; st < s.num_stages; ++st) {
    const int r = owner[st];
    for (int mb = 0; mb < m; ++mb) {
      const uint8_t bits = seen[size_t(st) * size_t(m) + size_t(mb)];
      if (!pipe_of.empty() && pipe_of[size_t(mb)] != st / len) {
        if (bits != 0) {
          return fail_at(s, r, int(s.per_rank[size_t(r)].size()),
                         "micro-batch " + std::to_string(mb) + " of pipeline " +
                             std::to_string(pipe_of[size_t(mb)]) + " runs on stage " +
                             std::to_string(st) + " of pipeline " + std::to_string(st / len));
        }
        continue;
      }
      if (!(bits & kF))
        return fail_at(s, r, int(s.per_rank[r].size()), key_name("F", st, mb) + " is missing");
      if ((bits & kB) && (bits & (kBx | kBw))) {
        return fail_at(s, r, find_tick(s, r, ActionKind::B, st, mb),
                       key_name("B", st, mb) + " appears together with a Bx/Bw split backward");
      }
      if (!(bits & (kB | kBx)) && !s.partial_backward) {
        return fail_at(s, r, find_tick(s, r, ActionKind::F, st, mb),
                       key_name("F", st, mb) + " has no backward (B or Bx+Bw)");
      }
      if ((bits & kBx) && !(bits & kBw) && !s.partial_backward) {
        return fail_at(s, r, find_tick(s, r, ActionKind::Bx, st, mb),
                       key_name("Bx", st, mb) + " has no Bw");
      }
      if (!lowered) continue;
      if (chain_next(st, len) >= 0 && owner[st + 1] != r && !(bits & kSendAct)) {
        return fail_at(s, r, find_tick(s, r, ActionKind::F, st, mb),
                       key_name("F", st, mb) + " is not followed by SEND_ACT to rank " +
                           std::to_string(owner[st + 1]));
      }
      // partial_backward: a gradient goes down only to a stage that runs a backward of mb.
      const bool grad_wanted = chain_prev(st, len) >= 0 && (bits & (kB | kBx)) &&
                               (!s.partial_backward || (seen[size_t(st - 1) * size_t(m) + size_t(mb)] & (kB | kBx)));
      if (s.partial_backward && (bits & kSendGrad) && !grad_wanted) {
        return fail_at(s, r, find_tick(s, r, ActionKind::SEND_GRAD, st, mb),
                       "SEND_GRAD of (stage " + std::to_string(st) + ", mb " + std::to_string(mb) +
                           ") goes to a stage that runs no backward of it");
      }
      if (grad_wanted && owner[st - 1] != r && !(bits & kSendGrad)) {
        const ActionKind back = (bits & kB) ? ActionKind::B : ActionKind::Bx;
        return fail_at(s, r, find_tick(s, r, back, st, mb),
                       "backward of (stage " + std::to_string(st) + ", mb " + std::to_string(mb) +
                           ") is not followed by SEND_GRAD to rank " +
                           std::to_string(owner[st - 1]));
      }
    }
  }
  return Status::ok();
}

}  // namespace

Status validate_compute(const Schedule& s) {
  PT_RETURN_IF_ERROR(check_shape(s));
  std::vector<uint8_t> seen;
  PT_RETURN_IF_ERROR(scan(s, /*lowered=*/false, &seen, nullptr, nullptr));
  return check_counts(s, seen, /*lowered=*/false);
}

Status validate_lowered(const Schedule& s) {
  PT_RETURN_IF_ERROR(check_shape(s));
  // The compute rules on the compute actions (scan skips comm bits for them), then the comm rules.
  std::vector<uint8_t> seen;
  std::vector<int> seq_act, seq_grad;
  PT_RETURN_IF_ERROR(scan(s, /*lowered=*/true, &seen, &seq_act, &seq_grad));
  PT_RETURN_IF_ERROR(check_counts(s, seen, /*lowered=*/true));
  const int m = s.microbatches;
  // FIFO channels: on each receiver, the receives from one sender come in that sender's send order.
  // A receive whose send is missing has seq -1 and is reported too.
  std::vector<int> last_seq(static_cast<size_t>(s.num_ranks));
  for (int r = 0; r < s.num_ranks; ++r) {
    std::fill(last_seq.begin(), last_seq.end(), -1);
    const auto& list = s.per_rank[r];
    for (int t = 0; t < int(list.size()); ++t) {
      const Action& a = list[t];
      if (!is_recv(a.kind)) continue;
      const bool act = a.kind == ActionKind::RECV_ACT;
      const size_t key = size_t(act ? a.stage - 1 : a.stage + 1) * size_t(m) + size_t(a.microbatch);
      const int seq = (act ? seq_act : seq_grad)[key];
      if (seq < 0)
        return fail_at(
            s, r, t,
            format_action(a) + " has no matching send on rank " + std::to_string(a.peer_rank));
      if (seq <= last_seq[a.peer_rank]) {
        return fail_at(s, r, t,
                       format_action(a) + " is received out of the order rank " +
                           std::to_string(a.peer_rank) + " sends it in (p2p channels are FIFO)");
      }
      last_seq[a.peer_rank] = seq;
    }
  }
  return Status::ok();
}

namespace {

// Message id of a comm action: (sending stage, mb, act|grad); a receive names its sender's id.
size_t message_id(const Action& a, int m) {
  const bool act = a.kind == ActionKind::SEND_ACT || a.kind == ActionKind::RECV_ACT;
  int from = a.stage;
  if (a.kind == ActionKind::RECV_ACT) from = a.stage - 1;
  if (a.kind == ActionKind::RECV_GRAD) from = a.stage + 1;
  return (size_t(from) * size_t(m) + size_t(a.microbatch)) * 2 + (act ? 0 : 1);
}

// Progress of the grouped semantics (validate.h): a worklist of ranks; a rank blocked on a
// message or a collective is tried again when a peer posts something it may be waiting for.
class GroupRun {
 public:
  GroupRun(const Schedule& s, const std::vector<std::vector<CommGroup>>& groups)
      : s_(s), len_(chain_length(s)), pc_(size_t(s.num_ranks), 0), queued_(size_t(s.num_ranks), 1),
        group_at_(size_t(s.num_ranks)), posted_(size_t(s.num_ranks)) {
    const size_t ids = size_t(s.num_stages) * size_t(s.microbatches) * 2;
    sent_.assign(ids, 0);
    recv_posted_.assign(ids, 0);
    for (int r = 0; r < s.num_ranks; ++r) {
      group_at_[size_t(r)].assign(s.per_rank[size_t(r)].size(), -1);
      for (const CommGroup& g : groups[size_t(r)]) {
        group_at_[size_t(r)][size_t(g.begin)] = g.end;
      }
      posted_[size_t(r)].assign(s.per_rank[size_t(r)].size(), 0);
      queue_.push_back(r);
    }
  }
  Status run() {
    while (!queue_.empty()) {
      const int r = queue_.back();
      queue_.pop_back();
      queued_[size_t(r)] = 0;
      advance(r);
    }
    for (int r = 0; r < s_.num_ranks; ++r)
      if (pc_[size_t(r)] < s_.per_rank[size_t(r)].size())
        return fail_at(s_, r, int(pc_[size_t(r)]),
                       "deadlock under transport groups (comm_groups.h): rank " + std::to_string(r) +
                           " never gets past this tick when a group completes only once all its members are matched");
    return Status::ok();
  }

 private:
  void wake(int r) {
    if (!queued_[size_t(r)]) queue_.push_back(r), queued_[size_t(r)] = 1;
  }
  // Posts action t of rank r (once); true when it is complete.
  bool post(int r, size_t t) {
    const Action& a = s_.per_rank[size_t(r)][t];
    const size_t id = message_id(a, s_.microbatches);
    if (!posted_[size_t(r)][t]) {
      posted_[size_t(r)][t] = 1;
      (is_send(a.kind) ? sent_ : recv_posted_)[id] = 1;
      wake(a.peer_rank);
    }
    return is_send(a.kind) ? recv_posted_[id] != 0 : sent_[id] != 0;
  }
  void advance(int r) {
    const std::vector<Action>& list = s_.per_rank[size_t(r)];
    size_t& pc = pc_[size_t(r)];
    while (pc < list.size()) {
      const Action& a = list[pc];
      const int end = group_at_[size_t(r)][pc];
      if (end >= 0) {  // a group: post every member, leave when all are matched
        bool matched = true;
        for (size_t t = pc; t < size_t(end); ++t) matched = post(r, t) && matched;
        if (!matched) return;
        pc = size_t(end);
        continue;
      }
      if (is_send(a.kind)) {
        post(r, pc);
      } else if (is_recv(a.kind)) {
        if (!post(r, pc)) return;
      } else if (a.kind == ActionKind::ALLREDUCE_GRAD && (a.group & kGroupReplicas) && s_.pipelines > 1) {
        if (!join(r, pc, a)) return;
      }
      ++pc;
    }
  }
  // AMDP replica collective: the k-th ALLREDUCE_GRAD(rep) of each replica of a model stage.
  bool join(int r, size_t t, const Action& a) {
    const int model_stage = a.stage % len_;
    int& k = done_[a.stage];
    auto& c = collectives_[{model_stage, k}];
    if (!posted_[size_t(r)][t]) {
      posted_[size_t(r)][t] = 1;
      c.push_back(r);
      if (int(c.size()) == s_.pipelines)
        for (int q : c) wake(q);
    }
    if (int(c.size()) < s_.pipelines) return false;
    ++k;
    return true;
  }

  const Schedule& s_;
  int len_ = 1;
  std::vector<size_t> pc_;
  std::vector<uint8_t> queued_;
  std::vector<int> queue_;
  std::vector<std::vector<int>> group_at_;     // per rank, per tick: end of the group starting there, or -1
  std::vector<std::vector<uint8_t>> posted_;   // per rank, per tick
  std::vector<uint8_t> sent_, recv_posted_;    // per message id
  std::map<int, int> done_;                    // per virtual stage: replica collectives passed
  std::map<std::pair<int, int>, std::vector<int>> collectives_;  // (model stage, k) -> ranks arrived
};

}  // namespace

Status validate_comm_groups(const Schedule& s, const std::vector<std::vector<CommGroup>>& groups) {
  if (groups.size() != size_t(s.num_ranks)) return Status::error("validate_comm_groups: groups for " + std::to_string(groups.size()) + " ranks, the schedule has " + std::to_string(s.num_ranks));
  GroupRun run(s, groups);
  return run.run();
}

Status validate_comm_groups(const Schedule& s) { return validate_comm_groups(s, comm_groups(s)); }

}  // namespace pt
