#include "app/backend_staging.h"

#include <vector>

#include "model/stage_model_factory.h"

namespace pt {

void on_host(StageModel& m, float* p, size_t n, HostAccess access, const std::function<void(float*)>& fn) {
  const bool writes = access != HostAccess::kRead;
  if (m.host_memory()) {
    fn(p);
    if (writes && p >= m.params() && p < m.params() + m.num_params()) m.params_written();
    return;
  }
  std::vector<float> host(n);
  if (access != HostAccess::kWrite) m.download(host.data(), p, n);
  fn(host.data());
  if (writes) m.upload(p, host.data(), n);  // implies params_written() for params()
}

namespace {

// Whether allreduce_sum over g takes device memory: NCCL's data-parallel sums, or the test
// switch's stand-in for them (PIPETRAIN_TEST_DEVICE_SPACE=nccl: the emulated device memory
// is host memory, so MPI can sum it in place).
bool sums_device_memory(const Collectives& c, Group g) {
  return c.sums_device_memory(g) || (g == Group::kData && test_device_space() == "nccl");
}

}  // namespace

void allreduce_sum_backend(Collectives& c, Group g, StageModel& m, float* p, size_t n) {
  if (!m.host_memory() && sums_device_memory(c, g)) {
    m.synchronize();  // the collective runs on its own stream: the backward's writes must be done
    c.allreduce_sum(g, p, n);
    if (p >= m.params() && p < m.params() + m.num_params()) m.params_written();
    return;
  }
  on_host(m, p, n, HostAccess::kReadWrite, [&](float* h) { c.allreduce_sum(g, h, n); });
}

}  // namespace pt
