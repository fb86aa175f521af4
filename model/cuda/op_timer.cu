// Per-op GPU time of a CUDA backend; see op_timer.h.
#include "model/cuda/op_timer.h"

#include <cstdio>
#include <cstdlib>

#include "common/report_line.h"
#include "model/cuda/cuda_check.h"

namespace pt::cuda {
namespace {

const char* times_path() {
  static const char* path = [] {
    const char* p = std::getenv("PIPETRAIN_OP_TIMES");
    return (p != nullptr && *p != '\0') ? p : nullptr;
  }();
  return path;
}

}  // namespace

bool OpTimer::enabled() { return times_path() != nullptr; }

OpTimer::Scope::Scope(OpTimer* timer, const char* name, cudaStream_t stream)
    : timer_(enabled() ? timer : nullptr), stream_(stream) {
  if (timer_ == nullptr || timer_->depth_++ > 0) return;
  timer_->collect(false);
  timer_->open_name_ = name;
  timer_->open_start_ = timer_->take_event();
  PT_CUDA_CHECK(cudaEventRecord(timer_->open_start_, stream_));
}

OpTimer::Scope::~Scope() {
  if (timer_ == nullptr || --timer_->depth_ > 0) return;
  cudaEvent_t end = timer_->take_event();
  PT_CUDA_CHECK(cudaEventRecord(end, stream_));
  timer_->pending_.push_back(Pending{timer_->open_name_, timer_->open_start_, end});
  if (timer_->pending_.size() > kMaxPending) {
    PT_CUDA_CHECK(cudaEventSynchronize(timer_->pending_.front().end));
    timer_->collect(false);
  }
}

cudaEvent_t OpTimer::take_event() {
  if (!spare_.empty()) {
    cudaEvent_t e = spare_.back();
    spare_.pop_back();
    return e;
  }
  cudaEvent_t e = nullptr;
  PT_CUDA_CHECK(cudaEventCreate(&e));  // timing enabled
  return e;
}

void OpTimer::collect(bool wait_all) {
  while (!pending_.empty()) {
    const Pending p = pending_.front();
    if (wait_all) {
      PT_CUDA_CHECK(cudaEventSynchronize(p.end));
    } else {
      const cudaError_t rc = cudaEventQuery(p.end);
      if (rc == cudaErrorNotReady) {
        (void)cudaGetLastError();  // not an error; keep it from the next launch check
        return;
      }
      PT_CUDA_CHECK(rc);
    }
    float ms = 0.0f;
    PT_CUDA_CHECK(cudaEventElapsedTime(&ms, p.start, p.end));
    Total& t = totals_[p.name];
    ++t.calls;
    t.ms += double(ms);
    spare_.push_back(p.start);
    spare_.push_back(p.end);
    pending_.pop_front();
  }
}

void OpTimer::report(int device) {
  collect(true);
  const char* path = times_path();
  if (path == nullptr || totals_.empty()) return;
  std::string line = "{\"rank\": " + std::to_string(rank_from_environment()) +
                     ", \"device\": " + std::to_string(device) + ", \"ops\": {";
  bool first = true;
  for (const auto& [name, t] : totals_) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s\"%s\": {\"calls\": %lld, \"ms\": %.4f}", first ? "" : ", ", name.c_str(),
                  t.calls, t.ms);
    line += buf;
    first = false;
  }
  line += "}}\n";
  if (!append_line(path, line))
    std::fprintf(stderr, "pipetrain: cannot append the op times to %s (PIPETRAIN_OP_TIMES)\n", path);
  totals_.clear();
}

OpTimer::~OpTimer() {
  for (const Pending& p : pending_) {
    cudaEventDestroy(p.start);  // no check: a destructor may run during error unwinding
    cudaEventDestroy(p.end);
  }
  for (cudaEvent_t e : spare_) cudaEventDestroy(e);
  if (open_start_ != nullptr && depth_ > 0) cudaEventDestroy(open_start_);
}

}  // namespace pt::cuda
