// MPI collectives: non-blocking MPI-3 calls completed by wait_request (mpi_wait.h), so a
// silent peer ends the job after runtime.watchdog_seconds instead of hanging it.
#include <mpi.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "common/check.h"
#include "pipeline/collectives.h"
#include "pipeline/mpi_wait.h"
#include "pipeline/process_groups.h"

namespace pt {
namespace {

class MpiCollectives : public Collectives {
 public:
  explicit MpiCollectives(const ProcessGroups& g) : groups_(g) {}
  ~MpiCollectives() override {
    if (replicas_ != MPI_COMM_NULL) MPI_Comm_free(&replicas_);
  }
  int rank(Group g) const override {
    int r = 0;
    PT_MPI_CHECK(MPI_Comm_rank(comm(g), &r));
    return r;
  }
  int size(Group g) const override {
    int n = 1;
    PT_MPI_CHECK(MPI_Comm_size(comm(g), &n));
    return n;
  }
  void allreduce_sum(Group g, float* d, size_t n) override { allreduce(g, d, n, MPI_FLOAT, MPI_SUM, "sum"); }
  void allreduce_sum(Group g, double* d, size_t n) override { allreduce(g, d, n, MPI_DOUBLE, MPI_SUM, "sum"); }
  void allreduce_max(Group g, double* d, size_t n) override { allreduce(g, d, n, MPI_DOUBLE, MPI_MAX, "max"); }
  void allreduce_max(Group g, int64_t* d, size_t n) override { allreduce(g, d, n, MPI_INT64_T, MPI_MAX, "max"); }
  // MPI_Iallreduce; wait() completes it with the deadline (progress also happens in every
  // other MPI wait of the rank meanwhile, e.g. stage-boundary receives).
  int64_t start_allreduce_sum(Group g, float* d, size_t n, void* ready) override {
    PT_CHECK_MSG(ready == nullptr, "MPI collectives sum host memory only: a device sum was routed to MPI");
    Started s;
    s.group = g;
    PT_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, d, count(n), MPI_FLOAT, MPI_SUM, comm(g), &s.req));
    started_[next_handle_] = s;
    return next_handle_++;
  }
  void wait(int64_t handle) override {
    auto it = started_.find(handle);
    if (it == started_.end()) return;
    finish(&it->second.req, "sum (bucket)", it->second.group);
    started_.erase(it);
  }
  void progress() override {
    for (auto& [h, st] : started_) {
      if (st.req == MPI_REQUEST_NULL) continue;
      int done = 0;
      PT_MPI_CHECK(MPI_Test(&st.req, &done, MPI_STATUS_IGNORE));  // a completed request becomes NULL
    }
  }
  void allgather(Group g, const void* send, size_t bytes, void* recv) override {
    MPI_Request req;
    PT_MPI_CHECK(MPI_Iallgather(send, count(bytes), MPI_BYTE, recv, count(bytes), MPI_BYTE, comm(g), &req));
    finish(&req, "allgather", g);
  }
  void gather(Group g, const void* send, size_t bytes, void* recv, int root) override {
    MPI_Request req;
    PT_MPI_CHECK(MPI_Igather(send, count(bytes), MPI_BYTE, recv, count(bytes), MPI_BYTE, root, comm(g), &req));
    finish(&req, "gather", g);
  }
  void broadcast(Group g, void* data, size_t bytes, int root) override {
    MPI_Request req;
    PT_MPI_CHECK(MPI_Ibcast(data, count(bytes), MPI_BYTE, root, comm(g), &req));
    finish(&req, "broadcast", g);
  }
  void barrier(Group g) override {
    MPI_Request req;
    PT_MPI_CHECK(MPI_Ibarrier(comm(g), &req));
    finish(&req, "barrier", g);
  }
  void sendrecv(Group g, int peer, const float* send, float* recv, size_t n) override {
    MPI_Request reqs[2];
    PT_MPI_CHECK(MPI_Irecv(recv, count(n), MPI_FLOAT, peer, kSendrecvTag, comm(g), &reqs[0]));
    PT_MPI_CHECK(MPI_Isend(send, count(n), MPI_FLOAT, peer, kSendrecvTag, comm(g), &reqs[1]));
    // The peer may itself wait on the silent rank (e.g. the tied-embedding exchange between
    // the first and the last stage while a middle stage is stopped): name who does not
    // answer a ping, as the collectives do.
    const auto what = [&] {
      return "an exchange with " + std::string(group_name(g)) + " rank " + std::to_string(peer) + "; " +
             silent_description(g);
    };
    wait_request(&reqs[0], nullptr, what);
    wait_request(&reqs[1], nullptr, what);
  }
  void set_replica_group(const std::vector<int>& members) override {
    PT_CHECK(!members.empty());
    if (replicas_ != MPI_COMM_NULL) MPI_Comm_free(&replicas_);
    // color = the group's lowest member, key = pipeline rank: comm rank order = ascending members.
    PT_MPI_CHECK(MPI_Comm_split(groups_.pipeline, members.front(), groups_.pp_rank, &replicas_));
  }
  std::string name() const override { return "mpi"; }

