// Float32 elementwise kernels over strided views: binary ops (a scalar operand is a stride-0 view), comparisons,
// unary ops and their gradients, where, and the fused bias + GELU of the BERT feed-forward block.
// Each row loop has a contiguous variant the compiler vectorises; `#pragma GCC ivdep` is sound there because
// element i is read before it is written and the output may only alias an input exactly.

// No FMA contraction: GCC contracts its vector loop bodies but not always their epilogues, which would make
// results depend on where a thread's chunk starts. Explicitly rounded steps give the same bits everywhere.
#pragma GCC optimize("fp-contract=off")

#include <napi.h>

#include <cmath>

#include "binding/registry.h"
#include "common/args.h"
#include "common/kernel_args.h"
#include "cpu/strided.h"
#include "cpu/threadpool.h"
#include "cpu/vec_math.h"

namespace ft {
namespace {

enum BinaryOp { kAdd = 0, kSub, kMul, kDiv, kMax, kMin, kPow };
enum CompareOp { kEq = 0, kNe, kLt, kLe, kGt, kGe };
enum UnaryOp {
  kNeg = 0, kExp, kLog, kTanh, kRelu, kGeluErf, kGeluTanh, kSigmoid, kSqrt, kRsqrt,
  kAbs, kSquare, kReciprocal, kSoftplus, kLog1p, kPowScalar, kSign, kErf,
};
enum UnaryGradOp { kGradGeluErf = 0, kGradGeluTanh, kGradTanhFromOutput, kGradSigmoidFromOutput, kGradRelu };

template <typename T, typename F>
FT_INLINE void Map1(const float* a, int64_t sa, T* o, int64_t so, int64_t n, F f) {
  if (sa == 1 && so == 1) {
#pragma GCC ivdep
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) o[i * so] = f(a[i * sa]);
  }
}

template <typename T, typename F>
FT_INLINE void Map2(const float* a, int64_t sa, const float* b, int64_t sb, T* o, int64_t so, int64_t n, F f) {
  if (sa == 1 && sb == 1 && so == 1) {
#pragma GCC ivdep
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
  } else if (sa == 1 && sb == 0 && so == 1) {
    const float bv = *b;
#pragma GCC ivdep
    for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], bv);
  } else if (sa == 0 && sb == 1 && so == 1) {
    const float av = *a;
#pragma GCC ivdep
    for (int64_t i = 0; i < n; ++i) o[i] = f(av, b[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) o[i * so] = f(a[i * sa], b[i * sb]);
  }
}

// torch.maximum / torch.minimum: NaN wins.
FT_INLINE float NanMax(float a, float b) { return (a != a || a > b) ? a : b; }
FT_INLINE float NanMin(float a, float b) { return (a != a || a < b) ? a : b; }

// An op's body as a lambda of x (and y), forced inline so that every case's loop vectorises.
#define UNARY(expr) [](float x) FT_INLINE_LAMBDA { return expr; }
#define BINARY(expr) [](float x, float y) FT_INLINE_LAMBDA { return expr; }

FT_VECTORIZE void BinaryRow(int op, const float* a, int64_t sa, const float* b, int64_t sb, float* o, int64_t so,
                            int64_t n) {
  switch (op) {
    case kAdd: Map2(a, sa, b, sb, o, so, n, BINARY(x + y)); break;
    case kSub: Map2(a, sa, b, sb, o, so, n, BINARY(x - y)); break;
    case kMul: Map2(a, sa, b, sb, o, so, n, BINARY(x * y)); break;
    case kDiv: Map2(a, sa, b, sb, o, so, n, BINARY(x / y)); break;
    case kMax: Map2(a, sa, b, sb, o, so, n, BINARY(NanMax(x, y))); break;
    case kMin: Map2(a, sa, b, sb, o, so, n, BINARY(NanMin(x, y))); break;
    default: Map2(a, sa, b, sb, o, so, n, BINARY(std::pow(x, y))); break;
  }
}

