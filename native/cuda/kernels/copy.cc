// CUDA strided copies with dtype casts, and fills: native/cpu/copy.cc's contract and conversions (the half
// types' in device_common.h, the same bit arithmetic as common/dtype.h, so both backends agree to the bit).
// Same-dtype copies move raw bits; one kernel serves every dtype pair, its switches being uniform across a
// launch.
#include <napi.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "common/args.h"
#include "common/dtype.h"
#include "cuda/kernels/common.h"
#include "cuda/kernels/register.h"

namespace ft::cuda::kernels {
namespace {

constexpr char kSource[] = R"CUDA(
__device__ __forceinline__ bool IsFloatType(int dt) { return dt == DT_F32 || dt == DT_F16 || dt == DT_BF16; }

// Elements travel as their raw bits in the low bytes of a uint64, so one conversion serves the strided kernel
// (one element per load) and the contiguous one (four per load).
__device__ __forceinline__ float BitsToFloat(uint64 raw, int dt) {
  if (dt == DT_F32) return __uint_as_float((uint32)raw);
  if (dt == DT_F16) return F16ToF32((uint16)raw);
  return Bf16ToF32((uint16)raw);
}

__device__ __forceinline__ int64 BitsToInt(uint64 raw, int dt) {
  if (dt == DT_I64) return (int64)raw;
  if (dt == DT_I32) return (int32)(uint32)raw;
  return (uint8)raw;
}

// Float to integer truncates toward zero; NaN and out-of-range values give the minimum (x86's "integer
// indefinite", as the CPU backend and PyTorch on x86).
__device__ __forceinline__ uint64 FloatToBits(float v, int dt) {
  switch (dt) {
    case DT_F32: return __float_as_uint(v);
    case DT_F16: return F32ToF16(v);
    case DT_BF16: return F32ToBf16(v);
    case DT_I64:
      return v >= -9223372036854775808.0f && v < 9223372036854775808.0f ? (uint64)(int64)v : 0x8000000000000000ull;
    case DT_I32: return v >= -2147483648.0f && v < 2147483648.0f ? (uint32)(int32)v : 0x80000000u;
    default: return v != 0.0f;
  }
}

__device__ __forceinline__ uint64 IntToBits(int64 v, int dt) {
  switch (dt) {
    case DT_F32:
    case DT_F16:
    case DT_BF16: return FloatToBits(__ll2float_rn(v), dt);
    case DT_I64: return (uint64)v;
    case DT_I32: return (uint32)(int32)v;
    default: return v != 0;
  }
}

// Same-dtype copies move the bits unchanged.
__device__ __forceinline__ uint64 Convert(uint64 raw, int sdt, int ddt) {
  if (sdt == ddt) return raw;
  return IsFloatType(sdt) ? FloatToBits(BitsToFloat(raw, sdt), ddt) : IntToBits(BitsToInt(raw, sdt), ddt);
}

__device__ __forceinline__ uint64 LoadBits(const uint8* p, int size) {
  switch (size) {
    case 8: return *(const uint64*)p;
    case 4: return *(const uint32*)p;
    case 2: return *(const uint16*)p;
    default: return *p;
  }
}

__device__ __forceinline__ void StoreBits(uint8* p, int size, uint64 bits) {
  switch (size) {
    case 8: *(uint64*)p = bits; break;
    case 4: *(uint32*)p = (uint32)bits; break;
    case 2: *(uint16*)p = (uint16)bits; break;
    default: *p = (uint8)bits; break;
  }
}

struct alignas(16) Bytes16 {
  uint64 lo, hi;
};

// Four consecutive elements of `size` bytes at p, aligned to 4 * size bytes, in one access of up to 16 bytes
// (int64: two).
__device__ __forceinline__ void Load4(const uint8* p, int size, uint64 (&v)[4]) {
  if (size == 8) {
    const Bytes16 a = ((const Bytes16*)p)[0], b = ((const Bytes16*)p)[1];
    v[0] = a.lo, v[1] = a.hi, v[2] = b.lo, v[3] = b.hi;
  } else if (size == 4) {
    const Bytes16 a = *(const Bytes16*)p;
    v[0] = (uint32)a.lo, v[1] = a.lo >> 32, v[2] = (uint32)a.hi, v[3] = a.hi >> 32;
  } else {
    const uint64 a = size == 2 ? *(const uint64*)p : *(const uint32*)p;
    const int bits = 8 * size;
    const uint64 mask = (1ull << bits) - 1;
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = (a >> (j * bits)) & mask;
  }
}

__device__ __forceinline__ void Store4(uint8* p, int size, const uint64 (&v)[4]) {
  if (size == 8) {
    Bytes16 a, b;
    a.lo = v[0], a.hi = v[1], b.lo = v[2], b.hi = v[3];
    ((Bytes16*)p)[0] = a;
    ((Bytes16*)p)[1] = b;
  } else if (size == 4) {
    Bytes16 a;
    a.lo = v[0] | v[1] << 32, a.hi = v[2] | v[3] << 32;
    *(Bytes16*)p = a;
  } else {
    const int bits = 8 * size;
    const uint64 a = v[0] | v[1] << bits | v[2] << (2 * bits) | v[3] << (3 * bits);
    if (size == 2) *(uint64*)p = a; else *(uint32*)p = (uint32)a;
  }
}

__device__ __forceinline__ int ItemSize(int dt) {
  return dt == DT_I64 ? 8 : (dt == DT_F32 || dt == DT_I32) ? 4 : (dt == DT_BOOL ? 1 : 2);
}

// Four consecutive elements, aligned to four elements at both ends.
__device__ __forceinline__ void CopyFour(const uint8* s, int sdt, int ss, uint8* d, int ddt, int ds) {
  uint64 v[4];
  Load4(s, ss, v);
#pragma unroll
  for (int j = 0; j < 4; ++j) v[j] = Convert(v[j], sdt, ddt);
  Store4(d, ds, v);
}

// With `vector` the layouts count in groups of four elements (the host divided the innermost dimension, of
// unit stride in both views, by four), so a thread splits one index for four elements and moves them in one
// access each way.
extern "C" __global__ void ft_copy(Layout sl, Layout dl, int64 n, const uint8* src, int sdt, uint8* dst, int ddt,
                                   int vector) {
  AwaitPriorGrid();
  const int ss = ItemSize(sdt), ds = ItemSize(ddt);
  for (int64 i = GlobalThread(); i < n; i += GridThreads()) {
    int64 so, dof, unused0, unused1;
    StridedOffsets(sl, dl, sl, sl, i, so, dof, unused0, unused1);
    if (vector) CopyFour(src + 4 * so * ss, sdt, ss, dst + 4 * dof * ds, ddt, ds);
    else StoreBits(dst + dof * ds, ds, Convert(LoadBits(src + so * ss, ss), sdt, ddt));
  }
}

// Both views contiguous: with `vector` (both addresses aligned to four elements) a thread converts four
// elements per pass, the tail of n % 4 one at a time; without, every element alone.
extern "C" __global__ void ft_copy_contiguous(int64 n, const uint8* src, int sdt, uint8* dst, int ddt, int vector) {
  AwaitPriorGrid();
  const int ss = ItemSize(sdt), ds = ItemSize(ddt);
  const int64 groups = vector ? n >> 2 : 0;
  for (int64 g = GlobalThread(); g < groups; g += GridThreads())
    CopyFour(src + 4 * g * ss, sdt, ss, dst + 4 * g * ds, ddt, ds);
  for (int64 i = 4 * groups + GlobalThread(); i < n; i += GridThreads())
    StoreBits(dst + i * ds, ds, Convert(LoadBits(src + i * ss, ss), sdt, ddt));
}

// A list of contiguous float32 tensors (slot.data[0]) cast to slot.code (a 16-bit dtype, or DT_F32: copied) into
// slot.data[1], a block per FT_CHUNK elements of one tensor: several casts in one launch (packed_linear stacking its
// weights and its biases). A thread loads all its elements of the chunk before it stores any: one element at a
// time, each store held back the next load, and a bert-base layer's query, key and value weights took five times
// their bytes' time.
#define CAST_MANY_BATCH 16
extern "C" __global__ __launch_bounds__(FT_CHUNK / CAST_MANY_BATCH) void ft_cast_many(const Slot* slots,
                                                                                     const int64* first_block,
                                                                                     int count, int64 blocks) {
  AwaitPriorGrid();
  for (int64 b = blockIdx.x; b < blocks; b += gridDim.x) {
    int64 begin, end;
    const Slot& slot = ChunkOf(slots, first_block, count, b, begin, end);
    const float* src = (const float*)slot.data[0];
    float x[CAST_MANY_BATCH];
#pragma unroll
    for (int j = 0; j < CAST_MANY_BATCH; ++j) {
      const int64 k = begin + threadIdx.x + (int64)j * blockDim.x;
      x[j] = k < end ? src[k] : 0.0f;
    }
#pragma unroll
    for (int j = 0; j < CAST_MANY_BATCH; ++j) {
      const int64 k = begin + threadIdx.x + (int64)j * blockDim.x;
      if (k >= end) continue;
      if (slot.code == DT_F32) ((float*)slot.data[1])[k] = x[j];
      else ((uint16*)slot.data[1])[k] = F32ToLowp(x[j], slot.code);
    }
  }
}

// Writes `bits` (the value already in the dtype's representation) to every element of a view.
extern "C" __global__ void ft_fill(Layout l, int64 n, uint8* dst, int size, uint64 bits) {
  AwaitPriorGrid();
  for (int64 i = GlobalThread(); i < n; i += GridThreads()) {
    int64 o, unused0, unused1, unused2;
    StridedOffsets(l, l, l, l, i, o, unused0, unused1, unused2);
    StoreBits(dst + o * size, size, bits);
  }
}
)CUDA";

// ft_cast_many's CAST_MANY_BATCH.
constexpr int64_t kCastManyBatch = 16;

CUfunction Kernel(Napi::Env env, const char* name) {
  static const std::string source = ModuleSource(kSource);
  return GetKernel(env, "copy", source, name);
}

int GetDType(const Napi::CallbackInfo& info, int index, const char* name) {
  const int64_t dt = GetInt(info, index, name);
  if (dt < kF32 || dt > kBool)
    throw Napi::RangeError::New(info.Env(), ArgName(index, name) + " is not a dtype code (0..5)");
  return static_cast<int>(dt);
}

// The CPU's TruncateToInt for the fill value (a double): out of range and NaN give the minimum.
template <typename D>
D TruncateToInt(double v) {
  constexpr double kLimit = static_cast<double>(std::numeric_limits<D>::max()) + 1.0;
  return v >= -kLimit && v < kLimit ? static_cast<D>(v) : std::numeric_limits<D>::min();
}

// Whether a coalesced view splits into aligned groups of four consecutive elements: unit stride and a multiple
// of four elements innermost, every other stride a multiple of four, the address aligned to four elements.
bool InFours(const Layout& l, uint64_t address, size_t item_size) {
  const int last = l.rank - 1;
  if (l.strides[last] != 1 || l.shape[last] % 4 != 0 || address % (4 * item_size) != 0) return false;
  return std::all_of(l.strides, l.strides + last, [](int64_t stride) { return stride % 4 == 0; });
}

Napi::Value Copy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  const std::vector<int64_t> shape = GetIntArray(info, 0, "shape");
  const DeviceBuffer src = GetDeviceBuffer(info, 1, "src");
  int sdt = GetDType(info, 2, "srcDtype");
  const int64_t soff = GetInt(info, 3, "srcOff");
  const std::vector<int64_t> sstr = GetIntArray(info, 4, "srcStrides");
  const DeviceBuffer dst = GetDeviceBuffer(info, 5, "dst");
  int ddt = GetDType(info, 6, "dstDtype");
  const int64_t doff = GetInt(info, 7, "dstOff");
  const std::vector<int64_t> dstr = GetIntArray(info, 8, "dstStrides");
  uint64_t s = DeviceElementsBytes(info, src, soff, StridedExtent(info, shape, sstr, "src"), ItemSize(sdt), "src");
  uint64_t d = DeviceElementsBytes(info, dst, doff, StridedExtent(info, shape, dstr, "dst"), ItemSize(ddt), "dst");
  int64_t n = Numel(shape);
  if (n == 0) return env.Undefined();
  const auto layouts = Coalesce<2>(shape, {&sstr, &dstr});
  const bool contiguous = Contiguous(layouts);
  auto [sl, dl] = layouts;
  if (contiguous && sdt == ddt) {
    CopyDeviceToDevice(env, d, s, static_cast<size_t>(n) * ItemSize(sdt));
    return env.Undefined();
  }
  if (contiguous) {
    int vector = Aligned({{s, 4 * ItemSize(sdt)}, {d, 4 * ItemSize(ddt)}});
    void* args[] = {&n, &s, &sdt, &d, &ddt, &vector};
    Launch(env, Kernel(env, "ft_copy_contiguous"), ContiguousGrid(n, vector), Blocks(kThreads), 0, args);
    return env.Undefined();
  }
  int vector = InFours(sl, s, ItemSize(sdt)) && InFours(dl, d, ItemSize(ddt)) ? 1 : 0;
  if (vector) {
    for (Layout* l : {&sl, &dl}) {
      l->shape[l->rank - 1] /= 4;
      for (int k = 0; k < l->rank - 1; ++k) l->strides[k] /= 4;
    }
    n /= 4;
  }
  void* args[] = {&sl, &dl, &n, &s, &sdt, &d, &ddt, &vector};
  Launch(env, Kernel(env, "ft_copy"), GridFor(n), Blocks(kThreads), 0, args);
  return env.Undefined();
}

