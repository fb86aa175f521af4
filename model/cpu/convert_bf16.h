// Array conversions between fp32 and bf16 (CPU twin of model/cuda/convert_bf16.h):
// fp32 -> bf16 rounds to nearest, ties to even (pt::cpu::float_to_bf16, the rounding
// of CUDA's __float2bfloat16_rn); bf16 -> fp32 is exact. Used (on the GPU side) to
// refresh the bf16 weight copies from the fp32 master weights after each optimizer
// step. round_fp32_to_bf16 rounds fp32 values in place to bf16-representable ones:
// the stage model's bf16 precision (model/precision.h) stores bf16 tensors as such
// fp32 values on every backend.
// NaN: both sides map NaN to a NaN, but the payload/sign bits may differ (this twin
// keeps the sign and upper payload and sets the quiet bit; the GPU's cvt.rn.bf16.f32
// may return a canonical NaN), so compare NaNs with isnan, not bitwise.
#pragma once

#include <cstddef>

#include "model/cpu/bf16.h"

namespace pt::cpu {

// out[i] = float_to_bf16(inp[i]), i < n.
void convert_fp32_to_bf16(bf16* out, const float* inp, size_t n);

// out[i] = bf16_to_float(inp[i]), i < n (exact).
void convert_bf16_to_fp32(float* out, const bf16* inp, size_t n);

// p[i] = round_to_bf16(p[i]), i < n: the value a bf16 store of p[i] keeps, as fp32.
void round_fp32_to_bf16(float* p, size_t n);

// rounded[i] = round_to_bf16(inp[i]) and out[i] = float_to_bf16(inp[i]), i < n.
void round_fp32_to_bf16_copy(float* rounded, bf16* out, const float* inp, size_t n);

}  // namespace pt::cpu
