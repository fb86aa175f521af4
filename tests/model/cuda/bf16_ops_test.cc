// bf16 GPU ops (model/cuda/{matmul,layernorm,convert}_bf16.h) against their CPU twins
// (model/cpu/{matmul,layernorm,convert}_bf16.h), which tests/model/bf16_ops_cpu_test.cc
// checks against the fp32 CPU ops. Sizes do not divide the tiles (N = 77, 130 rows;
// OC = 200, 40 columns against 32-column bias tiles; C = 200, 37 for LayerNorm's
// 32-lane rows and 64-row chunks); matmul C and OC are multiples of 8, as the bf16
// cuBLASLt path requires (16-byte rows, see matmul_bf16.h). Inputs are Philox
// normals rounded to bf16 (not all zero; checked), outputs NaN-poisoned first. The
// *_fp32out matmul forms have fp32 outputs: Δ alone, no rounding term.
//
// Tolerances (u = 2^-24, r = 2^-8 the bf16 unit roundoff). Kernel and twin compute
// the same fp32 quantities from the same bf16 inputs (products of two bf16 values are
// exact in fp32) in different summation orders; the kernel's fp32 value a and the
// twin's b then differ by Δ, and for bf16 outputs both are rounded:
//   |bf16(a) - bf16(b)| <= r·|a| + Δ + r·|b| <= Δ + r·(2(1 + 2r)·|ref| + Δ)   (two_roundings)
// with ref = bf16(b) the twin's output (|b| <= (1 + 2r)|ref|): one bf16 ulp (<= 2r·|x|)
// plus Δ. Δ for a GEMM of K products: e_tc(K)·Σ|terms| with e_tc(K) = 2·2γ_K + 2u,
// i.e. the fp32 sum-order bound 2γ_K doubled because tensor-core fp32 accumulation
// may truncate instead of round (as in attention_bf16_test.cc), plus the final
// alpha/beta/bias roundings; Σ|terms| comes from the fp32 CPU op on |inputs|.
// GELU epilogue: cuBLASLt does not document its GELU formula (cublasLt.h and the cuBLAS
// docs say "GELU point-wise transform", x := GELU(x); PyTorch's addmm_activation, which
// uses the epilogue, falls back to gelu(x, approximate="tanh") without it, so the tanh
// form is the intended one, as in the emulator's stand-in); we allow it to differ
// from the tanh form of cpu::gelu_forward by 2^-9·|p| (covers a tanh.approx.f32
// tanh, max relative error 2^-10.99, and even the erf form, which differs from the
// tanh form by < 5e-4 absolute) and also cover the unfused fallback, which applies
// GELU to bf16(p): Δg = 1.13·(Δp + r·(|p| + Δp)) + 2^-9·|p| + 16u·|p| (|gelu'| <= 1.13).
// FusedGeluMatchesUnfused compares the fused GEMM with the unfused ops it replaces in
// training (same Δp and Δg, the unfused outputs as the reference).
// DGELU epilogue (matmul_backward_input_dgelu_bf16, v = gelu'(x)·a, a the GEMM sum, x
// bf16): the formula is again undocumented; with d(x) = |x|·s·(1 + 3c·x²) (s = sqrt(2/pi),
// c = 0.044715) we allow gelu' to differ from the tanh form's by
// Δd = 2^-10 (the erf form's derivative differs by < 8.7e-4) + 2^-11·(0.5 + d(x)) (a
// tanh off by 2^-11 absolute: 0.5·Δt + 0.5·d(x)·2|t|·Δt) + 16u·(1 + d(x)) (the twin's
// fp32 evaluation), and cover the fallback's extra rounding of a:
// Δv = 1.13·(Δa + r·(|a| + Δa)) + Δd·(|a| + Δa), Δa = e_tc(K)·Σ|terms|, then two_roundings.
// LayerNorm: the per-row bounds of bf16_ops_cpu_test.cc (sum-order differences of
// the mean, variance and backward means; ~1e-5 relative), then two_roundings.
// fp32 outputs (weight/bias gradients, mean, rstd) are compared with Δ alone.
// Conversions are compared bitwise (NaN: isnan). A wrong index, transpose, leading
// dimension, epilogue or rounding point errs by O(r·|x|)..O(|x|) in many elements.
// Kernels on bf16 activations (real bf16 storage: gelu/residual/encoder/crossentropy *_typed, LayerNorm and
// residual + LayerNorm *_bf16act): bitwise the fp32 CUDA kernel on the widened inputs,
// its outputs rounded on the host (same arithmetic and order, one RNE at the store),
// fp32 outputs (mean, rstd, weight gradients) bitwise; C = 37, 200, 2100 covers every
// register tier of the fused kernel.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "common/rng.h"
#include "model/cpu/bf16.h"
#include "model/cpu/convert_bf16.h"
#include "model/cpu/layernorm.h"
#include "model/cpu/layernorm_bf16.h"
#include "model/cpu/matmul.h"
#include "model/cpu/matmul_bf16.h"
#include "model/cuda/convert_bf16.h"
#include "model/cuda/crossentropy.h"
#include "model/cuda/encoder.h"
#include "model/cuda/gelu.h"
#include "model/cuda/layernorm.h"
#include "model/cuda/layernorm_bf16.h"
#include "model/cuda/matmul_bf16.h"
#include "model/cuda/residual.h"
#include "model/cuda/residual_layernorm.h"
#include "tests/model/bf16_test_util.h"
#include "tests/model/cuda/cuda_test_util.h"

