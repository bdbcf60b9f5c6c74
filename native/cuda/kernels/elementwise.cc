// CUDA float32 elementwise kernels over strided views, native/cpu/elementwise.cc's contract: binary ops (a
// scalar operand is its own kernel), comparisons, unary ops and their gradients, where, and the fused bias +
// GELU. Every element is read before it is written by the same thread, so an output may alias an input exactly.
// The transcendental functions are the CPU's (device_common.h) except log, sqrt, pow, log1p and softplus's exp,
// which the CPU takes from libm and CUDA's own versions match within an ulp or two.
#include <napi.h>

#include <algorithm>
#include <initializer_list>
#include <utility>

#include "common/args.h"
#include "common/kernel_args.h"
#include "cuda/kernels/common.h"
#include "cuda/kernels/register.h"

namespace ft::cuda::kernels {
namespace {

enum BinaryOp { kAdd = 0, kSub, kMul, kDiv, kMax, kMin, kPow };
enum CompareOp { kEq = 0, kNe, kLt, kLe, kGt, kGe };
enum UnaryOp {
  kNeg = 0, kExp, kLog, kTanh, kRelu, kGeluErf, kGeluTanh, kSigmoid, kSqrt, kRsqrt,
  kAbs, kSquare, kReciprocal, kSoftplus, kLog1p, kPowScalar, kSign, kErf,
};
enum UnaryGradOp { kGradGeluErf = 0, kGradGeluTanh, kGradTanhFromOutput, kGradSigmoidFromOutput, kGradRelu };

// ft_bias_gelu's column index is an int; its grid's y dimension (rows) has the hardware's limit.
constexpr int64_t kMaxBiasGeluCols = int64_t{1} << 30;
constexpr int64_t kMaxGridY = 65535;

constexpr char kSource[] = R"CUDA(
__device__ __forceinline__ float BinaryOp(int op, float x, float y) {
  switch (op) {
    case 0: return x + y;
    case 1: return x - y;
    case 2: return x * y;
    case 3: return x / y;
    case 4: return NanMax(x, y);
    case 5: return NanMin(x, y);
    default: return powf(x, y);
  }
}

__device__ __forceinline__ uint8 CompareOp(int op, float x, float y) {
  switch (op) {
    case 0: return x == y;
    case 1: return x != y;
    case 2: return x < y;
    case 3: return x <= y;
    case 4: return x > y;
    default: return x >= y;
  }
}

__device__ __forceinline__ float UnaryOp(int op, float alpha, float x) {
  switch (op) {
    case 0: return -x;
    case 1: return Exp(x);
    case 2: return logf(x);
    case 3: return Tanh(x);
    case 4: return x < 0.0f ? 0.0f : x;  // NaN stays NaN
    case 5: return GeluErf(x);
    case 6: return GeluTanh(x);
    case 7: return Sigmoid(x);
    case 8: return sqrtf(x);
    case 9: return 1.0f / sqrtf(x);
    case 10: return fabsf(x);
    case 11: return x * x;
    case 12: return 1.0f / x;
    case 13: return x > 20.0f ? x : log1pf(expf(x));  // torch's softplus: beta 1, linear above threshold 20
    case 14: return log1pf(x);
    case 15: return alpha == 2.0f ? x * x : powf(x, alpha);
    case 16: return x != x ? x : (float)((0.0f < x) - (x < 0.0f));
    default: return Erf(x);
  }
}

// x is the forward's input (its output for tanh and sigmoid), dy the incoming gradient.
__device__ __forceinline__ float UnaryGradOp(int op, float x, float dy) {
  switch (op) {
    case 0: return dy * GeluErfGrad(x);
    case 1: return dy * GeluTanhGrad(x);
    case 2: return dy * (1.0f - x * x);
    case 3: return dy * (x * (1.0f - x));
    default: return x > 0.0f ? dy : 0.0f;
  }
}

// Four elements of T in one access (16 bytes for float).
template <typename T>
struct alignas(4 * sizeof(T)) Pack4 {
  T v[4];
};

template <typename Out, typename F, typename... In>
__device__ __forceinline__ void Apply4(F f, Out* out, Pack4<In>... in) {
  Pack4<Out> r;
#pragma unroll
  for (int j = 0; j < 4; ++j) r.v[j] = f(in.v[j]...);
  *(Pack4<Out>*)out = r;
}

// out[i] = f(in[i]...) over n contiguous elements. With `vector` (every address aligned to four elements) a
// thread takes four elements per pass, the tail of n % 4 one at a time; without, every element alone. Each
// pass reads all its inputs before it writes, so out may alias an input exactly.
template <typename Out, typename F, typename... In>
__device__ __forceinline__ void Map(int64 n, int vector, F f, Out* out, const In*... in) {
  const int64 groups = vector ? n >> 2 : 0;
  for (int64 g = GlobalThread(); g < groups; g += GridThreads()) Apply4(f, out + 4 * g, ((const Pack4<In>*)in)[g]...);
  for (int64 i = 4 * groups + GlobalThread(); i < n; i += GridThreads()) out[i] = f(in[i]...);
}

extern "C" __global__ void ft_binary(int op, Layout al, Layout bl, Layout ol, int64 n, const float* a,
                                     const float* b, float* out) {
  AwaitPriorGrid();
  for (int64 i = GlobalThread(); i < n; i += GridThreads()) {
    int64 ao, bo, oo, unused;
    StridedOffsets(al, bl, ol, ol, i, ao, bo, oo, unused);
    out[oo] = BinaryOp(op, a[ao], b[bo]);
  }
}

extern "C" __global__ void ft_binary_contiguous(int op, int64 n, const float* a, const float* b, float* out,
                                                int vector) {
  AwaitPriorGrid();
  Map(n, vector, [op](float x, float y) { return BinaryOp(op, x, y); }, out, a, b);
}

__device__ __forceinline__ float BinaryScalarOp(int op, float x, float scalar, int reverse) {
  return reverse ? BinaryOp(op, scalar, x) : BinaryOp(op, x, scalar);
}

extern "C" __global__ void ft_binary_scalar(int op, Layout al, Layout ol, int64 n, const float* a, float scalar,
                                            int reverse, float* out) {
  AwaitPriorGrid();
  for (int64 i = GlobalThread(); i < n; i += GridThreads()) {
    int64 ao, oo, unused0, unused1;
    StridedOffsets(al, ol, ol, ol, i, ao, oo, unused0, unused1);
    out[oo] = BinaryScalarOp(op, a[ao], scalar, reverse);
  }
}

extern "C" __global__ void ft_binary_scalar_contiguous(int op, int64 n, const float* a, float scalar, int reverse,
                                                       float* out, int vector) {
  AwaitPriorGrid();
  Map(n, vector, [=](float x) { return BinaryScalarOp(op, x, scalar, reverse); }, out, a);
}

extern "C" __global__ void ft_compare(int op, Layout al, Layout bl, Layout ol, int64 n, const float* a,
                                      const float* b, uint8* out) {
  AwaitPriorGrid();
  for (int64 i = GlobalThread(); i < n; i += GridThreads()) {
    int64 ao, bo, oo, unused;
    StridedOffsets(al, bl, ol, ol, i, ao, bo, oo, unused);
    out[oo] = CompareOp(op, a[ao], b[bo]);
  }
}

extern "C" __global__ void ft_compare_contiguous(int op, int64 n, const float* a, const float* b, uint8* out,
                                                 int vector) {
  AwaitPriorGrid();
  Map(n, vector, [op](float x, float y) { return CompareOp(op, x, y); }, out, a, b);
}

extern "C" __global__ void ft_unary(int op, float alpha, Layout al, Layout ol, int64 n, const float* a,
                                    float* out) {
  AwaitPriorGrid();
  for (int64 i = GlobalThread(); i < n; i += GridThreads()) {
    int64 ao, oo, unused0, unused1;
    StridedOffsets(al, ol, ol, ol, i, ao, oo, unused0, unused1);
    out[oo] = UnaryOp(op, alpha, a[ao]);
  }
}

extern "C" __global__ void ft_unary_contiguous(int op, float alpha, int64 n, const float* a, float* out,
                                               int vector) {
  AwaitPriorGrid();
  Map(n, vector, [=](float x) { return UnaryOp(op, alpha, x); }, out, a);
}

extern "C" __global__ void ft_unary_grad(int op, int64 n, const float* x, const float* dy, float* dx, int vector) {
  AwaitPriorGrid();
  Map(n, vector, [op](float xv, float dyv) { return UnaryGradOp(op, xv, dyv); }, dx, x, dy);
}

__device__ __forceinline__ float Where(uint8 c, float x, float y) { return c ? x : y; }

extern "C" __global__ void ft_where(Layout cl, Layout al, Layout bl, Layout ol, int64 n, const uint8* cond,
                                    const float* a, const float* b, float* out) {
  AwaitPriorGrid();
  for (int64 i = GlobalThread(); i < n; i += GridThreads()) {
    int64 co, ao, bo, oo;
    StridedOffsets(cl, al, bl, ol, i, co, ao, bo, oo);
    out[oo] = Where(cond[co], a[ao], b[bo]);
  }
}

extern "C" __global__ void ft_where_contiguous(int64 n, const uint8* cond, const float* a, const float* b,
                                               float* out, int vector) {
  AwaitPriorGrid();
  Map(n, vector, [](uint8 c, float x, float y) { return Where(c, x, y); }, out, cond, a, b);
}

// W consecutive floats in one access.
template <int W>
struct alignas(4 * W) Floats {
  float v[W];
};

template <int W>
__device__ __forceinline__ void StoreLowp(uint16* p, int dt, const Floats<W>& f) {
  if constexpr (W == 4) StoreLowp4(p, dt, f.v[0], f.v[1], f.v[2], f.v[3]);
  else p[0] = F32ToLowp(f.v[0], dt);
}

// h[r, c] += bias[c] in place (the backward needs it), y = gelu(h). Under autocast y_lowp (null for none)
// receives y rounded to the 16-bit dtype lowp_dt, for the next product to read (a linear_gelu whose operands are in
// autocast's dtype goes through ft_gelu_lowp instead). Thread x of the grid takes columns [W x, W x + W) (W = 4:
// cols a multiple of four, h, bias, y 16-byte and the copy 8-byte aligned) of rows blockIdx.y, blockIdx.y +
// gridDim.y, ...: its bias values are loaded once, and no index is divided (a 64-bit i % cols per element, a
// library call, was a tenth of the kernel's instructions).
template <int W>
__device__ __forceinline__ void BiasGeluColumns(int64 rows, int cols, float* h, const float* bias, float* y,
                                                uint16* y_lowp, int lowp_dt) {
  const int c = (int)(blockIdx.x * blockDim.x + threadIdx.x) * W;
  if (c >= cols) return;
  const Floats<W> b = *(const Floats<W>*)(bias + c);
  for (int64 r = blockIdx.y; r < rows; r += gridDim.y) {
    const int64 i = r * cols + c;
    Floats<W> v = *(const Floats<W>*)(h + i), o;
#pragma unroll
    for (int j = 0; j < W; ++j) {
      v.v[j] = v.v[j] + b.v[j];
      o.v[j] = GeluErf(v.v[j]);
    }
    *(Floats<W>*)(h + i) = v;
    *(Floats<W>*)(y + i) = o;
    if (y_lowp != 0) StoreLowp<W>(y_lowp + i, lowp_dt, o);
  }
}

extern "C" __global__ void ft_bias_gelu(int64 rows, int64 cols, float* h, const float* bias, float* y, int vector,
                                        uint16* y_lowp, int lowp_dt) {
  AwaitPriorGrid();
  if (vector) BiasGeluColumns<4>(rows, (int)cols, h, bias, y, y_lowp, lowp_dt);
  else BiasGeluColumns<1>(rows, (int)cols, h, bias, y, y_lowp, lowp_dt);
}

// table[i] = GELU(x) for the 16-bit value x of dtype dt with bits i, every i < 65536 (ft_gelu_lowp's lookups).
extern "C" __global__ void ft_gelu_table(int dt, float* table) {
  AwaitPriorGrid();
  for (int64 i = GlobalThread(); i < 65536; i += GridThreads()) table[i] = GeluErf(LowpToF32((uint16)i, dt));
}

// W 16-bit values in one access.
template <int W>
struct alignas(2 * W) Halves {
  uint16 v[W];
};

// y = GELU(pre) rounded to dt, for a 16-bit pre-activation of dtype dt (linear_gelu under autocast: its product and
// bias written in 16 bits by the GEMM; y in 16 bits as PyTorch's autocast has it, read by the next product). GELU is
// looked up by pre's bits in `table` (ft_gelu_table's), which evaluating erf and exp per element would take
// compute-bound, with `hot` (bfloat16, large n) mostly in the block's copy of the table's hot part (`hot_part`, which
// every block fills: the grid is a few blocks an SM); null table: computed, the same value. W = 4: n a multiple of
// four, pre and y 8-byte aligned. A thread loads FT_GELU_ROUNDS vectors before it looks any up, so that a grid of a
// few blocks an SM still has enough loads in flight.
#define FT_GELU_ROUNDS 4
template <int W>
__device__ __forceinline__ void GeluLowp(int64 n, const uint16* pre, int dt, const float* table, const float* hot_part,
                                         bool hot, uint16* y) {
  const int64 stride = GridThreads() * W;
  for (int64 i0 = GlobalThread() * W; i0 < n; i0 += stride * FT_GELU_ROUNDS) {
    Halves<W> h[FT_GELU_ROUNDS];
#pragma unroll
    for (int u = 0; u < FT_GELU_ROUNDS; ++u) {
      if (i0 + u * stride < n) h[u] = *(const Halves<W>*)(pre + i0 + u * stride);
    }
#pragma unroll
    for (int u = 0; u < FT_GELU_ROUNDS; ++u) {
      if (i0 + u * stride >= n) continue;
      Floats<W> o;
#pragma unroll
      for (int j = 0; j < W; ++j) {
        const uint16 bits = h[u].v[j];
        o.v[j] = hot ? HotLookup(hot_part, table, bits) : table != 0 ? table[bits] : GeluErf(LowpToF32(bits, dt));
      }
      StoreLowp<W>(y + i0 + u * stride, dt, o);
    }
  }
}

extern "C" __global__ void ft_gelu_lowp(int64 n, const uint16* pre, int dt, const float* table, int hot,
                                        uint16* y, int vector) {
  AwaitPriorGrid();
  __shared__ float hot_part[2 * FT_HOT_COUNT];
  if (hot) {
    LoadHotTable(hot_part, table);
    __syncthreads();
  }
  if (vector) GeluLowp<4>(n, pre, dt, table, hot_part, hot, y);
  else GeluLowp<1>(n, pre, dt, table, hot_part, hot, y);
}
)CUDA";

CUfunction Kernel(Napi::Env env, const char* name) {
  static const std::string source = ModuleSource(kSource);
  return GetKernel(env, "elementwise", source, name);
}

// binary and compare: out[i] = op(a[i], b[i]) over three views of one shape, out of type Out (float, or uint8 for
// the comparisons).
template <typename Out>
Napi::Value BinaryKernel(const Napi::CallbackInfo& info, int op_count, const char* strided_kernel,
                         const char* contiguous_kernel) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int op = GetOp(info, 0, "op", op_count);
  const std::vector<int64_t> shape = GetIntArray(info, 1, "shape");
  std::vector<int64_t> as, bs, os;
  uint64_t a = DeviceView(info, 2, "a", shape, &as);
  uint64_t b = DeviceView(info, 5, "b", shape, &bs);
  uint64_t o = DeviceView<Out>(info, 8, "out", shape, &os);
  int64_t n = Numel(shape);
  const auto layouts = Coalesce<3>(shape, {&as, &bs, &os});
  if (Contiguous(layouts)) {
    int vector = Aligned({{a, 16}, {b, 16}, {o, 4 * sizeof(Out)}});
    void* args[] = {&op, &n, &a, &b, &o, &vector};
    Launch(env, Kernel(env, contiguous_kernel), ContiguousGrid(n, vector), Blocks(kThreads), 0, args);
    return env.Undefined();
  }
  auto [al, bl, ol] = layouts;
  void* args[] = {&op, &al, &bl, &ol, &n, &a, &b, &o};
  Launch(env, Kernel(env, strided_kernel), GridFor(n), Blocks(kThreads), 0, args);
  return env.Undefined();
}

