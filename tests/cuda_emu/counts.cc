// Host-side costs of the CUDA calls a process made (emu.h, Count): what a GPU run pays
// in host waits and allocator calls, counted without a GPU. With PIPETRAIN_EMU_COUNTS
// set to a path, each process appends one JSON line at exit:
//   {"rank": R, "launches": ..., "library_calls": ..., "device_syncs": ..., ...}
// R is the MPI rank from Open MPI's or PMIx's environment, else -1. Two runs of
// different lengths give the per-step counts by difference (tests/cuda_emu/host_costs_test.sh).
#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/report_line.h"
#include "tests/cuda_emu/emu.h"

namespace emu {
namespace {

constexpr std::array<const char*, size_t(Count::kN)> kNames = {
    "launches",    "library_calls", "device_syncs", "stream_syncs", "event_syncs", "sync_copies",
    "mallocs",     "frees",         "host_allocs",  "host_frees",   "stream_allocs"};

// Constant-initialized and trivially destructible: valid in Report's destructor at exit.
std::array<std::atomic<unsigned long long>, size_t(Count::kN)> g_counts{};

struct Report {
  ~Report() {
    const char* path = std::getenv("PIPETRAIN_EMU_COUNTS");
    if (path == nullptr || *path == '\0') return;
    std::string line = "{\"rank\": " + std::to_string(pt::rank_from_environment());
    for (size_t i = 0; i < kNames.size(); ++i)
      line += std::string(", \"") + kNames[i] + "\": " + std::to_string(g_counts[i].load());
    line += "}\n";
    if (!pt::append_line(path, line)) std::fprintf(stderr, "emu: cannot append the counts to %s\n", path);
  }
} g_report;

}  // namespace

void count(Count what) { g_counts[size_t(what)].fetch_add(1, std::memory_order_relaxed); }

}  // namespace emu
