// Counter-based random numbers (Philox-4x32-10). A draw is a pure function of
// (seed, counter), so initialization and dropout-like noise do not depend on how
// work is split across ranks: key = seed, counter = (stream, index).
#pragma once

#include <cmath>
#include <cstdint>

namespace pt {

struct Philox4x32 {
  static void round(uint32_t ctr[4], uint32_t key[2]) {
    constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
    uint64_t p0 = uint64_t(kM0) * ctr[0];
    uint64_t p1 = uint64_t(kM1) * ctr[2];
    uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    uint32_t n0 = hi1 ^ ctr[1] ^ key[0];
    uint32_t n2 = hi0 ^ ctr[3] ^ key[1];
    ctr[0] = n0; ctr[1] = lo1; ctr[2] = n2; ctr[3] = lo0;
  }
  // Four 32-bit outputs for (seed, stream, index).
  static void generate(uint64_t seed, uint64_t stream, uint64_t index, uint32_t out[4]) {
    uint32_t ctr[4] = {uint32_t(index), uint32_t(index >> 32), uint32_t(stream), uint32_t(stream >> 32)};
    uint32_t key[2] = {uint32_t(seed), uint32_t(seed >> 32)};
    for (int i = 0; i < 10; ++i) {
      round(ctr, key);
      key[0] += 0x9E3779B9u;
      key[1] += 0xBB67AE85u;
    }
    for (int i = 0; i < 4; ++i) out[i] = ctr[i];
  }
};

// Uniform in (0, 1) from 24 random bits.
inline float philox_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  uint32_t r[4];
  Philox4x32::generate(seed, stream, index, r);
  return (float((r[0] >> 8)) + 0.5f) * (1.0f / 16777216.0f);
}

// Standard normal via Box-Muller on two uniforms of one Philox block.
inline float philox_normal(uint64_t seed, uint64_t stream, uint64_t index) {
  uint32_t r[4];
  Philox4x32::generate(seed, stream, index, r);
  double u1 = (double(r[0] >> 8) + 0.5) / 16777216.0;
  double u2 = (double(r[1] >> 8) + 0.5) / 16777216.0;
  return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

}  // namespace pt
