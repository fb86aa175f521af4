// basis_rotation (optim/basis_rotation.h): every invariant of algorithms.md §4.5 that
// lives in the optimizer (5, the pipeline delay, belongs to the schedule tests):
//  1. frozen identity bases reproduce AdamW bit for bit;
//  2. bases orthonormal after every refresh, columns by non-increasing Rayleigh quotient;
//  3. a warm refresh permutes V exactly like Q's columns (shuffled diagonal statistics);
//  4. on stochastic gradients with known covariances the bases converge to the
//     eigenvectors of E[G·Gᵀ], E[Gᵀ·G]; on f(W) = ½‖A·W·B‖² the trajectory is invariant
//     under rotating A and B (AdamW's is not);
//  6. only the attention/MLP matrices are rotated (sides per geometry and max_precond_dim).
// And the update against an independent float64 transcription (Jacobi eigenvectors,
// Gram-Schmidt QR) for each geometry and source; the staggered refresh schedule.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <tuple>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "common/rng.h"
#include "optim/adamw.h"
#include "optim/basis_rotation.h"
#include "optim/registry.h"
#include "tests/optim/basis_rotation_cases.h"

namespace pt {
namespace {

using Mat = std::vector<double>;  // row-major

// ---------- float64 helpers, independent of optim/linalg ----------
Mat matmul(const Mat& a, const Mat& b, int r, int k, int c, bool ta = false, bool tb = false) {
  Mat out(size_t(r) * c, 0.0);
  for (int i = 0; i < r; ++i)
    for (int j = 0; j < c; ++j) {
      double s = 0;
      for (int l = 0; l < k; ++l) s += (ta ? a[size_t(l) * r + i] : a[size_t(i) * k + l]) * (tb ? b[size_t(j) * k + l] : b[size_t(l) * c + j]);
      out[size_t(i) * c + j] = s;
    }
  return out;
}

Mat identity(int d) {
  Mat m(size_t(d) * d, 0.0);
  for (int i = 0; i < d; ++i) m[size_t(i) * d + i] = 1.0;
  return m;
}

// Cyclic Jacobi: eigenvectors of the symmetric x (d×d) as columns, by non-increasing eigenvalue.
Mat jacobi_eig(Mat a, int d) {
  Mat v = identity(d);
  for (int sweep = 0; sweep < 60; ++sweep)
    for (int p = 0; p < d; ++p)
      for (int q = p + 1; q < d; ++q) {
        const double apq = a[size_t(p) * d + q];
        if (std::fabs(apq) < 1e-300) continue;
        const double theta = (a[size_t(q) * d + q] - a[size_t(p) * d + p]) / (2 * apq);
        const double t = (theta >= 0 ? 1 : -1) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (int k = 0; k < d; ++k) {  // a <- Jᵀ a J
          const double akp = a[size_t(k) * d + p], akq = a[size_t(k) * d + q];
          a[size_t(k) * d + p] = c * akp - s * akq;
          a[size_t(k) * d + q] = s * akp + c * akq;
        }
        for (int k = 0; k < d; ++k) {
          const double apk = a[size_t(p) * d + k], aqk = a[size_t(q) * d + k];
          a[size_t(p) * d + k] = c * apk - s * aqk;
          a[size_t(q) * d + k] = s * apk + c * aqk;
        }
        for (int k = 0; k < d; ++k) {
          const double vkp = v[size_t(k) * d + p], vkq = v[size_t(k) * d + q];
          v[size_t(k) * d + p] = c * vkp - s * vkq;
          v[size_t(k) * d + q] = s * vkp + c * vkq;
        }
      }
  std::vector<int> order(d);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return a[size_t(x) * d + x] > a[size_t(y) * d + y]; });
  Mat out(size_t(d) * d);
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j) out[size_t(i) * d + j] = v[size_t(i) * d + order[j]];
  return out;
}

