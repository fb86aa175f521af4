// Device-resident AdamW state and step; see adamw_state.h. Host code (cudart API
// and the launcher of optim/cuda/adamw.cu).
#include "optim/cuda/adamw_state.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <utility>

#include "common/check.h"
#include "model/cuda/cuda_check.h"
#include "optim/adamw.h"
#include "optim/adamw_state.h"
#include "optim/cuda/adamw.h"

namespace pt {
namespace {

// m, v: (n,) device memory; AdamWState holds their host mirror.
class AdamWDeviceState final : public AdamWState {
 public:
  AdamWDeviceState(std::vector<OptimTensor> layout, size_t n) : AdamWState(std::move(layout), n) {
    PT_CUDA_CHECK(cudaMalloc(&m_, bytes()));
    PT_CUDA_CHECK(cudaMalloc(&v_, bytes()));
    PT_CUDA_CHECK(cudaMemset(m_, 0, bytes()));
    PT_CUDA_CHECK(cudaMemset(v_, 0, bytes()));
  }
  ~AdamWDeviceState() override {
    cudaFree(m_);  // no check: a destructor runs during error unwinding too
    cudaFree(v_);
  }
  AdamWDeviceState(const AdamWDeviceState&) = delete;
  AdamWDeviceState& operator=(const AdamWDeviceState&) = delete;

  MemorySpace space() const override { return MemorySpace::kDevice; }
  // Waits for every queued update (on any stream), then copies device -> mirror.
  void sync_to_host() override {
    PT_CUDA_CHECK(cudaDeviceSynchronize());
    PT_CUDA_CHECK(cudaMemcpy(host_m(), m_, n() * sizeof(float), cudaMemcpyDeviceToHost));
    PT_CUDA_CHECK(cudaMemcpy(host_v(), v_, n() * sizeof(float), cudaMemcpyDeviceToHost));
  }
  void sync_to_device() override {
    PT_CUDA_CHECK(cudaDeviceSynchronize());
    PT_CUDA_CHECK(cudaMemcpy(m_, host_m(), n() * sizeof(float), cudaMemcpyHostToDevice));
    PT_CUDA_CHECK(cudaMemcpy(v_, host_v(), n() * sizeof(float), cudaMemcpyHostToDevice));
  }
  std::vector<StateTensor> device_tensors() override {
    std::vector<StateTensor> out = tensors();
    out[0].data = m_;
    out[1].data = v_;
    return out;
  }
  float* m() { return m_; }
  float* v() { return v_; }

 private:
  size_t bytes() const { return std::max<size_t>(n(), 1) * sizeof(float); }
  float* m_ = nullptr;
  float* v_ = nullptr;
};

}  // namespace

std::unique_ptr<OptimizerState> make_adamw_device_state(const std::vector<OptimTensor>& layout, size_t n) {
  return std::make_unique<AdamWDeviceState>(layout, n);
}

void adamw_step_device(OptimizerState& state, const StageBuffers& b, const OptimizerOptions& o, const StepArgs& a) {
  auto* s = dynamic_cast<AdamWDeviceState*>(&state);
  PT_CHECK_MSG(s != nullptr, "adamw: device buffers need the state of make_state(..., kDevice)");
  PT_CHECK(b.n == s->n());
  std::vector<cuda::AdamWTensor> table;
  table.reserve(s->layout().size());
  for (const auto& t : s->layout())
    table.push_back(cuda::AdamWTensor{b.params + t.offset, b.grads + t.offset, s->m() + t.offset, s->v() + t.offset,
                                      t.numel, adamw_params_for(t, o, a)});
  cuda::adamw_update_multi(table.data(), int(table.size()), static_cast<cudaStream_t>(b.stream));
}

}  // namespace pt