namespace pt {
namespace {

using cpu::bf16;
using testing::DeviceBuffer;
using testing::abs_of;
using testing::bf16_normal;
using testing::expect_within;
using testing::widen;

constexpr double kU = 1.0 / 16777216.0;  // fp32 unit roundoff 2^-24
constexpr double kR = 1.0 / 256.0;       // bf16 unit roundoff 2^-8

double sum_order(double K) { return testing::sum_order_rtol(K); }  // 2γ_K
double e_tc(double K) { return 2.0 * sum_order(K) + 2.0 * kU; }

double two_roundings(double ref, double delta) { return delta + kR * (2.0 * (1.0 + 2.0 * kR) * std::fabs(ref) + delta); }




__nv_bfloat16* dev(const DeviceBuffer<bf16>& b) { return reinterpret_cast<__nv_bfloat16*>(b.get()); }

std::vector<double> two_rounding_tols(const std::vector<float>& ref, const std::vector<double>& delta) {
  std::vector<double> t(ref.size());
  for (size_t i = 0; i < ref.size(); ++i) t[i] = two_roundings(ref[i], delta[i]);
  return t;
}

std::vector<double> scaled(const std::vector<float>& mag, double rel) {
  std::vector<double> t(mag.size());
  for (size_t i = 0; i < mag.size(); ++i) t[i] = rel * mag[i];
  return t;
}

class CudaBf16Ops : public testing::CudaTest {};

// ---------------------------------------------------------------- matmul

struct Shape {
  int N, C, OC;
};

// Δp and Δg (header comment, "GELU epilogue") of a fused GELU GEMM over C products +
// bias against a reference whose rounded pre-activation is pre and whose Σ|terms| is mag.
void gelu_gemm_deltas(const std::vector<float>& pre, const std::vector<float>& mag, int C, std::vector<double>* dp,
                      std::vector<double>* dg) {
  dp->resize(mag.size());
  dg->resize(mag.size());
  for (size_t i = 0; i < mag.size(); ++i) {
    const double d = e_tc(C + 1) * mag[i];
    const double p = std::fabs(pre[i]) * (1.0 + 2.0 * kR);  // >= |p| of the reference's fp32 value
    (*dp)[i] = d;
    (*dg)[i] = 1.13 * (d + kR * (p + d)) + std::ldexp(1.0, -9) * (p + d) + 16 * kU * (p + d);
  }
}

// Δv of the DGELU GEMM (header comment) per element: pre x, the twin's fp32 sum a, Δa.
std::vector<double> dgelu_deltas(const std::vector<float>& pre, const std::vector<float>& a,
                                 const std::vector<double>& da) {
  const double s = 0.7978845608028654, c = 0.044715;
  std::vector<double> dv(pre.size());
  for (size_t i = 0; i < pre.size(); ++i) {
    const double x = std::fabs(pre[i]), dx = x * s * (1.0 + 3.0 * c * x * x), am = std::fabs(a[i]) + da[i];
    const double dd = std::ldexp(1.0, -10) + std::ldexp(1.0, -11) * (0.5 + dx) + 16 * kU * (1.0 + dx);
    dv[i] = 1.13 * (da[i] + kR * am) + dd * am;
  }
  return dv;
}

void check_matmul(const Shape& s) {
  const int N = s.N, C = s.C, OC = s.OC;
  const std::string tag = " N" + std::to_string(N) + " C" + std::to_string(C) + " OC" + std::to_string(OC);
  const auto inp = bf16_normal(size_t(N) * C, 41, 1, 1.0f);
  const auto weight = bf16_normal(size_t(OC) * C, 41, 2, 0.2f);
  const auto bias = bf16_normal(OC, 41, 3, 0.5f);
  const auto dout = bf16_normal(size_t(N) * OC, 41, 4, 1.0f);
  const auto ai = abs_of(widen(inp)), aw = abs_of(widen(weight)), ab = abs_of(widen(bias)), ad = abs_of(widen(dout));
  DeviceBuffer<bf16> d_inp(inp), d_w(weight), d_bias(bias), d_dout(dout);
  DeviceBuffer<bf16> d_out(size_t(N) * OC), d_pre(size_t(N) * OC), d_dinp(size_t(N) * C);

  // Forward with and without bias (K = C products + bias), rerun bitwise equal.
  for (bool with_bias : {true, false}) {
    std::vector<bf16> out(size_t(N) * OC);
    cpu::matmul_forward_bf16(out.data(), inp.data(), weight.data(), with_bias ? bias.data() : nullptr, N, C, OC);
    std::vector<float> mag(out.size());
    cpu::matmul_forward(mag.data(), ai.data(), aw.data(), with_bias ? ab.data() : nullptr, N, C, OC);
    const std::string what = std::string("matmul_forward_bf16") + (with_bias ? "" : " (no bias)") + tag;
    d_out.poison();
    cuda::matmul_forward_bf16(dev(d_out), dev(d_inp), dev(d_w), with_bias ? dev(d_bias) : nullptr, N, C, OC,
                              nullptr);
    const auto gpu = widen(d_out.download());
    expect_within(what, gpu, widen(out), two_rounding_tols(widen(out), scaled(mag, e_tc(C + 1))));
    d_out.poison();
    cuda::matmul_forward_bf16(dev(d_out), dev(d_inp), dev(d_w), with_bias ? dev(d_bias) : nullptr, N, C, OC,
                              nullptr);
    testing::expect_bitwise_equal(what + " rerun", widen(d_out.download()), gpu);
  }

  // Fused GELU.
  {
    std::vector<bf16> out(size_t(N) * OC), pre(size_t(N) * OC);
    cpu::matmul_forward_gelu_bf16(out.data(), pre.data(), inp.data(), weight.data(), bias.data(), N, C, OC);
    std::vector<float> mag(out.size());
    cpu::matmul_forward(mag.data(), ai.data(), aw.data(), ab.data(), N, C, OC);
    const auto pre_f = widen(pre), out_f = widen(out);
    std::vector<double> dp, dg;
    gelu_gemm_deltas(pre_f, mag, C, &dp, &dg);
    d_out.poison();
    d_pre.poison();
    cuda::matmul_forward_gelu_bf16(dev(d_out), dev(d_pre), dev(d_inp), dev(d_w), dev(d_bias), N, C, OC, nullptr);
    expect_within("matmul_forward_gelu_bf16 pre_gelu" + tag, widen(d_pre.download()), pre_f,
                  two_rounding_tols(pre_f, dp));
    expect_within("matmul_forward_gelu_bf16 out" + tag, widen(d_out.download()), out_f,
                  two_rounding_tols(out_f, dg));
  }

  // Input gradient (K = OC).
  {
    std::vector<bf16> dinp(size_t(N) * C);
    cpu::matmul_backward_input_bf16(dinp.data(), dout.data(), weight.data(), N, C, OC);
    std::vector<float> mag(dinp.size());
    cpu::matmul_backward_input(mag.data(), ad.data(), aw.data(), N, C, OC);
    d_dinp.poison();
    cuda::matmul_backward_input_bf16(dev(d_dinp), dev(d_dout), dev(d_w), N, C, OC, nullptr);
    expect_within("matmul_backward_input_bf16" + tag, widen(d_dinp.download()), widen(dinp),
                  two_rounding_tols(widen(dinp), scaled(mag, e_tc(OC))));
    // With the GELU backward fused (DGELU epilogue, aux = pre).
    const auto pre = bf16_normal(size_t(N) * C, 41, 5, 1.5f);
    std::vector<float> a(dinp.size());
    cpu::matmul_backward_input_bf16_fp32out(a.data(), dout.data(), weight.data(), N, C, OC);
    cpu::matmul_backward_input_dgelu_bf16(dinp.data(), dout.data(), weight.data(), pre.data(), N, C, OC);
    DeviceBuffer<bf16> d_pre_c(pre);
    d_dinp.poison();
    cuda::matmul_backward_input_dgelu_bf16(dev(d_dinp), dev(d_dout), dev(d_w), dev(d_pre_c), N, C, OC, nullptr);
    const auto dv = dgelu_deltas(widen(pre), a, scaled(mag, e_tc(OC)));
    expect_within("matmul_backward_input_dgelu_bf16" + tag, widen(d_dinp.download()), widen(dinp),
                  two_rounding_tols(widen(dinp), dv));
  }

  // fp32-output forms (the CUDA backend's bf16 mode): fp32 results, so only the
  // summation-order term (no rounding); the forward with an fp32 bias; reruns bitwise.
  {
    const auto fb = widen(bias);
    DeviceBuffer<float> d_fb(fb), d_out32(size_t(N) * OC), d_dinp32(size_t(N) * C);
    for (bool with_bias : {true, false}) {
      std::vector<float> out(size_t(N) * OC), mag(out.size());
      cpu::matmul_forward_bf16_fp32out(out.data(), inp.data(), weight.data(), with_bias ? fb.data() : nullptr, N, C,
                                       OC);
      cpu::matmul_forward(mag.data(), ai.data(), aw.data(), with_bias ? ab.data() : nullptr, N, C, OC);
      const std::string what = std::string("matmul_forward_bf16_fp32out") + (with_bias ? "" : " (no bias)") + tag;
      d_out32.poison();
      cuda::matmul_forward_bf16_fp32out(d_out32.get(), dev(d_inp), dev(d_w), with_bias ? d_fb.get() : nullptr, N, C,
                                        OC, nullptr);
      const auto gpu = d_out32.download();
      expect_within(what, gpu, out, scaled(mag, e_tc(C + 1)));
      d_out32.poison();
      cuda::matmul_forward_bf16_fp32out(d_out32.get(), dev(d_inp), dev(d_w), with_bias ? d_fb.get() : nullptr, N, C,
                                        OC, nullptr);
      testing::expect_bitwise_equal(what + " rerun", d_out32.download(), gpu);
    }
    std::vector<float> dinp(size_t(N) * C), mag(dinp.size());
    cpu::matmul_backward_input_bf16_fp32out(dinp.data(), dout.data(), weight.data(), N, C, OC);
    cpu::matmul_backward_input(mag.data(), ad.data(), aw.data(), N, C, OC);
    d_dinp32.poison();
    cuda::matmul_backward_input_bf16_fp32out(d_dinp32.get(), dev(d_dout), dev(d_w), N, C, OC, nullptr);
    expect_within("matmul_backward_input_bf16_fp32out" + tag, d_dinp32.download(), dinp, scaled(mag, e_tc(OC)));
  }

  // Weight/bias gradients: fp32 +=, two calls onto non-zero initial values.
  {
    const auto dw0 = testing::philox_vector(size_t(OC) * C, 41, 5), db0 = testing::philox_vector(OC, 41, 6);
    std::vector<float> dw = dw0, db = db0, mag_dw = abs_of(dw0), mag_db = abs_of(db0);
    DeviceBuffer<float> d_dw(dw0), d_db(db0);
    for (int call = 0; call < 2; ++call) {
      cpu::matmul_backward_weight_bf16(dw.data(), db.data(), dout.data(), inp.data(), N, C, OC);
      cpu::matmul_backward_weight(mag_dw.data(), mag_db.data(), ad.data(), ai.data(), N, C, OC);
      cuda::matmul_backward_weight_bf16(d_dw.get(), d_db.get(), dev(d_dout), dev(d_inp), N, C, OC, nullptr);
    }
    const auto gpu_dw = d_dw.download(), gpu_db = d_db.download();
    expect_within("matmul_backward_weight_bf16 dweight (2 calls)" + tag, gpu_dw, dw,
                  scaled(mag_dw, e_tc(2 * N + 1) + kU));
    expect_within("matmul_backward_weight_bf16 dbias (2 calls)" + tag, gpu_db, db,
                  scaled(mag_db, sum_order(2 * N + 1) + kU));
    // Same plan and kernel from the same start: bitwise reproducible; null dbias.
    d_dw.upload(dw0);
    d_db.upload(db0);
    for (int call = 0; call < 2; ++call) {
      cuda::matmul_backward_weight_bf16(d_dw.get(), d_db.get(), dev(d_dout), dev(d_inp), N, C, OC, nullptr);
    }
    testing::expect_bitwise_equal("matmul_backward_weight_bf16 dweight rerun" + tag, d_dw.download(), gpu_dw);
    testing::expect_bitwise_equal("matmul_backward_weight_bf16 dbias rerun" + tag, d_db.download(), gpu_db);
    d_db.upload(db0);
    cuda::matmul_backward_weight_bf16(d_dw.get(), nullptr, dev(d_dout), dev(d_inp), N, C, OC, nullptr);
    testing::expect_bitwise_equal("matmul_backward_weight_bf16 null dbias untouched" + tag, d_db.download(), db0);
  }
}

TEST_F(CudaBf16Ops, Matmul) {
  for (const Shape& s : {Shape{77, 48, 200}, Shape{130, 96, 40}, Shape{5, 768, 24}}) check_matmul(s);
  cuda::matmul_bf16_release_plans();
}

// ---------------------------------------------------------------- layernorm
// Bounds as in tests/model/bf16_ops_cpu_test.cc (derivation there).

void check_layernorm(int N, int C) {
  const std::string tag = " N" + std::to_string(N) + " C" + std::to_string(C);
  const auto inp = bf16_normal(size_t(N) * C, 51, 1, 1.0f, 0.3f);
  const auto weight = bf16_normal(C, 51, 2, 0.3f, 1.0f);
  const auto bias = bf16_normal(C, 51, 3, 0.2f);
  const auto dout = bf16_normal(size_t(N) * C, 51, 4, 1.0f);
  const auto fx = widen(inp), fw = widen(weight), fd = widen(dout);

  std::vector<bf16> out(size_t(N) * C);
  std::vector<float> mean(N), rstd(N);
  cpu::layernorm_forward_bf16(out.data(), mean.data(), rstd.data(), inp.data(), weight.data(), bias.data(), N, C);
  DeviceBuffer<bf16> d_inp(inp), d_w(weight), d_b(bias), d_dout(dout), d_out(out.size()), d_dinp(out.size());
  DeviceBuffer<float> d_mean(N), d_rstd(N);
  d_out.poison();
  d_mean.poison();
  d_rstd.poison();
  cuda::layernorm_forward_bf16(dev(d_out), d_mean.get(), d_rstd.get(), dev(d_inp), dev(d_w), dev(d_b), N, C,
                               nullptr);
  // Per row: Δm = 2γ_C·mean|x| + 2u|m|, Δs/s = 2γ_C + 16u + 2Δm·s(1 + Δm·s), doubled.
  std::vector<double> tol_m(N), tol_s(N), d_out_delta(out.size());
  for (int n = 0; n < N; ++n) {
    double m1 = 0;
    for (int c = 0; c < C; ++c) m1 += std::fabs(fx[size_t(n) * C + c]);
    m1 /= C;
    const double dm = 2 * (sum_order(C) * m1 + 2 * kU * std::fabs(mean[n]));
    const double dms = dm * rstd[n];
    const double ds_rel = 2 * (sum_order(C) + 16 * kU + 2 * dms * (1 + dms));
    tol_m[n] = dm;
    tol_s[n] = ds_rel * rstd[n];
    for (int c = 0; c < C; ++c) {
      const size_t i = size_t(n) * C + c;
      const double s = rstd[n], xm = std::fabs(double(fx[i]) - mean[n]), aw = std::fabs(fw[c]);
      d_out_delta[i] = 2 * (aw * (s * dm + xm * s * ds_rel) +
                            6 * kU * (xm * s * aw + std::fabs(cpu::bf16_to_float(bias[c]))));
    }
  }
  expect_within("layernorm_forward_bf16 mean" + tag, d_mean.download(), mean, tol_m);
  expect_within("layernorm_forward_bf16 rstd" + tag, d_rstd.download(), rstd, tol_s);
  expect_within("layernorm_forward_bf16 out" + tag, widen(d_out.download()), widen(out),
                two_rounding_tols(widen(out), d_out_delta));

  // Backward on the twin's statistics (uploaded), so both sides see the same m, s.
  d_mean.upload(mean);
  d_rstd.upload(rstd);
  std::vector<bf16> dinp(out.size());
  cpu::layernorm_backward_input_bf16(dinp.data(), dout.data(), inp.data(), weight.data(), mean.data(), rstd.data(),
                                     N, C);
  std::vector<double> ddx(out.size());
  for (int n = 0; n < N; ++n) {
    const double s = rstd[n];
    double a = 0, b = 0, a1 = 0, b1 = 0;
    for (int c = 0; c < C; ++c) {
      const size_t i = size_t(n) * C + c;
      const double dn = double(fw[c]) * fd[i], nm = (double(fx[i]) - mean[n]) * s;
      a += dn, b += dn * nm, a1 += std::fabs(dn), b1 += std::fabs(dn * nm);
    }
    a /= C, b /= C, a1 /= C, b1 /= C;
    const double da = sum_order(C) * a1 + 2 * kU * std::fabs(a);
    const double db = sum_order(C) * b1 + 4 * kU * b1 + 2 * kU * std::fabs(b);
    for (int c = 0; c < C; ++c) {
      const size_t i = size_t(n) * C + c;
      const double dn = std::fabs(double(fw[c]) * fd[i]), nm = std::fabs((double(fx[i]) - mean[n]) * s);
      ddx[i] = 2 * (s * (da + nm * db) + 6 * kU * s * (dn + std::fabs(a) + nm * std::fabs(b)));
    }
  }
  d_dinp.poison();
  cuda::layernorm_backward_input_bf16(dev(d_dinp), dev(d_dout), dev(d_inp), dev(d_w), d_mean.get(), d_rstd.get(),
                                      N, C, nullptr);
  expect_within("layernorm_backward_input_bf16" + tag, widen(d_dinp.download()), widen(dinp),
                two_rounding_tols(widen(dinp), ddx));

  // Weight/bias gradients: fp32 +=, twice.
  const auto w0 = testing::philox_vector(C, 51, 5), b0 = testing::philox_vector(C, 51, 6);
  std::vector<float> dw = w0, db = b0;
  DeviceBuffer<float> d_dw(w0), d_db(b0);
  DeviceBuffer<float> scratch(cuda::layernorm_backward_weight_bf16_scratch_floats(N, C));
  scratch.poison();
  for (int call = 0; call < 2; ++call) {
    cpu::layernorm_backward_weight_bf16(dw.data(), db.data(), dout.data(), inp.data(), mean.data(), rstd.data(), N,
                                        C);
    cuda::layernorm_backward_weight_bf16(d_dw.get(), d_db.get(), dev(d_dout), dev(d_inp), d_mean.get(),
                                         d_rstd.get(), N, C, scratch.get(), nullptr);
  }
  std::vector<double> tol_w(C), tol_b(C);
  for (int c = 0; c < C; ++c) {
    double mw = std::fabs(w0[c]), mb = std::fabs(b0[c]);
    for (int n = 0; n < N; ++n) {
      const size_t i = size_t(n) * C + c;
      mw += 2 * std::fabs(fd[i] * (double(fx[i]) - mean[n]) * rstd[n]);
      mb += 2 * std::fabs(fd[i]);
    }
    tol_w[c] = (sum_order(2 * N + 2) + 4 * kU) * mw;
    tol_b[c] = (sum_order(2 * N + 2) + 4 * kU) * mb;
  }
  expect_within("layernorm_backward_weight_bf16 dweight (2 calls)" + tag, d_dw.download(), dw, tol_w);
  expect_within("layernorm_backward_weight_bf16 dbias (2 calls)" + tag, d_db.download(), db, tol_b);
}

// The fused fc + GELU (matmul_forward_gelu_bf16, what the CUDA backend runs on bf16
// storage, cuda_backend.h) against the unfused ops it replaces (the fp32-scratch path:
// matmul_forward_bf16_fp32out with the fp32 bias, gelu_forward_typed bf16 <- fp32 on the
// unrounded p, convert_fp32_to_bf16 of p). Both sides are cuBLASLt fp32 accumulations of
// the same exact products in their own orders (Δp, as kernel vs twin) and round once;
// the GELU is the epilogue's (or the fallback's on bf16(p)) against gelu.cu's tanh form
// on p, so Δg of the header comment, with the unfused outputs as the reference.
void check_fused_gelu(const Shape& s) {
  const int N = s.N, C = s.C, OC = s.OC;
  const std::string tag = " N" + std::to_string(N) + " C" + std::to_string(C) + " OC" + std::to_string(OC);
  const size_t n = size_t(N) * OC;
  const auto inp = bf16_normal(size_t(N) * C, 43, 1, 1.0f), weight = bf16_normal(size_t(OC) * C, 43, 2, 0.2f);
  const auto bias = bf16_normal(OC, 43, 3, 0.5f);
  const auto fb = widen(bias);
  std::vector<float> mag(n);
  cpu::matmul_forward(mag.data(), abs_of(widen(inp)).data(), abs_of(widen(weight)).data(), abs_of(fb).data(), N, C,
                      OC);
  DeviceBuffer<bf16> d_inp(inp), d_w(weight), d_bias(bias), out(n), pre(n), out_u(n), pre_u(n);
  DeviceBuffer<float> d_fb(fb), p32(n);
  for (auto* b : {&out, &pre, &out_u, &pre_u}) b->poison();
  p32.poison();
  cuda::matmul_forward_bf16_fp32out(p32.get(), dev(d_inp), dev(d_w), d_fb.get(), N, C, OC, nullptr);
  cuda::gelu_forward_typed(dev(out_u), true, p32.get(), false, int(n), nullptr);
  cuda::convert_fp32_to_bf16(dev(pre_u), p32.get(), n, nullptr);
  cuda::matmul_forward_gelu_bf16(dev(out), dev(pre), dev(d_inp), dev(d_w), dev(d_bias), N, C, OC, nullptr);
  const auto ref_pre = widen(pre_u.download()), ref_out = widen(out_u.download());
  std::vector<double> dp, dg;
  gelu_gemm_deltas(ref_pre, mag, C, &dp, &dg);
  expect_within("fused vs unfused pre_gelu" + tag, widen(pre.download()), ref_pre, two_rounding_tols(ref_pre, dp));
  expect_within("fused vs unfused gelu" + tag, widen(out.download()), ref_out, two_rounding_tols(ref_out, dg));
  size_t negative = 0;
  for (float p : ref_pre) negative += p < 0.0f;
  EXPECT_GT(negative, n / 4) << "both GELU branches exercised";
}

// GPT-2's fc shape (C = 768, OC = 4C) on a few rows, and shapes off every tile.
TEST_F(CudaBf16Ops, FusedGeluMatchesUnfused) {
  for (const Shape& s : {Shape{77, 48, 192}, Shape{130, 96, 40}, Shape{5, 768, 3072}}) check_fused_gelu(s);
}

TEST_F(CudaBf16Ops, LayerNorm) {
  check_layernorm(77, 200);
  check_layernorm(130, 37);
  check_layernorm(3, 768);
}

// ---------------------------------------------------------------- conversions

TEST_F(CudaBf16Ops, Convert) {
  // fp32 -> bf16 on values over many binades plus the special cases, bitwise vs the twin.
  std::vector<float> x;
  for (size_t i = 0; i < 5003; ++i) x.push_back(std::ldexp(philox_normal(61, 1, i), int(i % 61) - 30));
  const uint32_t specials[] = {0x3F808000u, 0x3F818000u, 0x7F7F7FFFu, 0x7F7F8000u, 0x00008000u, 0x00018000u,
                               0x7F800000u, 0xFF800000u, 0x7F7FFFFFu, 0x80000000u, 0x7FC00000u, 0x7F800001u};
  for (uint32_t b : specials) {
    float f;
    std::memcpy(&f, &b, sizeof f);
    x.push_back(f);
  }
  std::vector<bf16> ref(x.size());
  cpu::convert_fp32_to_bf16(ref.data(), x.data(), x.size());
  DeviceBuffer<float> d_x(x);
  DeviceBuffer<bf16> d_y(x.size());
  d_y.poison();
  cuda::convert_fp32_to_bf16(dev(d_y), d_x.get(), x.size(), nullptr);
  const auto y = d_y.download();
  size_t bad = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const bool nan_ref = std::isnan(cpu::bf16_to_float(ref[i]));
    const bool ok = nan_ref ? std::isnan(cpu::bf16_to_float(y[i])) : y[i].bits == ref[i].bits;
    if (!ok && bad++ < 5) ADD_FAILURE() << "convert_fp32_to_bf16[" << i << "]: " << y[i].bits << " vs " << ref[i].bits;
  }
  EXPECT_EQ(bad, 0u);

