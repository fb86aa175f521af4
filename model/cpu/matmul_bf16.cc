// bf16 fully connected layer, CPU twin; see matmul_bf16.h. Inputs are widened to
// fp32 once, then every output element is one serial fp32 sum over the reduction
// index (ascending), plus the bias, then rounded.
#include "model/cpu/matmul_bf16.h"

#include <algorithm>
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
std::vector<float> forward_fp32(const bf16* inp, const bf16* weight, const float* bias, int N, int C, int OC) {
  const std::vector<float> x = widen(inp, size_t(N) * C), w = widen(weight, size_t(OC) * C);
  std::vector<float> pre(size_t(N) * OC);
  for (int n = 0; n < N; ++n) {
    const float* xr = x.data() + size_t(n) * C;
    for (int o = 0; o < OC; ++o) {
      const float* wr = w.data() + size_t(o) * C;
      float s = 0.0f;
      for (int c = 0; c < C; ++c) s += xr[c] * wr[c];
      if (bias != nullptr) s += bias[o];
      pre[size_t(n) * OC + o] = s;
    }
  }
  return pre;
}

// The bf16 bias widened to fp32 (empty for none).
std::vector<float> widen_bias(const bf16* bias, int OC) {
  return bias == nullptr ? std::vector<float>() : widen(bias, size_t(OC));
}

const float* or_null(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

// dinp (N, C) fp32 = dout · weight, stored through store (bf16 rounds, fp32 keeps).
template <typename T>
void backward_input(T* dinp, const bf16* dout, const bf16* weight, int N, int C, int OC) {
  const std::vector<float> d = widen(dout, size_t(N) * OC), w = widen(weight, size_t(OC) * C);
  for (int n = 0; n < N; ++n) {
    const float* dr = d.data() + size_t(n) * OC;
    for (int c = 0; c < C; ++c) {
      float s = 0.0f;
      for (int o = 0; o < OC; ++o) s += dr[o] * w[size_t(o) * C + c];
      store_float(dinp + size_t(n) * C + c, s);
    }
  }
}

}  // namespace

void matmul_forward_bf16(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int N, int C, int OC) {
  const std::vector<float> b = widen_bias(bias, OC);
  const std::vector<float> pre = forward_fp32(inp, weight, or_null(b), N, C, OC);
  for (size_t i = 0; i < pre.size(); ++i) out[i] = float_to_bf16(pre[i]);
}

void matmul_forward_gelu_bf16(bf16* out, bf16* pre_gelu, const bf16* inp, const bf16* weight, const bf16* bias,
                              int N, int C, int OC) {
  const std::vector<float> b = widen_bias(bias, OC);
  const std::vector<float> pre = forward_fp32(inp, weight, b.data(), N, C, OC);
  std::vector<float> g(pre.size());
  gelu_forward(g.data(), pre.data(), int(pre.size()));
  for (size_t i = 0; i < pre.size(); ++i) {
    pre_gelu[i] = float_to_bf16(pre[i]);
    out[i] = float_to_bf16(g[i]);
  }
}

void matmul_forward_bf16_fp32out(float* out, const bf16* inp, const bf16* weight, const float* bias, int N, int C,
                                 int OC) {
  const std::vector<float> pre = forward_fp32(inp, weight, bias, N, C, OC);
  std::copy(pre.begin(), pre.end(), out);
}

void matmul_backward_input_bf16(bf16* dinp, const bf16* dout, const bf16* weight, int N, int C, int OC) {
  backward_input(dinp, dout, weight, N, C, OC);
}

void matmul_backward_input_dgelu_bf16(bf16* dinp, const bf16* dout, const bf16* weight, const bf16* pre, int N,
                                      int C, int OC) {
  const size_t n = size_t(N) * C;
  std::vector<float> g(n);
  backward_input(g.data(), dout, weight, N, C, OC);
  const std::vector<float> x = widen(pre, n);
  gelu_backward(g.data(), x.data(), g.data(), int(n));
  for (size_t i = 0; i < n; ++i) dinp[i] = float_to_bf16(g[i]);
}

void matmul_backward_input_bf16_fp32out(float* dinp, const bf16* dout, const bf16* weight, int N, int C, int OC) {
  backward_input(dinp, dout, weight, N, C, OC);
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
