// One process: every group is this rank alone, so a reduction leaves the data as it is,
// a gather copies this rank's block and a sendrecv (peer 0 = itself) copies send to recv.
#include <cstring>

#include "common/check.h"
#include "pipeline/collectives.h"

namespace pt {
namespace {

class LocalCollectives final : public Collectives {
 public:
  int rank(Group) const override { return 0; }
  int size(Group) const override { return 1; }
  void allreduce_sum(Group, float*, size_t) override {}
  void allreduce_sum(Group, double*, size_t) override {}
  void allreduce_max(Group, double*, size_t) override {}
  void allreduce_max(Group, int64_t*, size_t) override {}
  void allgather(Group, const void* send, size_t bytes, void* recv) override { copy(send, bytes, recv); }
  void gather(Group, const void* send, size_t bytes, void* recv, int root) override {
    PT_CHECK(root == 0);
    copy(send, bytes, recv);
  }
  void broadcast(Group, void*, size_t, int root) override { PT_CHECK(root == 0); }
  void barrier(Group) override {}
  void sendrecv(Group, int peer, const float* send, float* recv, size_t n) override {
    PT_CHECK_MSG(peer == 0, "local collectives: one rank, got peer " + std::to_string(peer));
    copy(send, n * sizeof(float), recv);
  }
  void set_replica_group(const std::vector<int>& members) override { PT_CHECK(members.size() == 1); }
  std::string name() const override { return "local"; }

 private:
  static void copy(const void* from, size_t bytes, void* to) {
    if (bytes > 0 && from != to) std::memmove(to, from, bytes);
  }
};

}  // namespace

std::unique_ptr<Collectives> make_local_collectives() { return std::make_unique<LocalCollectives>(); }

}  // namespace pt
