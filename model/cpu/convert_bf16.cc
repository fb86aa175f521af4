// fp32 <-> bf16 array conversions (CPU); see convert_bf16.h.
#include "model/cpu/convert_bf16.h"

namespace pt::cpu {

void convert_fp32_to_bf16(bf16* out, const float* inp, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = float_to_bf16(inp[i]);
}

void convert_bf16_to_fp32(float* out, const bf16* inp, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = bf16_to_float(inp[i]);
}

void round_fp32_to_bf16(float* p, size_t n) {
  for (size_t i = 0; i < n; ++i) p[i] = round_to_bf16(p[i]);
}

void round_fp32_to_bf16_copy(float* rounded, bf16* out, const float* inp, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    out[i] = float_to_bf16(inp[i]);
    rounded[i] = bf16_to_float(out[i]);
  }
}

}  // namespace pt::cpu
