// The buffer sizes a backend kind chooses, known without constructing a backend:
// `pipetrain plan` sizes a GPU run on a machine without one, and the stage model's
// layout (stage_model.h, stage_memory) is computed from these. Each Backend returns
// its kind's value from Backend::sizes(). Header-only: the CUDA library uses it
// without linking the host model library.
#pragma once

#include <cstddef>
#include <string>

namespace pt {

struct BackendSizes {
  // What the attention forward saves for its backward: the probabilities att
  // (B, NH, T, T) with a (T, T) backward scratch (CPU), or the log-sum-exp of each
  // score row (B, NH, T) with a (B, NH, T) scratch (CUDA, flash style).
  bool attention_saves_probabilities = true;
  // Bytes the stage model may spend on one chunk of classifier logits, (rows, V)
  // floats, reused by every chunk and slot: small on the CPU (cache-sized chunks
  // lose nothing), a few hundred MB on a GPU (GEMMs large enough for the tensor
  // cores; at GPT-2's V = 50257, 256 MiB is about 1300 rows).
  size_t classifier_chunk_bytes = 0;
  // Bytes of backend memory one element of a bf16 tensor (Backend::alloc_bf16) takes:
  // 4 where bf16 values live in fp32 containers (CPU), 2 where they are really stored
  // as bf16 (CUDA in runtime.precision bf16: model/bf16_storage_backend.h).
  size_t bf16_bytes = 4;
  // Whether Backend::matmul_forward_gelu_typed runs the fc layer and its GELU as one
  // op on real bf16 storage (bf16_bytes == 2) when C and OC are multiples of 8 (CUDA:
  // the cuBLASLt GELU_AUX_BIAS epilogue, model/cuda/matmul_bf16.h). The stage model in
  // bf16 then keeps no fp32 copy of the fc pre-activation (fuses_fc_gelu, stage_memory).
  bool fc_gelu_typed = false;

  size_t attention_saved_floats(int B, int NH, int T) const {
    return attention_saves_probabilities ? size_t(B) * NH * T * T : size_t(B) * NH * T;
  }
  size_t attention_scratch_floats(int B, int NH, int T) const {
    return attention_saves_probabilities ? size_t(T) * T : size_t(B) * NH * T;
  }
  // Whether the fc layer of n_embd C runs fused with its GELU (see fc_gelu_typed).
  bool fuses_fc_gelu(int C) const { return fc_gelu_typed && bf16_bytes == 2 && C % 8 == 0; }
};

inline BackendSizes cpu_backend_sizes() { return BackendSizes{true, size_t(16) << 20, 4, false}; }
// The CUDA backend as make_stage_model runs it: bf16 storage in runtime.precision bf16,
// fc + GELU fused there.
inline BackendSizes cuda_backend_sizes() { return BackendSizes{false, size_t(256) << 20, 2, true}; }

}  // namespace pt