Napi::Value Binary(const Napi::CallbackInfo& info) {
  return BinaryKernel<float>(info, kPow + 1, "ft_binary", "ft_binary_contiguous");
}

Napi::Value BinaryScalar(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int op = GetOp(info, 0, "op", kPow + 1);
  const std::vector<int64_t> shape = GetIntArray(info, 1, "shape");
  std::vector<int64_t> as, os;
  uint64_t a = DeviceView(info, 2, "a", shape, &as);
  float scalar = static_cast<float>(GetNumber(info, 5, "scalar"));
  int reverse = GetBool(info, 6, "reverse") ? 1 : 0;
  uint64_t o = DeviceView(info, 7, "out", shape, &os);
  int64_t n = Numel(shape);
  const auto layouts = Coalesce<2>(shape, {&as, &os});
  if (Contiguous(layouts)) {
    int vector = Aligned({{a, 16}, {o, 16}});
    void* args[] = {&op, &n, &a, &scalar, &reverse, &o, &vector};
    Launch(env, Kernel(env, "ft_binary_scalar_contiguous"), ContiguousGrid(n, vector), Blocks(kThreads), 0, args);
    return env.Undefined();
  }
  auto [al, ol] = layouts;
  void* args[] = {&op, &al, &ol, &n, &a, &scalar, &reverse, &o};
  Launch(env, Kernel(env, "ft_binary_scalar"), GridFor(n), Blocks(kThreads), 0, args);
  return env.Undefined();
}

