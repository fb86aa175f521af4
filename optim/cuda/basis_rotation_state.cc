// Device-resident basis_rotation state and step; see basis_rotation_state.h. Host code
// (cudart API and the launchers of optim/cuda/adamw.cu and basis_rotation.cu).
#include "optim/cuda/basis_rotation_state.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <utility>

#include "common/check.h"
#include "model/cuda/cuda_check.h"
#include "optim/basis_rotation_state.h"
#include "optim/cuda/adamw.h"
#include "optim/cuda/basis_rotation.h"

namespace pt {
namespace {

float* device_zeros(size_t n) {
  float* p = nullptr;
  PT_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(float)));
  PT_CUDA_CHECK(cudaMemset(p, 0, std::max<size_t>(n, 1) * sizeof(float)));
  return p;
}

void copy(float* dst, const float* src, size_t n, cudaMemcpyKind kind) {
  PT_CUDA_CHECK(cudaMemcpy(dst, src, n * sizeof(float), kind));
}

// m, v (n,) and every block in device memory; BasisRotationState holds their host mirror.
class BasisRotationDeviceState final : public BasisRotationState {
 public:
  BasisRotationDeviceState(std::vector<OptimTensor> layout, size_t n, const BasisRotationOptions& o)
      : BasisRotationState(std::move(layout), n, o), m_(device_zeros(n)), v_(device_zeros(n)) {
    for (size_t k = 0; k < this->layout().size(); ++k) {
      blocks_.emplace_back();
      for (const Block& b : blocks(k)) blocks_.back().push_back(device_zeros(b.data.size()));
    }
  }
  ~BasisRotationDeviceState() override {
    cudaFree(m_);  // no check: a destructor runs during error unwinding too
    cudaFree(v_);
    for (auto& per : blocks_)
      for (float* p : per) cudaFree(p);
  }
  BasisRotationDeviceState(const BasisRotationDeviceState&) = delete;
  BasisRotationDeviceState& operator=(const BasisRotationDeviceState&) = delete;

  MemorySpace space() const override { return MemorySpace::kDevice; }
  void sync_to_host() override { transfer(cudaMemcpyDeviceToHost); }
  void sync_to_device() override { transfer(cudaMemcpyHostToDevice); }

  // tensors()' order: adam_m, adam_v, then every tensor's blocks in order.
  std::vector<StateTensor> device_tensors() override {
    std::vector<StateTensor> out = tensors();
    out[0].data = m_;
    out[1].data = v_;
    size_t j = 2;
    for (const auto& per : blocks_)
      for (float* p : per) out[j++].data = p;
    PT_CHECK(j == out.size());
    return out;
  }
  float* m() { return m_; }
  float* v() { return v_; }
  RotatedMatrix device_matrix(size_t k) {
    const OptimTensor& t = layout()[k];
    return assemble(k, m_ + t.offset, v_ + t.offset, blocks_[k]);
  }

 private:
  // Waits for every queued update (on any stream), then copies in the direction `kind`.
  void transfer(cudaMemcpyKind kind) {
    PT_CUDA_CHECK(cudaDeviceSynchronize());
    const bool down = kind == cudaMemcpyHostToDevice;
    copy(down ? m_ : host_m(), down ? host_m() : m_, n(), kind);
    copy(down ? v_ : host_v(), down ? host_v() : v_, n(), kind);
    for (size_t k = 0; k < blocks_.size(); ++k)
      for (size_t i = 0; i < blocks_[k].size(); ++i) {
        float* host = blocks(k)[i].data.data();
        copy(down ? blocks_[k][i] : host, down ? host : blocks_[k][i], blocks(k)[i].data.size(), kind);
      }
  }
  float* m_ = nullptr;
  float* v_ = nullptr;
  std::vector<std::vector<float*>> blocks_;  // device twins of blocks(k)[i]
};

}  // namespace

std::unique_ptr<OptimizerState> make_basis_rotation_device_state(const std::vector<OptimTensor>& layout, size_t n,
                                                                 const BasisRotationOptions& o) {
  return std::make_unique<BasisRotationDeviceState>(layout, n, o);
}

void basis_rotation_step_device(OptimizerState& state, const StageBuffers& b, const OptimizerOptions& o,
                                const StepArgs& a) {
  auto* s = dynamic_cast<BasisRotationDeviceState*>(&state);
  PT_CHECK_MSG(s != nullptr, "basis_rotation: device buffers need the state of make_state(..., kDevice)");
  PT_CHECK(b.n == s->n());
  const auto stream = static_cast<cudaStream_t>(b.stream);
  std::vector<cuda::AdamWTensor> table;
  for (size_t k = 0; k < s->layout().size(); ++k) {
    const OptimTensor& t = s->layout()[k];
    const AdamWParams hp = adamw_params_for(t, o, a);
    if (s->plan(k).rotated())
      cuda::rotated_adam_update(b.params + t.offset, b.grads + t.offset, s->device_matrix(k), s->plan(k), hp,
                                o.basis_rotation, stream);
    else
      table.push_back(cuda::AdamWTensor{b.params + t.offset, b.grads + t.offset, s->m() + t.offset, s->v() + t.offset,
                                        t.numel, hp});
  }
  cuda::adamw_update_multi(table.data(), int(table.size()), stream);
}

}  // namespace pt
