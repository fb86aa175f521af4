// Host bfloat16: 16-bit storage (the upper half of an IEEE fp32: sign, 8 exponent
// bits, 7 mantissa bits) with round-to-nearest-even conversion from fp32, the same
// rounding as CUDA's __float2bfloat16_rn, so CPU twins of bf16 kernels round at the
// same points to the same values. Same size and bit layout as __nv_bfloat16, so a
// host std::vector<bf16> can be copied to and from device __nv_bfloat16 buffers.
// Unit roundoff 2^-8; ulp(x) <= 2^-7·|x| for normal x; same exponent range as fp32.
#pragma once

#include <cstdint>
#include <cstring>

namespace pt::cpu {

struct bf16 {
  uint16_t bits;
};
static_assert(sizeof(bf16) == 2, "bf16 must be 2 bytes");

inline float bf16_to_float(bf16 x) {
  const uint32_t u = uint32_t(x.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest, ties to even. NaN stays a (quiet) NaN; values beyond the largest
// finite bf16 round to ±inf, as on the GPU.
inline bf16 float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return bf16{uint16_t((u >> 16) | 0x0040u)};
  u += 0x7FFFu + ((u >> 16) & 1u);
  return bf16{uint16_t(u >> 16)};
}

// fp32 -> nearest bf16 -> fp32.
inline float round_to_bf16(float f) { return bf16_to_float(float_to_bf16(f)); }

// Element loads widened to fp32 and fp32 results stored in the element type (bf16
// rounded as above), so one template serves fp32 and bf16 tensors.
inline float to_float(float x) { return x; }
inline float to_float(bf16 x) { return bf16_to_float(x); }
inline void store_float(float* p, float v) { *p = v; }
inline void store_float(bf16* p, float v) { *p = float_to_bf16(v); }

}  // namespace pt::cpu
