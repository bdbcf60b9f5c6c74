// Device code shared by every kernel family, prepended to each family's source before NVRTC compiles it. NVRTC
// has no standard headers, so the fixed-width types are defined here. The float functions are the CPU's
// (native/cpu/vec_math.h) transcribed, and NVRTC compiles them without FMA contraction (runtime.cc), so both
// backends compute the same GELU, tanh, exp and erf; where the contract needs the CPU's exact bits (random
// numbers, AdamW) the kernels also round every step explicitly with the __f*_rn intrinsics.
#pragma once

#include "common/half_bits.h"

namespace ft::cuda::kernels {

inline constexpr const char kDeviceCommon[] = R"CUDA(
typedef signed char int8;
typedef unsigned char uint8;
typedef unsigned short uint16;
typedef int int32;
typedef unsigned int uint32;
typedef long long int64;
typedef unsigned long long uint64;

#define FT_INF __int_as_float(0x7f800000)
#define FT_NAN __int_as_float(0x7fc00000)

// dtype codes: common/dtype.h's. The half types' conversions are common/half_bits.h's, the host's own, so the
// casts (copy.cc) and the kernels that also write a 16-bit copy of their float32 result for autocast's products
// agree with the CPU's casts to the bit.
#define DT_F32 0
#define DT_F16 1
#define DT_BF16 2
#define DT_I64 3
#define DT_I32 4
#define DT_BOOL 5

)CUDA" FT_HALF_BITS_SOURCE(FT_HALF_BITS(__device__ __forceinline__, uint16, uint32)) R"CUDA(
__device__ __forceinline__ float Bf16ToF32(uint16 h) { return __uint_as_float(Bf16ToF32Bits(h)); }
__device__ __forceinline__ uint16 F32ToBf16(float f) { return F32BitsToBf16(__float_as_uint(f)); }
__device__ __forceinline__ float F16ToF32(uint16 h) { return __uint_as_float(F16ToF32Bits(h)); }
__device__ __forceinline__ uint16 F32ToF16(float f) { return F32BitsToF16(__float_as_uint(f)); }

// v rounded to the 16-bit dtype dt (DT_F16 or DT_BF16).
__device__ __forceinline__ uint16 F32ToLowp(float v, int dt) { return dt == DT_F16 ? F32ToF16(v) : F32ToBf16(v); }

__device__ __forceinline__ float LowpToF32(uint16 h, int dt) { return dt == DT_F16 ? F16ToF32(h) : Bf16ToF32(h); }

// Four values rounded to dt in one 8-byte store (p 8-byte aligned).
__device__ __forceinline__ void StoreLowp4(uint16* p, int dt, float a, float b, float c, float d) {
  *(uint64*)p = (uint64)F32ToLowp(a, dt) | (uint64)F32ToLowp(b, dt) << 16 | (uint64)F32ToLowp(c, dt) << 32 |
                (uint64)F32ToLowp(d, dt) << 48;
}

// Four floats loaded or stored in one 16-byte access.
struct __align__(16) Float4 {
  float v[4];
};

// Four bytes (dropout's keep bits) loaded or stored in one 4-byte access.
struct __align__(4) Bytes4 {
  uint8 v[4];
};

// The host's ft::cuda::Layout, member for member: a view's sizes and element strides.
struct Layout {
  int32 rank;
  int64 shape[8];
  int64 strides[8];
};

// Element offsets of flat index i in up to four views of one shape (unused views pass the first again); the
// index is split once. Dimension 0 needs no division, so a coalesced contiguous view costs none.
__device__ __forceinline__ void StridedOffsets(const Layout& a, const Layout& b, const Layout& c, const Layout& d,
                                               int64 i, int64& oa, int64& ob, int64& oc, int64& od) {
  oa = ob = oc = od = 0;
#pragma unroll
  for (int k = 7; k >= 1; --k) {
    if (k < a.rank) {
      const int64 q = i / a.shape[k], r = i - q * a.shape[k];
      i = q;
      oa += r * a.strides[k];
      ob += r * b.strides[k];
      oc += r * c.strides[k];
      od += r * d.strides[k];
    }
  }
  oa += i * a.strides[0];
  ob += i * b.strides[0];
  oc += i * c.strides[0];
  od += i * d.strides[0];
}

__device__ __forceinline__ int64 GlobalThread() { return (int64)blockIdx.x * blockDim.x + threadIdx.x; }

// A capture-time index check's record (graphs.cc), { state, position, value }: the first thread to find a bad index
// (not necessarily the lowest position) claims it and writes the rest; state stays set until the host reads and
// clears it.
__device__ __forceinline__ void RecordBadIndex(int64* record, int64 position, int64 value) {
  if (atomicCAS((uint64*)record, 0ull, 1ull) == 0ull) {
    record[1] = position;
    record[2] = value;
  }
}
__device__ __forceinline__ int64 GridThreads() { return (int64)gridDim.x * blockDim.x; }

// Every kernel's first statement. The host may launch a kernel while the one before it in the stream is still
// running (programmatic dependent launch, runtime.cc's Launch): this waits until that grid has finished and its
// writes are visible, so nothing a kernel does can overtake the work queued before it. Without programmatic launch
// it is a no-op. No kernel lets the next one start early (griddepcontrol.launch_dependents): the next grid then
// launches as this one's blocks exit, so its blocks never sit waiting on SMs this one could still use. Letting it
// start from the first statement on made an H100's replayed bf16 BERT update slower (README).
__device__ __forceinline__ void AwaitPriorGrid() {
#if defined(FTEMU_GRID_DEPENDENCY)
  FTEMU_GRID_DEPENDENCY();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// torch.maximum / torch.minimum: NaN wins.
__device__ __forceinline__ float NanMax(float a, float b) { return (a != a || a > b) ? a : b; }
__device__ __forceinline__ float NanMin(float a, float b) { return (a != a || a < b) ? a : b; }

// Cephes expf, as the CPU's Exp: clamped so 2^n splits into two finite halves, NaN passes through.
__device__ __forceinline__ float Exp(float x) {
  x = x > 88.8f ? 88.8f : x;
  x = x < -104.0f ? -104.0f : x;
  const float kRound = 12582912.0f;
  float t = x * 1.44269504088896341f + kRound;
  float n = t - kRound;
  uint32 ni = __float_as_uint(t) - __float_as_uint(kRound);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  uint32 n1 = (uint32)((int32)ni >> 1);
  uint32 n2 = ni - n1;
  return y * __uint_as_float((n1 + 127u) << 23) * __uint_as_float((n2 + 127u) << 23);
}

__device__ __forceinline__ float Tanh(float x) {
  float z = fabsf(x);
  float s = x * x;
  float p = -5.70498872745e-3f;
  p = p * s + 2.06390887954e-2f;
  p = p * s - 5.37397155531e-2f;
  p = p * s + 1.33314422036e-1f;
  p = p * s - 3.33332819422e-1f;
  float small = p * s * x + x;
  float large = copysignf(1.0f - 2.0f / (Exp(2.0f * z) + 1.0f), x);
  return z < 0.625f ? small : large;
}

__device__ __forceinline__ float Sigmoid(float x) { return 1.0f / (1.0f + Exp(-x)); }

__device__ __forceinline__ float ErfSmall(float x) {
  float z = x * x;
  float r = 1.2837916613e-01f + z * (-3.2504209876e-01f + z * (-2.8481749818e-02f +
            z * (-5.7702702470e-03f + z * -2.3763017452e-05f)));
  float s = 1.0f + z * (3.9791721106e-01f + z * (6.5022252500e-02f + z * (5.0813062117e-03f +
            z * (1.3249473704e-04f + z * -3.9602282413e-06f))));
  return x + x * (r / s);
}

// erfc(a * k) for a >= 0 with k^2 = k2 exact; the exp(-a^2 k^2) factor is split so a^2 is never rounded.
__device__ __forceinline__ float ErfcScaled(float a, float k, float k2) {
  const float z = a * k;
  const float t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  const float ah = __uint_as_float(__float_as_uint(a) & 0xfffff000u);
  return t * Exp(-k2 * (ah * ah)) * Exp(p - k2 * ((a - ah) * (a + ah)));
}

__device__ __forceinline__ float Erf(float x) {
  const float z = fabsf(x);
  const float large = copysignf(1.0f - ErfcScaled(z, 1.0f, 1.0f), x);
  return z < 0.84375f ? ErfSmall(x) : large;
}

// 1 + erf(x / sqrt(2)) without cancellation for negative x.
__device__ __forceinline__ float OnePlusErfHalf(float x) {
  const float tail = ErfcScaled(fabsf(x), 0.70710678118654752f, 0.5f);
  const float u = x * 0.70710678118654752f;
  const float mid = 1.0f + ErfSmall(u);
  return fabsf(u) < 0.84375f ? mid : (x < 0.0f ? tail : 2.0f - tail);
}

#define FT_INV_SQRT_2PI 0.39894228040143268f
#define FT_SQRT_2_OVER_PI 0.79788456080286536f
#define FT_GELU_CUBIC 0.044715f

__device__ __forceinline__ float GeluErf(float x) { return 0.5f * x * OnePlusErfHalf(x); }

__device__ __forceinline__ float GeluErfGrad(float x) {
  return 0.5f * OnePlusErfHalf(x) + x * FT_INV_SQRT_2PI * Exp(-0.5f * x * x);
}

__device__ __forceinline__ float GeluTanh(float x) {
  return x / (1.0f + Exp(-2.0f * FT_SQRT_2_OVER_PI * (x + FT_GELU_CUBIC * x * x * x)));
}

__device__ __forceinline__ float GeluTanhGrad(float x) {
  const float x2 = x * x;
  const float s = 1.0f / (1.0f + Exp(-2.0f * FT_SQRT_2_OVER_PI * (x + FT_GELU_CUBIC * x2 * x)));
  return s + 2.0f * x * s * (1.0f - s) * FT_SQRT_2_OVER_PI * (1.0f + 3.0f * FT_GELU_CUBIC * x2);
}

// Block-wide reductions for blocks of at most 1024 threads: warp shuffles, then one value per warp through
// `scratch` (32 entries). Every thread gets the result; `scratch` may be reused after the call returns.
__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ double WarpSumDouble(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// The reduction of v over the whole block, returned to every thread: each warp reduces with WarpReduce, then
// the warps' results (through `scratch`, one slot per warp) are reduced again; `identity` fills the lanes past
// the last warp.
template <typename T, T (*WarpReduce)(T)>
__device__ __forceinline__ T BlockReduce(T v, T* scratch, T identity) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = WarpReduce(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : identity;
  return WarpReduce(v);
}

__device__ float BlockSum(float v, float* scratch) { return BlockReduce<float, WarpSum>(v, scratch, 0.0f); }

__device__ double BlockSumDouble(double v, double* scratch) {
  return BlockReduce<double, WarpSumDouble>(v, scratch, 0.0);
}

// The maximum ignoring NaN (fmaxf), as the CPU's row maxima with `x > acc ? x : acc`.
__device__ float BlockMax(float v, float* scratch) { return BlockReduce<float, WarpMax>(v, scratch, -FT_INF); }

// Sums across a launch's blocks without atomics on the values: each block writes its partial and takes a ticket,
// and the last to finish adds the partials in a fixed order, so the bits do not depend on which block is last.
// Whether this block is the last of `expected` to take a ticket from *ticket (which it then leaves at 0): after
// the block's writes, so that the last one sees everyone's. `last`: a flag in shared memory.
__device__ __forceinline__ bool LastToFinish(unsigned int* ticket, unsigned int expected, bool& last) {
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    last = atomicAdd(ticket, 1u) == expected - 1;
    if (last) *ticket = 0;
  }
  __syncthreads();
  if (last) __threadfence();
  return last;
}

// `count` partial rows of `cols` doubles (row i at p + i * cols, written by other blocks) added in row order per
// column into out (or, for the last level, rounded into sums); all of the block's threads, columns spread over
// them. A thread loads 8 rows before it adds them, so that their latencies overlap.
__device__ __forceinline__ void AddPartials(const double* p, int count, int cols, double* out, float* sums) {
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const volatile double* column = p + c;
    double s = column[0];
    for (int i0 = 1; i0 < count; i0 += 8) {
      double x[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) x[i] = i0 + i < count ? column[(int64)(i0 + i) * cols] : 0.0;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        if (i0 + i < count) s += x[i];
      }
    }
    if (out != 0) out[c] = s;
    else sums[c] = (float)s;
  }
}

