// NCCL for pipetrain_cuda_emu: the calls of pipeline/transport_nccl.cc (communicators,
// point-to-point, groups, the fp32 sum), served over MPI between the ranks' processes, so
// the NCCL transport and all-reducer run in CI on emulated GPUs (PIPETRAIN_EMU_DEVICES,
// runtime.cc: one per rank).
//
// Timing, within what CUDA and NCCL allow:
//   * ncclSend runs when issued: its stream's queued work first (so the waits before it,
//     e.g. on the producer's event, have run), then it reads the buffer and posts an
//     MPI_Isend of a copy. A send never blocks, as a pending NCCL send holds up nothing
//     on its rank.
//   * ncclRecv posts its MPI_Irecv when issued (so receives match sends in issue order)
//     and writes the buffer in a stream op, which runs when something waits for the
//     stream (lazy, runtime.cc; at once on an eager stream), after the stream's earlier
//     work (the wait for the buffer's previous reader). A host waits for a receive only
//     where it would wait on the GPU, never earlier than MPI's blocking receive, the
//     contract the lowered schedules are checked against (transport_nccl.cc's header),
//     so a deadlock-free schedule cannot hang here; and a consumer that does not wait for
//     the receive's event reads the buffer's old contents.
//   * Inside ncclGroupStart/End the calls are kept and run at ncclGroupEnd, sends first.
//   * ncclAllReduce (sum of floats) sends this rank's values to rank 0 when issued; rank 0
//     adds them in rank order and sends the result back in a stream op, which runs when
//     something waits for the stream (lazy, runtime.cc), as the NCCL kernel would finish.
// Communicators: the members of a unique id meet through files in /tmp (their world
// ranks and devices; a handshake over MPI, then the files go; two members on one device
// fail as in NCCL), and use MPI_COMM_WORLD with one tag per
// communicator (its creator's world rank and a counter), FIFO per peer as NCCL is per
// channel. Every wait is the run's own (pipeline/mpi_wait.h: the runtime.watchdog_seconds
// deadline, ending the job naming the peer; sleeping rather than spinning).
#include <mpi.h>
#include <nccl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/mpi_wait.h"
#include "tests/cuda_emu/emu.h"

struct ncclComm {
  int rank = 0, nranks = 1, tag = 0;
  std::vector<int> world;  // MPI_COMM_WORLD rank of each member
};