Napi::Value Compare(const Napi::CallbackInfo& info) {
  return BinaryKernel<uint8_t>(info, kGe + 1, "ft_compare", "ft_compare_contiguous");
}

Napi::Value Unary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int op = GetOp(info, 0, "op", kErf + 1);
  float alpha = static_cast<float>(GetNumber(info, 1, "alpha"));
  const std::vector<int64_t> shape = GetIntArray(info, 2, "shape");
  std::vector<int64_t> as, os;
  uint64_t a = DeviceView(info, 3, "a", shape, &as);
  uint64_t o = DeviceView(info, 6, "out", shape, &os);
  int64_t n = Numel(shape);
  const auto layouts = Coalesce<2>(shape, {&as, &os});
  if (Contiguous(layouts)) {
    int vector = Aligned({{a, 16}, {o, 16}});
    void* args[] = {&op, &alpha, &n, &a, &o, &vector};
    Launch(env, Kernel(env, "ft_unary_contiguous"), ContiguousGrid(n, vector), Blocks(kThreads), 0, args);
    return env.Undefined();
  }
  auto [al, ol] = layouts;
  void* args[] = {&op, &alpha, &al, &ol, &n, &a, &o};
  Launch(env, Kernel(env, "ft_unary"), GridFor(n), Blocks(kThreads), 0, args);
  return env.Undefined();
}

