// Reductions over contiguous [outer, n, inner] views, argmax, and the multi-tensor grad-norm / clipping
// helpers. Sums accumulate in double. Work is split into fixed blocks whose partial results are combined in a
// fixed order, so results do not depend on the thread count.

// No FMA contraction: GCC contracts its vector loop bodies but not always their epilogues, which would make
// results depend on where a thread's chunk starts. Explicitly rounded steps give the same bits everywhere.
#pragma GCC optimize("fp-contract=off")

#include <napi.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "binding/registry.h"
#include "common/args.h"
#include "common/kernel_args.h"
#include "cpu/threadpool.h"
#include "cpu/vec_math.h"

namespace ft {
namespace {

enum ReduceOp { kSum = 0, kMax, kMin };

constexpr int64_t kGrain = 32768;
// Elements of one row reduced as one block: long rows (a whole-tensor sum) are split so they use every thread.
constexpr int64_t kRowBlock = 1 << 16;
// Inner columns handled together when reducing along a strided axis (a stack buffer of accumulators).
constexpr int64_t kInnerBlock = 256;
constexpr int kLanes = 16;

FT_INLINE float NanMax(float a, float b) { return (a != a || a > b) ? a : b; }
FT_INLINE float NanMin(float a, float b) { return (a != a || a < b) ? a : b; }

FT_VECTORIZE double SumRow(const float* x, int64_t n) { return SumRowDouble(x, n); }

FT_VECTORIZE double SumSquaresRow(const float* x, int64_t n) {
  double acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += static_cast<double>(x[i + j]) * x[i + j];
  for (; i < n; ++i) acc[0] += static_cast<double>(x[i]) * x[i];
  double s = 0;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

template <bool kIsMax>
FT_VECTORIZE float ExtremeRow(const float* x, int64_t n) {
  float acc[kLanes];
  for (int j = 0; j < kLanes; ++j) acc[j] = x[0];
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] = kIsMax ? NanMax(acc[j], x[i + j]) : NanMin(acc[j], x[i + j]);
  for (; i < n; ++i) acc[0] = kIsMax ? NanMax(acc[0], x[i]) : NanMin(acc[0], x[i]);
  float m = acc[0];
  for (int j = 1; j < kLanes; ++j) m = kIsMax ? NanMax(m, acc[j]) : NanMin(m, acc[j]);
  return m;
}

// dst[i] = op over k of src[k * inner + i] for i < cols (cols <= kInnerBlock).
FT_VECTORIZE void ReduceStrided(int op, const float* src, int64_t n, int64_t inner, int64_t cols, float* dst) {
  if (op == kSum) {
    double acc[kInnerBlock] = {};
    for (int64_t k = 0; k < n; ++k)
      for (int64_t i = 0; i < cols; ++i) acc[i] += src[k * inner + i];
    for (int64_t i = 0; i < cols; ++i) dst[i] = static_cast<float>(acc[i]);
    return;
  }
  float acc[kInnerBlock];
  for (int64_t i = 0; i < cols; ++i) acc[i] = src[i];
  for (int64_t k = 1; k < n; ++k)
    for (int64_t i = 0; i < cols; ++i)
      acc[i] = op == kMax ? NanMax(acc[i], src[k * inner + i]) : NanMin(acc[i], src[k * inner + i]);
  for (int64_t i = 0; i < cols; ++i) dst[i] = acc[i];
}

void ReduceRows(int op, int64_t outer, int64_t n, const float* src, float* dst) {
  const int64_t blocks = (n + kRowBlock - 1) / kRowBlock;
  std::vector<double> partial(outer * blocks);
  ParallelFor(outer * blocks, std::max<int64_t>(1, kGrain / std::min(n, kRowBlock)), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t o = t / blocks, k0 = (t % blocks) * kRowBlock;
      const float* x = src + o * n + k0;
      const int64_t len = std::min(kRowBlock, n - k0);
      partial[t] = op == kSum ? SumRow(x, len) : op == kMax ? ExtremeRow<true>(x, len) : ExtremeRow<false>(x, len);
    }
  });
  for (int64_t o = 0; o < outer; ++o) {
    const double* p = &partial[o * blocks];
    double r = p[0];
    for (int64_t b = 1; b < blocks; ++b) {
      if (op == kSum) {
        r += p[b];
      } else {
        const float x = static_cast<float>(r), y = static_cast<float>(p[b]);
        r = op == kMax ? NanMax(x, y) : NanMin(x, y);
      }
    }
    dst[o] = static_cast<float>(r);
  }
}

