// prefault(): populate the pages of a freshly reserved buffer with one madvise(MADV_POPULATE_WRITE)
// call instead of one page fault per 4 KiB page. On virtualized hosts a fault costs microseconds
// and the schedules of S=1024 x m=4096 touch ~800 MB, so this is most of the difference between 6 s
// and 2 s. Advisory only: on other systems or old kernels it does nothing and only speed changes.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace pt {

inline void prefault(const void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_POPULATE_WRITE)
  constexpr uintptr_t kPage = 4096;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kPage - 1) & ~(kPage - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kPage - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);
#else
  (void)data;
  (void)bytes;
#endif
}

// A vector of `n` copies of `value` whose pages are populated in one call before the fill.
template <typename Vec>
void assign_prefaulted(Vec* v, size_t n, const typename Vec::value_type& value) {
  v->clear();
  v->reserve(n);
  prefault(v->data(), n * sizeof(typename Vec::value_type));
  v->assign(n, value);
}

}  // namespace pt
