// Token + position embedding on the GPU (fp32; typed forms below); twin of model/cpu/encoder.h.
// Forward writes (=) the residual-stream input. Backward accumulates (+=) into the
// parameter gradients in exactly the CPU twin's order: for every vocabulary row,
// the positions holding that token are summed in ascending (b, t) order onto the
// existing dwte value, and dwpe rows sum over b ascending. Only additions are
// involved, so the result is bitwise equal to the CPU twin and to itself on every
// run (no atomics on floats).
// Deviation from the CPU twin: encoder_backward also takes V (the row count of
// dwte) and an int32 workspace of encoder_backward_workspace_ints(B, T, V)
// elements, used to bucket positions by token (counting sort, then an exact
// per-bucket ordering). Tokens must lie in [0, V); out-of-range tokens are skipped.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace pt::cuda {

// out (B, T, C) = wte[inp[b, t]] + wpe[t].  inp (B, T), wte (V, C), wpe (maxT, C), T <= maxT.
void encoder_forward(float* out, const int32_t* inp, const float* wte, const float* wpe, int B, int T, int C,
                     cudaStream_t stream);

// Number of int32 elements of encoder_backward's workspace: 3V + 2BT (+1).
size_t encoder_backward_workspace_ints(int B, int T, int V);

// dwte (V, C) += scatter of dout by token; dwpe (maxT, C) rows [0, T) += sum over b.
// dout (B, T, C), inp (B, T), workspace (encoder_backward_workspace_ints(B, T, V)).
void encoder_backward(float* dwte, float* dwpe, const float* dout, const int32_t* inp, int B, int T, int C, int V,
                      int32_t* workspace, cudaStream_t stream);

// The same with out (forward) or dout (backward) fp32 (flag false) or bf16 (true; real
// bf16 storage, model/bf16_storage_backend.h): bf16 loads widened, bf16 stores rounded
// once (RNE), the fp32 arithmetic and order above, so bitwise the fp32 forms on the
// widened values with the output rounded. The tables and their gradients stay fp32.
void encoder_forward_typed(void* out, bool out_bf16, const int32_t* inp, const float* wte, const float* wpe, int B,
                           int T, int C, cudaStream_t stream);
void encoder_backward_typed(float* dwte, float* dwpe, const void* dout, bool dout_bf16, const int32_t* inp, int B,
                            int T, int C, int V, int32_t* workspace, cudaStream_t stream);

}  // namespace pt::cuda
