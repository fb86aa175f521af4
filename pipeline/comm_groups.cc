// comm_groups (see comm_groups.h): one scan over the list.
#include "pipeline/comm_groups.h"

namespace pt {

std::vector<CommGroup> comm_groups(const std::vector<Action>& list) {
  std::vector<CommGroup> out;
  const int n = int(list.size());
  for (int t = 0; t < n;) {
    if (!is_comm(list[size_t(t)].kind)) {
      ++t;
      continue;
    }
    int end = t;
    bool sends = false, recvs = false;
    for (; end < n && is_comm(list[size_t(end)].kind); ++end) {
      sends = sends || is_send(list[size_t(end)].kind);
      recvs = recvs || is_recv(list[size_t(end)].kind);
    }
    if (sends && recvs) out.push_back({t, end});
    t = end;
  }
  return out;
}

}  // namespace pt