  // bf16 -> fp32 on every bit pattern.
  std::vector<bf16> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i].bits = uint16_t(i);
  std::vector<float> ref_f(all.size());
  cpu::convert_bf16_to_fp32(ref_f.data(), all.data(), all.size());
  DeviceBuffer<bf16> d_all(all);
  DeviceBuffer<float> d_f(all.size());
  d_f.poison();
  cuda::convert_bf16_to_fp32(d_f.get(), dev(d_all), all.size(), nullptr);
  const auto f = d_f.download();
  bad = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    const bool ok = std::isnan(ref_f[i]) ? std::isnan(f[i]) : std::memcmp(&f[i], &ref_f[i], sizeof(float)) == 0;
    if (!ok && bad++ < 5) ADD_FAILURE() << "convert_bf16_to_fp32[" << i << "]: " << f[i] << " vs " << ref_f[i];
  }
  EXPECT_EQ(bad, 0u);

  // In-place fp32 -> bf16-valued fp32 (the stage model's bf16 storage), bitwise vs the twin.
  std::vector<float> ref_r = x;
  cpu::round_fp32_to_bf16(ref_r.data(), ref_r.size());
  DeviceBuffer<float> d_r(x);
  cuda::round_fp32_to_bf16(d_r.get(), x.size(), nullptr);
  const auto r = d_r.download();
  bad = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const bool ok = std::isnan(ref_r[i]) ? std::isnan(r[i]) : std::memcmp(&r[i], &ref_r[i], sizeof(float)) == 0;
    if (!ok && bad++ < 5) ADD_FAILURE() << "round_fp32_to_bf16[" << i << "]: " << r[i] << " vs " << ref_r[i];
  }
  EXPECT_EQ(bad, 0u);

  // Both at once (the bf16 weight refresh): the rounded copy as round_fp32_to_bf16's, the
  // bf16 one as convert_fp32_to_bf16's, the input untouched; and the CPU twin the same.
  DeviceBuffer<float> d_rc(x.size());
  DeviceBuffer<bf16> d_bc(x.size());
  d_rc.poison();
  d_bc.poison();
  cuda::round_fp32_to_bf16_copy(d_rc.get(), dev(d_bc), d_x.get(), x.size(), nullptr);
  const auto rc = d_rc.download();
  const auto bc = d_bc.download();
  std::vector<float> cpu_rc(x.size());
  std::vector<bf16> cpu_bc(x.size());
  cpu::round_fp32_to_bf16_copy(cpu_rc.data(), cpu_bc.data(), x.data(), x.size());
  const auto x_after = d_x.download();  // bytes: x holds NaNs
  EXPECT_EQ(std::memcmp(x_after.data(), x.data(), x.size() * sizeof(float)), 0) << "round_fp32_to_bf16_copy wrote its input";
  bad = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const bool nan = std::isnan(ref_r[i]);
    const bool ok = nan ? std::isnan(rc[i]) && std::isnan(cpu_rc[i]) && std::isnan(cpu::bf16_to_float(bc[i]))
                        : std::memcmp(&rc[i], &ref_r[i], sizeof(float)) == 0 && bc[i].bits == y[i].bits &&
                              std::memcmp(&cpu_rc[i], &ref_r[i], sizeof(float)) == 0 && cpu_bc[i].bits == ref[i].bits;
    if (!ok && bad++ < 5) ADD_FAILURE() << "round_fp32_to_bf16_copy[" << i << "]: " << rc[i] << " vs " << ref_r[i];
  }
  EXPECT_EQ(bad, 0u);
}

