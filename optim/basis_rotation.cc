#include "optim/basis_rotation.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <utility>

#include "common/check.h"
#include "optim/basis_rotation_state.h"
#include "optim/cuda/basis_rotation_state.h"
#include "optim/linalg.h"
#include "optim/optimizer_checks.h"

namespace pt {

const std::vector<std::string>& basis_rotation_geometries() {
  static const std::vector<std::string> v = {"bi", "uni"};
  return v;
}

const std::vector<std::string>& basis_rotation_sources() {
  static const std::vector<std::string> v = {"2nd", "1st"};
  return v;
}

namespace {

// "hN.<suffix>" -> 4·N + index of suffix among the rotated matrices; -1 otherwise.
int matrix_slot(const std::string& name) {
  static const char* kSuffixes[] = {"attn.qkv_w", "attn.proj_w", "mlp.fc_w", "mlp.proj_w"};
  if (name.size() < 3 || name[0] != 'h') return -1;
  const size_t dot = name.find('.');
  if (dot == std::string::npos || dot == 1) return -1;
  int layer = 0;
  for (size_t i = 1; i < dot; ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    layer = layer * 10 + (name[i] - '0');
  }
  const std::string suffix = name.substr(dot + 1);
  for (int k = 0; k < 4; ++k)
    if (suffix == kSuffixes[k]) return 4 * layer + k;
  return -1;
}

bool all_zero(const float* x, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (x[i] != 0.0f) return false;
  return true;
}

// out = Q_Lᵀ·X·Q_R (forward) or Q_L·X·Q_Rᵀ (back), an identity side skipped; X, out, tmp: (r×c).
void change_basis(const RotatedMatrix& s, int r, int c, bool forward, const float* X, float* out, float* tmp) {
  const float* src = X;
  if (s.q_left) {
    gemm(forward, false, r, c, r, 1.0f, s.q_left, src, 0.0f, tmp);
    src = tmp;
  }
  if (s.q_right) gemm(false, !forward, r, c, c, 1.0f, src, s.q_right, 0.0f, out);
  else std::memcpy(out, src, sizeof(float) * size_t(r) * c);
}

// Refreshes the basis q (d×d) from the statistic x (d×d): cold = eigenvectors; warm =
// sort by Rayleigh quotient (V's rows when `left`, else its columns, permuted alike),
// then one QR power step. v: (r×c).
void refresh_side(float* q, const float* x, int d, bool cold, float* v, int r, int c, bool left) {
  if (cold) return sym_eig_desc(x, d, q, nullptr);
  const size_t dd = size_t(d) * d;
  std::vector<float> xq(dd);
  gemm(false, false, d, d, d, 1.0f, x, q, 0.0f, xq.data());
  std::vector<double> lambda(d, 0.0);
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j) lambda[j] += double(q[size_t(i) * d + j]) * xq[size_t(i) * d + j];
  std::vector<int> perm(d);
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.end(), [&](int a, int b) { return lambda[a] > lambda[b]; });
  std::vector<float> qp(dd);
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j) {
      qp[size_t(i) * d + j] = xq[size_t(i) * d + perm[j]];  // X·Q with Q's columns permuted
    }
  const std::vector<float> old_v(v, v + size_t(r) * c);
  for (int i = 0; i < r; ++i)
    for (int j = 0; j < c; ++j)
      v[size_t(i) * c + j] = left ? old_v[size_t(perm[i]) * c + j] : old_v[size_t(i) * c + perm[j]];
  qr_q(qp.data(), d);
  std::copy(qp.begin(), qp.end(), q);
}

// The statistics a refresh reads: L, R (2nd), or the Gram matrices of M̂ (1st).
void refresh(const RotatedMatrix& s, const RotationPlan& p, const float* g, const AdamWParams& hp, bool cold,
             const BasisRotationOptions& o) {
  const int r = p.rows, c = p.cols;
  std::vector<float> xl, xr;
  const float* stat_left = s.stat_left;
  const float* stat_right = s.stat_right;
  if (o.source == "1st") {
    std::vector<float> mh(size_t(r) * c);
    for (size_t i = 0; i < mh.size(); ++i) mh[i] = hp.beta1 * s.m[i] + (1.0f - hp.beta1) * g[i];
    if (p.left) xl.resize(size_t(r) * r), gemm(false, true, r, r, c, 1.0f, mh.data(), mh.data(), 0.0f, xl.data());
    if (p.right) xr.resize(size_t(c) * c), gemm(true, false, c, c, r, 1.0f, mh.data(), mh.data(), 0.0f, xr.data());
    stat_left = xl.data();
    stat_right = xr.data();
  }
  if (p.left) refresh_side(s.q_left, stat_left, r, cold, s.v, r, c, true);
  if (p.right) refresh_side(s.q_right, stat_right, c, cold, s.v, r, c, false);
}

}  // namespace

