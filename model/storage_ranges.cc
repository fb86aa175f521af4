// See storage_ranges.h.
#include "model/storage_ranges.h"

#include <sys/mman.h>

#include <string>

#include "common/check.h"

namespace pt {

float* reserve_handle(size_t n) {
  const size_t bytes = (n == 0 ? 1 : n) * sizeof(float);
  void* p = mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  PT_CHECK_MSG(p != MAP_FAILED, "reserving " + std::to_string(bytes) + " bytes of handle address space failed");
  return static_cast<float*>(p);
}

void release_handle(float* handle, size_t n) {
  const size_t bytes = (n == 0 ? 1 : n) * sizeof(float);
  PT_CHECK(munmap(handle, bytes) == 0);
}

void StorageRanges::add(const float* handle, size_t n, uint16_t* storage) {
  PT_CHECK(handle != nullptr);
  const uintptr_t a = reinterpret_cast<uintptr_t>(handle);
  const size_t bytes = (n == 0 ? 1 : n) * sizeof(float);
  auto next = ranges_.lower_bound(a);
  PT_CHECK_MSG(next == ranges_.end() || next->first >= a + bytes, "bf16 storage ranges overlap");
  if (next != ranges_.begin()) {
    const Range& prev = std::prev(next)->second;
    PT_CHECK_MSG(reinterpret_cast<uintptr_t>(prev.handle + prev.n) <= a, "bf16 storage ranges overlap");
  }
  ranges_[a] = Range{handle, n, storage};
}

StorageRanges::Range StorageRanges::erase(const float* handle) {
  auto it = ranges_.find(reinterpret_cast<uintptr_t>(handle));
  if (it == ranges_.end()) return Range{};
  const Range r = it->second;
  ranges_.erase(it);
  return r;
}

StorageRanges::Found StorageRanges::find(const float* p) const {
  if (p == nullptr || ranges_.empty()) return Found{};
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = ranges_.upper_bound(a);
  if (it == ranges_.begin()) return Found{};
  const Range& r = std::prev(it)->second;
  if (p >= r.handle + r.n) return Found{};  // past the end (p == handle + n: one past, not inside)
  return Found{&r, size_t(p - r.handle)};
}

}  // namespace pt