FT_VECTORIZE void CompareRow(int op, const float* a, int64_t sa, const float* b, int64_t sb, uint8_t* o, int64_t so,
                             int64_t n) {
  switch (op) {
    case kEq: Map2(a, sa, b, sb, o, so, n, BINARY(static_cast<uint8_t>(x == y))); break;
    case kNe: Map2(a, sa, b, sb, o, so, n, BINARY(static_cast<uint8_t>(x != y))); break;
    case kLt: Map2(a, sa, b, sb, o, so, n, BINARY(static_cast<uint8_t>(x < y))); break;
    case kLe: Map2(a, sa, b, sb, o, so, n, BINARY(static_cast<uint8_t>(x <= y))); break;
    case kGt: Map2(a, sa, b, sb, o, so, n, BINARY(static_cast<uint8_t>(x > y))); break;
    default: Map2(a, sa, b, sb, o, so, n, BINARY(static_cast<uint8_t>(x >= y))); break;
  }
}

FT_VECTORIZE void UnaryRow(int op, float alpha, const float* a, int64_t sa, float* o, int64_t so, int64_t n) {
  switch (op) {
    case kNeg: Map1(a, sa, o, so, n, UNARY(-x)); break;
    case kExp: Map1(a, sa, o, so, n, UNARY(Exp(x))); break;
    case kLog: Map1(a, sa, o, so, n, UNARY(std::log(x))); break;
    case kTanh: Map1(a, sa, o, so, n, UNARY(Tanh(x))); break;
    case kRelu: Map1(a, sa, o, so, n, UNARY(x < 0.0f ? 0.0f : x)); break;  // NaN stays NaN
    case kGeluErf: Map1(a, sa, o, so, n, UNARY(GeluErf(x))); break;
    case kGeluTanh: Map1(a, sa, o, so, n, UNARY(GeluTanh(x))); break;
    case kSigmoid: Map1(a, sa, o, so, n, UNARY(Sigmoid(x))); break;
    case kSqrt: Map1(a, sa, o, so, n, UNARY(std::sqrt(x))); break;
    case kRsqrt: Map1(a, sa, o, so, n, UNARY(1.0f / std::sqrt(x))); break;
    case kAbs: Map1(a, sa, o, so, n, UNARY(std::fabs(x))); break;
    case kSquare: Map1(a, sa, o, so, n, UNARY(x * x)); break;
    case kReciprocal: Map1(a, sa, o, so, n, UNARY(1.0f / x)); break;
    // torch.nn.functional.softplus with beta 1 and threshold 20: linear above the threshold.
    case kSoftplus: Map1(a, sa, o, so, n, UNARY(x > 20.0f ? x : std::log1p(std::exp(x)))); break;
    case kLog1p: Map1(a, sa, o, so, n, UNARY(std::log1p(x))); break;
    case kPowScalar:
      if (alpha == 2.0f) {
        Map1(a, sa, o, so, n, UNARY(x * x));
      } else {
        Map1(a, sa, o, so, n, [alpha](float x) FT_INLINE_LAMBDA { return std::pow(x, alpha); });
      }
      break;
    case kSign: Map1(a, sa, o, so, n, UNARY(x != x ? x : static_cast<float>((0.0f < x) - (x < 0.0f)))); break;
    default: Map1(a, sa, o, so, n, UNARY(Erf(x))); break;
  }
}

// x is the forward's input (or output, for tanh and sigmoid), y the incoming gradient.
FT_VECTORIZE void UnaryGradRange(int op, const float* x, const float* dy, float* dx, int64_t n) {
  switch (op) {
    case kGradGeluErf: Map2(x, 1, dy, 1, dx, 1, n, BINARY(y * GeluErfGrad(x))); break;
    case kGradGeluTanh: Map2(x, 1, dy, 1, dx, 1, n, BINARY(y * GeluTanhGrad(x))); break;
    case kGradTanhFromOutput: Map2(x, 1, dy, 1, dx, 1, n, BINARY(y * (1.0f - x * x))); break;
    case kGradSigmoidFromOutput: Map2(x, 1, dy, 1, dx, 1, n, BINARY(y * (x * (1.0f - x)))); break;
    default: Map2(x, 1, dy, 1, dx, 1, n, BINARY(x > 0.0f ? y : 0.0f)); break;
  }
}

