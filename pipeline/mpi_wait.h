// Waits on MPI requests with a deadline (the watchdog, runtime.watchdog_seconds). Every
// blocking MPI wait of a run (stage-boundary receives and send completions, collectives)
// goes through wait_request: it polls MPI_Test, spinning for a few microseconds and then
// sleeping with a growing interval (at most 1 ms), so a rank waiting on a slow peer does
// not burn a core. When the deadline passes it reports, through the fatal reporter, what
// it was waiting for (the action and the peer or group), which aborts the whole job
// (MPI_Abort): every rank ends non-zero within the deadline plus the abort's propagation.
#pragma once

#include <mpi.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace pt {

// Seconds any single wait may take; <= 0 means no deadline. Default 600.
void set_wait_deadline_seconds(double seconds);
double wait_deadline_seconds();

// Collective over MPI_COMM_WORLD, once after MPI_Init: a private communicator on which every
// waiting rank answers liveness pings, so that a rank whose collective expired can name the
// members that are silent (stopped or hung) rather than only the group.
void init_watchdog_pings();

// Members of `comm` that do not answer a ping within `seconds` (every live rank answers
// while it waits), as (rank in comm, world rank) pairs; empty when all answer or pings are off.
std::vector<std::pair<int, int>> silent_members(MPI_Comm comm, double seconds);

// Work every polling wait does besides answering pings: the ipc transport registers its
// progress (take the credits that arrived, fill the slots they free) so that a rank blocked
// in any MPI wait of the run, a collective included, still delivers its queued messages, as
// MPI's own progress engine does for pending sends. A hook must not wait itself.
int add_poll_hook(std::function<void()> hook);  // returns an id for remove_poll_hook
void remove_poll_hook(int id);

// Completes `request` (filling *status unless null) or ends the job after the deadline.
// `what` is evaluated only on expiry: it names the action and the peer, e.g.
// "receive of an activation from pipeline rank 2".
template <class WhatFn>
void wait_request(MPI_Request* request, MPI_Status* status, WhatFn&& what);

// Non-template core: `what` already built.
void wait_request_described(MPI_Request* request, MPI_Status* status, const std::string& what);
// The polling loop; returns false when the deadline passed (request still pending).
bool poll_until_deadline(MPI_Request* request, MPI_Status* status);
// The same loop over a condition: `done` is called until it returns true (it may make
// progress of its own, e.g. test several requests); false when the deadline passed.
bool poll_until_deadline(const std::function<bool()>& done);
[[noreturn]] void report_wait_expired(const std::string& what);

template <class WhatFn>
void wait_request(MPI_Request* request, MPI_Status* status, WhatFn&& what) {
  if (!poll_until_deadline(request, status)) report_wait_expired(what());
}

// Waits until `done()` is true or ends the job after the deadline, naming what().
template <class DoneFn, class WhatFn>
void wait_until(DoneFn&& done, WhatFn&& what) {
  if (!poll_until_deadline(std::function<bool()>(done))) report_wait_expired(what());
}

}  // namespace pt
