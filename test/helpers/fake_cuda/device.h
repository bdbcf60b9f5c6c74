// The CUDA device built-ins on the CPU, for the fake NVRTC (nvrtc.cc): it compiles a kernel module with g++ as
// this header, the module's own source, then one FTEMU_KERNEL line per `extern "C" __global__` function.
//
// A launch runs its blocks one after another on the calling thread. Within a block every CUDA thread is a fiber
// with its own stack, so __syncthreads and warp shuffles are real barriers: a fiber runs until it waits at one,
// and a barrier opens when every live thread of the block (or warp) waits at it; threads that have returned
// count as arrived, as on the hardware. Between barriers the fibers run in thread order on even blocks and in
// reverse order on odd blocks, grids run forwards and backwards on alternate launches, and shared memory starts
// every block as NaNs, so a kernel that reads what another thread (or block) writes without a barrier between
// gives different results across blocks or launches instead of passing by luck. A block whose threads wait at
// barriers that cannot open together (a shuffle against a __syncthreads) fails the launch. Pointer arguments
// must point into the fake driver's device memory.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <setjmp.h>
#include <ucontext.h>

#include <atomic>
#include <bit>
#include <cstddef>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "half_bits.h"
#include "launch.h"

namespace ftemu {

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};

}  // namespace ftemu

// Fibers all run on the launching thread, so the built-in variables are plain globals the scheduler sets before
// it resumes a thread.
inline ftemu::uint3 threadIdx, blockIdx, blockDim, gridDim;
constexpr int warpSize = 32;