// ---------------------------------------------------------------- bf16 activations

// A bf16 device result equals the fp32 one rounded (RNE), bit for bit.
void expect_rounded(const std::string& what, const DeviceBuffer<bf16>& got, const DeviceBuffer<float>& fp32) {
  const auto g = got.download();
  const auto f = fp32.download();
  size_t bad = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    if (g[i].bits != cpu::float_to_bf16(f[i]).bits && bad++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: " << cpu::bf16_to_float(g[i]) << " vs " << f[i];
  }
  EXPECT_EQ(bad, 0u) << what;
}

void expect_bitwise(const std::string& what, const DeviceBuffer<float>& a, const DeviceBuffer<float>& b) {
  const auto x = a.download(), y = b.download();
  EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)), 0) << what;
}

TEST_F(CudaBf16Ops, ElementwiseOnBf16Activations) {
  const int n = 5003;
  const auto x = bf16_normal(n, 71, 1, 2.0f), y = bf16_normal(n, 71, 2, 1.0f);
  DeviceBuffer<bf16> bx(x), by(y), out(n);
  DeviceBuffer<float> fx(widen(x)), fy(widen(y)), ref(n);
  cuda::gelu_forward(ref.get(), fx.get(), n, nullptr);
  out.poison();
  cuda::gelu_forward_typed(dev(out), true, dev(bx), true, n, nullptr);
  expect_rounded("gelu_forward bf16 <- bf16", out, ref);
  out.poison();
  cuda::gelu_forward_typed(dev(out), true, fx.get(), false, n, nullptr);
  expect_rounded("gelu_forward bf16 <- fp32", out, ref);
  cuda::gelu_backward(ref.get(), fx.get(), fy.get(), n, nullptr);
  DeviceBuffer<bf16> inplace(y);  // dinp aliases dout
  cuda::gelu_backward_typed(dev(inplace), true, dev(bx), true, dev(inplace), true, n, nullptr);
  expect_rounded("gelu_backward in place", inplace, ref);
  cuda::residual_forward(ref.get(), fx.get(), fy.get(), n, nullptr);
  out.poison();
  cuda::residual_forward_typed(dev(out), true, dev(bx), true, dev(by), true, n, nullptr);
  expect_rounded("residual_forward", out, ref);
}

