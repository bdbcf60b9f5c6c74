// Argument decoding for the N-API layer. Every kernel entry point reads its arguments through these helpers, so
// buffer kinds, element counts and bounds are checked before a kernel touches memory; a failed check throws a
// JS TypeError/RangeError naming the argument.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/dtype.h"

namespace ft {

constexpr int kMaxRank = 8;
// Sizes and strides beyond 2^40 elements cannot belong to a real buffer; rejecting them keeps the
// extent arithmetic (at most 8 terms) far from int64 overflow.
constexpr int64_t kMaxDim = int64_t{1} << 40;

struct Buffer {
  uint8_t* data = nullptr;
  size_t bytes = 0;
};

inline std::string ArgName(int index, const char* name) {
  return std::string("argument ") + std::to_string(index) + " (" + name + ")";
}

inline Buffer GetBuffer(const Napi::CallbackInfo& info, int index, const char* name) {
  Napi::Value v = info[index];
  if (!v.IsArrayBuffer()) throw Napi::TypeError::New(info.Env(), ArgName(index, name) + " must be an ArrayBuffer");
  Napi::ArrayBuffer ab = v.As<Napi::ArrayBuffer>();
  Buffer b;
  b.data = static_cast<uint8_t*>(ab.Data());
  b.bytes = ab.ByteLength();
  if (b.data == nullptr && b.bytes == 0) {
    // A detached buffer is a tensor whose memory was released.
    b.data = nullptr;
  }
  return b;
}

inline double GetNumber(const Napi::CallbackInfo& info, int index, const char* name) {
  Napi::Value v = info[index];
  if (!v.IsNumber()) throw Napi::TypeError::New(info.Env(), ArgName(index, name) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

inline int64_t GetInt(const Napi::CallbackInfo& info, int index, const char* name) {
  double d = GetNumber(info, index, name);
  if (d != static_cast<double>(static_cast<int64_t>(d)))
    throw Napi::TypeError::New(info.Env(), ArgName(index, name) + " must be an integer");
  return static_cast<int64_t>(d);
}

inline int64_t GetCount(const Napi::CallbackInfo& info, int index, const char* name) {
  int64_t n = GetInt(info, index, name);
  if (n < 0) throw Napi::RangeError::New(info.Env(), ArgName(index, name) + " must be >= 0");
  return n;
}

inline bool GetBool(const Napi::CallbackInfo& info, int index, const char* name) {
  Napi::Value v = info[index];
  if (!v.IsBoolean()) throw Napi::TypeError::New(info.Env(), ArgName(index, name) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

// Whether an optional trailing argument was left out: past the arguments given, or undefined.
inline bool Omitted(const Napi::CallbackInfo& info, int index) {
  return info.Length() <= static_cast<size_t>(index) || info[index].IsUndefined();
}

// Whether an optional operand is none: left out, or null.
inline bool NoneGiven(const Napi::CallbackInfo& info, int index) { return Omitted(info, index) || info[index].IsNull(); }

// An optional trailing boolean: false where left out.
inline bool OptionalFlag(const Napi::CallbackInfo& info, int index, const char* name) {
  return !Omitted(info, index) && GetBool(info, index, name);
}

inline std::vector<int64_t> GetIntArray(const Napi::CallbackInfo& info, int index, const char* name) {
  Napi::Value v = info[index];
  if (!v.IsArray()) throw Napi::TypeError::New(info.Env(), ArgName(index, name) + " must be an array of integers");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int64_t> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a[i];
    if (!e.IsNumber()) throw Napi::TypeError::New(info.Env(), ArgName(index, name) + " must be an array of integers");
    out[i] = e.As<Napi::Number>().Int64Value();
  }
  return out;
}

// A typed view of part of an ArrayBuffer: element `offset` and the `extent` elements after it must lie inside.
template <typename T>
inline T* Elements(const Napi::CallbackInfo& info, const Buffer& b, int64_t offset, int64_t extent, const char* name) {
  constexpr int64_t kMaxElements = int64_t{1} << 48;  // keeps the arithmetic below far from overflow
  if (offset < 0 || extent < 0 || offset > kMaxElements || extent > kMaxElements ||
      static_cast<uint64_t>(offset + extent) * sizeof(T) > b.bytes) {
    throw Napi::RangeError::New(info.Env(), std::string(name) + ": " + std::to_string(extent) +
                                                " elements at offset " + std::to_string(offset) +
                                                " exceed the buffer of " + std::to_string(b.bytes / sizeof(T)) +
                                                " elements (released tensor?)");
  }
  if (reinterpret_cast<uintptr_t>(b.data) % alignof(T) != 0)
    throw Napi::RangeError::New(info.Env(), std::string(name) + ": buffer is not aligned for its element type");
  return reinterpret_cast<T*>(b.data) + offset;
}

// The operand at argument `index` whose element offset is argument index + 1, checked to hold `extent` elements.
template <typename T>
inline T* OperandAt(const Napi::CallbackInfo& info, int index, const char* name, const char* offset_name,
                    int64_t extent) {
  return Elements<T>(info, GetBuffer(info, index, name), GetInt(info, index + 1, offset_name), extent, name);
}

// Elements a strided view spans (from its first element); strides must be non-negative.
inline int64_t StridedExtent(const Napi::CallbackInfo& info, const std::vector<int64_t>& shape,
                             const std::vector<int64_t>& strides, const char* name) {
  if (shape.size() != strides.size() || shape.size() > static_cast<size_t>(kMaxRank))
    throw Napi::RangeError::New(info.Env(), std::string(name) + ": shape and strides must have the same rank (<= 8)");
  int64_t extent = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0 || strides[i] < 0)
      throw Napi::RangeError::New(info.Env(), std::string(name) + ": negative size or stride");
    if (shape[i] == 0) return 0;
    if (shape[i] > kMaxDim || strides[i] > kMaxDim)
      throw Napi::RangeError::New(info.Env(), std::string(name) + ": size or stride too large");
    extent += (shape[i] - 1) * strides[i];
  }
  return extent;
}

inline int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

}  // namespace ft