// The hot part of a bfloat16 lookup table (a float per bit pattern: ft_gelu_table's, ft_gelu_grad_table's) in shared
// memory: the values of magnitude 2^-8 to 2^3, where a layer's pre-activations almost all lie, the positive ones
// first (11 KB; 2 * FT_HOT_COUNT floats). Looked up in global memory, a warp's 32 scattered loads cost L1 a wavefront
// per cache line they touch (up to 32), which can take longer than a kernel's own loads and stores; from shared
// memory, only their bank conflicts. Other values, and float16's (whose 10-bit mantissas would need eight times the
// entries), are looked up in the global table.
#define FT_HOT_FIRST 0x3B80u  // bfloat16's bits of 2^-8
#define FT_HOT_COUNT 1408     // 11 binades of 128 values

// The whole block calls it, then syncs.
__device__ __forceinline__ void LoadHotTable(float* hot, const float* table) {
  for (int i = threadIdx.x; i < 2 * FT_HOT_COUNT; i += blockDim.x)
    hot[i] = table[(i < FT_HOT_COUNT ? 0u : 0x8000u) | (FT_HOT_FIRST + i % FT_HOT_COUNT)];
}

__device__ __forceinline__ float HotLookup(const float* hot, const float* table, uint16 bits) {
  const uint32 m = (bits & 0x7fffu) - FT_HOT_FIRST;
  return m < FT_HOT_COUNT ? hot[(bits >> 15) * FT_HOT_COUNT + m] : table[bits];
}

