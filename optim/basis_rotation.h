// basis_rotation: Adam in a rotated basis ("Adam with Basis Rotation", Jung, Shin, Lee,
// arXiv 2602.03515, Algorithms 1 and 2; algorithmically SOAP, Vyas et al. 2024, for
// geometry bi + source 2nd) for the 2-D weight matrices of attention and MLP
// (hN.attn.qkv_w, hN.attn.proj_w, hN.mlp.fc_w, hN.mlp.proj_w); every other tensor
// follows AdamW (optim/adamw.h) with the same learning rate, betas, eps and decay.
//
// Per rotated W (r×c, row-major) with gradient G = grad·grad_scale, at update t:
//   2nd:  L ← bs·L + (1−bs)·G·Gᵀ ;  R ← bs·R + (1−bs)·Gᵀ·G       bs = shampoo_beta (< 0: beta2)
//   refresh when Q is still zero (cold start) or (t + slot) % update_freq == 0:
//     statistics X_L, X_R = L, R (2nd) or M̂·M̂ᵀ, M̂ᵀ·M̂ with M̂ = b1·M + (1−b1)·G (1st)
//     cold: Q = eigenvectors of X (LAPACKE_ssyevd), columns by non-increasing eigenvalue
//     warm: lambda = diag(Qᵀ·X·Q); stable sort non-increasing; the same permutation on Q's
//           columns and on V's rows (left side) / columns (right side); Q ← QR(X·Q).Q
//   G̃ = Q_Lᵀ·G·Q_R ;  M ← b1·M + (1−b1)·G ;  M̃ = Q_Lᵀ·M·Q_R ;  V ← b2·V + (1−b2)·G̃⊙G̃
//   Δ = Q_L · ( (M̃/(1−b1^t)) / (sqrt(V/(1−b2^t)) + eps) ) · Q_Rᵀ
//   W ← W − lr·(Δ + wd·W)
// M is kept in original coordinates, V in rotated ones. The elementwise part is
// AdamW's expression for expression (eps after the bias correction, as optim/adamw.h;
// the paper writes sqrt(1−b2^t)/(1−b1^t)·M̃/(sqrt(V)+eps)), so with Q_L = Q_R = I frozen
// the update equals AdamW bit for bit (a GEMM with I is exact).
// Deviations, stated: with source 1st the warm step is one power step on the Gram
// matrices, Q_L ← QR(M̂·M̂ᵀ·Q_L), Q_R ← QR(M̂ᵀ·M̂·Q_R), sorted by ‖M̂ᵀq‖² / ‖M̂q‖² (the
// Rayleigh quotients), instead of the paper's alternating QR(M̂·Q_R), QR(M̂ᵀ·Q_L): both
// converge to the singular bases, and this form keeps the sides independent (uni,
// max_precond_dim) and square for any r, c. The cold 1st start is the eigenbasis of the
// same Gram matrices (= the full SVD bases of M̂).
//
// Sides: bi rotates both sides, uni only the smaller one (Q_L when r < c, else Q_R); a
// side longer than max_precond_dim stays the identity (nothing stored); a matrix with no
// rotated side follows AdamW.
// Staggering: the matrix of layer l has slot = 4·l + {qkv_w 0, attn.proj_w 1, fc_w 2,
// mlp.proj_w 3} and refreshes at the updates t with (t + slot) % update_freq == 0, so
// one update refreshes about 1/update_freq of the matrices, never all of them (with
// update_freq > 1 and more than one matrix). The slot comes from the tensor's name, so
// it does not depend on the pipeline layout (a checkpoint resumes exactly under any).
// Cold starts happen at a matrix's first update.
//
// State per parameter tensor (checkpointed by name): adam_m, adam_v (numel floats; for a
// rotated matrix adam_v is in rotated coordinates), and for a rotated side rot_q_left
// (r×r) / rot_q_right (c×c), with source 2nd also rot_l (r×r) / rot_r (c×c). A zero Q
// means "not started yet" (make_state zeroes the state; an orthogonal Q is never zero).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "optim/adamw.h"
#include "optim/optimizer.h"

namespace pt {

// The allowed values of optimizer.basis_rotation.geometry and .source (first = default).
const std::vector<std::string>& basis_rotation_geometries();  // bi, uni
const std::vector<std::string>& basis_rotation_sources();     // 2nd, 1st

constexpr const char* kRotQLeft = "rot_q_left";
constexpr const char* kRotQRight = "rot_q_right";
constexpr const char* kRotStatLeft = "rot_l";
constexpr const char* kRotStatRight = "rot_r";

// How tensor t is treated: rotated() only for the 2-D attention/MLP weights with a side
// within max_precond_dim.
struct RotationPlan {
  int slot = -1;             // 4·layer + matrix index; -1: not an attention/MLP weight
  int rows = 0, cols = 0;
  bool left = false, right = false;
  bool rotated() const { return left || right; }
};
RotationPlan plan_rotation(const OptimTensor& t, const BasisRotationOptions& o);

// Whether the matrix of `slot` refreshes its basis at update t (its cold start aside).
inline bool refresh_due(int slot, int64_t t, int64_t update_freq) { return (t + slot) % update_freq == 0; }

// One rotated matrix's own state (host pointers; null for a side that is not rotated,
// stats null with source 1st). m, v: (rows×cols); q_left, stat_left: (rows×rows);
// q_right, stat_right: (cols×cols).
struct RotatedMatrix {
  float* m = nullptr;
  float* v = nullptr;
  float* q_left = nullptr;
  float* q_right = nullptr;
  float* stat_left = nullptr;
  float* stat_right = nullptr;
};

// One update of the rotated matrix W (plan.rows × plan.cols) from its gradient, as in
// the header comment; hp from adamw_params_for (hp.t is the update count t).
void rotated_adam_update(float* W, const float* grads, const RotatedMatrix& s, const RotationPlan& plan,
                         const AdamWParams& hp, const BasisRotationOptions& o);

// The registry's "basis_rotation". kHost state steps host buffers (rotated_adam_update,
// adamw_update); kDevice state (CUDA builds, optim/cuda/basis_rotation_state.h) steps
// device buffers with the GPU twins.
std::unique_ptr<Optimizer> make_basis_rotation(const OptimizerOptions& options);

}  // namespace pt
