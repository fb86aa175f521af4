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

bool sum_takes_backend_memory(const Collectives& c, Group g, const StageModel& m) {
  return m.host_memory() || c.sums_device_memory(g) || (g == Group::kData && test_device_space() == "nccl");
}

}  // namespace pt