// The embedding with a bf16 output (forward) and output gradient (backward): bitwise the
// fp32 kernels on the widened values with the output rounded (encoder.h typed forms);
// tokens repeat, so the backward's per-token sums have several terms.
TEST_F(CudaBf16Ops, EncoderOnBf16Activations) {
  const int B = 3, T = 37, C = 40, V = 11, maxT = 40;
  std::vector<int32_t> tokens(size_t(B) * T);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 7 + i / 5) % V);
  const auto wte = widen(bf16_normal(size_t(V) * C, 91, 1, 1.0f));
  const auto wpe = widen(bf16_normal(size_t(maxT) * C, 91, 2, 0.5f));
  const auto dy = bf16_normal(size_t(B) * T * C, 91, 3, 1.0f);
  const auto g0 = testing::philox_vector(size_t(V) * C, 91, 4), p0 = testing::philox_vector(size_t(maxT) * C, 91, 5);
  DeviceBuffer<int32_t> d_tok(tokens);
  DeviceBuffer<float> d_wte(wte), d_wpe(wpe), ref(size_t(B) * T * C), fdy(widen(dy));
  DeviceBuffer<bf16> out(size_t(B) * T * C), bdy(dy);
  cuda::encoder_forward(ref.get(), d_tok.get(), d_wte.get(), d_wpe.get(), B, T, C, nullptr);
  out.poison();
  cuda::encoder_forward_typed(dev(out), true, d_tok.get(), d_wte.get(), d_wpe.get(), B, T, C, nullptr);
  expect_rounded("encoder_forward_typed", out, ref);
  DeviceBuffer<int32_t> ws(cuda::encoder_backward_workspace_ints(B, T, V));
  DeviceBuffer<float> gw(g0), gp(p0), gw2(g0), gp2(p0);
  cuda::encoder_backward(gw.get(), gp.get(), fdy.get(), d_tok.get(), B, T, C, V, ws.get(), nullptr);
  cuda::encoder_backward_typed(gw2.get(), gp2.get(), dev(bdy), true, d_tok.get(), B, T, C, V, ws.get(), nullptr);
  expect_bitwise("encoder_backward_typed dwte", gw, gw2);
  expect_bitwise("encoder_backward_typed dwpe", gp, gp2);
  const auto got = gw.download();
  size_t changed = 0;
  for (size_t i = 0; i < got.size(); ++i) changed += got[i] != g0[i];
  EXPECT_GT(changed, got.size() / 2) << "the backward added to dwte";
}