Napi::Value UnaryGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int op = GetOp(info, 0, "op", kGradRelu + 1);
  int64_t n = GetCount(info, 1, "n");
  uint64_t x = DeviceOperandAt<float>(info, 2, "x", "xOff", n);
  uint64_t dy = DeviceOperandAt<float>(info, 4, "dy", "dyOff", n);
  uint64_t dx = DeviceOperandAt<float>(info, 6, "dx", "dxOff", n);
  int vector = Aligned({{x, 16}, {dy, 16}, {dx, 16}});
  void* args[] = {&op, &n, &x, &dy, &dx, &vector};
  Launch(env, Kernel(env, "ft_unary_grad"), ContiguousGrid(n, vector), Blocks(kThreads), 0, args);
  return env.Undefined();
}

Napi::Value Where(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  const std::vector<int64_t> shape = GetIntArray(info, 0, "shape");
  std::vector<int64_t> cs, as, bs, os;
  uint64_t c = DeviceView<uint8_t>(info, 1, "cond", shape, &cs);
  uint64_t a = DeviceView(info, 4, "a", shape, &as);
  uint64_t b = DeviceView(info, 7, "b", shape, &bs);
  uint64_t o = DeviceView(info, 10, "out", shape, &os);
  int64_t n = Numel(shape);
  const auto layouts = Coalesce<4>(shape, {&cs, &as, &bs, &os});
  if (Contiguous(layouts)) {
    int vector = Aligned({{c, 4}, {a, 16}, {b, 16}, {o, 16}});
    void* args[] = {&n, &c, &a, &b, &o, &vector};
    Launch(env, Kernel(env, "ft_where_contiguous"), ContiguousGrid(n, vector), Blocks(kThreads), 0, args);
    return env.Undefined();
  }
  auto [cl, al, bl, ol] = layouts;
  void* args[] = {&cl, &al, &bl, &ol, &n, &c, &a, &b, &o};
  Launch(env, Kernel(env, "ft_where"), GridFor(n), Blocks(kThreads), 0, args);
  return env.Undefined();
}