#undef UNARY
#undef BINARY

FT_VECTORIZE void WhereRow(const uint8_t* c, int64_t sc, const float* a, int64_t sa, const float* b, int64_t sb,
                           float* o, int64_t so, int64_t n) {
  if (sc == 1 && sa == 1 && sb == 1 && so == 1) {
#pragma GCC ivdep
    for (int64_t i = 0; i < n; ++i) o[i] = c[i] ? a[i] : b[i];
  } else {
    for (int64_t i = 0; i < n; ++i) o[i * so] = c[i * sc] ? a[i * sa] : b[i * sb];
  }
}

FT_VECTORIZE void BiasGeluRows(int64_t rows, int64_t cols, float* h, const float* bias, float* y) {
  for (int64_t r = 0; r < rows; ++r, h += cols, y += cols) {
#pragma GCC ivdep
    for (int64_t c = 0; c < cols; ++c) {
      float v = h[c] + bias[c];
      h[c] = v;
      y[c] = GeluErf(v);
    }
  }
}

template <typename T = float>
T* ViewData(const Napi::CallbackInfo& info, int index, const char* name, const std::vector<int64_t>& shape,
            std::vector<int64_t>* strides) {
  Buffer b = GetBuffer(info, index, name);
  int64_t off = GetInt(info, index + 1, name);
  *strides = GetIntArray(info, index + 2, name);
  return Elements<T>(info, b, off, StridedExtent(info, shape, *strides, name), name);
}

Napi::Value Binary(const Napi::CallbackInfo& info) {
  int op = GetOp(info, 0, "op", kPow + 1);
  std::vector<int64_t> shape = GetIntArray(info, 1, "shape"), as, bs, os;
  const float* a = ViewData(info, 2, "a", shape, &as);
  const float* b = ViewData(info, 5, "b", shape, &bs);
  float* o = ViewData(info, 8, "out", shape, &os);
  StridedLayout<3> l = Coalesce<3>(shape, {&as, &bs, &os});
  const int r = l.rank - 1;
  ForEachRow(l, [&](const int64_t* off, int64_t n) {
    BinaryRow(op, a + off[0], l.strides[0][r], b + off[1], l.strides[1][r], o + off[2], l.strides[2][r], n);
  });
  return info.Env().Undefined();
}

Napi::Value BinaryScalar(const Napi::CallbackInfo& info) {
  int op = GetOp(info, 0, "op", kPow + 1);
  std::vector<int64_t> shape = GetIntArray(info, 1, "shape"), as, os;
  const float* a = ViewData(info, 2, "a", shape, &as);
  const float scalar = static_cast<float>(GetNumber(info, 5, "scalar"));
  const bool reverse = GetBool(info, 6, "reverse");
  float* o = ViewData(info, 7, "out", shape, &os);
  StridedLayout<2> l = Coalesce<2>(shape, {&as, &os});
  const int r = l.rank - 1;
  ForEachRow(l, [&](const int64_t* off, int64_t n) {
    if (reverse) {
      BinaryRow(op, &scalar, 0, a + off[0], l.strides[0][r], o + off[1], l.strides[1][r], n);
    } else {
      BinaryRow(op, a + off[0], l.strides[0][r], &scalar, 0, o + off[1], l.strides[1][r], n);
    }
  });
  return info.Env().Undefined();
}

Napi::Value Compare(const Napi::CallbackInfo& info) {
  int op = GetOp(info, 0, "op", kGe + 1);
  std::vector<int64_t> shape = GetIntArray(info, 1, "shape"), as, bs, os;
  const float* a = ViewData(info, 2, "a", shape, &as);
  const float* b = ViewData(info, 5, "b", shape, &bs);
  uint8_t* o = ViewData<uint8_t>(info, 8, "out", shape, &os);
  StridedLayout<3> l = Coalesce<3>(shape, {&as, &bs, &os});
  const int r = l.rank - 1;
  ForEachRow(l, [&](const int64_t* off, int64_t n) {
    CompareRow(op, a + off[0], l.strides[0][r], b + off[1], l.strides[1][r], o + off[2], l.strides[2][r], n);
  });
  return info.Env().Undefined();
}