namespace {

constexpr int kTagBase = 1 << 20;

struct Id {  // what an ncclUniqueId holds here
  int creator = 0, counter = 0;
  long pid = 0;
};

Id parse(const ncclUniqueId& id) {
  Id v;
  if (std::sscanf(id.internal, "emu-nccl %d %d %ld", &v.creator, &v.counter, &v.pid) != 3)
    emu::fail("NCCL stand-in: not a unique id of ncclGetUniqueId");
  return v;
}

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// Completes req within the run's wait deadline, or ends the job naming what it waited for.
void wait_or_fail(MPI_Request* req, const char* what, int peer) {
  pt::wait_request(req, nullptr,
                   [&] { return std::string("NCCL stand-in: ") + what + " world rank " + std::to_string(peer); });
}

// Sends in flight: the copy each MPI_Isend reads, kept until it completes.
struct Pending {
  MPI_Request req;
  std::vector<char> bytes;
};
std::deque<std::unique_ptr<Pending>> g_sends;

void reap_sends() {
  while (!g_sends.empty()) {
    int done = 0;
    MPI_Test(&g_sends.front()->req, &done, MPI_STATUS_IGNORE);
    if (!done) return;
    g_sends.pop_front();
  }
}

void post_send(const void* data, size_t bytes, int world_peer, int tag) {
  reap_sends();
  auto p = std::make_unique<Pending>();
  p->bytes.resize(bytes);
  {
    const emu::DeviceAccess access;
    if (bytes) std::memcpy(p->bytes.data(), data, bytes);
  }
  MPI_Isend(p->bytes.data(), int(bytes), MPI_BYTE, world_peer, tag, MPI_COMM_WORLD, &p->req);
  g_sends.push_back(std::move(p));
}

void blocking_recv(void* data, size_t bytes, int world_peer, int tag, const char* what) {
  std::vector<char> tmp(bytes);
  MPI_Request req;
  MPI_Irecv(tmp.data(), int(bytes), MPI_BYTE, world_peer, tag, MPI_COMM_WORLD, &req);
  wait_or_fail(&req, what, world_peer);
  const emu::DeviceAccess access;
  if (bytes) std::memcpy(data, tmp.data(), bytes);
}

void require_float(ncclDataType_t t) {
  if (t != ncclFloat) emu::fail("NCCL stand-in: only ncclFloat is emulated");
}

// ---- the members of a unique id meet ----
std::string meeting_file(const Id& id, int rank) {
  return "/tmp/pipetrain_emu_nccl." + std::to_string(id.pid) + "." + std::to_string(id.creator) + "." +
         std::to_string(id.counter) + "." + std::to_string(rank);
}

// Each member's world rank and device, read from every member's file.
std::vector<int> meet(const Id& id, int nranks, int rank, int tag, std::vector<int>* devices) {
  const std::string mine = meeting_file(id, rank);
  {
    std::ofstream(mine + ".tmp") << world_rank() << " " << emu::current_device() << "\n";
  }
  std::rename((mine + ".tmp").c_str(), mine.c_str());
  std::vector<int> world(size_t(nranks), -1);
  devices->assign(size_t(nranks), -1);
  for (int r = 0; r < nranks; ++r)
    pt::wait_until([&] { return bool(std::ifstream(meeting_file(id, r)) >> world[size_t(r)] >> (*devices)[size_t(r)]); },
                   [&] { return "NCCL stand-in: ncclCommInitRank waiting for member " + std::to_string(r); });
  // Everyone has read every file before any is removed: a handshake through rank 0.
  char token = 0;
  if (rank == 0) {
    for (int r = 1; r < nranks; ++r) blocking_recv(&token, 1, world[size_t(r)], tag, "ncclCommInitRank from");
    for (int r = 1; r < nranks; ++r) post_send(&token, 1, world[size_t(r)], tag);
  } else {
    post_send(&token, 1, world[0], tag);
    blocking_recv(&token, 1, world[0], tag, "ncclCommInitRank from");
  }
  std::remove(mine.c_str());
  return world;
}

// ---- groups ----
struct Call {
  enum Kind { kSend, kRecv, kAllReduce } kind;
  const void* src;
  void* dst;
  size_t count;
  int peer;
  ncclComm_t comm;
  cudaStream_t stream;
};
int g_group_depth = 0;
char g_last_error[200] = "";
std::vector<Call> g_group;

void run_send(const Call& c) {
  emu::synchronize(c.stream);  // the stream's work before the send, its waits included
  post_send(c.src, c.count * sizeof(float), c.comm->world[size_t(c.peer)], c.comm->tag);
}

// Posted now (so receives match sends in issue order, FIFO as NCCL); the data lands in
// the buffer in a stream op, after the stream's earlier work (the wait for the buffer's
// previous reader), when something waits for the stream: a consumer that does not wait
// for the receive reads the buffer's old contents.
void run_recv(const Call& c) {
  struct Posted {
    MPI_Request req;
    std::vector<char> bytes;
  };
  auto posted = std::make_shared<Posted>();
  const size_t bytes = c.count * sizeof(float);
  posted->bytes.resize(bytes);
  const int peer = c.comm->world[size_t(c.peer)];
  MPI_Irecv(posted->bytes.data(), int(bytes), MPI_BYTE, peer, c.comm->tag, MPI_COMM_WORLD, &posted->req);
  emu::submit(c.stream, [posted, dst = c.dst, bytes, peer] {
    wait_or_fail(&posted->req, "ncclRecv from", peer);
    const emu::DeviceAccess access;
    if (bytes) std::memcpy(dst, posted->bytes.data(), bytes);
  });
}

// Rank 0 sums in rank order, (x0 + x1) + x2 ..., and returns the sum to every member.
void run_all_reduce(const Call& c) {
  emu::synchronize(c.stream);
  const size_t bytes = c.count * sizeof(float);
  ncclComm_t comm = c.comm;
  auto mine = std::make_shared<std::vector<float>>(c.count);
  {
    const emu::DeviceAccess access;
    if (bytes) std::memcpy(mine->data(), c.src, bytes);
  }
  if (comm->rank != 0) post_send(mine->data(), bytes, comm->world[0], comm->tag);
  float* dst = static_cast<float*>(c.dst);
  emu::submit(c.stream, [comm, mine, dst, bytes, n = c.count] {
    if (comm->rank == 0) {
      std::vector<float> other(n);
      for (int r = 1; r < comm->nranks; ++r) {
        blocking_recv(other.data(), bytes, comm->world[size_t(r)], comm->tag, "ncclAllReduce from");
        for (size_t i = 0; i < n; ++i) (*mine)[i] += other[i];
      }
      for (int r = 1; r < comm->nranks; ++r) post_send(mine->data(), bytes, comm->world[size_t(r)], comm->tag);
    } else {
      blocking_recv(mine->data(), bytes, comm->world[0], comm->tag, "ncclAllReduce result from");
    }
    const emu::DeviceAccess access;
    if (bytes) std::memcpy(dst, mine->data(), bytes);
  });
}

ncclResult_t issue(const Call& c) {
  if (g_group_depth > 0) {
    g_group.push_back(c);
    return ncclSuccess;
  }
  if (c.kind == Call::kSend) run_send(c);
  if (c.kind == Call::kRecv) run_recv(c);
  if (c.kind == Call::kAllReduce) run_all_reduce(c);
  return ncclSuccess;
}

}  // namespace