RotationPlan plan_rotation(const OptimTensor& t, const BasisRotationOptions& o) {
  RotationPlan p;
  p.slot = t.shape.size() == 2 ? matrix_slot(t.name) : -1;
  if (p.slot < 0) return p;
  p.rows = t.shape[0];
  p.cols = t.shape[1];
  const bool bi = o.geometry == "bi";
  p.left = (bi || p.rows < p.cols) && p.rows <= o.max_precond_dim;
  p.right = (bi || p.rows >= p.cols) && p.cols <= o.max_precond_dim;
  return p;
}

void rotated_adam_update(float* W, const float* grads, const RotatedMatrix& s, const RotationPlan& p,
                         const AdamWParams& hp, const BasisRotationOptions& o) {
  PT_CHECK(p.rotated() && (s.q_left != nullptr) == p.left && (s.q_right != nullptr) == p.right);
  const int r = p.rows, c = p.cols;
  const size_t n = size_t(r) * c;
  std::vector<float> g(n), gt(n), mt(n), tmp(n);
  for (size_t i = 0; i < n; ++i) g[i] = grads[i] * hp.grad_scale;
  if (o.source == "2nd") {
    const float bs = float(o.shampoo_beta < 0 ? hp.beta2 : o.shampoo_beta);
    if (p.left) gemm(false, true, r, r, c, 1.0f - bs, g.data(), g.data(), bs, s.stat_left);
    if (p.right) gemm(true, false, c, c, r, 1.0f - bs, g.data(), g.data(), bs, s.stat_right);
  }
  const bool cold = all_zero(p.left ? s.q_left : s.q_right, p.left ? size_t(r) * r : size_t(c) * c);
  if (cold || refresh_due(p.slot, hp.t, o.update_freq)) refresh(s, p, g.data(), hp, cold, o);
  change_basis(s, r, c, true, g.data(), gt.data(), tmp.data());
  for (size_t i = 0; i < n; ++i) s.m[i] = hp.beta1 * s.m[i] + (1.0f - hp.beta1) * g[i];
  change_basis(s, r, c, true, s.m, mt.data(), tmp.data());
  const float bc1 = 1.0f - std::pow(hp.beta1, float(hp.t));
  const float bc2 = 1.0f - std::pow(hp.beta2, float(hp.t));
  for (size_t i = 0; i < n; ++i) {
    const float vi = hp.beta2 * s.v[i] + (1.0f - hp.beta2) * gt[i] * gt[i];
    s.v[i] = vi;
    const float mhat = mt[i] / bc1;
    const float vhat = vi / bc2;
    mt[i] = mhat / (std::sqrt(vhat) + hp.eps);  // the step in rotated coordinates
  }
  change_basis(s, r, c, false, mt.data(), gt.data(), tmp.data());
  for (size_t i = 0; i < n; ++i) W[i] -= hp.lr * (gt[i] + hp.weight_decay * W[i]);
}

BasisRotationState::BasisRotationState(std::vector<OptimTensor> layout, size_t n, const BasisRotationOptions& o)
    : AdamWState(std::move(layout), n), plans_(this->layout().size()), blocks_(this->layout().size()) {
  for (size_t k = 0; k < this->layout().size(); ++k) {
    const RotationPlan p = plans_[k] = plan_rotation(this->layout()[k], o);
    const size_t rr = size_t(p.rows) * p.rows, cc = size_t(p.cols) * p.cols;
    const bool stats = o.source == "2nd";
    if (p.left) blocks_[k].push_back({kRotQLeft, std::vector<float>(rr, 0.0f)});
    if (p.right) blocks_[k].push_back({kRotQRight, std::vector<float>(cc, 0.0f)});
    if (p.left && stats) blocks_[k].push_back({kRotStatLeft, std::vector<float>(rr, 0.0f)});
    if (p.right && stats) blocks_[k].push_back({kRotStatRight, std::vector<float>(cc, 0.0f)});
    for (const auto& b : blocks_[k]) extra_ += b.data.size();
  }
}

