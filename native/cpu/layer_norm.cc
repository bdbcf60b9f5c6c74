// Layer norm over the last `cols` values of each row, forward and backward. Statistics accumulate in double
// (biased variance, rstd = 1 / sqrt(var + eps), as torch). The backward's dw / db are sums over rows: each
// fixed block of rows writes its own partial sums, which are then added in block order, so the result needs
// no locks and does not depend on the thread count.

// No FMA contraction: GCC contracts its vector loop bodies but not always their epilogues, which would make
// results depend on where a thread's chunk starts. Explicitly rounded steps give the same bits everywhere.
#pragma GCC optimize("fp-contract=off")

#include <napi.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "binding/registry.h"
#include "common/args.h"
#include "common/kernel_args.h"
#include "cpu/threadpool.h"
#include "cpu/vec_math.h"

namespace ft {
namespace {

constexpr int64_t kGrain = 32768;
constexpr int64_t kRowsPerBlock = 32;
constexpr int kLanes = 8;

FT_INLINE double RowSquaredDeviation(const float* x, int64_t n, double mean) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += (x[i + j] - mean) * (x[i + j] - mean);
  for (; i < n; ++i) acc[0] += (x[i] - mean) * (x[i] - mean);
  double s = 0;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

FT_VECTORIZE void ForwardRows(int64_t rows, int64_t n, const float* x, const float* w, const float* b, float eps,
                              float* y, float* mean, float* rstd) {
  for (int64_t r = 0; r < rows; ++r, x += n, y += n) {
    const double mu = SumRowDouble(x, n) / n;
    const double var = RowSquaredDeviation(x, n, mu) / n;
    const float m = static_cast<float>(mu);
    const float rs = static_cast<float>(1.0 / std::sqrt(var + eps));
    mean[r] = m;
    rstd[r] = rs;
    if (w != nullptr && b != nullptr) {
#pragma GCC ivdep
      for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) * rs * w[i] + b[i];
    } else if (w != nullptr) {
#pragma GCC ivdep
      for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) * rs * w[i];
    } else if (b != nullptr) {
#pragma GCC ivdep
      for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) * rs + b[i];
    } else {
#pragma GCC ivdep
      for (int64_t i = 0; i < n; ++i) y[i] = (x[i] - m) * rs;
    }
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w and xhat = (x - mean) * rstd; dw_part and
// db_part (when not null, zeroed) receive this block's sums of dy * xhat and dy. dx may alias dy: a row's dy
// is fully read before its dx is written.
FT_VECTORIZE void BackwardRows(int64_t rows, int64_t n, const float* x, const float* dy, const float* w,
                               const float* mean, const float* rstd, float* dx, float* dw_part, float* db_part) {
  for (int64_t r = 0; r < rows; ++r, x += n, dy += n, dx += n) {
    const float m = mean[r], rs = rstd[r];
    float sum_g[kLanes * 2] = {}, sum_gx[kLanes * 2] = {};
    int64_t i = 0;
    for (; i + kLanes * 2 <= n; i += kLanes * 2) {
      for (int j = 0; j < kLanes * 2; ++j) {
        const float g = w != nullptr ? dy[i + j] * w[i + j] : dy[i + j];
        sum_g[j] += g;
        sum_gx[j] += g * ((x[i + j] - m) * rs);
      }
    }
    for (; i < n; ++i) {
      const float g = w != nullptr ? dy[i] * w[i] : dy[i];
      sum_g[0] += g;
      sum_gx[0] += g * ((x[i] - m) * rs);
    }
    float a = 0, c = 0;
    for (int j = 0; j < kLanes * 2; ++j) {
      a += sum_g[j];
      c += sum_gx[j];
    }
    a /= static_cast<float>(n);
    c /= static_cast<float>(n);
    if (dw_part != nullptr) {
      for (int64_t k = 0; k < n; ++k) dw_part[k] += dy[k] * ((x[k] - m) * rs);
    }
    if (db_part != nullptr) {
      for (int64_t k = 0; k < n; ++k) db_part[k] += dy[k];
    }
    if (w != nullptr) {
#pragma GCC ivdep
      for (int64_t k = 0; k < n; ++k) dx[k] = (dy[k] * w[k] - a - (x[k] - m) * rs * c) * rs;
    } else {
#pragma GCC ivdep
      for (int64_t k = 0; k < n; ++k) dx[k] = (dy[k] - a - (x[k] - m) * rs * c) * rs;
    }
  }
}

// out[c] = sum over blocks of part[block * n + c], in block order.
FT_VECTORIZE void SumBlocks(const float* part, int64_t blocks, int64_t n, int64_t c0, int64_t c1, float* out) {
  for (int64_t c = c0; c < c1; ++c) {
    double s = 0;
    for (int64_t b = 0; b < blocks; ++b) s += part[b * n + c];
    out[c] = static_cast<float>(s);
  }
}

const float* OptionalFloats(const Napi::CallbackInfo& info, int index, const char* name, int64_t count) {
  if (NoneGiven(info, index)) return nullptr;
  return Elements<float>(info, GetBuffer(info, index, name), GetInt(info, index + 1, name), count, name);
}

float* OptionalOutput(const Napi::CallbackInfo& info, int index, const char* name, int64_t count) {
  if (NoneGiven(info, index)) return nullptr;
  return Elements<float>(info, GetBuffer(info, index, name), 0, count, name);
}

Napi::Value LayerNormForward(const Napi::CallbackInfo& info) {
  int64_t rows = GetCount(info, 0, "rows");
  int64_t cols = GetCount(info, 1, "cols");
  const int64_t numel = CountProduct(info, rows, cols, "rows * cols");
  const float* x = OperandAt<float>(info, 2, "x", "xOff", numel);
  const float* w = OptionalFloats(info, 4, "w", cols);
  const float* b = OptionalFloats(info, 6, "b", cols);
  const float eps = static_cast<float>(GetNumber(info, 8, "eps"));
  float* y = OperandAt<float>(info, 9, "y", "yOff", numel);
  float* mean = Elements<float>(info, GetBuffer(info, 11, "mean"), 0, rows, "mean");
  float* rstd = Elements<float>(info, GetBuffer(info, 12, "rstd"), 0, rows, "rstd");
  if (cols == 0) throw Napi::RangeError::New(info.Env(), "layerNormForward: cols must be > 0");
  ParallelFor(rows, std::max<int64_t>(1, kGrain / cols), [&](int64_t begin, int64_t end) {
    ForwardRows(end - begin, cols, x + begin * cols, w, b, eps, y + begin * cols, mean + begin, rstd + begin);
  });
  return info.Env().Undefined();
}

Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) {
  int64_t rows = GetCount(info, 0, "rows");
  int64_t cols = GetCount(info, 1, "cols");
  const int64_t numel = CountProduct(info, rows, cols, "rows * cols");
  const float* x = OperandAt<float>(info, 2, "x", "xOff", numel);
  const float* dy = OperandAt<float>(info, 4, "dy", "dyOff", numel);
  const float* w = OptionalFloats(info, 6, "w", cols);
  const float* mean = Elements<float>(info, GetBuffer(info, 8, "mean"), 0, rows, "mean");
  const float* rstd = Elements<float>(info, GetBuffer(info, 9, "rstd"), 0, rows, "rstd");
  float* dx = OperandAt<float>(info, 10, "dx", "dxOff", numel);
  float* dw = OptionalOutput(info, 12, "dw", cols);
  float* db = OptionalOutput(info, 13, "db", cols);
  if (cols == 0) throw Napi::RangeError::New(info.Env(), "layerNormBackward: cols must be > 0");
  const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  std::vector<float> dw_part(dw != nullptr ? blocks * cols : 0), db_part(db != nullptr ? blocks * cols : 0);
  ParallelFor(blocks, std::max<int64_t>(1, kGrain / (kRowsPerBlock * cols)), [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t r0 = blk * kRowsPerBlock, nr = std::min(kRowsPerBlock, rows - r0);
      BackwardRows(nr, cols, x + r0 * cols, dy + r0 * cols, w, mean + r0, rstd + r0, dx + r0 * cols,
                   dw != nullptr ? &dw_part[blk * cols] : nullptr, db != nullptr ? &db_part[blk * cols] : nullptr);
    }
  });
  for (auto [part, out] : {std::pair{&dw_part, dw}, std::pair{&db_part, db}}) {
    if (out == nullptr) continue;
    ParallelFor(cols, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, blocks)), [&](int64_t c0, int64_t c1) {
      SumBlocks(part->data(), blocks, cols, c0, c1, out);
    });
  }
  return info.Env().Undefined();
}

}  // namespace

void RegisterLayerNorm(Napi::Env env, Napi::Object exports) {
  exports.Set("layerNormForward", Napi::Function::New(env, LayerNormForward, "layerNormForward"));
  exports.Set("layerNormBackward", Napi::Function::New(env, LayerNormBackward, "layerNormBackward"));
}

}  // namespace ft
