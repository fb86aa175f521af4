// Transport groups: which adjacent communication actions of one rank's lowered list
// the executor issues as one group (Transport::group_begin/group_end; on NCCL one
// ncclGroupStart/End, as Megatron's send_forward_recv_backward).
//
// Rule: a group is a maximal run of consecutive SEND_*/RECV_* actions of the list
// (nothing else between them: no compute, STEP or ALLREDUCE_GRAD) that holds at
// least one send and at least one receive. Runs of sends only or receives only are
// not grouped (a lone send never waits; receives block one by one, as before).
// Lowering puts a tick's sends before its receives (pipeline/lower.h), so a group is
// "sends, then receives".
//
// Semantics assumed for deadlock analysis (the strongest a transport may impose, so
// a schedule free of deadlock under it is free under any weaker one): the host leaves
// a group only when every member is matched, i.e. each send's receive and each
// receive's send has been posted by its peer. validate_comm_groups (validate.h)
// checks every lowered schedule against it; docs/transports.md gives the argument.
#pragma once

#include <vector>

#include "pipeline/action.h"

namespace pt {

struct CommGroup {
  int begin = 0;  // first tick of the group in the rank's list
  int end = 0;    // one past its last tick
};

// The groups of `list` in list order.
std::vector<CommGroup> comm_groups(const std::vector<Action>& list);

}  // namespace pt