// Modified Gram-Schmidt: the Q of a (d×d, full rank).
Mat gram_schmidt(Mat a, int d) {
  for (int j = 0; j < d; ++j) {
    for (int k = 0; k < j; ++k) {
      double dot = 0;
      for (int i = 0; i < d; ++i) dot += a[size_t(i) * d + k] * a[size_t(i) * d + j];
      for (int i = 0; i < d; ++i) a[size_t(i) * d + j] -= dot * a[size_t(i) * d + k];
    }
    double norm = 0;
    for (int i = 0; i < d; ++i) norm += a[size_t(i) * d + j] * a[size_t(i) * d + j];
    for (int i = 0; i < d; ++i) a[size_t(i) * d + j] /= std::sqrt(norm);
  }
  return a;
}

Mat random_orthogonal(int d, uint64_t seed) {
  Mat a(size_t(d) * d);
  for (size_t i = 0; i < a.size(); ++i) a[i] = philox_normal(seed, 0, i);
  return gram_schmidt(a, d);
}

// ---------- float64 transcription of §4.3 (with the header's stated 1st-source form) ----------
struct RefMatrix {
  int r, c;
  bool left, right;
  Mat m, v, ql, qr, l, rr;
};

struct RefOptions {
  double lr, b1, b2, eps, wd, bs;
  bool first;  // source 1st
  int64_t freq;
  int slot;
};

// Sorts q's columns by Rayleigh quotient of x (returns the permutation), then q = QR(x·q).
std::vector<int> ref_warm(Mat& q, const Mat& x, int d) {
  const Mat xq = matmul(x, q, d, d, d);
  std::vector<double> lambda(d, 0.0);
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j) lambda[j] += q[size_t(i) * d + j] * xq[size_t(i) * d + j];
  std::vector<int> perm(d);
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](int a, int b) { return lambda[a] > lambda[b]; });
  Mat sorted(size_t(d) * d);
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j) sorted[size_t(i) * d + j] = xq[size_t(i) * d + perm[j]];
  q = gram_schmidt(sorted, d);
  return perm;
}

void ref_step(RefMatrix& s, Mat& w, const Mat& g, const RefOptions& o, int64_t t) {
  const int r = s.r, c = s.c;
  if (!o.first) {
    const Mat ggt = matmul(g, g, r, c, r, false, true), gtg = matmul(g, g, c, r, c, true, false);
    for (size_t i = 0; i < s.l.size(); ++i) s.l[i] = o.bs * s.l[i] + (1 - o.bs) * ggt[i];
    for (size_t i = 0; i < s.rr.size(); ++i) s.rr[i] = o.bs * s.rr[i] + (1 - o.bs) * gtg[i];
  }
  const bool cold = t == 1;
  if (cold || (t + o.slot) % o.freq == 0) {
    Mat xl = s.l, xr = s.rr;
    if (o.first) {
      Mat mh(size_t(r) * c);
      for (size_t i = 0; i < mh.size(); ++i) mh[i] = o.b1 * s.m[i] + (1 - o.b1) * g[i];
      xl = matmul(mh, mh, r, c, r, false, true);
      xr = matmul(mh, mh, c, r, c, true, false);
    }
    const Mat v0 = s.v;
    if (s.left) {
      if (cold) s.ql = jacobi_eig(xl, r);
      else {
        const std::vector<int> p = ref_warm(s.ql, xl, r);
        const Mat vv = s.v;
        for (int i = 0; i < r; ++i)
          for (int j = 0; j < c; ++j) s.v[size_t(i) * c + j] = vv[size_t(p[i]) * c + j];
      }
    }
    if (s.right) {
      if (cold) s.qr = jacobi_eig(xr, c);
      else {
        const std::vector<int> p = ref_warm(s.qr, xr, c);
        const Mat vv = s.v;
        for (int i = 0; i < r; ++i)
          for (int j = 0; j < c; ++j) s.v[size_t(i) * c + j] = vv[size_t(i) * c + p[j]];
      }
    }
  }
  auto rotate = [&](const Mat& x) { return matmul(matmul(s.ql, x, r, r, c, true), s.qr, r, c, c); };
  const Mat gt = rotate(g);
  for (size_t i = 0; i < s.m.size(); ++i) s.m[i] = o.b1 * s.m[i] + (1 - o.b1) * g[i];
  const Mat mt = rotate(s.m);
  Mat step(mt.size());
  const double bc1 = 1 - std::pow(o.b1, double(t)), bc2 = 1 - std::pow(o.b2, double(t));
  for (size_t i = 0; i < step.size(); ++i) {
    s.v[i] = o.b2 * s.v[i] + (1 - o.b2) * gt[i] * gt[i];
    step[i] = (mt[i] / bc1) / (std::sqrt(s.v[i] / bc2) + o.eps);
  }
  const Mat delta = matmul(matmul(s.ql, step, r, r, c), s.qr, r, c, c, false, true);
  for (size_t i = 0; i < w.size(); ++i) w[i] -= o.lr * (delta[i] + o.wd * w[i]);
}

