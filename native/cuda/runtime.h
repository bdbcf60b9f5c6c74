// The CUDA runtime of the addon: one context and stream on device 0, device handles, the device memory cache,
// NVRTC kernel compilation with in-memory and on-disk caches, launches and copies.
//
// No CUDA header is used: the few driver types are declared here (values checked against cuda.h 13.0) and every
// entry point is resolved with dlsym from the libraries loader.cc opened, so the addon builds and loads on
// machines without CUDA. Every native.cuda entry point calls EnsureContext first, so without a usable GPU each
// one throws the loader's reason instead of touching anything.
//
// Device handles: a device allocation is given to JS as an empty ArrayBuffer (byteLength 0, so JS can never
// read or write device memory through it) with a DeviceBlock napi_wrap'd onto it. All work goes to one stream,
// in order, so memory freed into the cache may be reused by the next launch without waiting. (The one exception,
// side_stream.cc's GEMMs, is joined back before anything it reads is freed.)
#pragma once
#include <napi.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/args.h"
#include "cuda/loader.h"

namespace ft::cuda {

using CUdeviceptr = uint64_t;
using CUcontext = struct CUctx_st*;
using CUstream = struct CUstream_st*;
using CUmodule = struct CUmod_st*;
using CUfunction = struct CUfunc_st*;

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

// Why native.cuda cannot be used here (the loader's problem, or NVRTC or cuBLASLt missing); empty when it can.
std::string UnusableReason();

// Throws a JS Error with UnusableReason() when CUDA cannot be used; otherwise makes the primary context of
// device 0 current on this thread and creates the stream (once).
void EnsureContext(Napi::Env env);

// The stream work is queued on (valid after EnsureContext): the main stream, or between side_stream.cc's fork and
// its return to the main stream, the side stream.
CUstream Stream();
// The main stream, and the stream Stream() gives from now on (null: the main stream; side_stream.cc only).
CUstream MainStream();
void SetCurrentStream(CUstream stream);
// side_stream.cc: where its join was deferred, the main stream waits for the side stream's work now (a capture's
// end calls it, so that the side's work is an edge of the graph); nothing otherwise.
void JoinDeferredSideWork(Napi::Env env);
// Forgets the side stream's fork or deferred join (an aborted capture's work is dropped with it).
void ResetSideStream() noexcept;

// The GPU's milliseconds for the work `work` queues on the stream (waits for it; not during a capture).
double StreamMilliseconds(Napi::Env env, const std::function<void()>& work);

using CUevent = struct CUevent_st*;

// The driver's event and stream-ordering entry points (events.cc, side_stream.cc).
struct EventApi {
  CUresult (*cuEventCreate)(CUevent* event, unsigned flags) = nullptr;
  CUresult (*cuEventRecord)(CUevent event, CUstream stream) = nullptr;
  CUresult (*cuEventQuery)(CUevent event) = nullptr;
  CUresult (*cuEventSynchronize)(CUevent event) = nullptr;
  CUresult (*cuEventElapsedTime)(float* ms, CUevent start, CUevent end) = nullptr;
  CUresult (*cuEventDestroy_v2)(CUevent event) = nullptr;
  CUresult (*cuStreamQuery)(CUstream stream) = nullptr;
  CUresult (*cuStreamWaitEvent)(CUstream stream, CUevent event, unsigned flags) = nullptr;
};

// EventApi, resolved on first use (after EnsureContext); a driver lacking one of them makes this throw.
const EventApi& Events(Napi::Env env);

// kTicketWords 32-bit words of device memory, zeroed on the stream when the context is made (so before any CUDA
// graph capture), for kernels whose blocks count themselves finished there, the last one then finishing the
// launch's work (layer_norm.cc's column sums); each launch leaves its words at 0 (valid after EnsureContext).
constexpr int kTicketWords = 128;
CUdeviceptr Tickets();

// The driver's entry point `name`, or null where the driver lacks it.
void* DriverSymbol(const char* name);
// DriverSymbol(name) as `fn`'s type; whether the driver has it.
template <typename Fn>
bool ResolveDriverSymbol(const char* name, Fn& fn) {
  fn = reinterpret_cast<Fn>(DriverSymbol(name));
  return fn != nullptr;
}

// Throws a JS Error "<what> failed: error N (text)" unless `result` is success.
void Check(Napi::Env env, CUresult result, const char* what);

// ---- device memory

// What napi_wrap holds on a device handle. `bytes` is the block's size, as the cache gave it.
struct DeviceBlock {
  CUdeviceptr ptr = 0;
  size_t bytes = 0;      // usable (rounded) size
  size_t requested = 0;  // what alloc() asked for: the bound every argument check uses
  std::atomic<bool> released{false};
};

// Device memory from the cache (allocator.cc): a block of the request rounded up to 512 bytes, cut from a cached
// segment where one has room; on out-of-memory the cache is emptied and the allocation retried once, then a JS
// Error says how much was asked and used.
struct RawBlock {
  CUdeviceptr ptr = 0;
  size_t bytes = 0;
};
RawBlock TakeDeviceMemory(Napi::Env env, size_t bytes);
// The same from the common cache even while a capture is under way: for what outlives the capture, as a graph's
// constants do (TakeDeviceMemory would make them the capture pool's).
RawBlock TakeCommonMemory(Napi::Env env, size_t bytes);
// Returns a block to the cache; never throws (finalizers call it).
void GiveDeviceMemory(RawBlock block) noexcept;
// From a side-stream fork to the join that makes the main stream wait for the side's work (side_stream.cc), blocks
// given back that side work may still use are held, not reused: every block (`all`), or those marked with
// MarkSideUse (the block starting at `ptr`; false if there is none). ReleaseHeldMemory ends that: the held blocks
// are listed free and the marks dropped.
void HoldFreedMemory(bool all) noexcept;
bool MarkSideUse(CUdeviceptr ptr) noexcept;
void ReleaseHeldMemory() noexcept;

// Empties the cache back to the driver (after the stream drains).
void EmptyDeviceCache(Napi::Env env);

// Bytes taken from the cache and not given back (tensors, scratch, workspaces), their peak, and bytes cached; the
// segments held from the driver, and how many were allocated and freed so far, as PyTorch's memory_stats counts.
struct MemoryStats {
  size_t allocated = 0;
  size_t peak = 0;
  size_t cached = 0;
  size_t reserved_peak = 0;  // of allocated + cached: the segments held from the driver
  size_t segments = 0;
  size_t segments_allocated = 0;
  size_t segments_freed = 0;
  size_t alloc_retries = 0;
  size_t ooms = 0;
};
MemoryStats GetMemoryStats();
void ResetPeakMemory();

// A new device handle owning `block`; `requested` bytes are usable through it.
Napi::ArrayBuffer NewDeviceHandle(Napi::Env env, RawBlock block, size_t requested);
// The block behind a device handle, or nullptr when `value` is not one (a host ArrayBuffer included).
DeviceBlock* UnwrapDeviceHandle(Napi::Env env, Napi::Value value);

// Device temporary memory for one call, back in the cache at scope end (stream order makes that safe).
class ScratchBuffer {
 public:
  ScratchBuffer(Napi::Env env, size_t bytes) : block_(TakeDeviceMemory(env, bytes)) {}
  ~ScratchBuffer() { GiveDeviceMemory(block_); }
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  CUdeviceptr ptr() const { return block_.ptr; }
  size_t bytes() const { return block_.bytes; }