// Cross-entropy on bf16 logits (crossentropy.h typed forms), V = 1000 and 67 (not a
// multiple of the 256-thread block; 67 leaves most threads of a row empty): losses
// bitwise the fp32 kernel's on the widened logits, bf16 dlogits its dlogits rounded,
// also in place (dlogits == logits) and into fp32 dlogits (no rounding).
void check_crossentropy_bf16(int N, int V) {
  const std::string at = " N=" + std::to_string(N) + " V=" + std::to_string(V);
  const size_t NV = size_t(N) * V;
  const float scale = 1.0f / 7.0f;
  const auto x = bf16_normal(NV, 95, 1, 3.0f);
  std::vector<int32_t> targets(N);
  for (int n = 0; n < N; ++n) targets[n] = int32_t((n * 37 + 11) % V);
  DeviceBuffer<int32_t> d_t(targets);
  DeviceBuffer<bf16> bx(x), d(NV), inplace(x);
  DeviceBuffer<float> fx(widen(x)), ref_l(N), l(N), ref_d(NV), fd(NV);
  cuda::crossentropy_forward(ref_l.get(), fx.get(), d_t.get(), N, V, nullptr, nullptr);
  l.poison();
  cuda::crossentropy_forward_typed(l.get(), dev(bx), true, d_t.get(), N, V, nullptr, nullptr);
  expect_bitwise("crossentropy_forward_typed losses" + at, l, ref_l);
  cuda::crossentropy_backward(ref_d.get(), fx.get(), d_t.get(), scale, N, V, nullptr, nullptr);
  d.poison();
  cuda::crossentropy_backward_typed(dev(d), true, dev(bx), true, d_t.get(), scale, N, V, nullptr, nullptr);
  expect_rounded("crossentropy_backward_typed bf16 <- bf16" + at, d, ref_d);
  cuda::crossentropy_backward_typed(dev(inplace), true, dev(inplace), true, d_t.get(), scale, N, V, nullptr, nullptr);
  expect_rounded("crossentropy_backward_typed in place" + at, inplace, ref_d);
  // With the forward's softmax statistics (kept logits), in place: the same bits.
  DeviceBuffer<float> stats(2 * size_t(N)), l2(N);
  DeviceBuffer<bf16> kept(x);
  stats.poison();
  cuda::crossentropy_forward_typed(l2.get(), dev(kept), true, d_t.get(), N, V, stats.get(), nullptr);
  expect_bitwise("crossentropy_forward_typed losses with stats" + at, l2, ref_l);
  cuda::crossentropy_backward_typed(dev(kept), true, dev(kept), true, d_t.get(), scale, N, V, stats.get(), nullptr);
  expect_rounded("crossentropy_backward_typed in place from stats" + at, kept, ref_d);
  fd.poison();
  cuda::crossentropy_backward_typed(fd.get(), false, dev(bx), true, d_t.get(), scale, N, V, nullptr, nullptr);
  expect_bitwise("crossentropy_backward_typed fp32 <- bf16" + at, fd, ref_d);
  // The comparison has teeth: the gradients are not all zero and rounding changes some.
  const auto g = ref_d.download();
  size_t nonzero = 0, inexact = 0;
  for (float v : g) nonzero += v != 0.0f, inexact += cpu::bf16_to_float(cpu::float_to_bf16(v)) != v;
  EXPECT_GT(nonzero, NV / 2) << at;
  EXPECT_GT(inexact, NV / 2) << at;
}