// ---------- helpers over the Optimizer interface ----------
float* state(OptimizerState& st, size_t k, const std::string& name, size_t* numel = nullptr) {
  for (const StateTensor& s : st.tensor_state(k))
    if (s.name == name) {
      if (numel) *numel = s.numel;
      return s.data;
    }
  return nullptr;
}

void set_identity(float* q, int d) {
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j) q[size_t(i) * d + j] = i == j ? 1.0f : 0.0f;
}

double orthonormality_error(const float* q, int d) {
  double worst = 0;
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j) {
      double s = 0;
      for (int k = 0; k < d; ++k) s += double(q[size_t(k) * d + i]) * q[size_t(k) * d + j];
      worst = std::max(worst, std::fabs(s - (i == j ? 1.0 : 0.0)));
    }
  return worst;
}

OptimizerOptions options(const std::string& geometry, const std::string& source, int64_t freq) {
  OptimizerOptions o;
  o.beta1 = 0.9;
  o.beta2 = 0.95;
  o.eps = 1e-8;
  o.weight_decay = 0.1;
  o.basis_rotation.geometry = geometry;
  o.basis_rotation.source = source;
  o.basis_rotation.update_freq = freq;
  return o;
}

std::unique_ptr<Optimizer> make(const OptimizerOptions& o) {
  std::unique_ptr<Optimizer> opt;
  EXPECT_TRUE(make_optimizer("basis_rotation", o, &opt));
  return opt;
}

// A stage with every kind of tensor: embedding, the four block matrices (one of each
// orientation), biases and a LayerNorm weight.
std::vector<OptimTensor> stage_layout(size_t* n) {
  std::vector<OptimTensor> l = {{"wte", 0, 12, {6, 2}, true},          {"h3.ln1_w", 0, 4, {4}, false},
                                {"h3.attn.qkv_w", 0, 24, {6, 4}, true}, {"h3.attn.qkv_b", 0, 6, {6}, false},
                                {"h3.attn.proj_w", 0, 16, {4, 4}, true}, {"h3.mlp.fc_w", 0, 32, {8, 4}, true},
                                {"h3.mlp.proj_w", 0, 32, {4, 8}, true},  {"lnf_b", 0, 4, {4}, false}};
  size_t off = 0;
  for (auto& t : l) t.offset = off, off += t.numel;
  *n = off;
  return l;
}

std::vector<float> philox_vector(size_t n, uint64_t seed, uint64_t stream, float scale = 1.0f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * philox_normal(seed, stream, i);
  return v;
}

