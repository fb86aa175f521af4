// GPU AdamW and global norm vs their CPU twins in optim/. Sizes are odd and span
// several blocks and tensors; the multi-tensor update gives every tensor its own
// hyper-parameters so a mixed-up table entry cannot pass. The registry's AdamW with
// device-resident state against the same optimizer with host state.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "optim/cuda/adamw.h"
#include "optim/cuda/global_norm.h"
#include "optim/adamw.h"
#include "optim/grad_norm.h"
#include "optim/registry.h"
#include "tests/model/cuda/cuda_test_util.h"

namespace pt {
namespace {

using testing::DeviceBuffer;
using testing::expect_within;
using testing::kFp32Unit;
using testing::philox_vector;

class CudaOptim : public testing::CudaTest {};

struct HostTensor {
  std::vector<float> p, g, m, v;
  AdamWParams hp;
};

HostTensor make_tensor(size_t n, uint64_t seed, int t, float wd) {
  HostTensor h;
  h.p = philox_vector(n, seed, 1);
  h.g = philox_vector(n, seed, 2, 0.1f);
  h.m = philox_vector(n, seed, 3, 0.01f);
  h.v = testing::abs_of(philox_vector(n, seed, 4, 1e-3f));  // second moments are >= 0
  h.hp.lr = 1e-2f * float(seed);
  h.hp.beta1 = 0.9f;
  h.hp.beta2 = 0.95f;
  h.hp.eps = 1e-8f;
  h.hp.weight_decay = wd;
  h.hp.t = t;
  h.hp.grad_scale = 0.75f;
  return h;
}

// m and v are two products and an add: a few ulp apart (FMA contraction). The
// step u = m̂ / (sqrt(v̂) + eps) + wd·p then carries ~8 ulp of relative error, and
// p - lr·u adds one rounding of |p|: tol = 8u·|p| + 16u·lr·|u|, with |u|
// recomputed in double on the host from the CPU's new m, v.
void expect_adamw_matches(const std::string& what, const HostTensor& before, const HostTensor& cpu,
                          const std::vector<float>& p, const std::vector<float>& m, const std::vector<float>& v) {
  const size_t n = cpu.p.size();
  const double bc1 = 1.0 - std::pow(double(cpu.hp.beta1), double(cpu.hp.t));
  const double bc2 = 1.0 - std::pow(double(cpu.hp.beta2), double(cpu.hp.t));
  std::vector<double> tol_p(n);
  for (size_t i = 0; i < n; ++i) {
    const double step = std::fabs(cpu.m[i] / bc1) / (std::sqrt(cpu.v[i] / bc2) + cpu.hp.eps) +
                        cpu.hp.weight_decay * std::fabs(before.p[i]);
    tol_p[i] = 8 * kFp32Unit * std::fabs(cpu.p[i]) + 16 * kFp32Unit * cpu.hp.lr * step;
  }
  expect_within(what + " params", p, cpu.p, tol_p);
  expect_within(what + " m", m, cpu.m, testing::tolerances(cpu.m, 0.0, 8 * kFp32Unit));
  expect_within(what + " v", v, cpu.v, testing::tolerances(cpu.v, 0.0, 8 * kFp32Unit));
}

TEST_F(CudaOptim, AdamWMultiTensorMatchesCpu) {
  // 35 tensors: more than one launch (32 per launch); sizes from 1 to ~300K.
  const int count = 35;
  std::vector<HostTensor> before, cpu;
  for (int k = 0; k < count; ++k) {
    const size_t n = k == 0 ? 1 : size_t(k) * 8191 + 13;
    before.push_back(make_tensor(n, uint64_t(k + 1), 1 + k % 5, k % 3 == 0 ? 0.0f : 0.1f));
  }
  cpu = before;
  for (auto& h : cpu) adamw_update(h.p.data(), h.g.data(), h.m.data(), h.v.data(), h.p.size(), h.hp);

  std::vector<std::unique_ptr<DeviceBuffer<float>>> bufs;
  std::vector<cuda::AdamWTensor> table;
  for (const auto& h : before) {
    for (const auto* vec : {&h.p, &h.g, &h.m, &h.v}) bufs.push_back(std::make_unique<DeviceBuffer<float>>(*vec));
    const size_t b = bufs.size() - 4;
    table.push_back(cuda::AdamWTensor{bufs[b]->get(), bufs[b + 1]->get(), bufs[b + 2]->get(), bufs[b + 3]->get(),
                                      h.p.size(), h.hp});
  }
  cuda::adamw_update_multi(table.data(), count, nullptr);
  for (int k = 0; k < count; ++k) {
    expect_adamw_matches("adamw tensor " + std::to_string(k), before[k], cpu[k], bufs[4 * k]->download(),
                         bufs[4 * k + 2]->download(), bufs[4 * k + 3]->download());
  }
}

TEST_F(CudaOptim, AdamWSingleTensorMatchesCpu) {
  const HostTensor before = make_tensor(1000003, 3, 7, 0.1f);
  HostTensor cpu = before;
  adamw_update(cpu.p.data(), cpu.g.data(), cpu.m.data(), cpu.v.data(), cpu.p.size(), cpu.hp);
  DeviceBuffer<float> p(before.p), g(before.g), m(before.m), v(before.v);
  cuda::adamw_update(p.get(), g.get(), m.get(), v.get(), before.p.size(), before.hp, nullptr);
  expect_adamw_matches("adamw single", before, cpu, p.download(), m.download(), v.download());
}

// One update through the Optimizer interface with kDevice state on device buffers vs
// kHost state on host buffers, from a non-zero state written through the host view
// (sync_to_device) and read back through it (sync_to_host, over a poisoned mirror);
// each tensor with its own decay (wte without: decay_embeddings is off).
TEST_F(CudaOptim, AdamWOptimizerDeviceStateMatchesHostState) {
  OptimizerOptions o;
  o.weight_decay = 0.1;
  o.decay_embeddings = false;
  std::unique_ptr<Optimizer> opt;
  ASSERT_TRUE(make_optimizer("adamw", o, &opt));
  const std::vector<OptimTensor> layout = {OptimTensor{"wte", 0, 4099, {}, true}, OptimTensor{"wpe", 4099, 515, {}, false},
                                           OptimTensor{"h0.mlp.fc_w", 4614, 70001, {}, true},
                                           OptimTensor{"h0.mlp.fc_b", 74615, 33, {}, false}};
  const size_t n = 74648;
  std::unique_ptr<OptimizerState> host = opt->make_state(layout, n, MemorySpace::kHost);
  std::unique_ptr<OptimizerState> dev = opt->make_state(layout, n, MemorySpace::kDevice);
  EXPECT_EQ(dev->space(), MemorySpace::kDevice);
  EXPECT_EQ(dev->total_floats(), host->total_floats());
  const HostTensor before = make_tensor(n, 5, 3, 0.0f);  // p, g, m, v (its hp is not used)
  for (OptimizerState* st : {host.get(), dev.get()}) {
    const std::vector<StateTensor> views = st->tensors();
    ASSERT_EQ(views.size(), 2u);
    std::copy(before.m.begin(), before.m.end(), views[0].data);
    std::copy(before.v.begin(), before.v.end(), views[1].data);
  }
  dev->sync_to_device();
  const StepArgs a{1e-2, 0.75f, 3};
  std::vector<float> p_cpu = before.p;
  opt->step(*host, StageBuffers{p_cpu.data(), before.g.data(), n, MemorySpace::kHost, nullptr}, a);
  DeviceBuffer<float> p(before.p), g(before.g);
  opt->step(*dev, StageBuffers{p.get(), g.get(), n, MemorySpace::kDevice, nullptr}, a);
  const std::vector<float> p_gpu = p.download();
  for (const StateTensor& v : dev->tensors()) std::fill(v.data, v.data + v.numel, std::nanf(""));
  dev->sync_to_host();
  const std::vector<StateTensor> hv = host->tensors(), dv = dev->tensors();
  auto slice = [](const float* x, const OptimTensor& t) { return std::vector<float>(x + t.offset, x + t.offset + t.numel); };
  for (const OptimTensor& t : layout) {
    HostTensor b{slice(before.p.data(), t), slice(before.g.data(), t), slice(before.m.data(), t),
                 slice(before.v.data(), t), adamw_params_for(t, o, a)};
    HostTensor c{slice(p_cpu.data(), t), b.g, slice(hv[0].data, t), slice(hv[1].data, t), b.hp};
    EXPECT_EQ(b.hp.weight_decay, t.name == "h0.mlp.fc_w" ? 0.1f : 0.0f) << t.name;
    expect_adamw_matches("adamw optimizer " + t.name, b, c, slice(p_gpu.data(), t), slice(dv[0].data, t),
                         slice(dv[1].data, t));
  }
}

// Squares of floats are exact in double; only the n - 1 additions round, so two
// orders differ by at most 2·γ_n(double)·sum (all terms positive: Σ|terms| = sum).
TEST_F(CudaOptim, GlobalNormMatchesCpuAndIsReproducible) {
  const std::vector<size_t> sizes = {1, 255, 65537, 1000003};
  std::vector<double> cpu_ss;
  DeviceBuffer<double> d_ss(sizes.size()), d_scratch(cuda::kSumOfSquaresBlocks), d_norm(1), d_norm2(1);
  std::vector<std::unique_ptr<DeviceBuffer<float>>> xs;
  for (size_t k = 0; k < sizes.size(); ++k) {
    const auto x = philox_vector(sizes[k], 9, k, 0.3f);
    cpu_ss.push_back(sum_of_squares(x.data(), x.size()));
    xs.push_back(std::make_unique<DeviceBuffer<float>>(x));
  }
  d_ss.poison();
  d_norm.poison();
  for (size_t k = 0; k < sizes.size(); ++k) {
    cuda::sum_of_squares(d_ss.get() + k, xs[k]->get(), sizes[k], d_scratch.get(), nullptr);
  }
  cuda::combine_norm(d_norm.get(), d_ss.get(), int(sizes.size()), nullptr);
  const auto gpu_ss = d_ss.download();
  std::vector<std::pair<int, double>> entries;
  for (size_t k = 0; k < sizes.size(); ++k) {
    const double rtol = 2.0 * double(sizes[k]) * std::ldexp(1.0, -53);
    EXPECT_GT(cpu_ss[k], 0.0);
    EXPECT_NEAR(gpu_ss[k], cpu_ss[k], rtol * cpu_ss[k] + 1e-300) << "tensor " << k;
    entries.push_back({int(k), gpu_ss[k]});
  }
  // From the same per-tensor values the combine is the CPU's order: bitwise equal.
  EXPECT_EQ(d_norm.download()[0], combine_norm(entries));
  // Run again: fixed partitions and trees give the same bits.
  for (size_t k = 0; k < sizes.size(); ++k) {
    cuda::sum_of_squares(d_ss.get() + k, xs[k]->get(), sizes[k], d_scratch.get(), nullptr);
  }
  cuda::combine_norm(d_norm2.get(), d_ss.get(), int(sizes.size()), nullptr);
  EXPECT_EQ(d_ss.download(), gpu_ss);
  EXPECT_EQ(d_norm2.download()[0], d_norm.download()[0]);
  // Every tensor of one buffer in two launches: bitwise the per-tensor calls.
  std::vector<float> all;
  std::vector<size_t> table;
  for (size_t k = 0; k < sizes.size(); ++k) {
    const auto x = philox_vector(sizes[k], 9, k, 0.3f);
    table.push_back(all.size() + 3);  // offsets off any alignment
    table.push_back(sizes[k]);
    all.resize(all.size() + 3, 1e6f);  // gaps the table skips
    all.insert(all.end(), x.begin(), x.end());
  }
  DeviceBuffer<float> d_all(all);
  DeviceBuffer<size_t> d_table(table);
  DeviceBuffer<double> d_many(sizes.size()), d_many_scratch(sizes.size() * cuda::kSumOfSquaresBlocks);
  d_many.poison();
  d_many_scratch.poison();
  cuda::sums_of_squares(d_many.get(), d_all.get(), d_table.get(), int(sizes.size()), d_many_scratch.get(), nullptr);
  EXPECT_EQ(d_many.download(), gpu_ss);
}

}  // namespace
}  // namespace pt