TEST_F(CudaBf16Ops, CrossEntropyOnBf16Logits) {
  for (int V : {1000, 67}) check_crossentropy_bf16(5, V);
}

void check_layernorm_bf16act(int N, int C) {
  const size_t NC = size_t(N) * C;
  const std::string at = " N=" + std::to_string(N) + " C=" + std::to_string(C);
  const auto x = bf16_normal(NC, 81, 1, 1.5f, 0.3f), x2 = bf16_normal(NC, 81, 2, 1.0f);
  const auto dy = bf16_normal(NC, 81, 3, 1.0f);
  std::vector<float> w = widen(bf16_normal(C, 81, 4, 0.5f, 1.0f)), b = widen(bf16_normal(C, 81, 5, 0.2f));
  DeviceBuffer<bf16> bx(x), bx2(x2), bdy(dy), out(NC), res(x2);
  DeviceBuffer<float> fx(widen(x)), fx2(widen(x2)), fdy(widen(dy)), dw(w), db(b), ref(NC), fres(widen(x2));
  DeviceBuffer<float> m(N), r(N), m2(N), r2(N);
  cuda::layernorm_forward(ref.get(), m.get(), r.get(), fx.get(), dw.get(), db.get(), N, C, nullptr);
  out.poison();
  cuda::layernorm_forward_bf16act(dev(out), m2.get(), r2.get(), dev(bx), dw.get(), db.get(), N, C, nullptr);
  expect_rounded("layernorm_forward_bf16act" + at, out, ref);
  expect_bitwise("layernorm_forward_bf16act mean" + at, m, m2);
  expect_bitwise("layernorm_forward_bf16act rstd" + at, r, r2);
  cuda::layernorm_backward_input(ref.get(), fdy.get(), fx.get(), dw.get(), m.get(), r.get(), N, C, nullptr);
  out.poison();
  cuda::layernorm_backward_input_bf16act(dev(out), dev(bdy), dev(bx), dw.get(), m.get(), r.get(), N, C, nullptr);
  expect_rounded("layernorm_backward_input_bf16act" + at, out, ref);
  DeviceBuffer<float> scratch(cuda::layernorm_backward_weight_scratch_floats(N, C));
  DeviceBuffer<float> gw(w), gb(b), gw2(w), gb2(b);  // += onto nonzero values
  cuda::layernorm_backward_weight(gw.get(), gb.get(), fdy.get(), fx.get(), m.get(), r.get(), N, C, scratch.get(),
                                  nullptr);
  cuda::layernorm_backward_weight_bf16act(gw2.get(), gb2.get(), dev(bdy), dev(bx), m.get(), r.get(), N, C,
                                          scratch.get(), nullptr);
  expect_bitwise("layernorm_backward_weight_bf16act dweight" + at, gw, gw2);
  expect_bitwise("layernorm_backward_weight_bf16act dbias" + at, gb, gb2);
  // Fused residual + LayerNorm, res aliasing inp2 as in the stage model.
  cuda::residual_layernorm_forward(fres.get(), ref.get(), m.get(), r.get(), fx.get(), fres.get(), dw.get(), db.get(), N,
                                   C, /*round_res_bf16=*/true, nullptr);
  out.poison();
  cuda::residual_layernorm_forward_bf16act(dev(res), dev(out), m2.get(), r2.get(), dev(bx), dev(res), dw.get(),
                                           db.get(), N, C, nullptr);
  expect_rounded("residual_layernorm_forward_bf16act ln" + at, out, ref);
  expect_rounded("residual_layernorm_forward_bf16act res" + at, res, fres);
  expect_bitwise("residual_layernorm_forward_bf16act mean" + at, m, m2);
  expect_bitwise("residual_layernorm_forward_bf16act rstd" + at, r, r2);
  // LayerNorm input gradient + residual add: bitwise the unfused bf16 ops, and the fp32
  // form with round_bf16 on the widened values, rounded once.
  DeviceBuffer<bf16> tmp(NC), fused(NC);
  tmp.poison();
  out.poison();
  fused.poison();
  cuda::layernorm_backward_input_bf16act(dev(tmp), dev(bdy), dev(bx), dw.get(), m.get(), r.get(), N, C, nullptr);
  cuda::residual_forward_typed(dev(out), true, dev(bx2), true, dev(tmp), true, int(NC), nullptr);
  cuda::layernorm_backward_input_residual_bf16act(dev(fused), dev(bx2), dev(bdy), dev(bx), dw.get(), m.get(),
                                                  r.get(), N, C, nullptr);
  testing::expect_bitwise_equal("layernorm_backward_input_residual_bf16act vs unfused" + at,
                                widen(fused.download()), widen(out.download()));
  cuda::layernorm_backward_input_residual(ref.get(), fx2.get(), fdy.get(), fx.get(), dw.get(), m.get(), r.get(), N,
                                          C, /*round_bf16=*/true, nullptr);
  expect_rounded("layernorm_backward_input_residual_bf16act" + at, fused, ref);
}

TEST_F(CudaBf16Ops, LayerNormOnBf16Activations) {
  for (int C : {37, 200, 2100}) check_layernorm_bf16act(77, C);
}

}  // namespace
}  // namespace pt