// §4.5.6: which tensors are rotated, and on which sides.
TEST(BasisRotation, OnlyAttentionAndMlpMatricesAreRotated) {
  size_t n = 0;
  const std::vector<OptimTensor> layout = stage_layout(&n);
  BasisRotationOptions bi, uni, small;
  uni.geometry = "uni";
  small.max_precond_dim = 4;
  const std::vector<int> slots = {-1, -1, 12, -1, 13, 14, 15, -1};
  for (size_t k = 0; k < layout.size(); ++k) {
    const RotationPlan p = plan_rotation(layout[k], bi);
    EXPECT_EQ(p.slot, slots[k]) << layout[k].name;
    EXPECT_EQ(p.rotated(), slots[k] >= 0) << layout[k].name;
    if (!p.rotated()) continue;
    EXPECT_TRUE(p.left && p.right) << layout[k].name;
    const RotationPlan u = plan_rotation(layout[k], uni);
    EXPECT_EQ(u.left, p.rows < p.cols) << layout[k].name << ": uni rotates the smaller side only";
    EXPECT_EQ(u.right, p.rows >= p.cols) << layout[k].name;
    const RotationPlan s = plan_rotation(layout[k], small);
    EXPECT_EQ(s.left, p.rows <= 4) << layout[k].name;
    EXPECT_EQ(s.right, p.cols <= 4) << layout[k].name;
  }
  EXPECT_FALSE(plan_rotation(OptimTensor{"h0.attn.qkv_w", 0, 8, {8}, true}, bi).rotated()) << "1-D is never rotated";
  EXPECT_FALSE(plan_rotation(OptimTensor{"hx.attn.qkv_w", 0, 4, {2, 2}, true}, bi).rotated());
  EXPECT_FALSE(plan_rotation(OptimTensor{"h1.attn.qkv_b", 0, 4, {2, 2}, true}, bi).rotated());

  // Through the optimizer: non-rotated tensors follow AdamW bit for bit (their state is
  // adam_m, adam_v only), rotated ones carry bases and statistics sized d×d.
  std::unique_ptr<Optimizer> opt = make(options("bi", "2nd", 10));
  std::unique_ptr<Optimizer> adamw;
  ASSERT_TRUE(make_optimizer("adamw", options("bi", "2nd", 10), &adamw));
  auto st = opt->make_state(layout, n, MemorySpace::kHost);
  auto ast = adamw->make_state(layout, n, MemorySpace::kHost);
  EXPECT_EQ(opt->state_floats(layout, n), st->total_floats());
  std::vector<float> p = philox_vector(n, 3, 0), pa = p;
  for (int t = 1; t <= 3; ++t) {
    const std::vector<float> g = philox_vector(n, 4, t);
    opt->step(*st, StageBuffers{p.data(), g.data(), n, MemorySpace::kHost, nullptr}, StepArgs{1e-2, 1.0f, t});
    adamw->step(*ast, StageBuffers{pa.data(), g.data(), n, MemorySpace::kHost, nullptr}, StepArgs{1e-2, 1.0f, t});
  }
  for (size_t k = 0; k < layout.size(); ++k) {
    const OptimTensor& t = layout[k];
    const bool same = std::memcmp(p.data() + t.offset, pa.data() + t.offset, t.numel * sizeof(float)) == 0;
    EXPECT_EQ(same, slots[k] < 0) << t.name;
    std::vector<std::string> names;
    for (const auto& s : st->tensor_state(k)) names.push_back(s.name);
    const std::vector<std::string> expect = slots[k] < 0 ? std::vector<std::string>{"adam_m", "adam_v"}
                                                         : std::vector<std::string>{"adam_m", "adam_v", "rot_q_left",
                                                                                    "rot_q_right", "rot_l", "rot_r"};
    EXPECT_EQ(names, expect) << t.name;
    if (slots[k] < 0) continue;
    size_t ql = 0, qr = 0;
    state(*st, k, kRotQLeft, &ql);
    state(*st, k, kRotQRight, &qr);
    EXPECT_EQ(ql, size_t(t.shape[0]) * t.shape[0]);
    EXPECT_EQ(qr, size_t(t.shape[1]) * t.shape[1]);
  }
}

