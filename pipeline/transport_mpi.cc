// MPI transport: MPI_Isend for sends (requests kept until wait_sends), MPI_Irecv
// completed at once for receives. Host memory only (accepts(kDevice) is false: the
// executor stages device buffers through host copies). Both waits
// carry the watchdog deadline (mpi_wait.h) and name the peer when it expires.
#include <vector>

#include "common/check.h"
#include "pipeline/mpi_wait.h"
#include "pipeline/transport.h"

namespace pt {
namespace {

class MpiTransport final : public Transport {
 public:
  explicit MpiTransport(MPI_Comm comm) : comm_(comm) {
    PT_MPI_CHECK(MPI_Comm_rank(comm, &rank_));
    PT_MPI_CHECK(MPI_Comm_size(comm, &size_));
  }
  ~MpiTransport() override { wait_sends(); }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mpi"; }

  void send(const BufferRef& buf, int peer, int tag) override {
    PT_CHECK_MSG(buf.space == MemorySpace::kHost, "the mpi transport sends host buffers only (the executor stages)");
    const float* data = buf.data;
    const size_t count = buf.count;
    PT_CHECK(count <= size_t(INT32_MAX));
    MPI_Request req;
    PT_MPI_CHECK(MPI_Isend(data, int(count), MPI_FLOAT, peer, tag, comm_, &req));
    pending_.push_back(req);
    pending_peers_.push_back(peer);
  }
  void* recv(const BufferRef& buf, int peer, int tag) override {
    PT_CHECK_MSG(buf.space == MemorySpace::kHost, "the mpi transport receives into host buffers only");
    float* data = buf.data;
    const size_t count = buf.count;
    PT_CHECK(count <= size_t(INT32_MAX));
    MPI_Status status;
    MPI_Request req;
    PT_MPI_CHECK(MPI_Irecv(data, int(count), MPI_FLOAT, peer, tag, comm_, &req));
    wait_request(&req, &status, [&] {
      return "a stage-boundary tensor (" + std::to_string(count) + " floats, tag " + std::to_string(tag) +
             ") from pipeline rank " + std::to_string(peer) + silent_peers();
    });
    int got = 0;
    MPI_Get_count(&status, MPI_FLOAT, &got);
    PT_CHECK_MSG(size_t(got) == count, "received " + std::to_string(got) +
                                           " floats from pipeline rank " + std::to_string(peer) +
                                           ", expected " + std::to_string(count));
    return nullptr;
  }
  void wait_sends() override {
    for (size_t i = 0; i < pending_.size(); ++i)
      wait_request(&pending_[i], nullptr, [&] {
        return "completion of a send to pipeline rank " + std::to_string(pending_peers_[i]) + silent_peers();
      });
    pending_.clear();
    pending_peers_.clear();
  }

 private:
  // The peer waited for may itself be waiting on the silent one: name the pipeline ranks
  // that do not answer a ping (mpi_wait.h).
  std::string silent_peers() const {
    std::string out;
    for (const auto& [r, w] : silent_members(comm_, 2.0))
      out += std::string(out.empty() ? "; not answering: " : ", ") + "pipeline rank " + std::to_string(r);
    return out.empty() ? "; every pipeline rank answers pings" : out;
  }
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  std::vector<MPI_Request> pending_;
  std::vector<int> pending_peers_;  // peer of each pending send, for the watchdog's message
};

}  // namespace

std::unique_ptr<Transport> make_mpi_transport(MPI_Comm comm) {
  return std::make_unique<MpiTransport>(comm);
}

}  // namespace pt