struct Philox4 {
  uint32 x0, x1, x2, x3;
};

// Random123's Philox4x32 with 10 rounds, as the CPU's (native/cpu/random.cc): the random kernels and the
// dropout inside fused attention draw from it.
__device__ __forceinline__ Philox4 Philox(uint64 key, uint64 counter) {
  uint32 c0 = (uint32)counter, c1 = (uint32)(counter >> 32), c2 = 0, c3 = 0;
  uint32 k0 = (uint32)key, k1 = (uint32)(key >> 32);
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    const uint32 hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
    const uint32 hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
    const uint32 n0 = hi1 ^ c1 ^ k0;
    const uint32 n2 = hi0 ^ c3 ^ k1;
    c1 = lo1;
    c3 = lo0;
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  Philox4 r;
  r.x0 = c0;
  r.x1 = c1;
  r.x2 = c2;
  r.x3 = c3;
  return r;
}

__device__ __forceinline__ uint32 Word(const Philox4& r, uint32 j) {
  return j == 0 ? r.x0 : j == 1 ? r.x1 : j == 2 ? r.x2 : r.x3;
}

// 24 random bits as a float in [0, 1) (exact: an integer below 2^24 times 2^-24).
__device__ __forceinline__ float UnitFloat(uint32 bits) { return (float)(bits >> 8) * (1.0f / 16777216.0f); }