// §4.5.1 (acceptance): Q_L = Q_R = I, never refreshed, gives AdamW's params and moments
// bit for bit, for every geometry and source; the same run with refreshes does not.
TEST(BasisRotation, FrozenIdentityBasesReproduceAdamWBitForBit) {
  size_t n = 0;
  const std::vector<OptimTensor> layout = stage_layout(&n);
  for (const char* geometry : {"bi", "uni"})
    for (const char* source : {"2nd", "1st"})
      for (const bool frozen : {true, false}) {
        OptimizerOptions o = options(geometry, source, frozen ? 1000000 : 2);
        std::unique_ptr<Optimizer> opt = make(o), adamw;
        ASSERT_TRUE(make_optimizer("adamw", o, &adamw));
        auto st = opt->make_state(layout, n, MemorySpace::kHost);
        auto ast = adamw->make_state(layout, n, MemorySpace::kHost);
        if (frozen)
          for (size_t k = 0; k < layout.size(); ++k)
            for (const char* side : {kRotQLeft, kRotQRight}) {
              size_t numel = 0;
              if (float* q = state(*st, k, side, &numel)) set_identity(q, int(std::lround(std::sqrt(double(numel)))));
            }
        std::vector<float> p = philox_vector(n, 7, 0), pa = p;
        for (int t = 1; t <= 5; ++t) {
          const std::vector<float> g = philox_vector(n, 8, t);
          opt->step(*st, StageBuffers{p.data(), g.data(), n, MemorySpace::kHost, nullptr}, StepArgs{2e-2, 0.75f, t});
          adamw->step(*ast, StageBuffers{pa.data(), g.data(), n, MemorySpace::kHost, nullptr}, StepArgs{2e-2, 0.75f, t});
        }
        const auto whole = st->tensors(), awhole = ast->tensors();
        const bool params_equal = std::memcmp(p.data(), pa.data(), n * sizeof(float)) == 0;
        const bool v_equal = std::memcmp(whole[1].data, awhole[1].data, n * sizeof(float)) == 0;
        EXPECT_EQ(params_equal, frozen) << geometry << " " << source << " frozen=" << frozen;
        EXPECT_EQ(v_equal, frozen) << geometry << " " << source << " frozen=" << frozen;
        EXPECT_EQ(std::memcmp(whole[0].data, awhole[0].data, n * sizeof(float)), 0) << "M stays in original coordinates";
      }
}

using testing::anisotropic;

// §4.5.2: after every update (cold start and warm refreshes included) both bases are
// orthonormal to 1e-4, and their columns are ordered by non-increasing Rayleigh quotient
// of the statistic: exactly after the cold start; after a warm refresh (the sort comes
// before its QR power step, so the order holds once the basis tracks the spectrum) within
// 1e-3 of the largest from t = 12 on. The sort itself is pinned by the permutation test.
TEST(BasisRotation, BasesStayOrthonormalAndSortedByRayleighQuotient) {
  const int r = 6, c = 4;
  const std::vector<OptimTensor> layout = {{"h1.mlp.fc_w", 0, size_t(r * c), {r, c}, true}};
  for (const char* source : {"2nd", "1st"}) {
    std::unique_ptr<Optimizer> opt = make(options("bi", source, 3));
    auto st = opt->make_state(layout, r * c, MemorySpace::kHost);
    std::vector<float> p = philox_vector(r * c, 9, 0);
    int refreshes = 0;
    for (int t = 1; t <= 30; ++t) {
      const std::vector<float> g = anisotropic(r, c, 10, t);
      const std::vector<float> before(state(*st, 0, kRotQLeft), state(*st, 0, kRotQLeft) + r * r);
      opt->step(*st, StageBuffers{p.data(), g.data(), size_t(r * c), MemorySpace::kHost, nullptr}, StepArgs{1e-2, 1.0f, t});
      const float* ql = state(*st, 0, kRotQLeft);
      const float* qr = state(*st, 0, kRotQRight);
      const bool refreshed = std::memcmp(before.data(), ql, r * r * sizeof(float)) != 0;
      EXPECT_EQ(refreshed, t == 1 || refresh_due(6, t, 3)) << "slot 6 refreshes at (t + 6) % 3 == 0, t=" << t;
      refreshes += refreshed;
      EXPECT_LT(orthonormality_error(ql, r), 1e-4) << source << " t=" << t;
      EXPECT_LT(orthonormality_error(qr, c), 1e-4) << source << " t=" << t;
      if (std::string(source) != "2nd" || !refreshed || (t > 1 && t < 12)) continue;
      for (const auto& [q, x, d] : {std::tuple{ql, state(*st, 0, kRotStatLeft), r}, std::tuple{qr, state(*st, 0, kRotStatRight), c}}) {
        std::vector<double> lambda(d, 0.0);
        for (int j = 0; j < d; ++j)
          for (int i = 0; i < d; ++i)
            for (int k = 0; k < d; ++k) lambda[j] += double(q[size_t(i) * d + j]) * x[size_t(i) * d + k] * q[size_t(k) * d + j];
        const double tol = (t == 1 ? 1e-5 : 1e-3) * lambda[0];
        for (int j = 1; j < d; ++j) EXPECT_LE(lambda[j], lambda[j - 1] + tol) << "t=" << t << " column " << j;
      }
    }
    EXPECT_EQ(refreshes, 11) << "the cold start and every third update";
  }
}

