#include "pipeline/mpi_wait.h"

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "common/check.h"

namespace pt {
namespace {

double g_deadline_s = 600.0;
std::vector<std::pair<int, std::function<void()>>> g_hooks;  // add_poll_hook
int g_next_hook = 0;

void run_hooks() {
  for (auto& [id, hook] : g_hooks) hook();
}
MPI_Comm g_ping_comm = MPI_COMM_NULL;
constexpr int kPingTag = 1, kPongTag = 2;

// Answers every pending ping (a live rank inside any wait does this while it polls).
void answer_pings() {
  if (g_ping_comm == MPI_COMM_NULL) return;
  int flag = 1;
  while (flag) {
    MPI_Status st;
    PT_MPI_CHECK(MPI_Iprobe(MPI_ANY_SOURCE, kPingTag, g_ping_comm, &flag, &st));
    if (!flag) return;
    char b = 0;
    PT_MPI_CHECK(MPI_Recv(&b, 1, MPI_CHAR, st.MPI_SOURCE, kPingTag, g_ping_comm, MPI_STATUS_IGNORE));
    MPI_Request req;
    PT_MPI_CHECK(MPI_Isend(&b, 1, MPI_CHAR, st.MPI_SOURCE, kPongTag, g_ping_comm, &req));
    PT_MPI_CHECK(MPI_Request_free(&req));
  }
}

}  // namespace

void init_watchdog_pings() {
  if (g_ping_comm == MPI_COMM_NULL) PT_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &g_ping_comm));
}

std::vector<std::pair<int, int>> silent_members(MPI_Comm comm, double seconds) {
  if (g_ping_comm == MPI_COMM_NULL) return {};
  int n = 0, me = 0;
  MPI_Comm_size(comm, &n);
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  MPI_Group group, world;
  MPI_Comm_group(comm, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world);
  std::vector<int> local(static_cast<size_t>(n)), global(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) local[size_t(i)] = i;
  MPI_Group_translate_ranks(group, n, local.data(), world, global.data());
  std::vector<char> out(static_cast<size_t>(n)), in(static_cast<size_t>(n));
  std::vector<MPI_Request> sends(static_cast<size_t>(n), MPI_REQUEST_NULL), recvs(static_cast<size_t>(n), MPI_REQUEST_NULL);
  for (int i = 0; i < n; ++i) {
    if (global[size_t(i)] == me) continue;
    MPI_Isend(&out[size_t(i)], 1, MPI_CHAR, global[size_t(i)], kPingTag, g_ping_comm, &sends[size_t(i)]);
    MPI_Irecv(&in[size_t(i)], 1, MPI_CHAR, global[size_t(i)], kPongTag, g_ping_comm, &recvs[size_t(i)]);
  }
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    answer_pings();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::vector<std::pair<int, int>> silent;
  for (int i = 0; i < n; ++i) {
    int done = 1;
    if (recvs[size_t(i)] != MPI_REQUEST_NULL) MPI_Test(&recvs[size_t(i)], &done, MPI_STATUS_IGNORE);
    if (!done) silent.push_back({i, global[size_t(i)]});
  }
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  return silent;
}

int add_poll_hook(std::function<void()> hook) {
  g_hooks.push_back({g_next_hook, std::move(hook)});
  return g_next_hook++;
}

void remove_poll_hook(int id) {
  for (auto it = g_hooks.begin(); it != g_hooks.end(); ++it)
    if (it->first == id) {
      g_hooks.erase(it);
      return;
    }
}

void set_wait_deadline_seconds(double seconds) { g_deadline_s = seconds; }
double wait_deadline_seconds() { return g_deadline_s; }

bool poll_until_deadline(MPI_Request* request, MPI_Status* status) {
  MPI_Status ignored;
  MPI_Status* st = status ? status : &ignored;
  return poll_until_deadline([&] {
    int done = 0;
    PT_MPI_CHECK(MPI_Test(request, &done, st));
    return done != 0;
  });
}

bool poll_until_deadline(const std::function<bool()>& done) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  // Spin briefly (most stage-boundary messages arrive within microseconds of being
  // waited for), then sleep 10 us, doubling up to 1 ms: latency stays small and an
  // idle wait costs well under 1% of a core.
  for (int i = 0; i < 64; ++i) {
    if (done()) return true;
    run_hooks();
  }
  auto nap = std::chrono::microseconds(10);
  const auto limit = std::chrono::duration<double>(g_deadline_s);
  while (true) {
    if (done()) return true;
    run_hooks();
    answer_pings();
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