namespace ftemu {

enum class Wait { kNone, kBlock, kWarp, kDone };

struct Fiber {
  jmp_buf resume;
  void* stack = nullptr;
  uint3 index;
  Wait wait = Wait::kNone;
  unsigned shuffles = 0;  // shuffles this thread took part in during the current block
  bool awaited = false;   // called AwaitPriorGrid during the current block
};

constexpr size_t kStackBytes = size_t{256} << 10;
constexpr unsigned kMaxThreads = 1024;

// Fibers switch with _setjmp / _longjmp, which save no signal mask: swapcontext's system call per switch would
// make shuffle-heavy kernels a hundred times slower. ucontext only starts a fiber on its stack.
struct Scheduler {
  jmp_buf main;
  Fiber fibers[kMaxThreads];  // stacks kept across launches; each parks in FiberMain between blocks
  unsigned started = 0;       // fibers [0, started) are parked in FiberMain
  unsigned current = 0;
  void (*body)(void*) = nullptr;
  void* bound = nullptr;
  void* dynamic_shared = nullptr;
  unsigned dynamic_shared_bytes = 0;
  // Per warp: shuffle values, double-buffered so one barrier per shuffle suffices (a lane writes buffer k % 2
  // again only after every lane passed barrier k + 1, so after it read buffer k).
  unsigned long long shuffle[kMaxThreads / 32][2][32];
  // Per warp: every lane's fragments of a tensor-core product (ftemu_mma_m16n8k16), double-buffered likewise.
  unsigned mma[kMaxThreads / 32][2][32][6];
};

inline Scheduler scheduler;

inline void Yield() {
  if (_setjmp(scheduler.fibers[scheduler.current].resume) == 0) _longjmp(scheduler.main, 1);
}

inline void Resume(unsigned t) {
  scheduler.current = t;
  threadIdx = scheduler.fibers[t].index;
  if (_setjmp(scheduler.main) == 0) _longjmp(scheduler.fibers[t].resume, 1);
}

inline void FiberMain() {
  for (;;) {
    Yield();
    scheduler.body(scheduler.bound);
    scheduler.fibers[scheduler.current].wait = Wait::kDone;
  }
}

// Starts fiber `t` on its stack and parks it in FiberMain; also restarts one a failed block left mid-kernel.
inline bool StartFiber(unsigned t) {
  Fiber& f = scheduler.fibers[t];
  if (f.stack == nullptr) {
    f.stack = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (f.stack == MAP_FAILED) {
      f.stack = nullptr;
      return false;
    }
  }
  ucontext_t start;
  getcontext(&start);
  start.uc_stack.ss_sp = f.stack;
  start.uc_stack.ss_size = kStackBytes;
  start.uc_link = nullptr;
  makecontext(&start, FiberMain, 0);
  scheduler.current = t;
  if (_setjmp(scheduler.main) == 0) setcontext(&start);
  return true;
}

inline void WaitAt(Wait kind) {
  scheduler.fibers[scheduler.current].wait = kind;
  Yield();
}

// Shared memory (every __shared__ variable is in this section, and the launch's dynamic shared memory) starts each
// block as NaNs, as garbage would on a GPU, so a kernel that reads shared memory it did not write in this block does
// not inherit the last one's.
extern "C" char __start_ftemu_shared[] __attribute__((weak, visibility("hidden")));
extern "C" char __stop_ftemu_shared[] __attribute__((weak, visibility("hidden")));

inline unsigned LinearThread() { return (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x; }

// Runs one block; false (with `error`) when its threads wait at barriers that can never open.
inline bool RunBlock(unsigned threads, bool reverse, std::string& error) {
  for (unsigned t = 0; t < threads; ++t) {
    scheduler.fibers[t].wait = Wait::kNone;
    scheduler.fibers[t].shuffles = 0;
    scheduler.fibers[t].awaited = false;
  }
  if (__start_ftemu_shared != nullptr) memset(__start_ftemu_shared, 0xff, __stop_ftemu_shared - __start_ftemu_shared);
  if (scheduler.dynamic_shared != nullptr) memset(scheduler.dynamic_shared, 0xff, scheduler.dynamic_shared_bytes);
  for (;;) {
    for (unsigned i = 0; i < threads; ++i) {
      const unsigned t = reverse ? threads - 1 - i : i;
      if (scheduler.fibers[t].wait == Wait::kNone) Resume(t);
    }
    // Everyone has finished or waits. Warps whose live lanes all wait at a shuffle go on; then the block, once
    // every live thread waits at __syncthreads.
    bool progress = false, all_done = true, all_block = true;
    for (unsigned w = 0; w * 32 < threads; ++w) {
      bool warp_ready = true, any = false;
      for (unsigned t = w * 32; t < threads && t < w * 32 + 32; ++t) {
        const Wait s = scheduler.fibers[t].wait;
        if (s == Wait::kDone) continue;
        any = true;
        warp_ready = warp_ready && s == Wait::kWarp;
      }
      if (!any || !warp_ready) continue;
      for (unsigned t = w * 32; t < threads && t < w * 32 + 32; ++t)
        if (scheduler.fibers[t].wait == Wait::kWarp) scheduler.fibers[t].wait = Wait::kNone;
      progress = true;
    }
    if (progress) continue;
    for (unsigned t = 0; t < threads; ++t) {
      const Wait s = scheduler.fibers[t].wait;
      all_done = all_done && s == Wait::kDone;
      all_block = all_block && (s == Wait::kDone || s == Wait::kBlock);
    }
    if (all_done) return true;
    if (!all_block) {
      error = "threads of one block wait at different barriers (__syncthreads in divergent code, or a warp "
              "shuffle with a lane missing)";
      return false;
    }
    for (unsigned t = 0; t < threads; ++t)
      if (scheduler.fibers[t].wait == Wait::kBlock) scheduler.fibers[t].wait = Wait::kNone;
  }
}

inline int RunGrid(void (*body)(void*), void* bound, LaunchConfig* c) {
  const unsigned threads = c->block[0] * c->block[1] * c->block[2];
  if (threads == 0 || threads > kMaxThreads) {
    snprintf(c->error, sizeof(c->error), "a block of %u threads (at most %u)", threads, kMaxThreads);
    return 1;
  }
  for (; scheduler.started < threads; ++scheduler.started) {
    if (!StartFiber(scheduler.started)) {
      snprintf(c->error, sizeof(c->error), "no memory for fiber stacks");
      return 2;
    }
  }
  blockDim = uint3{c->block[0], c->block[1], c->block[2]};
  gridDim = uint3{c->grid[0], c->grid[1], c->grid[2]};
  for (unsigned t = 0; t < threads; ++t)
    scheduler.fibers[t].index = uint3{t % blockDim.x, t / blockDim.x % blockDim.y, t / (blockDim.x * blockDim.y)};
  scheduler.body = body;
  scheduler.bound = bound;
  scheduler.dynamic_shared = c->dynamic_shared;
  scheduler.dynamic_shared_bytes = c->dynamic_shared_bytes;
  const unsigned long long blocks = 1ull * gridDim.x * gridDim.y * gridDim.z;
  const bool backwards = c->launch_index % 2 == 1;
  for (unsigned long long i = 0; i < blocks; ++i) {
    const unsigned long long b = backwards ? blocks - 1 - i : i;
    blockIdx = uint3{unsigned(b % gridDim.x), unsigned(b / gridDim.x % gridDim.y),
                     unsigned(b / (1ull * gridDim.x * gridDim.y))};
    std::string error;
    bool ran = RunBlock(threads, b % 2 == 1, error);
    if (ran && c->programmatic) {
      for (unsigned t = 0; t < threads && ran; ++t) {
        if (scheduler.fibers[t].awaited) continue;
        error = "thread " + std::to_string(t) + " never called AwaitPriorGrid(), which a kernel launched with "
                "programmatic dependent launch needs before it touches memory the previous kernel may write";
        ran = false;
      }
    }
    if (!ran) {
      snprintf(c->error, sizeof(c->error), "block (%u, %u, %u): %s", blockIdx.x, blockIdx.y, blockIdx.z,
               error.c_str());
      for (unsigned t = 0; t < threads; ++t) StartFiber(t);
      return 3;
    }
  }
  return 0;
}

template <typename T>
T Shuffle(T v, int src_lane) {
  static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
  const unsigned lane = LinearThread() % 32, warp = LinearThread() / 32;
  unsigned long long(&buffer)[32] = scheduler.shuffle[warp][scheduler.fibers[scheduler.current].shuffles++ % 2];
  unsigned long long bits = 0;
  memcpy(&bits, &v, sizeof(T));
  buffer[lane] = bits;
  WaitAt(Wait::kWarp);
  T out;
  memcpy(&out, &buffer[static_cast<unsigned>(src_lane) & 31u], sizeof(T));
  return out;
}

// device_common.h's AwaitPriorGrid: on a GPU griddepcontrol.wait (the previous grid has finished; here it has,
// launches run one after another); here it records that the thread got there.
inline void GridDependencyWait() { scheduler.fibers[scheduler.current].awaited = true; }
#define FTEMU_GRID_DEPENDENCY ftemu::GridDependencyWait

// common/half_bits.h's conversions, as the host and the kernels convert.
FT_HALF_BITS(inline, unsigned short, unsigned)

// A 16-bit float's value: the low half of `word` or, with `high`, its high half; float16 when kF16, else bfloat16.
template <bool kF16>
float HalfOf(unsigned word, bool high) {
  const auto h = static_cast<unsigned short>(high ? word >> 16 : word & 0xffffu);
  return std::bit_cast<float>(kF16 ? F16ToF32Bits(h) : Bf16ToF32Bits(h));
}

}  // namespace ftemu

// The tensor cores' mma.sync.m16n8k16.row.col with float32 accumulators, for kernels that define their PTX only
// where FTEMU_MMA is not defined: lane l holds A's (16 x 16) rows l / 4 and l / 4 + 8 at columns 2 (l % 4) + {0, 1}
// (a[0], a[1]) and those + 8 (a[2], a[3]); B's (16 x 8) rows 2 (l % 4) + {0, 1} (b0) and + 8 (b1) of column l / 4;
// D's rows l / 4 (d[0], d[1]) and l / 4 + 8 (d[2], d[3]) at columns 2 (l % 4) + {0, 1}. Every lane's fragments
// pass through the warp's buffer (one barrier); each lane then adds its four dot products, in k's order.
#define FTEMU_MMA 1
template <bool kF16>
inline void ftemu_mma_m16n8k16(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  using namespace ftemu;
  const unsigned lane = LinearThread() % 32, warp = LinearThread() / 32;
  unsigned(&frags)[32][6] = scheduler.mma[warp][scheduler.fibers[scheduler.current].shuffles++ % 2];
  for (int i = 0; i < 4; ++i) frags[lane][i] = a[i];
  frags[lane][4] = b0;
  frags[lane][5] = b1;
  WaitAt(Wait::kWarp);
  const unsigned g = lane / 4, c = 2 * (lane % 4);
  for (int out = 0; out < 4; ++out) {
    const unsigned row = g + 8 * (out / 2), col = c + out % 2;
    float sum = d[out];
    for (unsigned k = 0; k < 16; ++k) {
      const float x = HalfOf<kF16>(frags[(row % 8) * 4 + (k % 8) / 2][row / 8 + 2 * (k / 8)], k % 2);
      const float y = HalfOf<kF16>(frags[col * 4 + (k % 8) / 2][4 + k / 8], k % 2);
      sum = fmaf(x, y, sum);
    }
    d[out] = sum;
  }
}

namespace ftemu {

template <typename T>
std::decay_t<T> Copy(void* p) {
  return *static_cast<std::decay_t<T>*>(p);
}

template <typename T>
bool CheckPointer(const T& value, int index, LaunchConfig* c) {
  if constexpr (std::is_pointer_v<T>) {
    if (value != nullptr && !c->is_device_pointer(value)) {
      snprintf(c->error, sizeof(c->error), "argument %d (%p) is not device memory", index,
               static_cast<const void*>(value));
      return false;
    }
  }
  return true;
}

template <typename... A>
struct Kernel {
  using Args = std::tuple<std::decay_t<A>...>;
  template <size_t... I>
  static void* Bind(void** params, std::index_sequence<I...>) {
    return new Args(Copy<A>(params[I])...);
  }
  template <void (*F)(A...)>
  static KernelEntry Entry() {
    return KernelEntry{
        [](void** params) -> void* { return Bind(params, std::index_sequence_for<A...>{}); },
        [](void* bound, LaunchConfig* c) -> int {
          auto& args = *static_cast<Args*>(bound);
          const bool ok = std::apply(
              [c](const auto&... a) {
                int index = 0;
                return (CheckPointer(a, index++, c) && ... && true);
              },
              args);
          if (!ok) return 4;
          return RunGrid([](void* b) { std::apply(F, *static_cast<Args*>(b)); }, bound, c);
        },
        [](void* bound) { delete static_cast<Args*>(bound); }};
  }
};

template <typename... A>
Kernel<A...> KernelOf(void (*)(A...));

}  // namespace ftemu

#define FTEMU_KERNEL(name)                                                            \
  extern "C" __attribute__((visibility("default"))) const ftemu::KernelEntry ftemu_kernel_##name = \
      decltype(ftemu::KernelOf(&name))::Entry<&name>();

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ __attribute__((section("ftemu_shared"))) static
#define __restrict__ __restrict
#define __align__(n) alignas(n)

// Dynamic shared memory: nvrtc.cc rewrites `extern __shared__ T name[];` into a pointer from here.
#define FTEMU_DYNAMIC_SHARED(T) (static_cast<T*>(ftemu::scheduler.dynamic_shared))

inline void __syncthreads() { ftemu::WaitAt(ftemu::Wait::kBlock); }
// Independent thread scheduling lets lanes drift only between barriers; the next shuffle or __syncthreads
// orders them as __syncwarp would.
inline void __syncwarp(unsigned = 0xffffffffu) {}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

template <typename T>
T __shfl_sync(unsigned, T v, int src, int width = 32) {
  const int lane = int(ftemu::LinearThread() % 32);
  return ftemu::Shuffle(v, lane / width * width + src % width);
}
template <typename T>
T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  const int lane = int(ftemu::LinearThread() % 32);
  const int src = lane ^ mask;
  return ftemu::Shuffle(v, src / width == lane / width ? src : lane);
}
template <typename T>
T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  const int lane = int(ftemu::LinearThread() % 32);
  const int src = lane + int(delta);
  return ftemu::Shuffle(v, src / width == lane / width ? src : lane);
}
template <typename T>
T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
  const int lane = int(ftemu::LinearThread() % 32);
  const int src = lane - int(delta);
  return ftemu::Shuffle(v, src >= lane / width * width ? src : lane);
}