Napi::Value Reduce(const Napi::CallbackInfo& info) {
  int op = GetOp(info, 0, "op", kMin + 1);
  int64_t outer = GetCount(info, 1, "outer");
  int64_t n = GetCount(info, 2, "n");
  int64_t inner = GetCount(info, 3, "inner");
  const int64_t out_count = CountProduct(info, outer, inner, "outer * inner");
  const int64_t in_count = CountProduct(info, out_count, n, "outer * n * inner");
  const float* src = OperandAt<float>(info, 4, "src", "srcOff", in_count);
  float* dst = OperandAt<float>(info, 6, "dst", "dstOff", out_count);
  if (out_count == 0) return info.Env().Undefined();
  if (n == 0) {
    // Like torch: the empty sum is 0; max / min of nothing has no value.
    if (op != kSum) throw Napi::RangeError::New(info.Env(), "reduce: max/min over an empty dimension (n = 0)");
    std::fill(dst, dst + out_count, 0.0f);
    return info.Env().Undefined();
  }
  if (inner == 1) {
    ReduceRows(op, outer, n, src, dst);
    return info.Env().Undefined();
  }
  const int64_t col_blocks = (inner + kInnerBlock - 1) / kInnerBlock;
  ParallelFor(outer * col_blocks, std::max<int64_t>(1, kGrain / (n * std::min(inner, kInnerBlock))),
              [&](int64_t begin, int64_t end) {
                for (int64_t t = begin; t < end; ++t) {
                  const int64_t o = t / col_blocks, i0 = (t % col_blocks) * kInnerBlock;
                  ReduceStrided(op, src + o * n * inner + i0, n, inner, std::min(kInnerBlock, inner - i0),
                                dst + o * inner + i0);
                }
              });
  return info.Env().Undefined();
}

// torch.argmax: the first maximum, and NaN counts as the maximum.
Napi::Value Argmax(const Napi::CallbackInfo& info) {
  int64_t outer = GetCount(info, 0, "outer");
  int64_t n = GetCount(info, 1, "n");
  int64_t inner = GetCount(info, 2, "inner");
  const int64_t out_count = CountProduct(info, outer, inner, "outer * inner");
  const int64_t in_count = CountProduct(info, out_count, n, "outer * n * inner");
  const float* src = OperandAt<float>(info, 3, "src", "srcOff", in_count);
  int64_t* dst = OperandAt<int64_t>(info, 5, "dst", "dstOff", out_count);
  if (out_count == 0) return info.Env().Undefined();
  if (n == 0) throw Napi::RangeError::New(info.Env(), "argmax: empty dimension (n = 0)");
  ParallelFor(out_count, std::max<int64_t>(1, kGrain / n), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t o = t / inner, i = t % inner;
      const float* x = src + o * n * inner + i;
      float best = x[0];
      int64_t arg = 0;
      for (int64_t k = 1; k < n && best == best; ++k) {
        const float v = x[k * inner];
        if (v > best || v != v) {
          best = v;
          arg = k;
        }
      }
      dst[t] = arg;
    }
  });
  return info.Env().Undefined();
}

struct TensorList {
  std::vector<float*> data;
  std::vector<int64_t> sizes;
};

// bufs, offs and sizes at argument indices 0, 1, 2.
TensorList GetTensorList(const Napi::CallbackInfo& info) {
  std::vector<Buffer> bufs = GetBufferList(info, 0, "bufs");
  std::vector<int64_t> offs = GetIntArray(info, 1, "offs");
  std::vector<int64_t> sizes = GetIntArray(info, 2, "sizes");
  CheckListLength(info, offs.size(), bufs.size(), 1, "offs");
  CheckListLength(info, sizes.size(), bufs.size(), 2, "sizes");
  TensorList list;
  for (size_t i = 0; i < bufs.size(); ++i) {
    const std::string name = "bufs[" + std::to_string(i) + "]";
    list.data.push_back(Elements<float>(info, bufs[i], offs[i], sizes[i], name.c_str()));
  }
  list.sizes = std::move(sizes);
  return list;
}

Napi::Value SumSquares(const Napi::CallbackInfo& info) {
  TensorList list = GetTensorList(info);
  double total = 0;
  for (size_t t = 0; t < list.data.size(); ++t) {
    const float* x = list.data[t];
    const int64_t n = list.sizes[t], blocks = (n + kRowBlock - 1) / kRowBlock;
    std::vector<double> partial(blocks);
    ParallelFor(blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b)
        partial[b] = SumSquaresRow(x + b * kRowBlock, std::min(kRowBlock, n - b * kRowBlock));
    });
    for (double p : partial) total += p;
  }
  return Napi::Number::New(info.Env(), total);
}

FT_VECTORIZE void ScaleRange(float* x, int64_t n, float factor) {
  for (int64_t i = 0; i < n; ++i) x[i] *= factor;
}

Napi::Value ScaleMany(const Napi::CallbackInfo& info) {
  TensorList list = GetTensorList(info);
  const float factor = static_cast<float>(GetNumber(info, 3, "factor"));
  for (size_t t = 0; t < list.data.size(); ++t) {
    float* x = list.data[t];
    ParallelFor(list.sizes[t], kGrain, [&](int64_t begin, int64_t end) { ScaleRange(x + begin, end - begin, factor); });
  }
  return info.Env().Undefined();
}

}  // namespace

void RegisterReduce(Napi::Env env, Napi::Object exports) {
  exports.Set("reduce", Napi::Function::New(env, Reduce, "reduce"));
  exports.Set("argmax", Napi::Function::New(env, Argmax, "argmax"));
  exports.Set("sumSquares", Napi::Function::New(env, SumSquares, "sumSquares"));
  exports.Set("scaleMany", Napi::Function::New(env, ScaleMany, "scaleMany"));
}

}  // namespace ft