Napi::Value Fill(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  const std::vector<int64_t> shape = GetIntArray(info, 0, "shape");
  const DeviceBuffer dst = GetDeviceBuffer(info, 1, "dst");
  const int dt = GetDType(info, 2, "dtype");
  const int64_t off = GetInt(info, 3, "off");
  const std::vector<int64_t> strides = GetIntArray(info, 4, "strides");
  const double value = GetNumber(info, 5, "value");
  int size = static_cast<int>(ItemSize(dt));
  uint64_t d = DeviceElementsBytes(info, dst, off, StridedExtent(info, shape, strides, "dst"), size, "dst");
  int64_t n = Numel(shape);
  if (n == 0) return env.Undefined();
  // Integer fills take the JS number as is (exact up to 2^53), not through float.
  uint64_t bits = 0;
  switch (dt) {
    case kF32: {
      const float f = static_cast<float>(value);
      uint32_t u;
      std::memcpy(&u, &f, 4);
      bits = u;
      break;
    }
    case kF16: bits = F32ToF16(static_cast<float>(value)); break;
    case kBF16: bits = F32ToBf16(static_cast<float>(value)); break;
    case kI64: bits = static_cast<uint64_t>(TruncateToInt<int64_t>(value)); break;
    case kI32: bits = static_cast<uint32_t>(TruncateToInt<int32_t>(value)); break;
    default: bits = value != 0; break;
  }
  auto [l] = Coalesce<1>(shape, {&strides});
  void* args[] = {&l, &n, &d, &size, &bits};
  Launch(env, Kernel(env, "ft_fill"), GridFor(n), Blocks(kThreads), 0, args);
  return env.Undefined();
}

