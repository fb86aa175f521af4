// The GPU twin of basis_rotation's matrix update (optim/cuda/basis_rotation.h) and of
// its linear algebra (optim/cuda/linalg.h) against the CPU twins, for the cases of
// tests/optim/basis_rotation_cases.h (each geometry, source, a max_precond_dim that drops
// a side, a 32x32 matrix), over 10 updates with warm refreshes (update_freq 3). Skips
// without a GPU.
//
// Tolerances. The two twins round differently (FMA, GEMM and solver orders) and may
// pick opposite signs for eigenvector/QR columns; the update does not depend on the
// signs, so W and V are compared directly and the bases column by column up to sign.
// The CPU twin is within 2e-5 of a float64 transcription on these inputs
// (tests/optim/basis_rotation_test.cc, MatchesFloat64Reference, same eps = 1e-2); a GPU
// twin with the same error bound is within 4e-5 of the CPU. V (O(1..400)) is compared
// with the same relative 1e-4 as there, doubled. A wrong transpose, side or permutation
// gives O(lr) = 1e-2 errors in W.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "optim/basis_rotation.h"
#include "optim/cuda/basis_rotation.h"
#include "optim/cuda/linalg.h"
#include "optim/linalg.h"
#include "optim/registry.h"
#include "tests/model/cuda/cuda_test_util.h"
#include "tests/optim/basis_rotation_cases.h"

