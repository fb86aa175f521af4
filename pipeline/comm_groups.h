// Transport groups: which adjacent communication actions of one rank's lowered list
// the executor issues as one group (Transport::group_begin/group_end; on NCCL one
// ncclGroupStart/End, as Megatron's send_forward_recv_backward).
//
// Rule. A comm run is a maximal run of consecutive SEND_*/RECV_* actions of a rank's
// list (nothing else between them: no compute, STEP or ALLREDUCE_GRAD). A run C of
// rank r becomes a group iff it is one half of a mirror pair: every action of C has
// the same peer p, C holds at least one send and one receive, and the counterparts of
// C's actions (the receive of each send, the send of each receive) are exactly the
// actions of one comm run of p. The run of p is then a group too (the relation is
// symmetric). Every other run is issued action by action, as without groups.
//
// Why mirror pairs only: a group may complete only once every member is matched (NCCL
// launches the members together; the analysis assumes this strongest coupling, so a
// schedule free of deadlock under it is free under any weaker one). Under it, grouping
// every run with a send and a receive deadlocks real schedules (interleaved_1f1b,
// 2 ranks x 2 chunks, m = 4: each rank's group sends a message the peer receives only
// after its own group). A mirror group waits for nothing the ungrouped list does not
// wait for already: rank r cannot pass C's receives before p has posted the sends of
// its run, i.e. reached it, and vice versa; both groups complete exactly when both
// ranks have reached them. validate_comm_groups (validate.h) checks the groups formed
// against the grouped semantics for any schedule; docs/transports.md states the
// argument in full.
#pragma once

#include <vector>

#include "pipeline/action.h"

namespace pt {

struct CommGroup {
  int begin = 0;  // first tick of the group in the rank's list
  int end = 0;    // one past its last tick
};

// The comm runs of `list` that hold at least one send and one receive (group candidates).
std::vector<CommGroup> comm_runs(const std::vector<Action>& list);

// Per rank of `lowered` (which must pass validate_lowered), its groups in list order.
std::vector<std::vector<CommGroup>> comm_groups(const Schedule& lowered);

}  // namespace pt
