// NCCL collectives: fp32 sums over the data-parallel group (gradients) run on the GPU through
// the NCCL all-reducer of transport.h, on device buffers in place (the device-resident step
// hands it the stage's gradients; a host buffer is staged through the device); every other
// collective is MPI (small host values: losses, norms, flags). Built in every binary: without
// NCCL make_nccl_all_reducer fails with a Status, which make_nccl_collectives passes on.
#include "common/check.h"
#include "pipeline/collectives.h"
#include "pipeline/process_groups.h"
#include "pipeline/transport.h"

namespace pt {

namespace {

class NcclCollectives final : public Collectives {
 public:
  NcclCollectives(std::unique_ptr<Collectives> base, std::unique_ptr<AllReducer> data)
      : base_(std::move(base)), data_(std::move(data)) {}
  int rank(Group g) const override { return base_->rank(g); }
  int size(Group g) const override { return base_->size(g); }
  void allreduce_sum(Group g, float* d, size_t n) override {
    if (g == Group::kData) data_->all_reduce_sum(d, n);
    else base_->allreduce_sum(g, d, n);
  }
  bool sums_device_memory(Group g) const override { return g == Group::kData; }
  // Data-group sums on the NCCL stream, non-blocking (bucketed gradients); others through MPI.
  int64_t start_allreduce_sum(Group g, float* d, size_t n, void* ready) override {
    if (g == Group::kData) return data_->start_all_reduce_sum(d, n, ready) * 2;     // even: NCCL
    return base_->start_allreduce_sum(g, d, n, ready) * 2 + 1;                      // odd: MPI
  }
  void wait(int64_t h) override {
    if (h < 0) return;
    if (h % 2 == 0) data_->wait(h / 2);
    else base_->wait(h / 2);
  }
  void progress() override { base_->progress(); }
  void allreduce_sum(Group g, double* d, size_t n) override { base_->allreduce_sum(g, d, n); }
  void allreduce_max(Group g, double* d, size_t n) override { base_->allreduce_max(g, d, n); }
  void allreduce_max(Group g, int64_t* d, size_t n) override { base_->allreduce_max(g, d, n); }
  void allgather(Group g, const void* s, size_t b, void* r) override { base_->allgather(g, s, b, r); }
  void gather(Group g, const void* s, size_t b, void* r, int root) override { base_->gather(g, s, b, r, root); }
  void broadcast(Group g, void* d, size_t b, int root) override { base_->broadcast(g, d, b, root); }
  void barrier(Group g) override { base_->barrier(g); }
  void sendrecv(Group g, int p, const float* s, float* r, size_t n) override { base_->sendrecv(g, p, s, r, n); }
  void set_replica_group(const std::vector<int>& members) override { base_->set_replica_group(members); }
  std::string name() const override { return "nccl"; }

 private:
  std::unique_ptr<Collectives> base_;
  std::unique_ptr<AllReducer> data_;
};

}  // namespace

std::unique_ptr<Collectives> make_nccl_collectives(const ProcessGroups& groups, int device, Status* status) {
  std::unique_ptr<AllReducer> data = make_nccl_all_reducer(groups.data, device, status);
  if (!data) return nullptr;
  return std::make_unique<NcclCollectives>(make_mpi_collectives(groups), std::move(data));
}

}  // namespace pt