// Dropout as every kernel that applies it (the random kernels, fused attention, dropout_add_layer_norm) and the
// CPU apply it: an element drawn as Philox word `word` is kept when its uniform is at least `threshold`
// (GetDropoutP's); its value is x * keep * scale rounded as torch's x * mask * scale (so a NaN or inf where dropped
// still propagates), and its gradient keep ? g * scale : 0, as where(mask, g * scale, 0).
__device__ __forceinline__ bool DropoutKeeps(uint32 word, float threshold) { return UnitFloat(word) >= threshold; }
__device__ __forceinline__ float DropoutValue(float x, bool keep, float scale) {
  return __fmul_rn(__fmul_rn(x, (float)keep), scale);
}
__device__ __forceinline__ float DropoutGrad(float g, bool keep, float scale) { return keep ? __fmul_rn(g, scale) : 0.0f; }

// The multi-tensor kernels (grad norm, clipping, AdamW) take one launch for a whole list: tensor t owns the
// blocks [first_block[t], first_block[t + 1]) and each block a chunk of FT_CHUNK elements of it.
#define FT_CHUNK 4096

// The host's kernels::Slot: one tensor of a list (AdamW: param, grad, exp_avg, exp_avg_sq, the param's 16-bit
// copy or 0), its scalar and its code (AdamW: the copy's dtype, DT_F16 or DT_BF16); AdamW's deferred rows: the
// step each row was last brought to (int32 a row) and the row length, 0 for none; row_flags (the clipping and
// AdamW's deferred rows, where the gradient's maker knew them): a byte a row of the gradient, 0 where the row is
// all zeros, or 0 for none.
struct Slot {
  uint64 data[5];
  int64 size;
  float scalar;
  int32 code;
  uint64 last_steps;
  int64 row_length;
  uint64 row_flags;
};

__device__ __forceinline__ int FindTensor(const int64* first_block, int count, int64 block) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (first_block[mid] <= block) lo = mid; else hi = mid - 1;
  }
  return lo;
}

// Block b of the list: its tensor's slot and element range.
__device__ __forceinline__ const Slot& ChunkOf(const Slot* slots, const int64* first_block, int count, int64 b,
                                               int64& begin, int64& end) {
  const int t = FindTensor(first_block, count, b);
  begin = (b - first_block[t]) * FT_CHUNK;
  end = min(slots[t].size, begin + FT_CHUNK);
  return slots[t];
}
)CUDA";

}  // namespace ft::cuda::kernels
