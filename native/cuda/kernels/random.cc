// CUDA counter-based random numbers: native/cpu/random.cc's scheme exactly, so a (seed, offset) pair gives the
// same numbers on both backends. Element e = offset + i takes word e % 4 of Philox4x32-10(seed, e / 4) (uniform,
// dropout; one thread per four-word block) or words 0 and 1 of Philox(seed, e) (normal). The float steps are
// rounded explicitly in the CPU's order, so uniform and dropout match it to the bit. normal's log and cos are
// computed in double and rounded to float: the correctly rounded value, which glibc's logf and cosf (under an
// ulp) return for all but rare inputs. Each kernel that draws adds *base to its counter offset when `base` is
// not null: in a CUDA graph, the graph's random base (graphs.cc), which moves every replay on to fresh numbers.
#include <napi.h>

#include <string>

#include "common/args.h"
#include "common/kernel_args.h"
#include "cuda/kernels/common.h"
#include "cuda/kernels/register.h"

namespace ft::cuda::kernels {
namespace {

constexpr char kSource[] = R"CUDA(
// Thread q handles the elements i in [0, n) with (first + i) / 4 == first / 4 + q: one Philox call each.
// Returns false when q is past the last such block.
__device__ __forceinline__ bool BlockRange(uint64 first, int64 n, int64 q, int64& i0, int64& i1) {
  const int64 lead = (int64)(first & 3);
  i0 = q == 0 ? 0 : 4 * q - lead;
  i1 = min(n, 4 * (q + 1) - lead);
  return i0 < n;
}

extern "C" __global__ void ft_uniform(int64 n, uint64 key, uint64 first, float low, float span, float* out,
                                      const uint64* base) {
  AwaitPriorGrid();
  if (base != nullptr) first += *base;
  const int64 groups = ((int64)(first & 3) + n + 3) / 4;
  for (int64 q = GlobalThread(); q < groups; q += GridThreads()) {
    int64 i0, i1;
    if (!BlockRange(first, n, q, i0, i1)) continue;
    const Philox4 r = Philox(key, (first + (uint64)i0) >> 2);
    for (int64 i = i0; i < i1; ++i) out[i] = __fadd_rn(low, __fmul_rn(span, UnitFloat(Word(r, (first + i) & 3))));
  }
}

// Box-Muller on two uniforms; u1 is in (0, 1] so the log is finite.
extern "C" __global__ void ft_normal(int64 n, uint64 key, uint64 counter, float mean, float stddev, float* out,
                                     const uint64* base) {
  AwaitPriorGrid();
  if (base != nullptr) counter += *base;
  for (int64 i = GlobalThread(); i < n; i += GridThreads()) {
    const Philox4 r = Philox(key, counter + (uint64)i);
    const float u1 = (float)((r.x0 >> 8) + 1) * (1.0f / 16777216.0f);
    const float u2 = UnitFloat(r.x1);
    const float radius = __fsqrt_rn(__fmul_rn(-2.0f, (float)log((double)u1)));
    const float c = (float)cos((double)__fmul_rn(6.28318530717958648f, u2));
    out[i] = __fadd_rn(mean, __fmul_rn(stddev, __fmul_rn(radius, c)));
  }
}

__device__ __forceinline__ bool AlignedTo(const void* p, uint64 bytes) { return (uint64)p % bytes == 0; }

// y = DropoutValue(x); with kResidual, + r[i] (dropout_add), rounded after the product as add(dropout(x), r)
// rounds it. Under autocast y_lowp (null for none) receives y rounded to the 16-bit dtype lowp_dt, for the next
// product to read (BERT's embeddings and its classifier's input). A whole block of four elements whose addresses
// allow it moves in one 16-byte load and store per operand (4 bytes of mask, 8 of the copy).
template <bool kResidual>
__device__ __forceinline__ void DropoutBlocks(int64 n, uint64 key, uint64 first, float p, float scale,
                                              const float* x, const float* r, float* y, uint8* mask,
                                              uint16* y_lowp, int lowp_dt, const uint64* base) {
  if (base != nullptr) first += *base;
  const int64 groups = ((int64)(first & 3) + n + 3) / 4;
  for (int64 q = GlobalThread(); q < groups; q += GridThreads()) {
    int64 i0, i1;
    if (!BlockRange(first, n, q, i0, i1)) continue;
    const Philox4 bits = Philox(key, (first + (uint64)i0) >> 2);
    if (i1 - i0 == 4 && AlignedTo(x + i0, 16) && AlignedTo(y + i0, 16) && AlignedTo(mask + i0, 4) &&
        (!kResidual || AlignedTo(r + i0, 16)) && (y_lowp == 0 || AlignedTo(y_lowp + i0, 8))) {
      const Float4 xv = *(const Float4*)(x + i0);
      Float4 yv;
      Bytes4 keep;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        keep.v[j] = DropoutKeeps(Word(bits, j), p);
        yv.v[j] = DropoutValue(xv.v[j], keep.v[j], scale);
      }
      if (kResidual) {
        const Float4 rv = *(const Float4*)(r + i0);
#pragma unroll
        for (int j = 0; j < 4; ++j) yv.v[j] = __fadd_rn(yv.v[j], rv.v[j]);
      }
      *(Float4*)(y + i0) = yv;
      *(Bytes4*)(mask + i0) = keep;
      if (y_lowp != 0) StoreLowp4(y_lowp + i0, lowp_dt, yv.v[0], yv.v[1], yv.v[2], yv.v[3]);
      continue;
    }
    for (int64 i = i0; i < i1; ++i) {
      const uint8 keep = DropoutKeeps(Word(bits, (first + i) & 3), p);
      mask[i] = keep;
      const float dropped = DropoutValue(x[i], keep, scale);
      y[i] = kResidual ? __fadd_rn(dropped, r[i]) : dropped;
      if (y_lowp != 0) y_lowp[i] = F32ToLowp(y[i], lowp_dt);
    }
  }
}

extern "C" __global__ void ft_dropout(int64 n, uint64 key, uint64 first, float p, float scale, const float* x,
                                      float* y, uint8* mask, uint16* y_lowp, int lowp_dt, const uint64* base) {
  AwaitPriorGrid();
  DropoutBlocks<false>(n, key, first, p, scale, x, x, y, mask, y_lowp, lowp_dt, base);
}

extern "C" __global__ void ft_dropout_add(int64 n, uint64 key, uint64 first, float p, float scale, const float* x,
                                          const float* r, float* y, uint8* mask, const uint64* base) {
  AwaitPriorGrid();
  DropoutBlocks<true>(n, key, first, p, scale, x, r, y, mask, nullptr, 0, base);
}

// dx = mask ? g * scale : 0: the backward of dropout and dropout_add, where(mask, g * scale, 0) to the bit. With
// `vector` (g and dx 16-byte, mask 4-byte aligned) a thread takes four elements per pass, the n % 4 tail one at
// a time.
extern "C" __global__ void ft_dropout_backward(int64 n, float scale, const float* g, const uint8* mask, float* dx,
                                               int vector) {
  AwaitPriorGrid();
  const int64 groups = vector ? n >> 2 : 0;
  for (int64 q = GlobalThread(); q < groups; q += GridThreads()) {
    const Float4 gv = ((const Float4*)g)[q];
    const Bytes4 keep = ((const Bytes4*)mask)[q];
    Float4 d;
#pragma unroll
    for (int j = 0; j < 4; ++j) d.v[j] = DropoutGrad(gv.v[j], keep.v[j], scale);
    ((Float4*)dx)[q] = d;
  }
  for (int64 i = 4 * groups + GlobalThread(); i < n; i += GridThreads()) {
    dx[i] = DropoutGrad(g[i], mask[i], scale);
  }
}
)CUDA";

