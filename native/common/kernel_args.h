// Argument decoding shared by several kernel families on top of args.h: op codes, element counts that are
// products of sizes (checked for overflow, which would otherwise defeat the bounds checks), and the buffer
// lists taken by the multi-tensor kernels (grad norm, clipping, optimizers).
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "common/args.h"
#include "common/dtype.h"

namespace ft {

inline int GetOp(const Napi::CallbackInfo& info, int index, const char* name, int count) {
  int64_t op = GetInt(info, index, name);
  if (op < 0 || op >= count)
    throw Napi::RangeError::New(info.Env(), ArgName(index, name) + " is not an op code (0.." +
                                                std::to_string(count - 1) + ")");
  return static_cast<int>(op);
}

// a * b for counts (>= 0), or a RangeError naming `what` when the product cannot be an element count.
inline int64_t CountProduct(const Napi::CallbackInfo& info, int64_t a, int64_t b, const char* what) {
  int64_t p;
  if (__builtin_mul_overflow(a, b, &p) || p > (int64_t{1} << 48))
    throw Napi::RangeError::New(info.Env(), std::string(what) + ": element count overflows");
  return p;
}

// A seed or counter offset of the random kernels: a JS number holding an integer in [0, 2^64).
inline uint64_t GetU64(const Napi::CallbackInfo& info, int index, const char* name) {
  const double d = GetNumber(info, index, name);
  if (!(d >= 0 && d < 18446744073709551616.0) || d != std::floor(d))
    throw Napi::RangeError::New(info.Env(), ArgName(index, name) + " must be an integer in [0, 2^64)");
  return static_cast<uint64_t>(d);
}

// A dropout probability as every dropout kernel (CPU, CUDA, fused attention) applies it, so all draw the same
// keep bits: an element is kept when its uniform is >= threshold, then multiplied by scale. p == 1 drops
// everything (torch returns zeros): no uniform reaches 2, and the scale is then unused.
struct DropoutScalars {
  float threshold;
  float scale;
};
inline DropoutScalars GetDropoutP(const Napi::CallbackInfo& info, int index, const char* name) {
  const double p = GetNumber(info, index, name);
  if (!(p >= 0 && p <= 1)) throw Napi::RangeError::New(info.Env(), ArgName(index, name) + " must be in [0, 1]");
  return DropoutScalars{p >= 1 ? 2.0f : static_cast<float>(p), p < 1 ? static_cast<float>(1.0 / (1.0 - p)) : 0.0f};
}

// The ArrayBuffers of an array argument. With `present`, entries may be null (an empty Buffer): present[i] says
// whether entry i is an ArrayBuffer.
inline std::vector<Buffer> GetBufferList(const Napi::CallbackInfo& info, int index, const char* name,
                                         std::vector<bool>* present = nullptr) {
  Napi::Value v = info[index];
  if (!v.IsArray()) throw Napi::TypeError::New(info.Env(), ArgName(index, name) + " must be an array of ArrayBuffers");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<Buffer> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a[i];
    if (present != nullptr) {
      present->push_back(!e.IsNull());
      if (!present->back()) continue;
    }
    if (!e.IsArrayBuffer())
      throw Napi::TypeError::New(info.Env(),
                                 ArgName(index, name) + "[" + std::to_string(i) + "] must be an ArrayBuffer");
    Napi::ArrayBuffer ab = e.As<Napi::ArrayBuffer>();
    out[i].data = static_cast<uint8_t*>(ab.Data());
    out[i].bytes = ab.ByteLength();
  }
  return out;
}

inline void CheckListLength(const Napi::CallbackInfo& info, size_t got, size_t want, int index, const char* name) {
  if (got != want)
    throw Napi::RangeError::New(info.Env(), ArgName(index, name) + " has " + std::to_string(got) +
                                                " entries, expected " + std::to_string(want));
}

// adamw's optional element offsets (empty when absent, for zeros): of the gradients (argument 13), since a
// parameter's gradient may be its rows of a packed gradient (packed_linear's), and of the 16-bit copies (argument
// 14), since a parameter's copy may be its rows of a packed copy (amp/autocast_weight.ts).
inline std::vector<int64_t> OptionalOffsets(const Napi::CallbackInfo& info, int index, const char* name, size_t count) {
  if (Omitted(info, index)) return {};
  std::vector<int64_t> offs = GetIntArray(info, index, name);
  CheckListLength(info, offs.size(), count, index, name);
  return offs;
}
inline std::vector<int64_t> GradOffsets(const Napi::CallbackInfo& info, size_t count) {
  return OptionalOffsets(info, 13, "gradOffs", count);
}
inline std::vector<int64_t> CopyOffsets(const Napi::CallbackInfo& info, size_t count) {
  return OptionalOffsets(info, 14, "copyOffs", count);
}

// The dtypes at argument `index` of the optional 16-bit copies an optimizer writes as it updates its parameters,
// one code per list entry, kF16 or kBF16 where present[i] (the others are not read).
inline std::vector<int> GetCopyDtypes(const Napi::CallbackInfo& info, int index, const std::vector<bool>& present) {
  const std::vector<int64_t> codes = GetIntArray(info, index, "copyDtypes");
  CheckListLength(info, codes.size(), present.size(), index, "copyDtypes");
  std::vector<int> out(codes.size(), kBF16);
  for (size_t i = 0; i < codes.size(); ++i) {
    if (!present[i]) continue;
    if (codes[i] != kF16 && codes[i] != kBF16)
      throw Napi::RangeError::New(info.Env(), ArgName(index, "copyDtypes") + "[" + std::to_string(i) +
                                                  "] must be float16 (1) or bfloat16 (2)");
    out[i] = static_cast<int>(codes[i]);
  }
  return out;
}

}  // namespace ft
