// Static checks of a schedule (PyTorch pipelining's _validate_schedule). Errors are a Status whose
// message states the rule, then the rank x tick listing (format_schedule) with the failing tick
// marked
// "<-- ERROR HERE".
#pragma once

#include <vector>

#include "common/status.h"
#include "pipeline/action.h"
#include "pipeline/comm_groups.h"

namespace pt {

// Compute-level rules (a builder's output, or the compute actions of a lowered schedule):
//   * shape: per_rank has num_ranks lists, stage_to_rank has num_stages entries in [0, num_ranks);
//   * every action's stage is in range and owned by the rank that runs it; micro-batches in [0,
//   microbatches);
//   * each (stage, mb) has exactly one F and either one B or one Bx and one Bw (a
//     partial_backward list, action.h: at most one B or Bx, and a Bx may lack its Bw);
//   * F before B/Bx, Bx before Bw on the owning rank;
//   * ALLREDUCE_GRAD and AVERAGE name a group (Action::group != 0), no other action does;
//   * AVERAGE(s) (group :rep only) names a model stage whose replicas all live on its rank, none
//     of them with a micro-batch in flight (its F run, its B or Bw not yet).
Status validate_compute(const Schedule& s);

// validate_compute plus the communication rules of a lowered schedule:
//   * every cross-rank edge has exactly one SEND and one RECV with the right peers, SEND_ACT(s)
//   pairing with
//     RECV_ACT(s+1) and SEND_GRAD(s) with RECV_GRAD(s-1), for the same micro-batch;
//   * a SEND comes after its producing compute, a RECV before its consuming compute;
//   * no comm action between stages on one rank;
//   * partial_backward: a SEND_GRAD goes only to a stage that runs a backward of that mb;
//   * per (sender, receiver) channel, receives are in send order (NCCL matches p2p messages in
//   order).
Status validate_lowered(const Schedule& s);

// The transport groups of comm_groups.h cannot deadlock: every rank's list runs to its end
// when each group completes only once all its members are matched (each send's receive and
// each receive's send posted by the peer), ungrouped sends never wait, ungrouped receives
// wait for their send, and AMDP's replica ALLREDUCE_GRADs wait for every replica (as in
// simulate.h). `s` must pass validate_lowered. The error marks a blocked tick of the cycle.
// Why lowered schedules pass: docs/transports.md, "Groups". The second form checks the
// given groups (per rank, tick ranges of comm actions) instead of comm_groups(s).
Status validate_comm_groups(const Schedule& s);
Status validate_comm_groups(const Schedule& s, const std::vector<std::vector<CommGroup>>& groups);

}  // namespace pt