Napi::Value BiasGelu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t rows = GetCount(info, 0, "rows");
  int64_t cols = GetCount(info, 1, "cols");
  const int64_t numel = CountProduct(info, rows, cols, "rows * cols");
  if (cols > kMaxBiasGeluCols) throw Napi::RangeError::New(env, "biasGelu: cols must be at most 2^30");
  uint64_t h = DeviceOperandAt<float>(info, 2, "h", "hOff", numel);
  uint64_t bias = DeviceOperandAt<float>(info, 4, "bias", "biasOff", cols);
  uint64_t y = DeviceOperandAt<float>(info, 6, "y", "yOff", numel);
  int lowp_dt = LowpDtypeAt(info, 8);
  uint64_t y_lowp = LowpOutputAt(info, 9, "yLowp", lowp_dt, numel);
  if (numel == 0) return env.Undefined();
  int vector = cols % 4 == 0 && Aligned({{h, 16}, {bias, 16}, {y, 16}, {y_lowp, 8}});
  // A thread per column group (four columns when vectorised), a block row per row, the rows beyond the grid's
  // limit looped over.
  const int64_t threads_x = vector ? cols / 4 : cols;
  const Dim3 block = RowThreads(threads_x, kThreads);
  Dim3 grid = Blocks((threads_x + block.x - 1) / block.x);
  grid.y = static_cast<unsigned>(std::min<int64_t>(rows, kMaxGridY));
  void* args[] = {&rows, &cols, &h, &bias, &y, &vector, &y_lowp, &lowp_dt};
  Launch(env, Kernel(env, "ft_bias_gelu"), grid, block, 0, args);
  return env.Undefined();
}

