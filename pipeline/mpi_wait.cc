#include "pipeline/mpi_wait.h"

#include <chrono>
#include <cstdio>
#include <thread>

#include "common/check.h"

namespace pt {
namespace {

double g_deadline_s = 600.0;

}  // namespace

void set_wait_deadline_seconds(double seconds) { g_deadline_s = seconds; }
double wait_deadline_seconds() { return g_deadline_s; }

bool poll_until_deadline(MPI_Request* request, MPI_Status* status) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  MPI_Status ignored;
  MPI_Status* st = status ? status : &ignored;
  int done = 0;
  // Spin briefly (most stage-boundary messages arrive within microseconds of being
  // waited for), then sleep 10 us, doubling up to 1 ms: latency stays small and an
  // idle wait costs well under 1% of a core.
  for (int i = 0; i < 64; ++i) {
    PT_MPI_CHECK(MPI_Test(request, &done, st));
    if (done) return true;
  }
  auto nap = std::chrono::microseconds(10);
  const auto limit = std::chrono::duration<double>(g_deadline_s);
  while (true) {
    PT_MPI_CHECK(MPI_Test(request, &done, st));
    if (done) return true;
    if (g_deadline_s > 0 && Clock::now() - start > limit) return false;
    std::this_thread::sleep_for(nap);
    if (nap < std::chrono::microseconds(1000)) nap *= 2;
  }
}

void report_wait_expired(const std::string& what) {
  char limit[64];
  std::snprintf(limit, sizeof limit, "%.0f", g_deadline_s);
  fatal_error("watchdog", __FILE__, __LINE__,
              "no progress for " + std::string(limit) + " s (runtime.watchdog_seconds) while waiting for " + what +
                  "; that peer is stopped, hung or dead. Ending the job; the last complete checkpoint is kept");
}

void wait_request_described(MPI_Request* request, MPI_Status* status, const std::string& what) {
  wait_request(request, status, [&] { return what; });
}

}  // namespace pt