CUfunction Kernel(Napi::Env env, const char* name) {
  static const std::string source = ModuleSource(kSource);
  return GetKernel(env, "random", source, name);
}

// Threads for the four-element blocks of [offset, offset + n).
int64_t Groups(uint64_t offset, int64_t n) { return (static_cast<int64_t>(offset & 3) + n + 3) / 4; }

Napi::Value Uniform(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t n = GetCount(info, 0, "n");
  uint64_t seed = GetU64(info, 1, "seed");
  uint64_t offset = GetU64(info, 2, "offset");
  float low = static_cast<float>(GetNumber(info, 3, "low"));
  const float high = static_cast<float>(GetNumber(info, 4, "high"));
  uint64_t out = DeviceOperandAt<float>(info, 5, "out", "outOff", n);
  if (n == 0) return env.Undefined();
  float span = high - low;
  uint64_t base = CaptureRandomBase(env);
  void* args[] = {&n, &seed, &offset, &low, &span, &out, &base};
  Launch(env, Kernel(env, "ft_uniform"), GridFor(Groups(offset, n)), Blocks(kThreads), 0, args);
  return env.Undefined();
}

Napi::Value Normal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t n = GetCount(info, 0, "n");
  uint64_t seed = GetU64(info, 1, "seed");
  uint64_t offset = GetU64(info, 2, "offset");
  float mean = static_cast<float>(GetNumber(info, 3, "mean"));
  float stddev = static_cast<float>(GetNumber(info, 4, "std"));
  uint64_t out = DeviceOperandAt<float>(info, 5, "out", "outOff", n);
  uint64_t base = CaptureRandomBase(env);
  void* args[] = {&n, &seed, &offset, &mean, &stddev, &out, &base};
  Launch(env, Kernel(env, "ft_normal"), GridFor(n), Blocks(kThreads), 0, args);
  return env.Undefined();
}