std::vector<StateTensor> BasisRotationState::tensors() {
  std::vector<StateTensor> out = AdamWState::tensors();
  for (size_t k = 0; k < blocks_.size(); ++k)
    for (auto& b : blocks_[k]) out.push_back({layout()[k].name + ":" + b.name, b.data.data(), b.data.size()});
  return out;
}

std::vector<StateTensor> BasisRotationState::tensor_state(size_t k) {
  std::vector<StateTensor> out = AdamWState::tensor_state(k);
  for (auto& b : blocks_[k]) out.push_back({b.name, b.data.data(), b.data.size()});
  return out;
}

RotatedMatrix BasisRotationState::matrix(size_t k) {
  std::vector<float*> ptrs;
  for (auto& b : blocks_[k]) ptrs.push_back(b.data.data());
  const OptimTensor& t = layout()[k];
  return assemble(k, host_m() + t.offset, host_v() + t.offset, ptrs);
}

RotatedMatrix BasisRotationState::assemble(size_t k, float* m, float* v, const std::vector<float*>& ptrs) const {
  RotatedMatrix s{m, v};
  for (size_t i = 0; i < blocks_[k].size(); ++i) {
    const std::string& name = blocks_[k][i].name;
    if (name == kRotQLeft) s.q_left = ptrs[i];
    if (name == kRotQRight) s.q_right = ptrs[i];
    if (name == kRotStatLeft) s.stat_left = ptrs[i];
    if (name == kRotStatRight) s.stat_right = ptrs[i];
  }
  return s;
}

namespace {

class BasisRotation final : public Optimizer {
 public:
  explicit BasisRotation(const OptimizerOptions& o) : o_(o) {
    PT_CHECK_MSG(o.basis_rotation.update_freq >= 1 && o.basis_rotation.max_precond_dim >= 1,
                 "basis_rotation: update_freq and max_precond_dim must be >= 1 (the config loader checks them)");
  }
  const char* kind() const override { return "basis_rotation"; }
  std::vector<std::string> state_names() const override {
    return {kAdamM, kAdamV, kRotQLeft, kRotQRight, kRotStatLeft, kRotStatRight};
  }
  size_t state_floats(const std::vector<OptimTensor>& layout, size_t n) const override {
    size_t total = 2 * n;
    const size_t per_side = o_.basis_rotation.source == "2nd" ? 2 : 1;
    for (const auto& t : layout) {
      const RotationPlan p = plan_rotation(t, o_.basis_rotation);
      total += per_side * ((p.left ? size_t(p.rows) * p.rows : 0) + (p.right ? size_t(p.cols) * p.cols : 0));
    }
    return total;
  }

  bool has_device_state() const override { return true; }
  std::unique_ptr<OptimizerState> make_state(const std::vector<OptimTensor>& layout, size_t n,
                                             MemorySpace space) const override {
    check_layout_fits(layout, n, kind());
    if (space == MemorySpace::kDevice) return make_basis_rotation_device_state(layout, n, o_.basis_rotation);
    return std::make_unique<BasisRotationState>(layout, n, o_.basis_rotation);
  }

  void step(OptimizerState& state, const StageBuffers& b, const StepArgs& a) const override {
    if (b.space == MemorySpace::kDevice) return basis_rotation_step_device(state, b, o_, a);
    BasisRotationState* s = &host_state_for<BasisRotationState>(state, b, kind());
    for (size_t k = 0; k < s->layout().size(); ++k) {
      const OptimTensor& t = s->layout()[k];
      const AdamWParams hp = adamw_params_for(t, o_, a);
      if (s->plan(k).rotated())
        rotated_adam_update(b.params + t.offset, b.grads + t.offset, s->matrix(k), s->plan(k), hp, o_.basis_rotation);
      else
        adamw_update(b.params + t.offset, b.grads + t.offset, s->host_m() + t.offset, s->host_v() + t.offset, t.numel,
                     hp);
    }
  }

 private:
  OptimizerOptions o_;
};

}  // namespace

std::unique_ptr<Optimizer> make_basis_rotation(const OptimizerOptions& options) {
  return std::make_unique<BasisRotation>(options);
}

}  // namespace pt