// §4.5.3: with Q_L = Q_R = I and diagonal statistics in shuffled order, a warm refresh
// sorts Q's columns (Q becomes a signed permutation) and moves V's rows and columns by
// the same permutations; zero gradients leave V otherwise only decayed by beta2.
TEST(BasisRotation, WarmRefreshPermutesSecondMomentLikeTheBasis) {
  const int r = 4, c = 5;
  const std::vector<OptimTensor> layout = {{"h0.attn.qkv_w", 0, size_t(r * c), {r, c}, true}};
  OptimizerOptions o = options("bi", "2nd", 1);
  o.weight_decay = 0.0;
  std::unique_ptr<Optimizer> opt = make(o);
  auto st = opt->make_state(layout, r * c, MemorySpace::kHost);
  const std::vector<double> dl = {2, 7, 1, 5}, dr = {3, 9, 4, 1, 6};
  const std::vector<int> pl = {1, 3, 0, 2}, pr = {1, 4, 2, 0, 3};  // argsort, descending
  set_identity(state(*st, 0, kRotQLeft), r);
  set_identity(state(*st, 0, kRotQRight), c);
  for (int i = 0; i < r; ++i) state(*st, 0, kRotStatLeft)[i * r + i] = float(dl[i]);
  for (int j = 0; j < c; ++j) state(*st, 0, kRotStatRight)[j * c + j] = float(dr[j]);
  float* v = state(*st, 0, kAdamV);
  for (int i = 0; i < r * c; ++i) v[i] = float(i + 1);
  const std::vector<float> v0(v, v + r * c);
  std::vector<float> p = philox_vector(r * c, 11, 0), g(r * c, 0.0f);
  const std::vector<float> p0 = p;
  opt->step(*st, StageBuffers{p.data(), g.data(), size_t(r * c), MemorySpace::kHost, nullptr}, StepArgs{1e-2, 1.0f, 2});
  for (int i = 0; i < r; ++i)
    for (int j = 0; j < c; ++j) EXPECT_EQ(v[i * c + j], 0.95f * v0[pl[i] * c + pr[j]]) << i << "," << j;
  for (const auto& [q, perm, d] : {std::tuple{state(*st, 0, kRotQLeft), pl, r}, std::tuple{state(*st, 0, kRotQRight), pr, c}})
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < d; ++j) EXPECT_NEAR(std::fabs(q[i * d + j]), i == perm[j] ? 1.0 : 0.0, 1e-6) << i << "," << j;
  EXPECT_EQ(p, p0) << "zero gradient, zero momentum, no decay: no move";
}

