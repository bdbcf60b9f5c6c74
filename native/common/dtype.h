// Element types shared by the binding and the kernels. The numeric codes are part of the JS contract
// (src/backend/native.ts mirrors them).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/half_bits.h"

namespace ft {

enum DType : int { kF32 = 0, kF16 = 1, kBF16 = 2, kI64 = 3, kI32 = 4, kBool = 5 };

inline size_t ItemSize(int dt) {
  switch (dt) {
    case kF32: return 4;
    case kF16: return 2;
    case kBF16: return 2;
    case kI64: return 8;
    case kI32: return 4;
    case kBool: return 1;
    default: return 0;
  }
}

FT_HALF_BITS(inline, uint16_t, uint32_t)

inline uint32_t FloatBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}

inline float BitsFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline float Bf16ToF32(uint16_t h) { return BitsFloat(Bf16ToF32Bits(h)); }
inline uint16_t F32ToBf16(float f) { return F32BitsToBf16(FloatBits(f)); }
inline float F16ToF32(uint16_t h) { return BitsFloat(F16ToF32Bits(h)); }
inline uint16_t F32ToF16(float f) { return F32BitsToF16(FloatBits(f)); }

}  // namespace ft