template <typename T>
T __ldg(const T* p) {
  return *p;
}

template <typename T>
T atomicAdd(T* p, T v) {
  return std::atomic_ref<T>(*p).fetch_add(v);
}
template <typename T>
T atomicSub(T* p, T v) {
  return std::atomic_ref<T>(*p).fetch_sub(v);
}
template <typename T>
T atomicExch(T* p, T v) {
  return std::atomic_ref<T>(*p).exchange(v);
}
template <typename T>
T atomicCAS(T* p, T expected, T desired) {
  std::atomic_ref<T>(*p).compare_exchange_strong(expected, desired);
  return expected;
}
template <typename T>
T atomicMax(T* p, T v) {
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (old < v && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}
template <typename T>
T atomicMin(T* p, T v) {
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (v < old && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}

inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline int __float_as_int(float f) { return std::bit_cast<int>(f); }
inline unsigned __float_as_uint(float f) { return std::bit_cast<unsigned>(f); }
inline double __longlong_as_double(long long x) { return std::bit_cast<double>(x); }
inline long long __double_as_longlong(double d) { return std::bit_cast<long long>(d); }
// NVRTC contracts a * b + c into an FMA (--fmad=true), and so does the module where the CPU has FMA (nvrtc.cc);
// the _rn intrinsics are never contracted: the asm hides each result from the optimiser.
namespace ftemu {
template <typename T>
inline T Rounded(T v) {
  __asm__ volatile("" : "+m"(v));
  return v;
}
}  // namespace ftemu
inline float __fadd_rn(float a, float b) { return ftemu::Rounded(a + b); }
inline float __fsub_rn(float a, float b) { return ftemu::Rounded(a - b); }
inline float __fmul_rn(float a, float b) { return ftemu::Rounded(a * b); }
inline float __fdiv_rn(float a, float b) { return ftemu::Rounded(a / b); }
inline float __fsqrt_rn(float a) { return ftemu::Rounded(sqrtf(a)); }
inline float __frcp_rn(float a) { return ftemu::Rounded(1.0f / a); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return ftemu::Rounded(a + b); }
inline double __dmul_rn(double a, double b) { return ftemu::Rounded(a * b); }
inline float __ll2float_rn(long long x) { return static_cast<float>(x); }
inline float __int2float_rn(int x) { return static_cast<float>(x); }
inline float __uint2float_rn(unsigned x) { return static_cast<float>(x); }
inline int __float2int_rz(float x) { return static_cast<int>(x); }
inline unsigned __umulhi(unsigned a, unsigned b) { return static_cast<unsigned>((1ull * a * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
// The fast-math intrinsics are approximations on a GPU; exact results are within their error bounds.
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x != x ? 0.0f : fminf(fmaxf(x, 0.0f), 1.0f); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }

// CUDA's min and max overloads: fminf / fmaxf for floating point (NaN loses), the usual comparison otherwise.
template <typename A, typename B>
std::common_type_t<A, B> min(A a, B b) {
  using T = std::common_type_t<A, B>;
  if constexpr (std::is_floating_point_v<T>) return fmin(T(a), T(b));
  else return T(b) < T(a) ? T(b) : T(a);
}
template <typename A, typename B>
std::common_type_t<A, B> max(A a, B b) {
  using T = std::common_type_t<A, B>;
  if constexpr (std::is_floating_point_v<T>) return fmax(T(a), T(b));
  else return T(a) < T(b) ? T(b) : T(a);
}
