// Softmax and log-softmax over contiguous rows, their backward, and the fused attention softmax
// (scale + additive [B, T] mask + softmax). Rows are independent, so threads split rows. Row reductions keep
// per-lane partial results so their loops vectorise.

// No FMA contraction: GCC contracts its vector loop bodies but not always their epilogues, which would make
// results depend on where a thread's chunk starts. Explicitly rounded steps give the same bits everywhere.
#pragma GCC optimize("fp-contract=off")

#include <napi.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "binding/registry.h"
#include "common/args.h"
#include "common/kernel_args.h"
#include "cpu/threadpool.h"
#include "cpu/vec_math.h"

namespace ft {
namespace {

constexpr int64_t kGrain = 32768;
constexpr int kLanes = 16;

FT_INLINE float RowMax(const float* x, int64_t n) {
  float acc[kLanes];
  for (int j = 0; j < kLanes; ++j) acc[j] = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
  for (; i < n; ++i) acc[0] = x[i] > acc[0] ? x[i] : acc[0];
  float m = acc[0];
  for (int j = 1; j < kLanes; ++j) m = acc[j] > m ? acc[j] : m;
  return m;
}

FT_INLINE float RowSum(const float* x, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += x[i + j];
  for (; i < n; ++i) acc[0] += x[i];
  float s = 0;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

FT_INLINE float RowDot(const float* x, const float* y, int64_t n) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += x[i + j] * y[i + j];
  for (; i < n; ++i) acc[0] += x[i] * y[i];
  float s = 0;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

// y = exp(z - max(z)) / sum, with z already in y. An all -inf row is NaN, as in torch.softmax, unless
// `uniform_if_empty`: attention rows masked everywhere with -inf (or scores so negative that adding the mask
// overflowed) then come out uniform, as they do in PyTorch with its large finite negative mask.
FT_INLINE void SoftmaxInPlace(float* y, int64_t n, bool uniform_if_empty) {
  const float m = RowMax(y, n);
  if (uniform_if_empty && m == -std::numeric_limits<float>::infinity()) {
    std::fill(y, y + n, 1.0f / static_cast<float>(n));
    return;
  }
#pragma GCC ivdep
  for (int64_t i = 0; i < n; ++i) y[i] = Exp(y[i] - m);
  const float inv = 1.0f / RowSum(y, n);
  for (int64_t i = 0; i < n; ++i) y[i] *= inv;
}

FT_VECTORIZE void SoftmaxRows(int64_t rows, int64_t n, const float* x, float* y, bool log) {
  for (int64_t r = 0; r < rows; ++r, x += n, y += n) {
    if (!log) {
      if (x != y) std::copy(x, x + n, y);
      SoftmaxInPlace(y, n, false);
      continue;
    }
    const float m = RowMax(x, n);
    float acc[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
      for (int j = 0; j < kLanes; ++j) acc[j] += Exp(x[i + j] - m);
    for (; i < n; ++i) acc[0] += Exp(x[i] - m);
    float s = 0;
    for (int j = 0; j < kLanes; ++j) s += acc[j];
    const float shift = m + std::log(s);
#pragma GCC ivdep
    for (i = 0; i < n; ++i) y[i] = x[i] - shift;
  }
}

FT_VECTORIZE void SoftmaxBackwardRows(int64_t rows, int64_t n, const float* y, const float* dy, float* dx, bool log) {
  for (int64_t r = 0; r < rows; ++r, y += n, dy += n, dx += n) {
    if (log) {
      const float s = RowSum(dy, n);
#pragma GCC ivdep
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] - Exp(y[i]) * s;
    } else {
      const float dot = RowDot(dy, y, n);
#pragma GCC ivdep
      for (int64_t i = 0; i < n; ++i) dx[i] = y[i] * (dy[i] - dot);
    }
  }
}

// Rows [row0, row0 + rows) of the [B*H*S, T] scores; row r belongs to batch r / (H*S).
FT_VECTORIZE void MaskedSoftmaxRows(int64_t row0, int64_t rows, int64_t rows_per_batch, int64_t T, const float* s,
                                    float scale, const float* mask, float* y) {
  for (int64_t r = row0; r < row0 + rows; ++r) {
    const float* sr = s + r * T;
    float* yr = y + r * T;
    if (mask != nullptr) {
      const float* mr = mask + (r / rows_per_batch) * T;
#pragma GCC ivdep
      for (int64_t t = 0; t < T; ++t) yr[t] = sr[t] * scale + mr[t];
    } else {
#pragma GCC ivdep
      for (int64_t t = 0; t < T; ++t) yr[t] = sr[t] * scale;
    }
    SoftmaxInPlace(yr, T, true);
  }
}

int64_t RowGrain(int64_t cols) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(1, cols)); }

Napi::Value SoftmaxForward(const Napi::CallbackInfo& info) {
  int64_t rows = GetCount(info, 0, "rows");
  int64_t cols = GetCount(info, 1, "cols");
  const int64_t numel = CountProduct(info, rows, cols, "rows * cols");
  const float* x = OperandAt<float>(info, 2, "x", "xOff", numel);
  float* y = OperandAt<float>(info, 4, "y", "yOff", numel);
  const bool log = GetBool(info, 6, "log");
  if (cols == 0) return info.Env().Undefined();
  ParallelFor(rows, RowGrain(cols), [&](int64_t begin, int64_t end) {
    SoftmaxRows(end - begin, cols, x + begin * cols, y + begin * cols, log);
  });
  return info.Env().Undefined();
}

Napi::Value SoftmaxBackward(const Napi::CallbackInfo& info) {
  int64_t rows = GetCount(info, 0, "rows");
  int64_t cols = GetCount(info, 1, "cols");
  const int64_t numel = CountProduct(info, rows, cols, "rows * cols");
  const float* y = OperandAt<float>(info, 2, "y", "yOff", numel);
  const float* dy = OperandAt<float>(info, 4, "dy", "dyOff", numel);
  float* dx = OperandAt<float>(info, 6, "dx", "dxOff", numel);
  const bool log = GetBool(info, 8, "log");
  if (cols == 0) return info.Env().Undefined();
  ParallelFor(rows, RowGrain(cols), [&](int64_t begin, int64_t end) {
    SoftmaxBackwardRows(end - begin, cols, y + begin * cols, dy + begin * cols, dx + begin * cols, log);
  });
  return info.Env().Undefined();
}

Napi::Value MaskedSoftmaxForward(const Napi::CallbackInfo& info) {
  int64_t B = GetCount(info, 0, "B");
  int64_t H = GetCount(info, 1, "H");
  int64_t S = GetCount(info, 2, "S");
  int64_t T = GetCount(info, 3, "T");
  const int64_t rows_per_batch = CountProduct(info, H, S, "H * S");
  const int64_t rows = CountProduct(info, B, rows_per_batch, "B * H * S");
  const int64_t numel = CountProduct(info, rows, T, "B * H * S * T");
  const float* s = OperandAt<float>(info, 4, "scores", "sOff", numel);
  const float scale = static_cast<float>(GetNumber(info, 6, "scale"));
  const float* mask = nullptr;
  if (!NoneGiven(info, 7))
    mask = OperandAt<float>(info, 7, "mask", "maskOff", CountProduct(info, B, T, "B * T"));
  float* y = OperandAt<float>(info, 9, "y", "yOff", numel);
  if (T == 0) return info.Env().Undefined();
  ParallelFor(rows, RowGrain(T), [&](int64_t begin, int64_t end) {
    MaskedSoftmaxRows(begin, end - begin, rows_per_batch, T, s, scale, mask, y);
  });
  return info.Env().Undefined();
}

}  // namespace

void RegisterSoftmax(Napi::Env env, Napi::Object exports) {
  exports.Set("softmaxForward", Napi::Function::New(env, SoftmaxForward, "softmaxForward"));
  exports.Set("softmaxBackward", Napi::Function::New(env, SoftmaxBackward, "softmaxBackward"));
  exports.Set("maskedSoftmaxForward", Napi::Function::New(env, MaskedSoftmaxForward, "maskedSoftmaxForward"));
}

}  // namespace ft