// §4.5.4 (convergence): G_t = P·diag(a)·Z_t·diag(b)·Rᵀ with Z_t standard normal has
// E[G·Gᵀ] ∝ P·diag(a²)·Pᵀ and E[Gᵀ·G] ∝ R·diag(b²)·Rᵀ: the bases converge to P and R,
// column by column (up to sign), in order of a and b.
TEST(BasisRotation, BasesConvergeToEigenvectorsOfGradientCovariances) {
  const int r = 4, c = 5;
  const Mat P = random_orthogonal(r, 21), R = random_orthogonal(c, 22);
  const std::vector<double> a = {4, 3, 2, 1}, b = {5, 4, 3, 2, 1};
  const std::vector<OptimTensor> layout = {{"h0.attn.qkv_w", 0, size_t(r * c), {r, c}, true}};
  OptimizerOptions o = options("bi", "2nd", 5);
  o.basis_rotation.shampoo_beta = 0.99;
  std::unique_ptr<Optimizer> opt = make(o);
  auto st = opt->make_state(layout, r * c, MemorySpace::kHost);
  std::vector<float> p(r * c, 0.0f);
  for (int t = 1; t <= 600; ++t) {
    Mat z(size_t(r) * c);
    for (int i = 0; i < r; ++i)
      for (int j = 0; j < c; ++j) z[size_t(i) * c + j] = a[i] * b[j] * philox_normal(23, t, size_t(i) * c + j);
    const Mat gd = matmul(matmul(P, z, r, r, c), R, r, c, c, false, true);
    const std::vector<float> g(gd.begin(), gd.end());
    opt->step(*st, StageBuffers{p.data(), g.data(), size_t(r * c), MemorySpace::kHost, nullptr}, StepArgs{0.0, 1.0f, t});
  }
  for (const auto& [q, e, d] : {std::tuple{state(*st, 0, kRotQLeft), P, r}, std::tuple{state(*st, 0, kRotQRight), R, c}})
    for (int j = 0; j < d; ++j) {
      double dot = 0;
      for (int i = 0; i < d; ++i) dot += double(q[i * d + j]) * e[size_t(i) * d + j];
      EXPECT_GT(std::fabs(dot), 0.99) << "column " << j << " of a " << d << "-sided basis";
    }
}

// §4.5.4 (equivariance): on f(W) = ½‖A·W·B‖²_F, running from W'0 = Uᵀ·W0·V on the
// rotated problem A' = A·U, B' = Vᵀ·B gives W'_t = Uᵀ·W_t·V. AdamW is not equivariant:
// the same comparison for it differs by far more.
double equivariance_gap(const std::string& kind, const std::string& geometry) {
  const int d = 5;
  Mat A(d * d), B(d * d), W0(d * d);
  for (int i = 0; i < d * d; ++i) {
    A[i] = (i % (d + 1) == 0) + 0.4 * philox_normal(31, 0, i);
    B[i] = (i % (d + 1) == 0) + 0.4 * philox_normal(31, 1, i);
    W0[i] = philox_normal(31, 2, i);
  }
  const Mat U = random_orthogonal(d, 32), V = random_orthogonal(d, 33);
  OptimizerOptions o = options(geometry, "2nd", 3);
  o.eps = 1e-2;  // keeps the first step's rounding-level coordinates of G̃ from driving sign updates
  o.weight_decay = 0.01;
  auto run = [&](const Mat& a, const Mat& b, const Mat& w0) {
    std::unique_ptr<Optimizer> opt;
    EXPECT_TRUE(make_optimizer(kind, o, &opt));
    const std::vector<OptimTensor> layout = {{"h0.attn.proj_w", 0, size_t(d * d), {d, d}, true}};
    auto st = opt->make_state(layout, d * d, MemorySpace::kHost);
    std::vector<float> w(w0.begin(), w0.end());
    const Mat ata = matmul(a, a, d, d, d, true), bbt = matmul(b, b, d, d, d, false, true);
    for (int t = 1; t <= 20; ++t) {
      const Mat wd(w.begin(), w.end());
      const Mat gd = matmul(matmul(ata, wd, d, d, d), bbt, d, d, d);
      const std::vector<float> g(gd.begin(), gd.end());
      opt->step(*st, StageBuffers{w.data(), g.data(), size_t(d * d), MemorySpace::kHost, nullptr}, StepArgs{2e-2, 1.0f, t});
    }
    return Mat(w.begin(), w.end());
  };
  const Mat w = run(A, B, W0);
  const Mat w2 = run(matmul(A, U, d, d, d), matmul(V, B, d, d, d, true), matmul(matmul(U, W0, d, d, d, true), V, d, d, d));
  const Mat back = matmul(matmul(U, w2, d, d, d), V, d, d, d, false, true);
  double gap = 0, moved = 0;
  for (int i = 0; i < d * d; ++i) gap = std::max(gap, std::fabs(back[i] - w[i])), moved = std::max(moved, std::fabs(w[i] - W0[i]));
  EXPECT_GT(moved, 0.1) << kind << ": the weights move";
  return gap;
}

