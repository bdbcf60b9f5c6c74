// The sgemm contract's arguments, decoded and checked the same way for every device: everything except the
// memory itself, plus the element extent each operand spans, which each device checks against its buffers.
// Argument order: transA, transB, M, N, K, alpha, A, offA, lda, strideA, B, offB, ldb, strideB, beta,
// C, offC, ldc, strideC, batch, and optionally abDtype, the dtype code of A and B (float32 when absent, else
// float16 or bfloat16), then bias, offBias: a vector of N elements of C's dtype added to every row of C after the
// products (C = alpha op(A) op(B) + bias; only with batch 1 and beta 0, as a linear layer uses it), then cDtype:
// float32 when absent, or (on CUDA, with beta 0) A and B's 16-bit dtype, C then receiving the float32 result
// rounded to it. A, B, C and bias, at indices 6, 10, 15 and 21, are read by the caller.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>

#include "common/args.h"
#include "common/dtype.h"

namespace ft {

struct GemmArgs {
  bool transA, transB;
  int64_t M, N, K;
  float alpha, beta;
  int64_t offA, lda, strideA, extA;
  int64_t offB, ldb, strideB, extB;
  int64_t offC, ldc, strideC, extC;
  int64_t batch;
  int abDtype;
  bool bias;
  int64_t offBias;
  int cDtype;
};

constexpr int kGemmA = 6, kGemmB = 10, kGemmC = 15, kGemmBias = 21, kGemmCDtype = 23;

// Elements a batch of rows x cols matrices with leading dimension ld spans, overflow-checked.
inline int64_t GemmExtent(const Napi::CallbackInfo& info, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                          int64_t stride, const char* name) {
  if (ld < cols)
    throw Napi::RangeError::New(info.Env(), std::string(name) + ": leading dimension " + std::to_string(ld) +
                                                " is below the row length " + std::to_string(cols));
  if (rows == 0 || cols == 0 || batch == 0) return 0;
  int64_t one, last, extent;
  if (__builtin_mul_overflow(rows - 1, ld, &one) || __builtin_add_overflow(one, cols, &one) ||
      __builtin_mul_overflow(batch - 1, stride, &last) || __builtin_add_overflow(last, one, &extent) ||
      extent > (int64_t{1} << 53))
    throw Napi::RangeError::New(info.Env(), std::string(name) + ": the batched matrix spans too many elements");
  return extent;
}

inline GemmArgs DecodeGemmArgs(const Napi::CallbackInfo& info) {
  if (info.Length() < 20)
    throw Napi::TypeError::New(info.Env(), "sgemm expects 20 arguments, got " + std::to_string(info.Length()));
  GemmArgs g;
  g.transA = GetBool(info, 0, "transA");
  g.transB = GetBool(info, 1, "transB");
  g.M = GetCount(info, 2, "M");
  g.N = GetCount(info, 3, "N");
  g.K = GetCount(info, 4, "K");
  g.alpha = static_cast<float>(GetNumber(info, 5, "alpha"));
  g.offA = GetCount(info, 7, "offA");
  g.lda = GetCount(info, 8, "lda");
  g.strideA = GetCount(info, 9, "strideA");
  g.offB = GetCount(info, 11, "offB");
  g.ldb = GetCount(info, 12, "ldb");
  g.strideB = GetCount(info, 13, "strideB");
  g.beta = static_cast<float>(GetNumber(info, 14, "beta"));
  g.offC = GetCount(info, 16, "offC");
  g.ldc = GetCount(info, 17, "ldc");
  g.strideC = GetCount(info, 18, "strideC");
  g.batch = GetCount(info, 19, "batch");
  g.abDtype = kF32;
  if (!Omitted(info, 20)) {
    const int64_t dt = GetInt(info, 20, "abDtype");
    if (dt != kF32 && dt != kF16 && dt != kBF16)
      throw Napi::TypeError::New(info.Env(), "sgemm: abDtype must be float32, float16 or bfloat16, got dtype code " +
                                                 std::to_string(dt));
    g.abDtype = static_cast<int>(dt);
  }
  g.bias = !Omitted(info, kGemmBias);
  g.offBias = g.bias ? GetCount(info, kGemmBias + 1, "offBias") : 0;
  if (g.bias && (g.batch != 1 || g.beta != 0.0f))
    throw Napi::TypeError::New(info.Env(), "sgemm: a bias is added only with batch 1 and beta 0");
  g.cDtype = kF32;
  if (!Omitted(info, kGemmCDtype)) {
    const int64_t dt = GetInt(info, kGemmCDtype, "cDtype");
    if (dt != kF32 && (dt != g.abDtype || g.beta != 0.0f))
      throw Napi::TypeError::New(info.Env(), "sgemm: cDtype must be float32, or A and B's 16-bit dtype with beta 0, "
                                             "got dtype code " + std::to_string(dt));
    g.cDtype = static_cast<int>(dt);
  }
  constexpr int64_t kMaxDim = int64_t{1} << 31;
  if (g.M >= kMaxDim || g.N >= kMaxDim || g.K >= kMaxDim)
    throw Napi::RangeError::New(info.Env(), "sgemm: M, N and K must be below 2^31");
  // A and B are unread when nothing is multiplied; their extents are then 0.
  const bool reads = g.M > 0 && g.N > 0 && g.K > 0;
  g.extA = g.transA ? GemmExtent(info, reads ? g.K : 0, g.M, g.lda, g.batch, g.strideA, "A")
                    : GemmExtent(info, reads ? g.M : 0, g.K, g.lda, g.batch, g.strideA, "A");
  g.extB = g.transB ? GemmExtent(info, reads ? g.N : 0, g.K, g.ldb, g.batch, g.strideB, "B")
                    : GemmExtent(info, reads ? g.K : 0, g.N, g.ldb, g.batch, g.strideB, "B");
  g.extC = GemmExtent(info, g.M, g.N, g.ldc, g.batch, g.strideC, "C");
  return g;
}

}  // namespace ft