// dropout(n, seed, offset, p, x, xOff, y, yOff, mask); with kResidual, dropoutAdd takes (residual, residualOff)
// after x.
template <bool kResidual>
Napi::Value Dropout(const Napi::CallbackInfo& info) {
  constexpr int kY = kResidual ? 8 : 6;
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t n = GetCount(info, 0, "n");
  uint64_t seed = GetU64(info, 1, "seed");
  uint64_t offset = GetU64(info, 2, "offset");
  DropoutScalars p = GetDropoutP(info, 3, "p");
  uint64_t x = DeviceOperandAt<float>(info, 4, "x", "xOff", n);
  uint64_t r = kResidual ? DeviceOperandAt<float>(info, 6, "residual", "residualOff", n) : 0;
  uint64_t y = DeviceOperandAt<float>(info, kY, "y", "yOff", n);
  uint64_t mask = DeviceElements<uint8_t>(info, GetDeviceBuffer(info, kY + 2, "mask"), 0, n, "mask");
  // dropout only: the optional 16-bit copy of y (lowpDtype, yLowp)
  int lowp_dt = kResidual ? -1 : LowpDtypeAt(info, kY + 3);
  uint64_t y_lowp = kResidual ? 0 : LowpOutputAt(info, kY + 4, "yLowp", lowp_dt, n);
  if (n == 0) return env.Undefined();
  uint64_t base = CaptureRandomBase(env);
  const Dim3 grid = GridFor(Groups(offset, n));
  if (kResidual) {
    void* args[] = {&n, &seed, &offset, &p.threshold, &p.scale, &x, &r, &y, &mask, &base};
    Launch(env, Kernel(env, "ft_dropout_add"), grid, Blocks(kThreads), 0, args);
  } else {
    void* args[] = {&n, &seed, &offset, &p.threshold, &p.scale, &x, &y, &mask, &y_lowp, &lowp_dt, &base};
    Launch(env, Kernel(env, "ft_dropout"), grid, Blocks(kThreads), 0, args);
  }
  return env.Undefined();
}

Napi::Value DropoutBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t n = GetCount(info, 0, "n");
  float scale = static_cast<float>(GetNumber(info, 1, "scale"));
  uint64_t g = DeviceOperandAt<float>(info, 2, "g", "gOff", n);
  uint64_t mask = DeviceElements<uint8_t>(info, GetDeviceBuffer(info, 4, "mask"), 0, n, "mask");
  uint64_t dx = DeviceOperandAt<float>(info, 5, "dx", "dxOff", n);
  int vector = Aligned({{g, 16}, {mask, 4}, {dx, 16}});
  void* args[] = {&n, &scale, &g, &mask, &dx, &vector};
  Launch(env, Kernel(env, "ft_dropout_backward"), ContiguousGrid(n, vector), Blocks(kThreads), 0, args);
  return env.Undefined();
}

}  // namespace

void RegisterRandom(Napi::Env env, Napi::Object cuda) {
  cuda.Set("uniform", Napi::Function::New(env, Uniform, "uniform"));
  cuda.Set("normal", Napi::Function::New(env, Normal, "normal"));
  cuda.Set("dropout", Napi::Function::New(env, Dropout<false>, "dropout"));
  cuda.Set("dropoutAdd", Napi::Function::New(env, Dropout<true>, "dropoutAdd"));
  cuda.Set("dropoutBackward", Napi::Function::New(env, DropoutBackward, "dropoutBackward"));
}

}  // namespace ft::cuda::kernels
