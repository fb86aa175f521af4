// In-process transport: a mailbox per (source, destination, tag) holding copies of
// sent buffers, so send() completes at once and recv() blocks on a condition variable.
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "common/check.h"
#include "pipeline/transport.h"

namespace pt {

class LocalHub {
 public:
  explicit LocalHub(int size) : size_(size) {}
  int size() const { return size_; }
  void put(int src, int dst, int tag, std::vector<float> data) {
    std::lock_guard<std::mutex> lock(mu_);
    boxes_[{src, dst, tag}].push_back(std::move(data));
    cv_.notify_all();
  }
  std::vector<float> take(int src, int dst, int tag) {
    std::unique_lock<std::mutex> lock(mu_);
    auto key = std::make_tuple(src, dst, tag);
    cv_.wait(lock, [&] { return !boxes_[key].empty(); });
    std::vector<float> data = std::move(boxes_[key].front());
    boxes_[key].pop_front();
    return data;
  }

 private:
  int size_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::tuple<int, int, int>, std::deque<std::vector<float>>> boxes_;
};

namespace {

class LocalTransport final : public Transport {
 public:
  LocalTransport(std::shared_ptr<LocalHub> hub, int rank) : hub_(std::move(hub)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return hub_->size(); }
  std::string name() const override { return "local"; }
  void send(const BufferRef& buf, int peer, int tag) override {
    PT_CHECK(buf.space == MemorySpace::kHost);
    hub_->put(rank_, peer, tag, std::vector<float>(buf.data, buf.data + buf.count));
  }
  void* recv(const BufferRef& buf, int peer, int tag) override {
    PT_CHECK(buf.space == MemorySpace::kHost);
    std::vector<float> got = hub_->take(peer, rank_, tag);
    PT_CHECK_MSG(got.size() == buf.count,
                 "local transport: size mismatch from rank " + std::to_string(peer));
    std::memcpy(buf.data, got.data(), buf.count * sizeof(float));
    return nullptr;
  }
  void wait_sends() override {}

 private:
  std::shared_ptr<LocalHub> hub_;
  int rank_;
};

}  // namespace

std::shared_ptr<LocalHub> make_local_hub(int size) { return std::make_shared<LocalHub>(size); }
std::unique_ptr<Transport> make_local_transport(std::shared_ptr<LocalHub> hub, int rank) {
  return std::make_unique<LocalTransport>(std::move(hub), rank);
}

}  // namespace pt
