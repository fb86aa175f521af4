// agree_status: a collective over `comm` after which every rank knows whether every rank's
// own step (opening a device, a shared buffer) succeeded, so that all ranks fail together
// instead of some waiting forever in the next collective.
#pragma once

#include <mpi.h>

#include <string>

#include "common/status.h"

namespace pt {

// The failing ranks return their own `mine`; the others an error "WHAT: rank(s) R of the
// communicator FAILED (see their message)". ok on every rank when every rank is ok.
Status agree_status(MPI_Comm comm, const Status& mine, const std::string& what, const std::string& failed);

}  // namespace pt
