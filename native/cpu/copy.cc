// Strided copies with dtype casts, and fills. Same-dtype copies move raw bits (exact for every dtype, NaN
// payloads included) and become memcpy where both sides are contiguous; casts go through float for the float
// dtypes and int64 for the integer ones, so int64 values survive int64 -> int64 / int32 exactly.

// No FMA contraction: GCC contracts its vector loop bodies but not always their epilogues, which would make
// results depend on where a thread's chunk starts. Explicitly rounded steps give the same bits everywhere.
#pragma GCC optimize("fp-contract=off")

#include <napi.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "binding/registry.h"
#include "common/args.h"
#include "common/dtype.h"
#include "cpu/strided.h"
#include "cpu/vec_math.h"

namespace ft {
namespace {

struct F16 { uint16_t bits; };
struct BF16 { uint16_t bits; };

template <typename T> constexpr bool kIsFloat = false;
template <> constexpr bool kIsFloat<float> = true;
template <> constexpr bool kIsFloat<F16> = true;
template <> constexpr bool kIsFloat<BF16> = true;

inline float ToFloat(float v) { return v; }
inline float ToFloat(F16 v) { return F16ToF32(v.bits); }
inline float ToFloat(BF16 v) { return Bf16ToF32(v.bits); }

// Truncation toward zero; NaN and out-of-range values give the x86 "integer indefinite" value, as PyTorch
// does on x86, instead of C++'s undefined behaviour.
template <typename D, typename F>
inline D TruncateToInt(F v) {
  constexpr F kLimit = static_cast<F>(std::numeric_limits<D>::max()) + F(1);
  return v >= -kLimit && v < kLimit ? static_cast<D>(v) : std::numeric_limits<D>::min();
}

template <typename D>
inline D FromFloat(float v) {
  if constexpr (std::is_same_v<D, float>) {
    return v;
  } else if constexpr (std::is_same_v<D, F16>) {
    return F16{F32ToF16(v)};
  } else if constexpr (std::is_same_v<D, BF16>) {
    return BF16{F32ToBf16(v)};
  } else if constexpr (std::is_same_v<D, uint8_t>) {
    return v != 0.0f;
  } else {
    return TruncateToInt<D>(v);
  }
}

template <typename S, typename D>
inline D Convert(S v) {
  if constexpr (kIsFloat<S>) {
    return FromFloat<D>(ToFloat(v));
  } else if constexpr (kIsFloat<D>) {
    return FromFloat<D>(static_cast<float>(v));
  } else if constexpr (std::is_same_v<D, uint8_t>) {
    return v != 0;
  } else {
    return static_cast<D>(v);
  }
}

template <typename S, typename D>
FT_VECTORIZE void CastRow(const S* src, int64_t ss, D* dst, int64_t ds, int64_t n) {
  if (ss == 1 && ds == 1) {
    for (int64_t i = 0; i < n; ++i) dst[i] = Convert<S, D>(src[i]);
  } else if (ss == 0) {
    D v = Convert<S, D>(src[0]);
    for (int64_t i = 0; i < n; ++i) dst[i * ds] = v;
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i * ds] = Convert<S, D>(src[i * ss]);
  }
}

template <typename T>
void RawRow(const T* src, int64_t ss, T* dst, int64_t ds, int64_t n) {
  if (ss == 1 && ds == 1) {
    std::memcpy(dst, src, n * sizeof(T));
  } else if (ss == 0) {
    for (int64_t i = 0; i < n; ++i) dst[i * ds] = src[0];
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i * ds] = src[i * ss];
  }
}

using RowFn = void (*)(const void* src, int64_t ss, void* dst, int64_t ds, int64_t n);

template <typename S, typename D>
void CastRowErased(const void* src, int64_t ss, void* dst, int64_t ds, int64_t n) {
  CastRow<S, D>(static_cast<const S*>(src), ss, static_cast<D*>(dst), ds, n);
}

template <typename T>
void RawRowErased(const void* src, int64_t ss, void* dst, int64_t ds, int64_t n) {
  RawRow<T>(static_cast<const T*>(src), ss, static_cast<T*>(dst), ds, n);
}

template <typename S>
RowFn CastTo(int dst) {
  switch (dst) {
    case kF32: return CastRowErased<S, float>;
    case kF16: return CastRowErased<S, F16>;
    case kBF16: return CastRowErased<S, BF16>;
    case kI64: return CastRowErased<S, int64_t>;
    case kI32: return CastRowErased<S, int32_t>;
    default: return CastRowErased<S, uint8_t>;
  }
}

RowFn PickRow(int src, int dst) {
  if (src == dst) {
    switch (ItemSize(src)) {
      case 8: return RawRowErased<uint64_t>;
      case 4: return RawRowErased<uint32_t>;
      case 2: return RawRowErased<uint16_t>;
      default: return RawRowErased<uint8_t>;
    }
  }
  switch (src) {
    case kF32: return CastTo<float>(dst);
    case kF16: return CastTo<F16>(dst);
    case kBF16: return CastTo<BF16>(dst);
    case kI64: return CastTo<int64_t>(dst);
    case kI32: return CastTo<int32_t>(dst);
    default: return CastTo<uint8_t>(dst);
  }
}