 private:
  RawBlock block_;
};

// ---- arguments

struct DeviceBuffer {
  CUdeviceptr ptr = 0;
  size_t bytes = 0;
};

// The device memory behind argument `index`: TypeError when it is not a device handle (a host ArrayBuffer
// included), Error when the handle was freed. JS null gives {0, 0}, for the arguments the CPU contract lets be
// null; DeviceElements refuses such a buffer unless the extent is 0.
DeviceBuffer GetDeviceBuffer(const Napi::CallbackInfo& info, int index, const char* name);

// The device buffers of an array argument (the multi-tensor kernels' lists), checked as GetDeviceBuffer checks
// one argument. With `present`, entries may be null ({0, 0}): present[i] says whether entry i is a buffer.
inline std::vector<DeviceBuffer> GetDeviceBufferList(const Napi::CallbackInfo& info, int index, const char* name,
                                                     std::vector<bool>* present = nullptr) {
  Napi::Env env = info.Env();
  Napi::Value v = info[index];
  if (!v.IsArray()) throw Napi::TypeError::New(env, ArgName(index, name) + " must be an array of CUDA device buffers");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<DeviceBuffer> out(a.Length());
  for (uint32_t i = 0; i < a.Length(); ++i) {
    const std::string label = ArgName(index, name) + "[" + std::to_string(i) + "]";
    if (present != nullptr) {
      present->push_back(!a.Get(i).IsNull());
      if (!present->back()) continue;
    }
    DeviceBlock* block = UnwrapDeviceHandle(env, a[i]);
    if (block == nullptr) throw Napi::TypeError::New(env, label + " must be a CUDA device buffer (from cuda.alloc)");
    if (block->released.load()) throw Napi::Error::New(env, label + ": the device memory has been released");
    out[i] = DeviceBuffer{block->ptr, block->requested};
  }
  return out;
}

// A bounds check like args.h Elements: `offset` and the `extent` elements after it must lie inside the buffer.
// Returns the device address of element `offset`.
uint64_t DeviceElementsBytes(const Napi::CallbackInfo& info, const DeviceBuffer& b, int64_t offset, int64_t extent,
                             size_t element_size, const char* name);
template <typename T>
inline uint64_t DeviceElements(const Napi::CallbackInfo& info, const DeviceBuffer& b, int64_t offset, int64_t extent,
                               const char* name) {
  return DeviceElementsBytes(info, b, offset, extent, sizeof(T), name);
}

// The device operand at argument `index` whose element offset is argument index + 1 (args.h OperandAt's twin).
template <typename T>
inline uint64_t DeviceOperandAt(const Napi::CallbackInfo& info, int index, const char* name, const char* offset_name,
                                int64_t extent) {
  return DeviceElements<T>(info, GetDeviceBuffer(info, index, name), GetInt(info, index + 1, offset_name), extent, name);
}

// A strided view's shape and strides in elements, passed to kernels by value. The kernel source must declare
// the same struct: `struct Layout { int rank; long long shape[8]; long long strides[8]; };`.
struct Layout {
  int32_t rank = 0;
  int64_t shape[8] = {};
  int64_t strides[8] = {};
};
static_assert(sizeof(Layout) == 136, "Layout must match the kernels' declaration");

// Copies shape and strides (already validated with StridedExtent: same rank, at most 8).
Layout MakeLayout(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides);

// ---- kernels

// The on-disk cache: $FINETUNE_CACHE, else ~/.cache/finetune/kernels, created when missing. It holds compiled
// kernels and the GEMM algorithms cuBLASLt's heuristic chose; it only saves time, so reading or writing it never
// fails an operation. CachePath names a file there: <stem>-<hash of key><extension>, or "" where there is no cache
// to use (no $HOME, read-only disk).
std::string CachePath(const std::string& stem, const std::string& key, const std::string& extension);
// Whether `path` could be read and held at least one byte.
bool ReadFile(const std::string& path, std::string& out);
// Writes a temporary file and renames it over `path`, so that readers see the old or the new whole file.
void WriteFileAtomically(const std::string& path, const std::string& data);
// 64-bit FNV-1a of `n` bytes: the cache files' names and byte-wise hash keys.
uint64_t Fnv1a(const void* data, size_t n);

// The function `function_name` of `source`, compiled by NVRTC for this device's architecture (-std=c++17, no
// fast math, no FMA contraction) once per process; the compiled cubin is also kept on disk ($FINETUNE_CACHE,
// else ~/.cache/finetune/kernels) under a hash of source, options and NVRTC version. `module_name` names the
// source in compile errors, which throw a JS Error carrying NVRTC's log. `source` must live as long as the process
// (the kernel families pass statics): a module is found by the string's address.
CUfunction GetKernel(Napi::Env env, const char* module_name, const std::string& source, const char* function_name);

// The modules GetKernel has loaded (compiled by NVRTC or read from its disk cache) and the seconds that took.
struct ModuleLoads {
  int64_t modules = 0;
  double seconds = 0;
};
ModuleLoads ModuleLoadStats();

// Lets `fn` take `bytes` of dynamic shared memory in its launches: above 48 KiB only where the GPU and the driver
// allow it (sm_80's 163 KiB a block, sm_90's 227). False where they do not: the caller launches another kernel.
bool AllowDynamicShared(CUfunction fn, unsigned bytes);

// Queues `fn` on the stream; `args` points to each kernel argument, as cuLaunchKernel wants. A grid with a zero
// dimension (an empty tensor) launches nothing. Where ProgrammaticLaunch(), the kernel may start while the one
// before it in the stream finishes: every kernel's first statement is AwaitPriorGrid() (device_common.h).
void Launch(Napi::Env env, CUfunction fn, Dim3 grid, Dim3 block, unsigned shared_bytes, void** args);

// Whether launches use programmatic dependent launch: on sm_90 and newer with a driver that has
// cuLaunchKernelEx, where FINETUNE_CUDA_PDL=1 asks for it (valid after EnsureContext).
bool ProgrammaticLaunch();
// Turns it on (where supported) or off for the launches from now on; returns ProgrammaticLaunch().
bool SetProgrammaticLaunch(bool on);

// ---- copies (all on the stream; 0 bytes does nothing)

void Synchronize(Napi::Env env);
// Returns once `src` may be reused, usually before the copy has run (the bytes wait in pinned memory).
void CopyHostToDevice(Napi::Env env, CUdeviceptr dst, const void* src, size_t bytes);
// CopyHostToDevice's queuing, without its checks (staging.cc).
void StageHostToDevice(Napi::Env env, CUdeviceptr dst, const void* src, size_t bytes);
// Waits for the copy (and so for all earlier work) before returning: the host memory is then valid.
void CopyDeviceToHost(Napi::Env env, void* dst, CUdeviceptr src, size_t bytes);
void CopyDeviceToDevice(Napi::Env env, CUdeviceptr dst, CUdeviceptr src, size_t bytes);
void MemsetBytes(Napi::Env env, CUdeviceptr dst, uint8_t value, size_t bytes);

// ---- CUDA graphs (graphs.cc). While a capture is under way the stream records work instead of running it, so
// nothing may wait for the stream or read its results, and the allocator serves the capturing graph's pool.

// Whether the stream is being captured into a graph.
bool Capturing();

// Throws "<what> is not allowed while capturing a CUDA graph" (then `hint`) while a capture is under way.
void ForbidDuringCapture(Napi::Env env, const char* what, const char* hint = "");

// Memory pools of graphs (PyTorch's private pools): while pool P is being captured into, TakeDeviceMemory
// serves P's free blocks, then blocks of the common cache, then new memory (all of which become P's);
// blocks of P given back go to P's free list, not to the common cache, for as long as a graph uses P (its
// replays write them), and so do other blocks given back during the capture (its replays may read them).
// Pool ids start at 1.
int64_t NewPool();
// A graph starts or stops using `pool`; when the last user stops, P's free blocks go to the common cache and
// its blocks still held go there when given back. The caller has drained the stream.
void RetainPool(int64_t pool);
void ReleasePool(int64_t pool);
// Routes allocations to `pool` (0: back to the common cache) for the capture.
void SetCapturePool(int64_t pool);

// Device memory for constant data a captured kernel reads (the multi-tensor kernels' lists): kept for the
// graph's lifetime, written once when the capture ends. Only while capturing.
uint64_t CaptureConstant(Napi::Env env, const void* data, size_t bytes);

// A capture-time index check: a record { state, position, value } (int64s, zero) in the graph's constants
// that ft_record_invalid_index fills at replay; `message(position, value, limit, allowed)` is the eager
// check's text. The
// first sync after a replay that found a bad index throws it as a RangeError (CheckGraphErrors).
using IndexMessage = std::string (*)(int64_t position, int64_t value, int64_t limit, int64_t allowed);
uint64_t CaptureIndexCheck(Napi::Env env, IndexMessage message, int64_t limit, int64_t allowed);
// While capturing, the device address of the graph's random base: an offset the random kernels add to their
// counters, which graphReplay sets so that each replay draws fresh numbers (0, no base, when not capturing).
uint64_t CaptureRandomBase(Napi::Env env);

// Throws the RangeError of a bad index found by a replay since the last check, if any; Synchronize and
// CopyDeviceToHost call it once the stream has drained.
void CheckGraphErrors(Napi::Env env);

// The driver entry points beyond the loader's, resolved on the first EnsureContext.
struct RuntimeApi {
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext* ctx, CUdevice device) = nullptr;
  CUresult (*cuCtxSetCurrent)(CUcontext ctx) = nullptr;
  CUresult (*cuStreamCreate)(CUstream* stream, unsigned flags) = nullptr;
  CUresult (*cuStreamSynchronize)(CUstream stream) = nullptr;
  CUresult (*cuMemAlloc_v2)(CUdeviceptr* ptr, size_t bytes) = nullptr;
  CUresult (*cuMemFree_v2)(CUdeviceptr ptr) = nullptr;
  CUresult (*cuMemGetInfo_v2)(size_t* free, size_t* total) = nullptr;
  CUresult (*cuMemcpyHtoDAsync_v2)(CUdeviceptr dst, const void* src, size_t bytes, CUstream stream) = nullptr;
  CUresult (*cuMemcpyDtoHAsync_v2)(void* dst, CUdeviceptr src, size_t bytes, CUstream stream) = nullptr;
  CUresult (*cuMemcpyDtoDAsync_v2)(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream) = nullptr;
  CUresult (*cuMemsetD8Async)(CUdeviceptr dst, unsigned char value, size_t count, CUstream stream) = nullptr;
  CUresult (*cuModuleLoadData)(CUmodule* module, const void* image) = nullptr;
  CUresult (*cuModuleGetFunction)(CUfunction* fn, CUmodule module, const char* name) = nullptr;
  CUresult (*cuLaunchKernel)(CUfunction fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                             unsigned bz, unsigned shared_bytes, CUstream stream, void** params, void** extra) = nullptr;
  // Optional (CUDA 11.8+): launches with attributes, for programmatic dependent launch.
  CUresult (*cuLaunchKernelEx)(const struct LaunchConfigEx* config, CUfunction fn, void** params,
                               void** extra) = nullptr;
  // Optional: a kernel's attributes, for more than 48 KiB of dynamic shared memory (AllowDynamicShared).
  CUresult (*cuFuncSetAttribute)(CUfunction fn, int attribute, int value) = nullptr;
};
const RuntimeApi& Api();

