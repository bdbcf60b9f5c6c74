// The half types' conversions as integer arithmetic on float32 bits, written once for the host (common/dtype.h)
// and for the CUDA kernels (cuda/kernels/device_common.h hands NVRTC this text, FT_HALF_BITS_SOURCE), so that the
// two backends round to the bit alike: to nearest even, as PyTorch does; NaN stays NaN, float16 overflows to inf
// and underflows through its subnormals.
//
// FT_HALF_BITS(QUAL, U16, U32) defines the four functions with qualifiers QUAL (inline on the host,
// __device__ __forceinline__ in the kernels) over the 16- and 32-bit unsigned types U16 and U32. A macro, because
// NVRTC cannot include host headers: the kernels get its expansion as a string. No comments inside it: they would
// swallow the continued lines. In F32BitsToF16, 0x477ff000 (65520) and above round to inf; below 0x38800000
// (2^-14) the result is subnormal, of unit 2^-24, so the shift is 14 to 24; below 0x33000000 (2^-25) it is zero.
#pragma once

#define FT_HALF_BITS(QUAL, U16, U32)                                                        \
  QUAL U32 Bf16ToF32Bits(U16 h) { return (U32)h << 16; }                                    \
  QUAL U16 F32BitsToBf16(U32 bits) {                                                        \
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (U16)((bits >> 16) | 0x40);              \
    const U32 rounding = 0x7fffu + ((bits >> 16) & 1u);                                     \
    return (U16)((bits + rounding) >> 16);                                                  \
  }                                                                                         \
  QUAL U32 F16ToF32Bits(U16 h) {                                                            \
    const U32 sign = (U32)(h & 0x8000u) << 16;                                              \
    const U32 exp = (h >> 10) & 0x1fu;                                                      \
    U32 mant = h & 0x3ffu;                                                                  \
    if (exp == 0) {                                                                         \
      if (mant == 0) return sign;                                                           \
      int e = -1;                                                                           \
      do {                                                                                  \
        mant <<= 1;                                                                         \
        ++e;                                                                                \
      } while ((mant & 0x400u) == 0);                                                       \
      return sign | (U32)(127 - 15 - e) << 23 | (mant & 0x3ffu) << 13;                      \
    }                                                                                       \
    if (exp == 31) return sign | 0x7f800000u | mant << 13;                                  \
    return sign | (exp + 127 - 15) << 23 | mant << 13;                                      \
  }                                                                                         \
  QUAL U16 F32BitsToF16(U32 bits) {                                                         \
    const U32 sign = (bits >> 16) & 0x8000u;                                                \
    const U32 absBits = bits & 0x7fffffffu;                                                 \
    if (absBits > 0x7f800000u) return (U16)(sign | 0x7e00u);                                \
    if (absBits >= 0x477ff000u) return (U16)(sign | 0x7c00u);                               \
    if (absBits < 0x38800000u) {                                                            \
      if (absBits < 0x33000000u) return (U16)sign;                                          \
      const U32 exp = absBits >> 23;                                                        \
      const U32 mant = (absBits & 0x7fffffu) | 0x800000u;                                   \
      const U32 shift = 126 - exp;                                                          \
      U32 result = mant >> shift;                                                           \
      const U32 rem = mant & ((1u << shift) - 1);                                           \
      const U32 halfway = 1u << (shift - 1);                                                \
      if (rem > halfway || (rem == halfway && (result & 1u))) ++result;                     \
      return (U16)(sign | result);                                                          \
    }                                                                                       \
    const U32 rounded = absBits + 0xfffu + ((absBits >> 13) & 1u);                          \
    return (U16)(sign | ((rounded - 0x38000000u) >> 13));                                   \
  }

// FT_HALF_BITS(...)'s expansion as a string literal (the argument is expanded before it is stringified).
#define FT_HALF_BITS_SOURCE(...) FT_HALF_BITS_STRINGIFY(__VA_ARGS__)
#define FT_HALF_BITS_STRINGIFY(...) #__VA_ARGS__