 protected:
  MPI_Comm comm(Group g) const {
    switch (g) {
      case Group::kWorld: return MPI_COMM_WORLD;
      case Group::kPipeline: return groups_.pipeline;
      case Group::kData: return groups_.data;
      case Group::kReplicas: return replicas_ != MPI_COMM_NULL ? replicas_ : MPI_COMM_SELF;
    }
    return MPI_COMM_NULL;
  }

 private:
  static constexpr int kSendrecvTag = 32000;  // below the MPI tag bound, apart from message_tag's range use
  static int count(size_t n) {
    PT_CHECK_MSG(n <= size_t(INT32_MAX), "collective of " + std::to_string(n) + " elements exceeds MPI's int count");
    return int(n);
  }
  void allreduce(Group g, void* d, size_t n, MPI_Datatype t, MPI_Op op, const char* what) {
    MPI_Request req;
    PT_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, d, count(n), t, op, comm(g), &req));
    finish(&req, what, g);
  }
  // On expiry the silent members are found by pinging the group (mpi_wait.h).
  void finish(MPI_Request* req, const char* op, Group g) const {
    wait_request(req, nullptr, [&] {
      return std::string("a collective (") + op + ") over the " + group_name(g) + " group of " +
             std::to_string(size(g)) + " ranks; " + silent_description(g);
    });
  }
  // Who in group g does not answer a ping within 2 s (mpi_wait.h), for a watchdog message.
  std::string silent_description(Group g) const {
    std::string silent;
    for (const auto& [r, w] : silent_members(comm(g), 2.0))  // world = replica * pp + pipeline rank
      silent += std::string(silent.empty() ? "" : ", ") + "world rank " + std::to_string(w) + " (pipeline rank " +
                std::to_string(w % groups_.pp) + " of replica " + std::to_string(w / groups_.pp) + ")";
    return silent.empty() ? "every member answers pings, so one is stuck in other work" : "not answering: " + silent;
  }
  struct Started {
    MPI_Request req = MPI_REQUEST_NULL;
    Group group = Group::kWorld;
  };
  const ProcessGroups& groups_;
  MPI_Comm replicas_ = MPI_COMM_NULL;
  std::map<int64_t, Started> started_;  // non-blocking sums not waited for yet
  int64_t next_handle_ = 0;
};

}  // namespace

const char* group_name(Group g) {
  switch (g) {
    case Group::kWorld: return "world";
    case Group::kPipeline: return "pipeline";
    case Group::kData: return "data-parallel";
    case Group::kReplicas: return "stage-replica";
  }
  return "?";
}

std::unique_ptr<Collectives> make_mpi_collectives(const ProcessGroups& groups) {
  return std::make_unique<MpiCollectives>(groups);
}


}  // namespace pt