namespace pt {
namespace {

using testing::DeviceBuffer;
using testing::philox_vector;

class CudaBasisRotation : public testing::CudaTest {};

using testing::anisotropic;

void expect_same_columns_up_to_sign(const std::string& what, const std::vector<float>& a, const std::vector<float>& b,
                                    int d) {
  for (int j = 0; j < d; ++j) {
    double dot = 0;
    for (int i = 0; i < d; ++i) dot += double(a[size_t(i) * d + j]) * b[size_t(i) * d + j];
    EXPECT_NEAR(std::fabs(dot), 1.0, 1e-3) << what << " column " << j;
  }
}

TEST_F(CudaBasisRotation, LinalgMatchesCpu) {
  const int n = 7;
  std::vector<float> a = philox_vector(n * n, 61, 0), b = philox_vector(n * n, 61, 1), x(n * n);
  std::vector<float> c_cpu(n * n, 0.5f);
  gemm(true, false, n, n, n, 1.5f, a.data(), b.data(), 0.25f, c_cpu.data());
  DeviceBuffer<float> da(a), db(b), dc(std::vector<float>(n * n, 0.5f));
  cuda::gemm(true, false, n, n, n, 1.5f, da.get(), db.get(), 0.25f, dc.get(), nullptr);
  const std::vector<float> c_gpu = dc.download();
  for (int i = 0; i < n * n; ++i) EXPECT_NEAR(c_gpu[i], c_cpu[i], 1e-5) << i;
  // A symmetric matrix with distinct eigenvalues: a·aᵀ + diag(1..n).
  gemm(false, true, n, n, n, 1.0f, a.data(), a.data(), 0.0f, x.data());
  for (int i = 0; i < n; ++i) x[size_t(i) * n + i] += float(i + 1);
  std::vector<float> q_cpu(n * n), l_cpu(n);
  sym_eig_desc(x.data(), n, q_cpu.data(), l_cpu.data());
  DeviceBuffer<float> dx(x), dq{size_t(n * n)}, dl{size_t(n)};
  cuda::sym_eig_desc(dx.get(), n, dq.get(), dl.get(), nullptr);
  const std::vector<float> l_gpu = dl.download();
  for (int j = 0; j < n; ++j) EXPECT_NEAR(l_gpu[j], l_cpu[j], 1e-4 * l_cpu[0]) << j;
  expect_same_columns_up_to_sign("eigenvectors", dq.download(), q_cpu, n);
  std::vector<float> qr_cpu = x;
  qr_q(qr_cpu.data(), n);
  DeviceBuffer<float> dqr(x);
  cuda::qr_q(dqr.get(), n, nullptr);
  expect_same_columns_up_to_sign("QR", dqr.download(), qr_cpu, n);
}

TEST_F(CudaBasisRotation, RotatedUpdateMatchesCpu) {
  for (const testing::RotationCase& k : testing::rotation_cases()) {
    const std::string what = k.name();
    BasisRotationOptions o;
    o.geometry = k.geometry;
    o.source = k.source;
    o.update_freq = 3;
    o.shampoo_beta = 0.9;
    o.max_precond_dim = k.max_precond_dim;
    const OptimTensor tensor{"h2.mlp.proj_w", 0, size_t(k.r * k.c), {k.r, k.c}, true};
    const RotationPlan plan = plan_rotation(tensor, o);
    const size_t n = tensor.numel, rr = size_t(k.r) * k.r, cc = size_t(k.c) * k.c;
    const bool stats = std::string(k.source) == "2nd";
    // Host state and its device copy.
    std::vector<float> w = philox_vector(n, 62, 0), m(n, 0.f), v(n, 0.f), ql(plan.left ? rr : 0, 0.f),
                       qr(plan.right ? cc : 0, 0.f), sl(plan.left && stats ? rr : 0, 0.f), sr(plan.right && stats ? cc : 0, 0.f);
    DeviceBuffer<float> dw(w), dm(m), dv(v), dql(std::vector<float>(rr, 0.f)), dqr(std::vector<float>(cc, 0.f)),
        dsl(std::vector<float>(rr, 0.f)), dsr(std::vector<float>(cc, 0.f));
    const RotatedMatrix hs{m.data(), v.data(), plan.left ? ql.data() : nullptr, plan.right ? qr.data() : nullptr,
                           plan.left && stats ? sl.data() : nullptr, plan.right && stats ? sr.data() : nullptr};
    const RotatedMatrix ds{dm.get(), dv.get(), plan.left ? dql.get() : nullptr, plan.right ? dqr.get() : nullptr,
                           plan.left && stats ? dsl.get() : nullptr, plan.right && stats ? dsr.get() : nullptr};
    for (int t = 1; t <= 10; ++t) {
      const std::vector<float> g = anisotropic(k.r, k.c, 63, t);
      AdamWParams hp;
      hp.lr = 1e-2f; hp.beta1 = 0.9f; hp.beta2 = 0.95f; hp.eps = 1e-2f; hp.weight_decay = 0.1f; hp.t = t;
      rotated_adam_update(w.data(), g.data(), hs, plan, hp, o);
      DeviceBuffer<float> dg(g);
      cuda::rotated_adam_update(dw.get(), dg.get(), ds, plan, hp, o, nullptr);
    }
    const std::vector<float> w_gpu = dw.download(), v_gpu = dv.download(), m_gpu = dm.download();
    for (size_t i = 0; i < n; ++i) {
      EXPECT_NEAR(w_gpu[i], w[i], 4e-5) << what << " W " << i;
      EXPECT_NEAR(v_gpu[i], v[i], 2e-4 * (1 + std::fabs(v[i]))) << what << " V " << i;
      EXPECT_NEAR(m_gpu[i], m[i], 1e-5 * (1 + std::fabs(m[i]))) << what << " M " << i;
    }
    if (plan.left) expect_same_columns_up_to_sign(what + " Q_L", dql.download(), ql, k.r);
    if (plan.right) expect_same_columns_up_to_sign(what + " Q_R", dqr.download(), qr, k.c);
  }
}


// Three updates through the Optimizer interface, kDevice state on device buffers vs
// kHost state on host buffers, on a stage with every kind of tensor (AdamW ones and a
// rotated matrix of each orientation), from zero state (cold starts) through a warm
// refresh (update_freq 2); the device state read back through its host view.
TEST_F(CudaBasisRotation, OptimizerDeviceStateMatchesHostState) {
  OptimizerOptions o;
  o.eps = 1e-2;
  o.weight_decay = 0.1;
  o.basis_rotation.update_freq = 2;
  o.basis_rotation.geometry = "uni";  // every rotated side is 6x6 with full-rank statistics (unique bases)
  std::unique_ptr<Optimizer> opt;
  ASSERT_TRUE(make_optimizer("basis_rotation", o, &opt));
  std::vector<OptimTensor> layout = {{"wte", 0, 300, {50, 6}, true},         {"h0.attn.qkv_w", 0, 108, {18, 6}, true},
                                     {"h0.attn.qkv_b", 0, 18, {18}, false},  {"h0.attn.proj_w", 0, 36, {6, 6}, true},
                                     {"h0.mlp.fc_w", 0, 144, {24, 6}, true}, {"h0.mlp.proj_w", 0, 144, {6, 24}, true}};
  size_t n = 0;
  for (auto& t : layout) t.offset = n, n += t.numel;
  auto host = opt->make_state(layout, n, MemorySpace::kHost);
  auto dev = opt->make_state(layout, n, MemorySpace::kDevice);
  EXPECT_EQ(dev->space(), MemorySpace::kDevice);
  EXPECT_EQ(dev->total_floats(), host->total_floats());
  std::vector<float> p = philox_vector(n, 71, 0);
  DeviceBuffer<float> dp(p);
  for (int t = 1; t <= 3; ++t) {
    std::vector<float> g(n);
    for (const auto& tensor : layout) {
      const std::vector<float> gt = tensor.shape.size() == 2 ? anisotropic(tensor.shape[0], tensor.shape[1], 72, t)
                                                             : philox_vector(tensor.numel, 73, uint64_t(t));
      std::copy(gt.begin(), gt.end(), g.begin() + long(tensor.offset));
    }
    DeviceBuffer<float> dg(g);
    opt->step(*host, StageBuffers{p.data(), g.data(), n, MemorySpace::kHost, nullptr}, StepArgs{1e-2, 1.0f, t});
    opt->step(*dev, StageBuffers{dp.get(), dg.get(), n, MemorySpace::kDevice, nullptr}, StepArgs{1e-2, 1.0f, t});
  }
  const std::vector<float> p_gpu = dp.download();
  for (size_t i = 0; i < n; ++i) EXPECT_NEAR(p_gpu[i], p[i], 4e-5) << i;
  for (const StateTensor& v : dev->tensors()) std::fill(v.data, v.data + v.numel, std::nanf(""));
  dev->sync_to_host();
  const std::vector<StateTensor> hv = host->tensors(), dv = dev->tensors();
  ASSERT_EQ(hv.size(), dv.size());
  for (size_t j = 0; j < hv.size(); ++j) {
    ASSERT_EQ(hv[j].name, dv[j].name);
    const std::vector<float> a(dv[j].data, dv[j].data + dv[j].numel), b(hv[j].data, hv[j].data + hv[j].numel);
    if (hv[j].name.find(":rot_q_") != std::string::npos) {
      const int d = int(std::lround(std::sqrt(double(a.size()))));
      expect_same_columns_up_to_sign(hv[j].name, a, b, d);
    } else {
      for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 2e-4 * (1 + std::fabs(b[i]))) << hv[j].name << " " << i;
    }
  }
}

}  // namespace
}  // namespace pt
