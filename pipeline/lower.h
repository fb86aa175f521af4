// Lowering pass: compute-only schedule -> schedule with SEND/RECV actions (PyTorch pipelining's
// _add_send_recv shape). Rules, per rank list:
//   * right after F(s, mb) whose stage s+1 lives on another rank: SEND_ACT(s, mb) -> rank(s+1);
//     right after B/Bx(s, mb) whose stage s-1 lives on another rank: SEND_GRAD(s, mb) -> rank(s-1);
//   * the matching RECV_ACT(s+1, mb) / RECV_GRAD(s-1, mb) goes on the receiving rank no later than
//   the compute
//     that consumes it, and, per (sender, receiver) channel, receives come in the sender's send
//     order (a receive is pulled earlier when a later-sent message is needed first). FIFO channels
//     are what NCCL's in-order matching of send/recv between one pair of ranks needs, and they add
//     no waiting: the earlier message was sent first.
//   * consecutive comm actions form one group ("tick"): the sends (sorted by peer) before the
//   receives (sorted
//     by peer, channel order kept), so posting a group never waits on itself.
//   * stages on the same rank exchange nothing;
//   * STEP and ALLREDUCE_GRAD pass through in place (no message of their own).
// With SEND non-blocking and RECV blocking, the result is deadlock-free iff the compute order is;
// simulate() checks that.
#pragma once

#include "common/status.h"
#include "pipeline/action.h"

namespace pt {

// `compute` must pass validate_compute(); errors are its errors.
Status lower_communication(const Schedule& compute, Schedule* lowered);

}  // namespace pt