extern "C" {

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  static int counter = 0;
  if (counter >= 2048) emu::fail("NCCL stand-in: more than 2048 unique ids in one process");
  std::memset(id, 0, sizeof *id);
  std::snprintf(id->internal, sizeof id->internal, "emu-nccl %d %d %ld", world_rank(), counter++, long(getpid()));
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank) {
  const Id id = parse(commId);
  if (nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
  auto* c = new ncclComm;
  c->rank = rank;
  c->nranks = nranks;
  c->tag = kTagBase + id.creator * 2048 + id.counter;
  std::vector<int> devices;
  c->world = meet(id, nranks, rank, c->tag, &devices);
  // As NCCL: two members on one GPU is an error ("Duplicate GPU detected"), not a hang.
  for (int r = 0; r < nranks; ++r)
    if (r != rank && devices[size_t(r)] == devices[size_t(rank)]) {
      std::snprintf(g_last_error, sizeof g_last_error,
                    "Duplicate GPU detected: rank %d and rank %d both on CUDA device %d (NCCL stand-in)", rank, r,
                    devices[size_t(rank)]);
      delete c;
      return ncclInvalidUsage;
    }
  *comm = c;
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  for (auto& p : g_sends) wait_or_fail(&p->req, "a send at ncclCommDestroy to", -1);
  g_sends.clear();
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclSend(const void* sendbuff, size_t count, ncclDataType_t datatype, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  require_float(datatype);
  return issue(Call{Call::kSend, sendbuff, nullptr, count, peer, comm, stream});
}

ncclResult_t ncclRecv(void* recvbuff, size_t count, ncclDataType_t datatype, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  require_float(datatype);
  return issue(Call{Call::kRecv, nullptr, recvbuff, count, peer, comm, stream});
}

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
  require_float(datatype);
  if (op != ncclSum) emu::fail("NCCL stand-in: only ncclSum is emulated");
  return issue(Call{Call::kAllReduce, sendbuff, recvbuff, count, 0, comm, stream});
}

ncclResult_t ncclGroupStart() {
  ++g_group_depth;
  return ncclSuccess;
}

// The group's calls together: sends first, so two members' groups never wait on each other.
ncclResult_t ncclGroupEnd() {
  if (g_group_depth == 0) return ncclInvalidUsage;
  if (--g_group_depth > 0) return ncclSuccess;
  std::vector<Call> calls;
  calls.swap(g_group);
  for (const Call& c : calls)
    if (c.kind == Call::kSend) run_send(c);
  for (const Call& c : calls)
    if (c.kind == Call::kRecv) run_recv(c);
  for (const Call& c : calls)
    if (c.kind == Call::kAllReduce) run_all_reduce(c);
  return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t result) {
  return result == ncclSuccess ? "no error" : "error (NCCL stand-in of the CUDA emulator)";
}
const char* ncclGetLastError(ncclComm_t) { return g_last_error; }

}  // extern "C"
