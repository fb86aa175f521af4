// One-line reports that processes of a run append to a shared file at exit
// (PIPETRAIN_OP_TIMES, model/cuda/op_timer.h; the CUDA emulator's PIPETRAIN_EMU_COUNTS,
// tests/cuda_emu/counts.cc): written from destructors, so neither needs MPI.
#pragma once

#include <string>

namespace pt {

// This process's MPI rank from the launcher's environment (Open MPI, PMIx, PMI), or -1.
int rank_from_environment();

// Appends `line` (with its newline) to `path` in one write(2) under O_APPEND, so the
// lines of concurrent processes do not interleave. false when the file cannot take it.
bool append_line(const char* path, const std::string& line);

}  // namespace pt