Napi::Value Unary(const Napi::CallbackInfo& info) {
  int op = GetOp(info, 0, "op", kErf + 1);
  const float alpha = static_cast<float>(GetNumber(info, 1, "alpha"));
  std::vector<int64_t> shape = GetIntArray(info, 2, "shape"), as, os;
  const float* a = ViewData(info, 3, "a", shape, &as);
  float* o = ViewData(info, 6, "out", shape, &os);
  StridedLayout<2> l = Coalesce<2>(shape, {&as, &os});
  const int r = l.rank - 1;
  ForEachRow(l, [&](const int64_t* off, int64_t n) {
    UnaryRow(op, alpha, a + off[0], l.strides[0][r], o + off[1], l.strides[1][r], n);
  });
  return info.Env().Undefined();
}

Napi::Value UnaryGrad(const Napi::CallbackInfo& info) {
  int op = GetOp(info, 0, "op", kGradRelu + 1);
  int64_t n = GetCount(info, 1, "n");
  const float* x = OperandAt<float>(info, 2, "x", "xOff", n);
  const float* dy = OperandAt<float>(info, 4, "dy", "dyOff", n);
  float* dx = OperandAt<float>(info, 6, "dx", "dxOff", n);
  ParallelFor(n, kElementwiseGrain, [&](int64_t begin, int64_t end) {
    UnaryGradRange(op, x + begin, dy + begin, dx + begin, end - begin);
  });
  return info.Env().Undefined();
}

Napi::Value Where(const Napi::CallbackInfo& info) {
  std::vector<int64_t> shape = GetIntArray(info, 0, "shape"), cs, as, bs, os;
  const uint8_t* c = ViewData<uint8_t>(info, 1, "cond", shape, &cs);
  const float* a = ViewData(info, 4, "a", shape, &as);
  const float* b = ViewData(info, 7, "b", shape, &bs);
  float* o = ViewData(info, 10, "out", shape, &os);
  StridedLayout<4> l = Coalesce<4>(shape, {&cs, &as, &bs, &os});
  const int r = l.rank - 1;
  ForEachRow(l, [&](const int64_t* off, int64_t n) {
    WhereRow(c + off[0], l.strides[0][r], a + off[1], l.strides[1][r], b + off[2], l.strides[2][r], o + off[3],
             l.strides[3][r], n);
  });
  return info.Env().Undefined();
}

Napi::Value BiasGelu(const Napi::CallbackInfo& info) {
  int64_t rows = GetCount(info, 0, "rows");
  int64_t cols = GetCount(info, 1, "cols");
  const int64_t numel = CountProduct(info, rows, cols, "rows * cols");
  float* h = OperandAt<float>(info, 2, "h", "hOff", numel);
  const float* bias = OperandAt<float>(info, 4, "bias", "biasOff", cols);
  float* y = OperandAt<float>(info, 6, "y", "yOff", numel);
  if (cols == 0) return info.Env().Undefined();
  ParallelFor(rows, std::max<int64_t>(1, kElementwiseGrain / cols), [&](int64_t begin, int64_t end) {
    BiasGeluRows(end - begin, cols, h + begin * cols, bias, y + begin * cols);
  });
  return info.Env().Undefined();
}

}  // namespace

void RegisterElementwise(Napi::Env env, Napi::Object exports) {
  exports.Set("binary", Napi::Function::New(env, Binary, "binary"));
  exports.Set("binaryScalar", Napi::Function::New(env, BinaryScalar, "binaryScalar"));
  exports.Set("compare", Napi::Function::New(env, Compare, "compare"));
  exports.Set("unary", Napi::Function::New(env, Unary, "unary"));
  exports.Set("unaryGrad", Napi::Function::New(env, UnaryGrad, "unaryGrad"));
  exports.Set("where", Napi::Function::New(env, Where, "where"));
  exports.Set("biasGelu", Napi::Function::New(env, BiasGelu, "biasGelu"));
}

}  // namespace ft
