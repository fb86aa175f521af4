// Host and backend BoundaryMemory (boundary_memory.h).
#include "model/boundary_memory.h"

#include <cstdlib>
#include <cstring>

#include "common/check.h"
#include "model/backend.h"

namespace pt {
namespace {

class HostBoundaryMemory final : public BoundaryMemory {
 public:
  MemorySpace space() const override { return MemorySpace::kHost; }
  float* alloc(size_t n) override {
    auto* p = static_cast<float*>(std::calloc(n > 0 ? n : 1, sizeof(float)));
    PT_CHECK_MSG(p != nullptr, "out of host memory for a boundary buffer of " + std::to_string(n) + " floats");
    return p;
  }
  void free(float* p) override { std::free(p); }
  float* alloc_host(size_t n) override { return alloc(n); }
  void free_host(float* p) override { free(p); }
  void to_host(float* dst, const float* src, size_t n) override {
    if (dst != src && n > 0) std::memcpy(dst, src, n * sizeof(float));
  }
  void from_host(float* dst, const float* src, size_t n) override { to_host(dst, src, n); }
};

class BackendBoundaryMemory final : public BoundaryMemory {
 public:
  explicit BackendBoundaryMemory(Backend* backend) : be_(backend) { PT_CHECK(be_ != nullptr); }
  MemorySpace space() const override { return MemorySpace::kDevice; }
  float* alloc(size_t n) override {
    float* p = be_->alloc(n);
    be_->zero(p, n);
    return p;
  }
  void free(float* p) override { be_->free(p); }
  float* alloc_host(size_t n) override { return be_->alloc_host(n); }
  void free_host(float* p) override { be_->free_host(p); }
  void to_host(float* dst, const float* src, size_t n) override { be_->download(dst, src, n); }
  void from_host(float* dst, const float* src, size_t n) override { be_->upload(dst, src, n); }
  void* producer_event() override { return be_->record_event(); }
  void consumer_wait(void* event) override {
    if (event != nullptr) be_->wait_event(event);
  }

 private:
  Backend* be_;
};

}  // namespace

std::unique_ptr<BoundaryMemory> make_host_boundary_memory() { return std::make_unique<HostBoundaryMemory>(); }

std::unique_ptr<BoundaryMemory> make_backend_boundary_memory(Backend* backend) {
  PT_CHECK(backend != nullptr);
  if (backend->host_memory()) return make_host_boundary_memory();
  return std::make_unique<BackendBoundaryMemory>(backend);
}

}  // namespace pt