// ft_gelu_lowp takes the table's hot part from shared memory from this many elements on (BERT-base's intermediate
// layer has 1.5 M at 8 x 64 tokens), with this many blocks an SM at most.
constexpr int64_t kHotGeluElements = int64_t{1} << 20;
constexpr int64_t kHotGeluBlocksPerSm = 4;

// geluLowp(n, pre, preOff, dtype, y, yOff): y = GELU(pre) rounded to `dtype`, pre and y n 16-bit values of it.
Napi::Value GeluLowp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureContext(env);
  int64_t n = GetCount(info, 0, "n");
  uint64_t pre = DeviceOperandAt<uint16_t>(info, 1, "pre", "preOff", n);
  int dt = LowpDtypeAt(info, 3);
  if (dt < 0) throw Napi::TypeError::New(env, ArgName(3, "dtype") + " must be float16 or bfloat16");
  uint64_t y = DeviceOperandAt<uint16_t>(info, 4, "y", "yOff", n);
  if (n == 0) return env.Undefined();
  static LowpTables gelu;
  uint64_t table = LowpTable(env, gelu, dt, Kernel, "ft_gelu_table");
  int vector = n % 4 == 0 && Aligned({{pre, 8}, {y, 8}});
  // each block of a launch this large fills its copy of the hot part of the table: a few blocks an SM
  int hot = HotTablesEnabled() && dt == kBF16 && table != 0 && n >= kHotGeluElements;
  Dim3 grid = ContiguousGrid(n, vector);
  if (hot) grid = Blocks(std::min<int64_t>(grid.x, kHotGeluBlocksPerSm * Multiprocessors()));
  void* args[] = {&n, &pre, &dt, &table, &hot, &y, &vector};
  Launch(env, Kernel(env, "ft_gelu_lowp"), grid, Blocks(kThreads), 0, args);
  return env.Undefined();
}

}  // namespace

void RegisterElementwise(Napi::Env env, Napi::Object cuda) {
  cuda.Set("binary", Napi::Function::New(env, Binary, "binary"));
  cuda.Set("binaryScalar", Napi::Function::New(env, BinaryScalar, "binaryScalar"));
  cuda.Set("compare", Napi::Function::New(env, Compare, "compare"));
  cuda.Set("unary", Napi::Function::New(env, Unary, "unary"));
  cuda.Set("unaryGrad", Napi::Function::New(env, UnaryGrad, "unaryGrad"));
  cuda.Set("where", Napi::Function::New(env, Where, "where"));
  cuda.Set("biasGelu", Napi::Function::New(env, BiasGelu, "biasGelu"));
  cuda.Set("geluLowp", Napi::Function::New(env, GeluLowp, "geluLowp"));
}

}  // namespace ft::cuda::kernels
