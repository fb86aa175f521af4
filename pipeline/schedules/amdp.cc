// AMDP (algorithms.md §2) as a pure generator of one drained segment.
// Placement, S = 4q (the reference code's cases S=4, 8 and their extension): K = S/2 pipelines
// over S GPUs; pipeline p holds virtual stages p*S + s (model stage s). Even p runs "down" from
// GPU 2p (stage s on GPU (2p + s) mod S), odd p runs "up" from GPU 2p+1 (stage s on GPU
// (2p+1 - s) mod S): S=4: s, 3-s; S=8: s, (11-s) mod 8, (s+4) mod 8, 7-s (§2.2); down walks start
// at 0, 4, 8, ..., up walks at 3, 7, 11, .... Replica groups (ranks hosting the same model stages):
// the ranks = 0, 3 mod 4 host the stages = 0, 3 mod 4, the others the rest.
// Placement, S = 4q + 2 (the general rule): every pipeline runs down, pipeline p from GPU 2p (stage
// s on GPU (2p + s) mod S); the replica groups are the even and the odd ranks. The runner needs
// disjoint replica groups (one communicator each: 2 groups of K ranks hosting the same K stages),
// and for odd K no placement of ring walks in both directions has them: two pipelines of one
// direction make the group invariant under a shift d, which forces it to be the even or the odd
// ranks; a down walk from c and an up walk from c' then put two stages on the GPU g with
// 2g = c + c' (mod S).
// Micro-batches: a round is 2K consecutive ids; id g goes to pipeline (g mod 2K) mod K (two per
// pipeline per round); an iteration (one optimizer update per stage) is m/(2K) rounds.
// Order, S=4: the reference per-GPU round table of §2.2 verbatim (which reproduces the §2.2
// timeline). S = 4q >= 8: reference_round, the rule of the reference code's S=8 fwd_order/bwd_order
// lists and phase structure (Vinsmoke86/AMDP, megatron/core/pipeline_parallel/async_schedules.py,
// async_train_fourdirectional_pipeline, commit 2136e2b8), which it reproduces at S=8 op for op
// (tested against the transcribed lists). S = 4q + 2: the general rule, which keeps the structure
// of the reference orders: each pipeline enters round r+1 at its first stage right after the
// backward there of round r's first micro-batch (F F Bp B: the second micro-batch's backward is
// deferred into the next round), a GPU runs a round's forwards before its backwards where it can,
// and the step slot follows the deferred backwards of the previous iteration and precedes every
// forward of the next round. It is event-simulated once with F=1, B=2, slot=1: a free GPU runs,
// among its hosted stages' ready ops (per stage: forwards and backwards in ascending id), a forward
// first, then the one ready earliest, then the oldest micro-batch, then the lower model stage. The
// rule commutes with the shift by 2 GPUs (pipeline p -> p+1), so the members of a replica group
// reach their step slot together. Steady state at F=1, B=2 (tested for every even S in 2..32):
// 1 idle unit per round and GPU for every S, as the reference orders at S=4 and 8; a 1-unit step
// slot fills it in the rounds that have one.
// Step slot, schedule.amdp.step_slot = clean (default): on every GPU, for each hosted virtual stage
// in ascending MODEL stage order, ALLREDUCE_GRAD(v) (sum over the K replicas; in owner mode onto
// the owner) then STEP(v), so each gradient is applied exactly once, at the first slot after its
// backward. S = 4q puts the slot at the reference's U position in the first round of every
// iteration t >= 1; the general rule puts it, as a barrier over the replica group, as soon as every
// member is free and has run its backwards of iteration t-1, and runs no forward of the
// iteration's second round before it. One final slot follows the tail on every GPU, so each
// stage steps segment_updates times.
// These ALLREDUCE_GRADs name the replica group (:rep); make_schedule adds the data-parallel one
// (:dp) right before every STEP, as for every asynchronous kind.
// step_slot = reference (S=4, 8 only; §2.2 "Reference-code artifact"): as the reference code,
// ALLREDUCE_GRAD(v) follows the replica's last backward of the iteration and the slot holds only
// the STEPs, so a replica's backwards between the two (S=4: GPU0's B of j=1, GPU3's B of j=0 in
// an iteration's first round) are applied at that STEP on the owner and dropped on non-owners
// (the runner: a non-owner zeroes its gradient at STEP). Every replica group issues its
// collectives (ALLREDUCE_GRAD and, in owner mode, STEP's broadcast) in the same order on every
// member (tested). F and B read the live version (no stashing).
#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <tuple>