int GetDType(const Napi::CallbackInfo& info, int index, const char* name) {
  int64_t dt = GetInt(info, index, name);
  if (dt < kF32 || dt > kBool)
    throw Napi::RangeError::New(info.Env(), ArgName(index, name) + " is not a dtype code (0..5)");
  return static_cast<int>(dt);
}

// Bounds-checks a view of `extent` elements of dtype `dt` and returns its first element.
uint8_t* DTypeElements(const Napi::CallbackInfo& info, const Buffer& b, int dt, int64_t off, int64_t extent,
                       const char* name) {
  switch (dt) {
    case kF32: return reinterpret_cast<uint8_t*>(Elements<float>(info, b, off, extent, name));
    case kF16:
    case kBF16: return reinterpret_cast<uint8_t*>(Elements<uint16_t>(info, b, off, extent, name));
    case kI64: return reinterpret_cast<uint8_t*>(Elements<int64_t>(info, b, off, extent, name));
    case kI32: return reinterpret_cast<uint8_t*>(Elements<int32_t>(info, b, off, extent, name));
    default: return Elements<uint8_t>(info, b, off, extent, name);
  }
}

Napi::Value Copy(const Napi::CallbackInfo& info) {
  std::vector<int64_t> shape = GetIntArray(info, 0, "shape");
  Buffer src = GetBuffer(info, 1, "src");
  int sdt = GetDType(info, 2, "srcDtype");
  int64_t soff = GetInt(info, 3, "srcOff");
  std::vector<int64_t> sstr = GetIntArray(info, 4, "srcStrides");
  Buffer dst = GetBuffer(info, 5, "dst");
  int ddt = GetDType(info, 6, "dstDtype");
  int64_t doff = GetInt(info, 7, "dstOff");
  std::vector<int64_t> dstr = GetIntArray(info, 8, "dstStrides");
  uint8_t* s = DTypeElements(info, src, sdt, soff, StridedExtent(info, shape, sstr, "src"), "src");
  uint8_t* d = DTypeElements(info, dst, ddt, doff, StridedExtent(info, shape, dstr, "dst"), "dst");
  StridedLayout<2> l = Coalesce<2>(shape, {&sstr, &dstr});
  RowFn row = PickRow(sdt, ddt);
  const size_t ssz = ItemSize(sdt), dsz = ItemSize(ddt);
  const int64_t ss = l.strides[0][l.rank - 1], ds = l.strides[1][l.rank - 1];
  ForEachRow(l, [&](const int64_t* off, int64_t n) { row(s + off[0] * ssz, ss, d + off[1] * dsz, ds, n); });
  return info.Env().Undefined();
}

template <typename T>
FT_VECTORIZE void FillRow(T* dst, int64_t ds, int64_t n, T v) {
  if (ds == 1) {
    for (int64_t i = 0; i < n; ++i) dst[i] = v;
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i * ds] = v;
  }
}

template <typename T>
void FillView(const StridedLayout<1>& l, uint8_t* base, T v) {
  T* d = reinterpret_cast<T*>(base);
  const int64_t ds = l.strides[0][l.rank - 1];
  ForEachRow(l, [&](const int64_t* off, int64_t n) { FillRow<T>(d + off[0], ds, n, v); });
}

Napi::Value Fill(const Napi::CallbackInfo& info) {
  std::vector<int64_t> shape = GetIntArray(info, 0, "shape");
  Buffer dst = GetBuffer(info, 1, "dst");
  int dt = GetDType(info, 2, "dtype");
  int64_t off = GetInt(info, 3, "off");
  std::vector<int64_t> strides = GetIntArray(info, 4, "strides");
  double value = GetNumber(info, 5, "value");
  uint8_t* d = DTypeElements(info, dst, dt, off, StridedExtent(info, shape, strides, "dst"), "dst");
  StridedLayout<1> l = Coalesce<1>(shape, {&strides});
  // Integer fills take the JS number as is (exact up to 2^53), not through float.
  switch (dt) {
    case kF32: FillView<float>(l, d, static_cast<float>(value)); break;
    case kF16: FillView<uint16_t>(l, d, F32ToF16(static_cast<float>(value))); break;
    case kBF16: FillView<uint16_t>(l, d, F32ToBf16(static_cast<float>(value))); break;
    case kI64: FillView<int64_t>(l, d, TruncateToInt<int64_t>(value)); break;
    case kI32: FillView<int32_t>(l, d, TruncateToInt<int32_t>(value)); break;
    default: FillView<uint8_t>(l, d, value != 0); break;
  }
  return info.Env().Undefined();
}

}  // namespace

void RegisterCopy(Napi::Env env, Napi::Object exports) {
  exports.Set("copy", Napi::Function::New(env, Copy, "copy"));
  exports.Set("fill", Napi::Function::New(env, Fill, "fill"));
}

}  // namespace ft