// Stream capture and graphs, resolved on the first graph call: a driver lacking them makes that call throw.
using CUgraph = struct CUgraph_st*;
using CUgraphExec = struct CUgraphExec_st*;
struct GraphApi {
  CUresult (*cuStreamBeginCapture_v2)(CUstream stream, int mode) = nullptr;
  CUresult (*cuStreamEndCapture)(CUstream stream, CUgraph* graph) = nullptr;
  CUresult (*cuGraphInstantiateWithFlags)(CUgraphExec* exec, CUgraph graph, unsigned long long flags) = nullptr;
  CUresult (*cuGraphLaunch)(CUgraphExec exec, CUstream stream) = nullptr;
  CUresult (*cuGraphExecDestroy)(CUgraphExec exec) = nullptr;
  CUresult (*cuGraphDestroy)(CUgraph graph) = nullptr;
};
const GraphApi& GetGraphApi(Napi::Env env);

// The device's compute capability as NVRTC's architecture number (90 for sm_90).
int Arch();

// Device 0's streaming multiprocessors.
int Multiprocessors();

// An on/off setting from the environment variable `name`: "1" or "true" 1 (on), "0" or "false" 0 (off), else
// (unset or another value) -1.
int EnvSetting(const char* name);

// EnvSetting as a bool, `fallback` where it is neither on nor off.
bool EnvSwitch(const char* name, bool fallback);

// An "off" / "on" / "auto" setting (0, 1, 2): EnvSetting(name)'s 0 or 1, else 2 ("auto": JavaScript decides by timing
// both ways, ops/timed_choice.ts).
int EnvMode(const char* name);

// `mode`'s name, after setting it from info[0] ("on", "off" or "auto") where given; `function` names the caller in
// the error for another value.
Napi::Value ModeSetting(const Napi::CallbackInfo& info, int& mode, const char* function);

// `flag`, after setting it from info[0] (a boolean, "enabled") where given.
Napi::Value FlagSetting(const Napi::CallbackInfo& info, bool& flag);

}  // namespace ft::cuda