#include "common/check.h"
#include "pipeline/schedules/async_common.h"
#include "pipeline/schedules/common.h"

namespace pt {

using schedules_internal::compute;

namespace {

int amdp_gpu(int S, int p, int s) {
  if (S % 4 != 0) return (2 * p + s) % S;  // the general rule: every pipeline down, from GPU 2p
  return p % 2 == 0 ? (2 * p + s) % S : ((2 * p + 1 - s) % S + S) % S;
}

// One op of the S=4 reference round table: kind 'F', 'B', 'P' (backward of the previous round's
// micro-batch j) or 'U' (step slot), j = index within the round.
struct RefOp {
  char kind;
  int j;
};
constexpr RefOp kRef4[4][9] = {
    {{'F', 0}, {'F', 2}, {'P', 2}, {'F', 1}, {'B', 1}, {'U', 0}, {'F', 3}, {'B', 3}, {'B', 0}},
    {{'P', 2}, {'F', 0}, {'F', 1}, {'F', 2}, {'F', 3}, {'U', 0}, {'B', 1}, {'B', 0}, {'B', 3}},
    {{'P', 3}, {'F', 1}, {'F', 0}, {'F', 3}, {'F', 2}, {'U', 0}, {'B', 0}, {'B', 1}, {'B', 2}},
    {{'F', 1}, {'F', 3}, {'P', 3}, {'F', 0}, {'B', 0}, {'U', 0}, {'F', 2}, {'B', 2}, {'B', 1}},
};

// The round of one GPU for S = 4q >= 8 in the RefOp form of the S=4 table (2S+1 ops: S F, S B, U),
// by the rule the S=8 reference orders follow. Forwards: the hosted model stages in ascending order,
// cut into runs of consecutive stages ({0}, {3,4}, {7,8}, ..., {S-1} or {1,2}, {5,6}, ...); per run
// the first micro-batches (j = p) of its stages, then the second ones (j = p + K). Backwards: the
// same in descending stage order. GPUs hosting a first and a last stage (stages = 0, 3 mod 4) run
// F f0, F f1, Bp, F f2..f(S-2), B b0, F f(S-1), U, B b1..b(S-2); the others Bp, F f0..f(S-1), U,
// B b0..b(S-2); Bp = B of b(S-1), of the previous round. At S=8 this is the reference code's
// fwd_order/bwd_order and phase structure (tested op for op against the transcribed lists); at S=4
// it gives the §2.2 table's orders but puts U after F f3 instead of before it.
std::vector<RefOp> reference_round(int S, const std::vector<int>& hosted) {
  const int K = S / 2;
  std::vector<std::pair<int, int>> by_stage;  // (model stage, pipeline)
  for (int p = 0; p < K; ++p) by_stage.push_back({hosted[size_t(p)] % S, p});
  auto order = [&](bool descending) {
    std::vector<std::pair<int, int>> st = by_stage;
    std::sort(st.begin(), st.end());
    if (descending) std::reverse(st.begin(), st.end());
    std::vector<int> js;
    for (size_t lo = 0, hi; lo < st.size(); lo = hi) {
      for (hi = lo + 1; hi < st.size() && std::abs(st[hi].first - st[hi - 1].first) == 1; ++hi) {}
      for (int second = 0; second < 2; ++second)
        for (size_t i = lo; i < hi; ++i) js.push_back(st[i].second + second * K);
    }
    return js;
  };
  const std::vector<int> f = order(false), b = order(true);
  const bool ends = std::min_element(by_stage.begin(), by_stage.end())->first == 0;  // hosts stages 0 and S-1
  std::vector<RefOp> ops;
  if (!ends) ops.push_back({'P', b[size_t(S) - 1]});
  ops.push_back({'F', f[0]});
  ops.push_back({'F', f[1]});
  if (ends) ops.push_back({'P', b[size_t(S) - 1]});
  for (int k = 2; k <= S - 2; ++k) ops.push_back({'F', f[size_t(k)]});
  if (ends) ops.push_back({'B', b[0]});
  ops.push_back({'F', f[size_t(S) - 1]});
  ops.push_back({'U', 0});
  for (int k = ends ? 1 : 0; k <= S - 2; ++k) ops.push_back({'B', b[size_t(k)]});
  return ops;
}

struct Layout {
  int S, K, rounds, rounds_per_iter;
  bool reference_slot = false;  // schedule.amdp.step_slot: reference
  std::vector<std::vector<int>> host;  // host[gpu][p] = virtual stage of pipeline p on gpu
};

// ALLREDUCE_GRAD of virtual stage v over its K replicas.
Action replica_reduce(int v) {
  Action a = compute(ActionKind::ALLREDUCE_GRAD, v, -1);
  a.group = kGroupReplicas;
  return a;
}

// The step slot: per hosted stage in ascending model stage order, ALLREDUCE_GRAD then STEP
// (clean), or STEP only (reference: the reduce ran after the stage's last backward).
void emit_slot(const Layout& L, int gpu, std::vector<Action>* list) {
  std::vector<int> vs = L.host[size_t(gpu)];
  std::sort(vs.begin(), vs.end(), [&](int a, int b) { return a % L.S < b % L.S; });
  for (int v : vs) {
    if (!L.reference_slot) list->push_back(replica_reduce(v));
    list->push_back(compute(ActionKind::STEP, v, -1));
  }
}

// The reference rounds (S = 4q): round 0 omits the deferred backwards, the tail after the last
// round runs only them; U is a step slot in the first round of every iteration t >= 1.
void reference_rounds(const Layout& L, Schedule* s) {
  const int S = L.S, R = 2 * L.K;  // R micro-batches per round
  for (int gpu = 0; gpu < S; ++gpu) {
    auto& list = s->per_rank[size_t(gpu)];
    const std::vector<RefOp> round =
        S == 4 ? std::vector<RefOp>(std::begin(kRef4[gpu]), std::end(kRef4[gpu]))
               : reference_round(S, L.host[size_t(gpu)]);
    const int m = R * L.rounds_per_iter;
    auto op = [&](ActionKind k, int j, int r) {
      const int v = L.host[size_t(gpu)][size_t(j % L.K)], g = R * r + j;
      list.push_back(compute(k, v, g));
      // Reference slot: the replica's gradient is reduced right after its last backward of the
      // iteration (the second micro-batch of its pipeline in the iteration's last round).
      if (L.reference_slot && k == ActionKind::B && g == m * (g / m) + m - L.K + j % L.K)
        list.push_back(replica_reduce(v));
    };
    for (int r = 0; r <= L.rounds; ++r) {
      for (const RefOp& o : round) {
        if (o.kind == 'P' && r > 0) op(ActionKind::B, o.j, r - 1);
        if (r == L.rounds) continue;  // the tail: only the pending backwards
        if (o.kind == 'F') op(ActionKind::F, o.j, r);
        if (o.kind == 'B') op(ActionKind::B, o.j, r);
        if (o.kind == 'U' && r > 0 && r % L.rounds_per_iter == 0) emit_slot(L, gpu, &list);
      }
    }
    emit_slot(L, gpu, &list);
  }
}

// The general rule's replica groups: the ranks hosting the same model stages (the even and the
// odd ranks), each a barrier for its step slot.
std::vector<std::vector<int>> replica_groups(const Layout& L) {
  std::map<std::set<int>, std::vector<int>> by_hosted;
  for (int gpu = 0; gpu < L.S; ++gpu) {
    std::set<int> hosted;
    for (int v : L.host[size_t(gpu)]) hosted.insert(v % L.S);
    by_hosted[hosted].push_back(gpu);
  }
  std::vector<std::vector<int>> out;
  for (auto& [hosted, gpus] : by_hosted) out.push_back(gpus);
  return out;
}

// Event state of the general rule: per virtual stage, ops done and their end times (-1 = not run).
struct GeneralState {
  std::vector<std::vector<int>> f_end, b_end;  // [v][n], n = index of the micro-batch in its pipeline
  std::vector<int> kf, kb, busy, slots;
};

// The earliest time the next F (backward = false) or B of virtual stage v may start, or -1.
int ready_at(const Layout& L, const GeneralState& st, int v, bool backward) {
  const int S = L.S, s = v % S;
  if (backward) {
    const int n = st.kb[size_t(v)];
    if (n >= st.kf[size_t(v)]) return -1;
    return s == S - 1 ? st.f_end[size_t(v)][size_t(n)] : st.b_end[size_t(v) + 1][size_t(n)];
  }
  const int n = st.kf[size_t(v)];
  if (n >= 2 * L.rounds) return -1;
  if (s > 0) return st.f_end[size_t(v) - 1][size_t(n)];
  if (n == 0) return 0;
  // First stage: two micro-batches per round; round n/2 enters after the backward of the previous
  // round's first micro-batch here (so <= 2 forwards of the pipeline between two backwards).
  const int prev_f = st.f_end[size_t(v)][size_t(n) - 1];
  if (n % 2 == 1 || prev_f < 0) return prev_f;
  const int prev_b = st.b_end[size_t(v)][size_t(n) - 2];
  return prev_b < 0 ? -1 : std::max(prev_f, prev_b);
}

// Step slot k (k >= 1, in the first round of iteration k) of a replica group: when every member
// is free and has run all backwards of iterations < k, all members take it at once.
void take_slots(const Layout& L, const std::vector<std::vector<int>>& groups, int t, GeneralState* st,
                Schedule* s) {
  const int iters = L.rounds / L.rounds_per_iter, per_iter = 2 * L.rounds_per_iter;
  for (const auto& group : groups) {
    const int k = st->slots[size_t(group[0])] + 1;
    bool all = k < iters;
    for (int gpu : group) {
      all = all && st->busy[size_t(gpu)] <= t;
      for (int v : L.host[size_t(gpu)]) all = all && st->kb[size_t(v)] >= per_iter * k;
    }
    if (!all) continue;
    for (int gpu : group) {
      emit_slot(L, gpu, &s->per_rank[size_t(gpu)]);
      st->busy[size_t(gpu)] = t + 1;
      ++st->slots[size_t(gpu)];
    }
  }
}

// One free GPU at time t runs its best ready op: forwards first, then the earliest ready, then the
// oldest micro-batch, then the lower model stage (a total order: a GPU hosts distinct model
// stages). No forward of round k*rounds_per_iter + 1 before step slot k. Returns false if idle.
bool run_one(const Layout& L, int gpu, int t, GeneralState* st, Schedule* s) {
  const int S = L.S, K = L.K, iters = L.rounds / L.rounds_per_iter;
  const int k = st->slots[size_t(gpu)] + 1;
  std::tuple<bool, int, int, int> best{true, 0, 0, 0};
  int best_v = -1;
  for (int p = 0; p < K; ++p) {
    const int v = L.host[size_t(gpu)][size_t(p)];
    for (bool backward : {false, true}) {
      const int n = backward ? st->kb[size_t(v)] : st->kf[size_t(v)];
      if (!backward && k < iters && n >= 2 * (k * L.rounds_per_iter + 1)) continue;
      const int ready = ready_at(L, *st, v, backward);
      if (ready < 0 || ready > t) continue;
      const std::tuple<bool, int, int, int> key{backward, ready, n, v % S};
      if (best_v < 0 || key < best) best = key, best_v = v;
    }
  }
  if (best_v < 0) return false;
  const bool backward = std::get<0>(best);
  const int p = best_v / S, n = backward ? st->kb[size_t(best_v)]++ : st->kf[size_t(best_v)]++;
  const int mb = 2 * K * (n / 2) + p + K * (n % 2);
  s->per_rank[size_t(gpu)].push_back(compute(backward ? ActionKind::B : ActionKind::F, best_v, mb));
  auto& end = backward ? st->b_end : st->f_end;
  end[size_t(best_v)][size_t(n)] = st->busy[size_t(gpu)] = t + (backward ? 2 : 1);
  return true;
}

void general_rule(const Layout& L, Schedule* s) {
  const int S = L.S, V = S * L.K, per_pipe = 2 * L.rounds;
  GeneralState st;
  st.f_end.assign(size_t(V), std::vector<int>(size_t(per_pipe), -1));
  st.b_end = st.f_end;
  st.kf.assign(size_t(V), 0);
  st.kb = st.kf;
  st.busy.assign(size_t(S), 0);
  st.slots = st.busy;
  const auto groups = replica_groups(L);
  std::vector<bool> done(size_t(S), false);
  for (int t = 0, finished = 0; finished < S; ++t) {
    take_slots(L, groups, t, &st, s);
    for (int gpu = 0; gpu < S; ++gpu) {
      if (st.busy[size_t(gpu)] > t || done[size_t(gpu)] || !run_one(L, gpu, t, &st, s)) continue;
      bool all = true;
      for (int v : L.host[size_t(gpu)]) all = all && st.kb[size_t(v)] == per_pipe;
      if (all) {
        emit_slot(L, gpu, &s->per_rank[size_t(gpu)]);  // the final slot after the tail
        done[size_t(gpu)] = true;
        ++finished;
      }
    }
  }
}

}  // namespace

Status schedules_internal::check_amdp(const ScheduleSpec& spec) {
  const int S = spec.ranks, m = spec.microbatches;
  if (S < 2 || S % 2 != 0) {
    return Status::error("parallel.pp = " + std::to_string(S) +
                         " is not supported by schedule.kind 'amdp': it runs K = S/2 bidirectional "
                         "pipelines, so the number of pipeline stages must be even and >= 2");
  }
  if (m % S != 0) {
    return Status::error("training.microbatches = " + std::to_string(m) +
                         " is not a multiple of 2K = parallel.pp = " + std::to_string(S) +
                         ": amdp runs rounds of 2 micro-batches per pipeline (K = S/2 pipelines)");
  }
  if (spec.amdp_step_slot == "reference" && S != 4 && S != 8) {
    return Status::error("schedule.amdp.step_slot = reference reproduces the reference code, which "
                         "exists for parallel.pp 4 and 8 only (got " + std::to_string(S) +
                         "); use clean");
  }
  if (spec.amdp_step_slot == "reference" && !spec.amdp_zero_owner) {
    return Status::error("schedule.amdp.step_slot = reference needs schedule.amdp.zero_owner: true "
                         "(with an all-reduce, gradients accumulated between the reduce and the "
                         "step would make the replicas diverge)");
  }
  return Status::ok();
}

Status build_amdp(const ScheduleSpec& spec, Schedule* out) {
  const int S = spec.ranks;
  const int K = S / 2;
  const int m = spec.microbatches;
  PT_CHECK(S >= 2 && m % (2 * K) == 0);  // check_amdp
  Layout L;
  L.S = S;
  L.K = K;
  L.rounds_per_iter = m / (2 * K);
  L.rounds = L.rounds_per_iter * spec.segment_updates;
  L.reference_slot = spec.amdp_step_slot == "reference";
  L.host.assign(size_t(S), std::vector<int>(size_t(K), -1));
  Schedule s;
  s.num_ranks = S;
  s.num_stages = K * S;
  s.model_stages = S;
  s.pipelines = K;
  s.microbatches = m * spec.segment_updates;
  s.name = "amdp";
  s.stage_to_rank.assign(size_t(K * S), -1);
  s.per_rank.assign(size_t(S), {});
  for (int p = 0; p < K; ++p) {
    for (int st = 0; st < S; ++st) {
      const int gpu = amdp_gpu(S, p, st);
      s.stage_to_rank[size_t(p * S + st)] = gpu;
      L.host[size_t(gpu)][size_t(p)] = p * S + st;
    }
  }
  if (S % 4 == 0) {
    reference_rounds(L, &s);
  } else {
    general_rule(L, &s);
  }
  schedules_internal::assign_live_versions(&s, /*stash=*/false);
  *out = std::move(s);
  return Status::ok();
}

}  // namespace pt
