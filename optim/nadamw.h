// NAdamW: Adam with Nesterov momentum (Dozat 2016, "Incorporating Nesterov Momentum
// into Adam") and decoupled weight decay (Loshchilov & Hutter). The update is
// PyTorch's torch.optim.NAdam with decoupled_weight_decay=True (torch/optim/nadam.py,
// _single_tensor_nadam), with its momentum schedule psi = momentum_decay (0.004):
//   mu_t  = b1·(1 − ½·0.96^(t·psi)),   mu_{t+1} likewise,   Pi_t = mu_1·…·mu_t
//   m = b1·m + (1−b1)·g ;  v = b2·v + (1−b2)·g² ;  d = sqrt(v / (1−b2^t)) + eps
//   p -= lr · ( wd·p + (1−mu_t)/(1−Pi_t) · g/d + mu_{t+1}/(1−Pi_t·mu_{t+1}) · m/d )
// (PyTorch first scales p by 1 − lr·wd and then subtracts the two terms, which do not
// depend on p: the same update.) PyTorch 1.13 computed mu_product_next as Pi_t·mu_t·mu_{t+1}
// (fixed in 2.0); this follows the fixed form. Pi_t is a function of t alone, so it is recomputed in
// float64 from t at every update rather than kept as state; the coefficients are then
// rounded to float. State: adam_m, adam_v as AdamW (optim/adamw_state.h).
// Host memory only: there is no CUDA twin yet (make_state(kDevice) stops the job).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "optim/adamw.h"
#include "optim/optimizer.h"

namespace pt {

// AdamW's hyper-parameters (adamw_params_for) and the momentum schedule's psi.
struct NAdamWParams {
  AdamWParams adam;
  double momentum_decay = 0.004;
};

// The step-dependent coefficients of the update above.
struct NAdamWCoefficients {
  float grad = 0.0f;      // (1−mu_t)/(1−Pi_t)
  float momentum = 0.0f;  // mu_{t+1}/(1−Pi_t·mu_{t+1})
  float bc2 = 1.0f;       // 1 − b2^t
};
NAdamWCoefficients nadamw_coefficients(const NAdamWParams& p);

// params, grads, m, v: (n,)
void nadamw_update(float* params, const float* grads, float* m, float* v, size_t n, const NAdamWParams& p);

// The registry's "nadamw".
std::unique_ptr<Optimizer> make_nadamw(const OptimizerOptions& options);

}  // namespace pt
