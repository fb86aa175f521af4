// bf16 fully connected layer, CPU twin; see matmul_bf16.h. Inputs are widened to
// fp32 once, then every output element is one serial fp32 sum over the reduction
// index (ascending), plus the bias, then rounded.
#include "model/cpu/matmul_bf16.h"

#include <cstddef>
#include <vector>

#include "model/cpu/gelu.h"

namespace pt::cpu {
namespace {

std::vector<float> widen(const bf16* x, size_t n) {
  std::vector<float> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = bf16_to_float(x[i]);
  return f;
}

// pre (N, OC) fp32 = inp · weightᵀ + bias (bias may be null).
std::vector<float> forward_fp32(const bf16* inp, const bf16* weight, const bf16* bias, int N, int C, int OC) {
  const std::vector<float> x = widen(inp, size_t(N) * C), w = widen(weight, size_t(OC) * C);
  std::vector<float> pre(size_t(N) * OC);
  for (int n = 0; n < N; ++n) {
    const float* xr = x.data() + size_t(n) * C;
    for (int o = 0; o < OC; ++o) {
      const float* wr = w.data() + size_t(o) * C;
      float s = 0.0f;
      for (int c = 0; c < C; ++c) s += xr[c] * wr[c];
      if (bias != nullptr) s += bf16_to_float(bias[o]);
      pre[size_t(n) * OC + o] = s;
    }
  }
  return pre;
}

}  // namespace

void matmul_forward_bf16(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int N, int C, int OC) {
  const std::vector<float> pre = forward_fp32(inp, weight, bias, N, C, OC);
  for (size_t i = 0; i < pre.size(); ++i) out[i] = float_to_bf16(pre[i]);
}

void matmul_forward_gelu_bf16(bf16* out, bf16* pre_gelu, const bf16* inp, const bf16* weight, const bf16* bias,
                              int N, int C, int OC) {
  const std::vector<float> pre = forward_fp32(inp, weight, bias, N, C, OC);
  std::vector<float> g(pre.size());
  gelu_forward(g.data(), pre.data(), int(pre.size()));
  for (size_t i = 0; i < pre.size(); ++i) {
    pre_gelu[i] = float_to_bf16(pre[i]);
    out[i] = float_to_bf16(g[i]);
  }
}

void matmul_backward_input_bf16(bf16* dinp, const bf16* dout, const bf16* weight, int N, int C, int OC) {
  const std::vector<float> d = widen(dout, size_t(N) * OC), w = widen(weight, size_t(OC) * C);
  for (int n = 0; n < N; ++n) {
    const float* dr = d.data() + size_t(n) * OC;
    for (int c = 0; c < C; ++c) {
      float s = 0.0f;
      for (int o = 0; o < OC; ++o) s += dr[o] * w[size_t(o) * C + c];
      dinp[size_t(n) * C + c] = float_to_bf16(s);
    }
  }
}

void matmul_backward_weight_bf16(float* dweight, float* dbias, const bf16* dout, const bf16* inp, int N, int C,
                                 int OC) {
  const std::vector<float> d = widen(dout, size_t(N) * OC), x = widen(inp, size_t(N) * C);
  for (int o = 0; o < OC; ++o) {
    for (int c = 0; c < C; ++c) {
      float s = 0.0f;
      for (int n = 0; n < N; ++n) s += d[size_t(n) * OC + o] * x[size_t(n) * C + c];
      dweight[size_t(o) * C + c] += s;
    }
  }
  if (dbias != nullptr) {
    for (int o = 0; o < OC; ++o) {
      float s = 0.0f;
      for (int n = 0; n < N; ++n) s += d[size_t(n) * OC + o];
      dbias[o] += s;
    }
  }
}

}  // namespace pt::cpu