// castMany(bufs, offs, sizes, dsts, dstOffs, dtypes): bufs[i] (sizes[i] contiguous float32 elements from offs[i])
// into dsts[i] from dstOffs[i], rounded to dtypes[i] (float16 or bfloat16) or copied (float32), in one launch.
Napi::Value CastMany(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  TensorList list = GetList(info);
  const std::vector<DeviceBuffer> dsts = GetDeviceBufferList(info, 3, "dsts");
  const std::vector<int64_t> dst_offs = GetIntArray(info, 4, "dstOffs");
  const std::vector<int64_t> dtypes = GetIntArray(info, 5, "dtypes");
  CheckListLength(info, dsts.size(), list.slots.size(), 3, "dsts");
  CheckListLength(info, dst_offs.size(), list.slots.size(), 4, "dstOffs");
  CheckListLength(info, dtypes.size(), list.slots.size(), 5, "dtypes");
  for (size_t i = 0; i < list.slots.size(); ++i) {
    const std::string name = "dsts[" + std::to_string(i) + "]";
    const int64_t dtype = dtypes[i];
    if (dtype == kF32) {
      list.slots[i].data[1] = DeviceElements<float>(info, dsts[i], dst_offs[i], list.slots[i].size, name.c_str());
    } else if (dtype == kF16 || dtype == kBF16) {
      list.slots[i].data[1] = DeviceElements<uint16_t>(info, dsts[i], dst_offs[i], list.slots[i].size, name.c_str());
    } else {
      throw Napi::RangeError::New(env, ArgName(5, "dtypes") + " must hold float32, float16 or bfloat16");
    }
    list.slots[i].code = static_cast<int>(dtype);
  }
  int64_t blocks = list.blocks();
  if (blocks == 0) return env.Undefined();
  DeviceTensorList device(env, list);
  uint64_t slots_ptr = device.slots(), first_block = device.first_block();
  int count = device.count();
  void* args[] = {&slots_ptr, &first_block, &count, &blocks};
  // ft_cast_many's threads take kCastManyBatch elements each of a block's kChunk
  Launch(env, Kernel(env, "ft_cast_many"), RowGrid(blocks), Blocks(kChunk / kCastManyBatch), 0, args);
  return env.Undefined();
}

}  // namespace

void RegisterCopy(Napi::Env env, Napi::Object cuda) {
  cuda.Set("castMany", Napi::Function::New(env, CastMany, "castMany"));
  cuda.Set("copy", Napi::Function::New(env, Copy, "copy"));
  cuda.Set("fill", Napi::Function::New(env, Fill, "fill"));
}

}  // namespace ft::cuda::kernels