TEST(BasisRotation, TrajectoryIsInvariantUnderRotatingTheProblem) {
  const double rotated = equivariance_gap("basis_rotation", "bi");
  const double adamw = equivariance_gap("adamw", "bi");
  std::printf("equivariance gap after 20 updates: basis_rotation %.3g, adamw %.3g\n", rotated, adamw);
  EXPECT_LT(rotated, 1e-3);  // measured 2e-4 (fp32 rounding through 20 eigen/QR refreshes)
  EXPECT_GT(adamw, 30 * rotated) << "AdamW is not rotation-equivariant: " << adamw << " vs " << rotated;
}

// The update against the float64 transcription, 10 updates with warm refreshes
// (update_freq 3), for each geometry/source and a max_precond_dim that drops a side.
// eps = 1e-2 (gradients are O(1..20)): at a cold start G̃ is diagonal up to rounding, and Adam's first step turns
// rounding-level coordinates into sign steps unless eps dominates them.
TEST(BasisRotation, MatchesFloat64Reference) {
  for (const testing::RotationCase& k : testing::rotation_cases()) {
    const std::string what = k.name();
    OptimizerOptions o = options(k.geometry, k.source, 3);
    o.eps = 1e-2;
    o.basis_rotation.max_precond_dim = k.max_precond_dim;
    o.basis_rotation.shampoo_beta = 0.9;
    const OptimTensor tensor{"h2.mlp.proj_w", 0, size_t(k.r * k.c), {k.r, k.c}, true};
    const RotationPlan plan = plan_rotation(tensor, o.basis_rotation);
    std::unique_ptr<Optimizer> opt = make(o);
    auto st = opt->make_state({tensor}, tensor.numel, MemorySpace::kHost);
    RefMatrix ref{k.r, k.c, plan.left, plan.right, Mat(tensor.numel, 0.0), Mat(tensor.numel, 0.0), identity(k.r),
                  identity(k.c), Mat(size_t(k.r) * k.r, 0.0), Mat(size_t(k.c) * k.c, 0.0)};
    const RefOptions ro{1e-2, 0.9, 0.95, 1e-2, 0.1, 0.9, std::string(k.source) == "1st", 3, plan.slot};
    std::vector<float> p = philox_vector(tensor.numel, 41, 0);
    Mat w(p.begin(), p.end());
    for (int t = 1; t <= 10; ++t) {
      const std::vector<float> g = anisotropic(k.r, k.c, 42, t);
      opt->step(*st, StageBuffers{p.data(), g.data(), tensor.numel, MemorySpace::kHost, nullptr}, StepArgs{1e-2, 1.0f, t});
      ref_step(ref, w, Mat(g.begin(), g.end()), ro, t);
    }
    const float* v = state(*st, 0, kAdamV);
    double moved = 0;
    for (size_t i = 0; i < tensor.numel; ++i) {
      EXPECT_NEAR(p[i], w[i], 2e-5) << what << " element " << i;
      EXPECT_NEAR(v[i], ref.v[i], 1e-4 * (1 + ref.v[i])) << what << " V " << i;
      moved = std::max(moved, std::fabs(w[i] - double(philox_normal(41, 0, i))));
    }
    EXPECT_GT(moved, 5e-2) << what;
  }
}

// Refreshes are staggered: with update_freq F, slot s refreshes at t ≡ −s (mod F), so
// over F consecutive updates every matrix refreshes exactly once and no update carries
// more than ceil(matrices / F) of them.
TEST(BasisRotation, RefreshesAreSpreadAcrossMatrices) {
  const int64_t freq = 10;
  const int matrices = 4 * 12;  // 12 layers
  for (int64_t t0 = 1; t0 <= 30; t0 += 7) {
    std::vector<int> per_matrix(matrices, 0);
    for (int64_t t = t0; t < t0 + freq; ++t) {
      int here = 0;
      for (int s = 0; s < matrices; ++s) here += refresh_due(s, t, freq), per_matrix[s] += refresh_due(s, t, freq);
      EXPECT_LE(here, (matrices + freq - 1) / freq) << "t=" << t;
    }
    for (int s = 0; s < matrices; ++s) EXPECT_EQ(per_matrix[s], 1) << "slot " << s;
  }
}

}  // namespace
}  // namespace pt
