// The POSIX shared-memory IpcMemory (ipc_memory.h): buffers are shm_open objects named
// "/pipetrain-ipc-PID-N" mapped by both processes; copies are memcpy, complete on
// return, so fences are nullptr and ordering comes from the MPI messages the transport
// sends after each copy.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "common/check.h"
#include "pipeline/ipc_memory.h"

namespace pt {
namespace {

class ShmIpcMemory final : public IpcMemory {
 public:
  ~ShmIpcMemory() override { sealed(); }
  std::string name() const override { return "shm"; }

  float* export_buffer(size_t n, IpcHandle* handle) override {
    const std::string id = "/pipetrain-ipc-" + std::to_string(getpid()) + "-" + std::to_string(next_++);
    PT_CHECK(id.size() < sizeof(handle->bytes));
    const int fd = shm_open(id.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    PT_CHECK_MSG(fd >= 0, "shm_open(" + id + ") failed: " + std::strerror(errno));
    PT_CHECK_MSG(ftruncate(fd, off_t(n * sizeof(float))) == 0,
                 "ftruncate of " + id + " failed: " + std::strerror(errno) + " (is /dev/shm full?)");
    void* p = mmap(nullptr, n * sizeof(float), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    PT_CHECK_MSG(p != MAP_FAILED, "mmap of " + id + " failed: " + std::strerror(errno));
    *handle = IpcHandle{};
    std::memcpy(handle->bytes, id.c_str(), id.size());
    names_[static_cast<float*>(p)] = id;
    return static_cast<float*>(p);
  }
  void free_buffer(float* p, size_t n) override {
    auto it = names_.find(p);
    if (it != names_.end()) {
      shm_unlink(it->second.c_str());
      names_.erase(it);
    }
    munmap(p, n * sizeof(float));
  }
  Status open_buffer(const IpcHandle& handle, size_t n, float** out) override {
    const std::string id(handle.bytes, strnlen(handle.bytes, sizeof(handle.bytes)));
    const int fd = shm_open(id.c_str(), O_RDWR, 0600);
    if (fd < 0) return Status::error("shm_open(" + id + ") failed: " + std::strerror(errno));
    void* p = mmap(nullptr, n * sizeof(float), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return Status::error("mmap of " + id + " failed: " + std::strerror(errno));
    *out = static_cast<float*>(p);
    return Status::ok();
  }
  void close_buffer(float* p, size_t n) override { munmap(p, n * sizeof(float)); }
  // Every peer mapped the buffers: the names can go (the mappings stay).
  void sealed() override {
    for (auto& [p, id] : names_) shm_unlink(id.c_str());
    names_.clear();
  }

  void* export_fence(IpcHandle* handle) override {
    *handle = IpcHandle{};
    return nullptr;
  }
  Status open_fence(const IpcHandle&, void** out) override {
    *out = nullptr;
    return Status::ok();
  }
  void destroy_fence(void*) override {}

  void wait(void*) override {}
  void copy(float* dst, const float* src, size_t n) override {
    if (n > 0) std::memcpy(dst, src, n * sizeof(float));
  }
  void record(void*) override {}
  void* mark() override { return nullptr; }
  void synchronize() override {}
  bool is_host(const void*) const override { return true; }

 private:
  std::map<float*, std::string> names_;  // exported buffers whose names still exist
  int next_ = 0;
};

}  // namespace

std::unique_ptr<IpcMemory> make_shm_ipc_memory() { return std::make_unique<ShmIpcMemory>(); }

}  // namespace pt
