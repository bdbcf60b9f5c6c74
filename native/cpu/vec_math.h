// Vectorisation helpers. Kernels write their inner loops as plain scalar code and mark the hot functions
// FT_VECTORIZE: GCC then builds AVX-512, AVX2 and baseline copies and picks one at load time, so the addon
// needs no -march and still uses the machine's widest vectors.
//
// The float transcendental functions below are straight-line code (bit tricks and selects, no branches or
// libm calls) so the loops calling them vectorise too; std::exp & co. would keep those loops scalar. They are
// within a few ulp of the correctly rounded result (test/kernels.test.ts checks them against float64).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#define FT_VECTORIZE __attribute__((target_clones("avx512f", "avx2", "default")))
// Forces the helpers into the FT_VECTORIZE caller, where they are compiled for the caller's instruction set.
#define FT_INLINE inline __attribute__((always_inline))
// The same for the lambdas handed to row loops: in a function with many cases GCC otherwise stops inlining
// them, and a call left in a loop body keeps the loop scalar.
#define FT_INLINE_LAMBDA __attribute__((always_inline))

namespace ft {

FT_INLINE float BitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

FT_INLINE uint32_t FloatToBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Cephes expf: exp(x) = 2^n * exp(r), |r| <= ln2/2. The input is clamped so 2^n stays within [2^-150, 2^128]
// and 2^n is applied in two halves, so overflow gives inf and the subnormal range underflows gradually.
// NaN passes through the clamps unchanged.
FT_INLINE float Exp(float x) {
  x = x > 88.8f ? 88.8f : x;
  x = x < -104.0f ? -104.0f : x;
  const float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits
  float t = x * 1.44269504088896341f + kRound;
  float n = t - kRound;
  uint32_t ni = FloatToBits(t) - FloatToBits(kRound);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  uint32_t n1 = static_cast<uint32_t>(static_cast<int32_t>(ni) >> 1);
  uint32_t n2 = ni - n1;
  return y * BitsToFloat((n1 + 127u) << 23) * BitsToFloat((n2 + 127u) << 23);
}

// Cephes tanhf: an odd polynomial near 0 (where 1 - 2/(e^2x + 1) would cancel), the exp form elsewhere.
FT_INLINE float Tanh(float x) {
  float z = std::fabs(x);
  float s = x * x;
  float p = -5.70498872745e-3f;
  p = p * s + 2.06390887954e-2f;
  p = p * s - 5.37397155531e-2f;
  p = p * s + 1.33314422036e-1f;
  p = p * s - 3.33332819422e-1f;
  float small = p * s * x + x;
  float large = std::copysign(1.0f - 2.0f / (Exp(2.0f * z) + 1.0f), x);
  return z < 0.625f ? small : large;
}

FT_INLINE float Sigmoid(float x) { return 1.0f / (1.0f + Exp(-x)); }

// erf(x) for |x| < 0.84375 (fdlibm's rational form, also used by musl's erff).
FT_INLINE float ErfSmall(float x) {
  float z = x * x;
  float r = 1.2837916613e-01f + z * (-3.2504209876e-01f + z * (-2.8481749818e-02f +
            z * (-5.7702702470e-03f + z * -2.3763017452e-05f)));
  float s = 1.0f + z * (3.9791721106e-01f + z * (6.5022252500e-02f + z * (5.0813062117e-03f +
            z * (1.3249473704e-04f + z * -3.9602282413e-06f))));
  return x + x * (r / s);
}

// erfc(a * k) for a >= 0, with small relative error out to the far tail (Numerical Recipes' Chebyshev fit,
// fractional error < 1.2e-7). k^2 = k2 must be exact (k = 1 or sqrt(1/2)). The dominant factor exp(-a^2 k^2)
// is computed from `a` itself, not the rounded z = a * k, and split as exp(-k2 ah^2) * exp(-k2 (a - ah)(a + ah))
// with ah = a without its low mantissa bits, so ah^2 is exact: rounding z^2 would cost ~z^2 ulp.
FT_INLINE float ErfcScaled(float a, float k, float k2) {
  const float z = a * k;
  const float t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  const float ah = BitsToFloat(FloatToBits(a) & 0xfffff000u);
  return t * Exp(-k2 * (ah * ah)) * Exp(p - k2 * ((a - ah) * (a + ah)));
}

FT_INLINE float Erf(float x) {
  const float z = std::fabs(x);
  const float large = std::copysign(1.0f - ErfcScaled(z, 1.0f, 1.0f), x);
  return z < 0.84375f ? ErfSmall(x) : large;
}

// 1 + erf(x / sqrt(2)), without cancellation for negative x: the GELU's 2 * Phi(x).
FT_INLINE float OnePlusErfHalf(float x) {
  const float tail = ErfcScaled(std::fabs(x), 0.70710678118654752f, 0.5f);
  const float u = x * 0.70710678118654752f;
  const float mid = 1.0f + ErfSmall(u);
  return std::fabs(u) < 0.84375f ? mid : (x < 0.0f ? tail : 2.0f - tail);
}

constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kSqrt2OverPi = 0.79788456080286536f;
constexpr float kGeluCubic = 0.044715f;

FT_INLINE float GeluErf(float x) { return 0.5f * x * OnePlusErfHalf(x); }

FT_INLINE float GeluErfGrad(float x) { return 0.5f * OnePlusErfHalf(x) + x * kInvSqrt2Pi * Exp(-0.5f * x * x); }

// 0.5 x (1 + tanh(u)) computed as x * sigmoid(2u): the same function without the cancellation in 1 + tanh(u)
// for negative x.
FT_INLINE float GeluTanh(float x) {
  return x / (1.0f + Exp(-2.0f * kSqrt2OverPi * (x + kGeluCubic * x * x * x)));
}

// PyTorch's GeluBackward (approximate='tanh'), with 1 + tanh(u) = 2s and 1 - tanh(u)^2 = 4s(1 - s) for
// s = sigmoid(2u).
FT_INLINE float GeluTanhGrad(float x) {
  const float x2 = x * x;
  const float s = 1.0f / (1.0f + Exp(-2.0f * kSqrt2OverPi * (x + kGeluCubic * x2 * x)));
  return s + 2.0f * x * s * (1.0f - s) * kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x2);
}

// The sum of n floats in double, with independent per-lane accumulators combined at the end, so the loop
// vectorises without -ffast-math and the result does not depend on how callers split their work.
FT_INLINE double SumRowDouble(const float* x, int64_t n) {
  constexpr int kLanes = 8;
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += x[i + j];
  for (; i < n; ++i) acc[0] += x[i];
  double s = 0;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

}  // namespace ft
