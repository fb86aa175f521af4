// MPI transport: MPI_Isend for sends (requests kept until wait_sends), MPI_Recv
// for receives. Host-staged: buffers are host memory.
#include <vector>

#include "common/check.h"
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

  void send(const float* data, size_t count, int peer, int tag) override {
    PT_CHECK(count <= size_t(INT32_MAX));
    MPI_Request req;
    PT_MPI_CHECK(MPI_Isend(data, int(count), MPI_FLOAT, peer, tag, comm_, &req));
    pending_.push_back(req);
  }
  void recv(float* data, size_t count, int peer, int tag) override {
    MPI_Status status;
    PT_MPI_CHECK(MPI_Recv(data, int(count), MPI_FLOAT, peer, tag, comm_, &status));
    int got = 0;
    MPI_Get_count(&status, MPI_FLOAT, &got);
    PT_CHECK_MSG(size_t(got) == count, "received " + std::to_string(got) +
                                           " floats from pipeline rank " + std::to_string(peer) +
                                           ", expected " + std::to_string(count));
  }
  void wait_sends() override {
    if (pending_.empty()) return;
    PT_MPI_CHECK(MPI_Waitall(int(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE));
    pending_.clear();
  }

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  std::vector<MPI_Request> pending_;
};

}  // namespace

std::unique_ptr<Transport> make_mpi_transport(MPI_Comm comm) {
  return std::make_unique<MpiTransport>(comm);
}

}  // namespace pt
