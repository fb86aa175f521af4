// StorageRanges: host-side registry of the backend buffers that really store bf16
// (2 bytes per element) behind float* handles (Backend::alloc_bf16, backend.h).
//
// A handle is the start of a reserved, inaccessible host address range of n floats
// (mmap PROT_NONE, no memory committed): float-unit pointer arithmetic on it keeps
// working unchanged (handle + k names element k), it never collides with a real
// allocation (host or device: both come from this process's address space), and a
// host dereference by mistake faults at once instead of reading garbage.
// Every op operand is resolved through find(): outside every range it is an fp32
// pointer passed through; inside [h, h + n) it is element p - h of the range's
// bf16 storage. Not thread-safe (one backend, one thread, as the ops).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>

namespace pt {

// Reserves the handle range of n floats (n == 0 reserves one element) and releases it.
float* reserve_handle(size_t n);
void release_handle(float* handle, size_t n);

class StorageRanges {
 public:
  struct Range {
    const float* handle = nullptr;  // first element
    size_t n = 0;                   // elements
    uint16_t* storage = nullptr;    // n bf16 elements (backend memory)
  };
  // Where a pointer lies: range == null for fp32 memory (not in any range);
  // else element `index` of *range, storage + index its bf16 address.
  struct Found {
    const Range* range = nullptr;
    size_t index = 0;
    uint16_t* bf16() const { return range->storage + index; }
    size_t left() const { return range->n - index; }  // elements from index to the end
  };

  // Registers [handle, handle + n) -> storage; must not overlap a registered range.
  void add(const float* handle, size_t n, uint16_t* storage);
  // Forgets the range starting at handle and returns it; range.handle == null when none.
  Range erase(const float* handle);
  Found find(const float* p) const;
  size_t size() const { return ranges_.size(); }

 private:
  std::map<uintptr_t, Range> ranges_;  // by handle address
};

}  // namespace pt
