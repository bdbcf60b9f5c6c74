// The fake libcuda.so.1: a device (or FTEMU_DEVICE_COUNT alike, one used) whose memory is a separate reserved address range of this process, one
// stream on which all work runs synchronously (or is recorded while the stream is captured into a graph), and
// modules that are shared libraries built by the fake NVRTC (nvrtc.cc, device.h).
//
// It checks what a real driver leaves to chance or reports late, so that host code bugs fail loudly here:
// copies check their direction and that device ranges lie inside one live allocation; freed device memory is
// unmapped (a later access faults); each allocation ends at a guard page (a kernel that reads far past the end
// faults); kernel pointer arguments must be device memory; launch shapes are checked against the hardware limits.
// FTEMU_TRACE=1 prints every launch and every host-to-device copy to stderr. FTEMU_DEFER=1 runs queued work only
// when the host waits for it (a stream or event synchronize, a copy to pageable memory, freeing device memory), as
// a GPU runs it later than the host queues it: host code that rewrites pinned memory a queued copy has yet to read
// then copies the wrong bytes. An event completes when the work before its record runs, and its time for
// cuEventElapsedTime is the host's clock then.
#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/launch_config.h"  // the addon's (native/)
#include "launch.h"

namespace {

using CUresult = int;
using CUdeviceptr = std::uint64_t;
constexpr CUresult kSuccess = 0, kInvalidValue = 1, kOutOfMemory = 2, kInvalidImage = 200, kInvalidHandle = 400,
                   kIllegalState = 401, kNotFound = 500, kNotReady = 600, kIllegalAddress = 700,
                   kLaunchFailed = 719, kCaptureUnsupported = 900, kCaptureInvalidated = 901, kCaptureUnjoined = 904;
constexpr std::size_t kTotalBytes = std::size_t{80} << 30;
constexpr std::size_t kReservedBytes = std::size_t{1} << 40;

std::size_t PageSize() {
  static const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

// ---- device memory: never reused address space, so a use after free faults instead of reading a new owner's data

struct Memory {
  std::mutex mutex;
  char* base = nullptr;
  std::size_t next = 0;                       // bump offset into the reservation
  std::map<CUdeviceptr, std::size_t> blocks;  // live allocations: start -> bytes
  std::size_t used = 0;
};

Memory& GetMemory() {
  static Memory* m = [] {
    auto* memory = new Memory;
    void* p = mmap(nullptr, kReservedBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    memory->base = p == MAP_FAILED ? nullptr : static_cast<char*>(p);
    return memory;
  }();
  return *m;
}

// The live allocation holding [p, p + n), if any.
bool InDevice(CUdeviceptr p, std::size_t n) {
  Memory& m = GetMemory();
  std::lock_guard<std::mutex> lock(m.mutex);
  auto it = m.blocks.upper_bound(p);
  if (it == m.blocks.begin()) return false;
  --it;
  return p >= it->first && p + n <= it->first + it->second && p + n >= p;
}

bool InReservation(const void* p) {
  const Memory& m = GetMemory();
  const char* c = static_cast<const char*>(p);
  return c >= m.base && c < m.base + kReservedBytes;
}

thread_local std::string t_detail;  // why the last call failed, for cuGetErrorString

CUresult Fail(CUresult code, const std::string& detail) {
  t_detail = detail;
  if (std::getenv("FTEMU_TRACE") != nullptr) std::fprintf(stderr, "ftemu: %s\n", detail.c_str());
  return code;
}

// A launch's dynamic shared memory, ending at a guard page: a kernel that reads or writes past it faults, as a GPU
// reports an out-of-range shared address. Its start is 16-byte aligned, as a GPU's is.
void* DynamicShared(std::size_t bytes) {
  static char* base = nullptr;
  static std::size_t span = 0;  // bytes before the guard page
  const std::size_t page = PageSize(), rounded = (bytes + 15) / 16 * 16;
  if (rounded > span) {
    if (base != nullptr) munmap(base, span + page);
    span = (rounded + page - 1) / page * page;
    void* p = mmap(nullptr, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    base = p == MAP_FAILED ? nullptr : static_cast<char*>(p);
    if (base == nullptr) span = 0;
    else mprotect(base + span, page, PROT_NONE);
  }
  return base == nullptr || bytes == 0 ? nullptr : base + span - rounded;
}

// ---- the stream and graph capture

struct Op {
  std::function<CUresult()> run;
  std::function<void()> release;
  ~Op() {
    if (release) release();
  }
};
using OpList = std::vector<std::shared_ptr<Op>>;

struct Stream {
  bool capturing = false;
  bool invalidated = false;
  OpList captured;
};

struct Graph {
  OpList ops;
};

Stream g_stream;
// A second stream (the addon's side stream, native/cuda/side_stream.cc) feeds the first's queue as late as a GPU
// may run it: side work waits until the main stream waits for the side (a join), and then runs (or is recorded)
// after all the main stream's work queued since the fork. So main-stream work that overwrites memory side work still
// reads, or that reads what side work writes before the join, gets the wrong bytes here, where a GPU's timing would
// hide it most of the time. The fake also checks the discipline: side work only after a fork (the side waits for an
// event recorded on the main stream), and no capture ending before the side's work is joined.
Stream g_side;
bool g_side_created = false;
bool g_side_forked = false;  // from a fork to the main stream's wait for the side
OpList g_side_ops;           // side work not yet run or recorded, oldest first
int g_context;

bool Deferring() {
  static const bool defer = std::getenv("FTEMU_DEFER") != nullptr;
  return defer;
}

OpList g_queued;  // FTEMU_DEFER: work queued and not yet run, oldest first

// Runs the queued work; on a failure the rest is dropped and the failure returned, as a GPU's error is sticky.
CUresult RunQueued() {
  OpList ops = std::move(g_queued);
  g_queued.clear();
  for (const auto& op : ops) {
    if (CUresult result = op->run(); result != kSuccess) return result;
  }
  return kSuccess;
}

// Runs main-stream `op` now, queues it (FTEMU_DEFER), or records it while the stream is captured.
CUresult SubmitMain(std::shared_ptr<Op> op) {
  if (g_stream.capturing) {
    g_stream.captured.push_back(std::move(op));
    return kSuccess;
  }
  if (Deferring()) {
    g_queued.push_back(std::move(op));
    return kSuccess;
  }
  return op->run();
}

// The side stream's work so far, after the main stream's (a join, or a wait for all work).
CUresult FlushSide() {
  OpList ops = std::move(g_side_ops);
  g_side_ops.clear();
  for (auto& op : ops) {
    if (CUresult result = SubmitMain(std::move(op)); result != kSuccess) return result;
  }
  return kSuccess;
}

// Work for `stream`: on the main stream SubmitMain's; on the side stream held until a join.
CUresult Submit(void* stream, std::function<CUresult()> run, std::function<void()> release = {}) {
  if (stream != &g_stream && stream != &g_side) return Fail(kInvalidHandle, "work queued on a stream the fake driver never created");
  if (stream == &g_side && !g_side_forked) return Fail(kInvalidHandle, "work queued on the side stream before it waited for the main stream (fork)");
  auto op = std::make_shared<Op>();
  op->run = std::move(run);
  op->release = std::move(release);
  if (stream == &g_side) {
    g_side_ops.push_back(std::move(op));
    return kSuccess;
  }
  return SubmitMain(std::move(op));
}

// ---- pinned host memory (cuMemHostAlloc): copies from it are read when they run, not when they are queued

std::mutex g_pinned_mutex;
std::map<const char*, std::size_t> g_pinned;  // start -> bytes

bool InPinned(const void* p, std::size_t n) {
  std::lock_guard<std::mutex> lock(g_pinned_mutex);
  const char* c = static_cast<const char*>(p);
  auto it = g_pinned.upper_bound(c);
  if (it == g_pinned.begin()) return false;
  --it;
  return c >= it->first && c + n <= it->first + it->second;
}

struct Event {
  bool timing = true;    // created without CU_EVENT_DISABLE_TIMING
  bool recorded = false;
  void* stream = nullptr;  // where it was last recorded
  bool pending = false;  // recorded, and the work before it has not run yet
  std::chrono::steady_clock::time_point at;  // when the work before its last record had run
};

// The live events by handle. A queued record holds its event, so that one destroyed before its work ran (the
// driver allows it) is freed when the record has run.
std::map<void*, std::shared_ptr<Event>> g_events;

Event* FindEvent(void* e) {
  auto it = g_events.find(e);
  return it == g_events.end() ? nullptr : it->second.get();
}

// A call a real driver refuses during capture; it also ends the capture's usefulness, as on a GPU.
CUresult RefuseWhileCapturing(const char* what) {
  g_stream.invalidated = true;
  return Fail(kCaptureUnsupported, std::string(what) + " while the stream is being captured");
}

// ---- modules

struct Function {
  std::string name;
  const ftemu::KernelEntry* entry;
  unsigned max_dynamic_shared = 48 * 1024;  // cuFuncSetAttribute's CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
};
// The most dynamic shared memory a block may opt in to: an H100's, an A100's (sm_80), the other sm_8x GPUs' (99
// KiB), or 64 KiB before.
unsigned OptInSharedBytes(int major, int minor) {
  return major >= 9 ? 232448 : major == 8 ? (minor == 0 ? 166912 : 101376) : 65536;
}
unsigned long long g_launches = 0;

bool IsDevicePointer(const void* p) { return InDevice(reinterpret_cast<CUdeviceptr>(p), 1); }

// FTEMU_SKIP (fake_cuda.ts): device-side work (kernels, device-to-device copies, the garbage fill of new memory)
// is checked, then not done, so that mostly the host's side costs time. Memsets still run: the host reads flags
// that start as a memset's value (the index checks' "no bad index").
bool Skipping() {
  static const bool skip = std::getenv("FTEMU_SKIP") != nullptr;
  return skip;
}

}  // namespace

extern "C" {

// For the fake cuBLASLt, which links against this library.
bool ftemu_in_device(CUdeviceptr p, std::size_t n) { return InDevice(p, n); }
int ftemu_submit(void* stream, int (*run)(void*), void* data, void (*release)(void*)) {
  return Submit(
      stream, [run, data] { return run(data); }, [release, data] { release(data); });
}

// FTEMU_DEVICE_COUNT (default 1) identical devices, of which CUDA_VISIBLE_DEVICES lists those this process sees
// (up to the first entry that names none, as the driver reads it); a process uses device 0 of what it sees.
int VisibleDevices() {
  const char* count_env = std::getenv("FTEMU_DEVICE_COUNT");
  const int count = count_env != nullptr ? std::atoi(count_env) : 1;
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  if (visible == nullptr) return count;
  int seen = 0;
  for (const char* p = visible; *p != '\0';) {
    char* end = nullptr;
    const long index = std::strtol(p, &end, 10);
    if (end == p || index < 0 || index >= count) break;
    ++seen;
    p = *end == ',' ? end + 1 : end;
    if (*end != ',') break;
  }
  return seen;
}
int cuInit(unsigned) { return VisibleDevices() == 0 ? 100 : 0; }  // CUDA_ERROR_NO_DEVICE
int cuDriverGetVersion(int* v) {
  *v = 13000;
  return 0;
}
int cuGetErrorString(int code, const char** s) {
  static thread_local std::string text;
  text = code == 0 ? "no error" : "fake driver error";
  if (!t_detail.empty()) text += ": " + t_detail;
  t_detail.clear();
  *s = text.c_str();
  return 0;
}
int cuDeviceGetCount(int* n) {
  *n = VisibleDevices();
  return 0;
}
int cuDeviceGet(int* d, int ordinal) {
  if (ordinal < 0 || ordinal >= VisibleDevices()) return Fail(kInvalidValue, "no such device");
  *d = ordinal;
  return 0;
}
int cuDeviceGetName(char* name, int len, int) {
  std::snprintf(name, static_cast<std::size_t>(len), "%s", "Fake GPU (CPU emulation)");
  return 0;
}
// Compute capability 9.0 (attributes 75 and 76), or FTEMU_COMPUTE_CAPABILITY's ("7.5": an older GPU's); every
// other attribute reads 0.
int cuDeviceGetAttribute(int* v, int attribute, int) {
  int major = 9, minor = 0;
  if (const char* cc = std::getenv("FTEMU_COMPUTE_CAPABILITY")) std::sscanf(cc, "%d.%d", &major, &minor);
  // an H100's 132 multiprocessors, which kernels sizing their grids by the GPU read, and the shared memory a block
  // may opt in to (attribute 97)
  *v = attribute == 75 ? major : attribute == 76 ? minor : attribute == 16 ? 132
     : attribute == 97 ? static_cast<int>(OptInSharedBytes(major, minor)) : 0;
  return 0;
}
int cuDeviceTotalMem_v2(std::size_t* bytes, int) {
  *bytes = kTotalBytes;
  return 0;
}
int cuDevicePrimaryCtxRetain(void** ctx, int) {
  *ctx = &g_context;
  return 0;
}
int cuCtxSetCurrent(void* ctx) { return ctx == &g_context ? 0 : Fail(kInvalidValue, "unknown context"); }
int cuStreamCreate(void** s, unsigned) {
  // the runtime's main stream first, then side_stream.cc's
  static bool main_created = false;
  if (main_created && g_side_created) return Fail(kInvalidValue, "the fake driver has two streams");
  *s = main_created ? &g_side : &g_stream;
  (main_created ? g_side_created : main_created) = true;
  return 0;
}
// The side stream waits for an event recorded on the main stream (a fork), or the main stream for one recorded on
// the side (a join); in a capture these are the graph's edges, nothing to run.
int cuStreamWaitEvent(void* stream, void* e, unsigned) {
  Event* event = FindEvent(e);
  if (event == nullptr) return Fail(kInvalidHandle, "cuStreamWaitEvent of an unknown event");
  if (stream == &g_side && event->stream == &g_stream) {
    g_side_forked = true;
    return kSuccess;
  }
  if (stream == &g_stream && event->stream == &g_side) {
    g_side_forked = false;
    return FlushSide();
  }
  return Fail(kInvalidValue, "cuStreamWaitEvent: the fake driver knows a wait of the side stream for the main or of the main for the side");
}
int cuStreamSynchronize(void* s) {
  if (s != &g_stream) return Fail(kInvalidHandle, "cuStreamSynchronize on an unknown stream");
  return g_stream.capturing ? RefuseWhileCapturing("cuStreamSynchronize") : RunQueued();
}

int cuMemHostAlloc(void** p, std::size_t n, unsigned) {
  if (n == 0) return Fail(kInvalidValue, "cuMemHostAlloc of 0 bytes");
  const std::size_t page = PageSize();
  *p = std::aligned_alloc(page, (n + page - 1) / page * page);
  if (*p == nullptr) return Fail(kOutOfMemory, "out of pinned host memory");
  std::lock_guard<std::mutex> lock(g_pinned_mutex);
  g_pinned[static_cast<const char*>(*p)] = n;
  return 0;
}

int cuMemFreeHost(void* p) {
  if (CUresult result = RunQueued(); result != kSuccess) return result;
  std::lock_guard<std::mutex> lock(g_pinned_mutex);
  if (g_pinned.erase(static_cast<const char*>(p)) == 0) return Fail(kInvalidValue, "cuMemFreeHost of memory cuMemHostAlloc did not give");
  std::free(p);
  return 0;
}

int cuEventCreate(void** e, unsigned flags) {
  auto event = std::make_shared<Event>();
  event->timing = (flags & 0x2) == 0;
  *e = event.get();
  g_events[*e] = std::move(event);
  return 0;
}
int cuEventRecord(void* e, void* stream) {
  auto it = g_events.find(e);
  if (it == g_events.end()) return Fail(kInvalidHandle, "cuEventRecord of an unknown event");
  std::shared_ptr<Event> event = it->second;
  event->stream = stream;
  // a fork or join inside a capture (events without timing): a dependency, nothing to run
  if (g_stream.capturing && !event->timing) return stream == &g_stream || stream == &g_side ? kSuccess : Fail(kInvalidHandle, "cuEventRecord on an unknown stream");
  if (g_stream.capturing) return RefuseWhileCapturing("cuEventRecord");
  event->recorded = true;
  event->pending = true;
  return Submit(stream, [event] {
    event->pending = false;
    event->at = std::chrono::steady_clock::now();
    return kSuccess;
  });
}
// Work queued on the stream (FTEMU_DEFER) runs only when the host waits: a query sees it pending until then.
int cuEventQuery(void* e) {
  Event* event = FindEvent(e);
  if (event == nullptr) return Fail(kInvalidHandle, "cuEventQuery of an unknown event");
  return event->pending ? kNotReady : kSuccess;
}
int cuEventSynchronize(void* e) {
  Event* event = FindEvent(e);
  if (event == nullptr) return Fail(kInvalidHandle, "cuEventSynchronize of an unknown event");
  if (event->pending && event->stream == &g_side) {
    if (CUresult result = FlushSide(); result != kSuccess) return result;
  }
  return event->pending ? RunQueued() : 0;
}
int cuEventElapsedTime(float* ms, void* start, void* end) {
  Event *a = FindEvent(start), *b = FindEvent(end);
  if (a == nullptr || b == nullptr) return Fail(kInvalidHandle, "cuEventElapsedTime of an unknown event");
  if (!a->timing || !b->timing) return Fail(kInvalidHandle, "cuEventElapsedTime of an event without timing");
  if (!a->recorded || !b->recorded) return Fail(kInvalidHandle, "cuEventElapsedTime of an event never recorded");
  if (a->pending || b->pending) return kNotReady;
  *ms = std::chrono::duration<float, std::milli>(b->at - a->at).count();
  return 0;
}
int cuEventDestroy_v2(void* e) {
  if (g_events.erase(e) == 0) return Fail(kInvalidHandle, "cuEventDestroy of an unknown event");
  return 0;
}
int cuStreamQuery(void* s) {
  if (s != &g_stream) return Fail(kInvalidHandle, "cuStreamQuery on an unknown stream");
  if (g_stream.capturing) return RefuseWhileCapturing("cuStreamQuery");
  return g_queued.empty() ? kSuccess : kNotReady;
}

int cuMemAlloc_v2(CUdeviceptr* p, std::size_t n) {
  if (n == 0) return Fail(kInvalidValue, "cuMemAlloc of 0 bytes");
  Memory& m = GetMemory();
  std::lock_guard<std::mutex> lock(m.mutex);
  const std::size_t page = PageSize();
  const std::size_t rounded = (n + 255) / 256 * 256;
  const std::size_t span = (rounded + page - 1) / page * page;
  if (m.base == nullptr || m.used + rounded > kTotalBytes || m.next + span + page > kReservedBytes ||
      mprotect(m.base + m.next, span, PROT_READ | PROT_WRITE) != 0)
    return Fail(kOutOfMemory, "out of fake device memory");
  char* start = m.base + m.next;
  // The block ends where the guard page after the span begins.
  *p = reinterpret_cast<CUdeviceptr>(start + span - rounded);
  m.next += span + page;
  m.blocks[*p] = rounded;
  m.used += rounded;
  if (!Skipping()) std::memset(reinterpret_cast<void*>(*p), 0xa5, rounded);  // device memory starts as garbage, not zeros
  return 0;
}

int cuMemFree_v2(CUdeviceptr p) {
  if (g_stream.capturing) return RefuseWhileCapturing("cuMemFree");
  // A GPU's cuMemFree waits for the work queued before it, the side stream's too.
  if (CUresult result = FlushSide(); result != kSuccess) return result;
  if (CUresult result = RunQueued(); result != kSuccess) return result;
  Memory& m = GetMemory();
  std::lock_guard<std::mutex> lock(m.mutex);
  auto it = m.blocks.find(p);
  if (it == m.blocks.end()) return Fail(kInvalidValue, "cuMemFree of an address that is not an allocation");
  const std::size_t page = PageSize();
  char* start = reinterpret_cast<char*>(p / page * page);
  const std::size_t span = p + it->second - reinterpret_cast<CUdeviceptr>(start);
  madvise(start, span, MADV_DONTNEED);
  mprotect(start, span, PROT_NONE);
  m.used -= it->second;
  m.blocks.erase(it);
  return 0;
}

int cuMemGetInfo_v2(std::size_t* free, std::size_t* total) {
  Memory& m = GetMemory();
  std::lock_guard<std::mutex> lock(m.mutex);
  *total = kTotalBytes;
  *free = kTotalBytes - m.used;
  return 0;
}

// From pageable memory a real driver stages the source before returning, so the bytes are taken now; from pinned
// memory the copy reads them when it runs. Captured, it reads the host memory at each replay, as a graph's memcpy
// node does.
int cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void* s, std::size_t n, void* stream) {
  if (!InDevice(d, n)) return Fail(kInvalidValue, "cuMemcpyHtoD: the destination is not device memory");
  if (InReservation(s)) return Fail(kInvalidValue, "cuMemcpyHtoD: the source is device memory");
  const bool pinned = InPinned(s, n);
  if (std::getenv("FTEMU_TRACE") != nullptr)
    std::fprintf(stderr, "ftemu: copy of %zu bytes to the device from %s memory\n", n, pinned ? "pinned" : "pageable");
  if (pinned || g_stream.capturing) {
    return Submit(stream, [=] {
      std::memcpy(reinterpret_cast<void*>(d), s, n);
      return kSuccess;
    });
  }
  auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(s), static_cast<const char*>(s) + n);
  return Submit(stream, [=] {
    std::memcpy(reinterpret_cast<void*>(d), staged->data(), n);
    return kSuccess;
  });
}
// To pageable memory the copy has run when this returns, as on a GPU.
int cuMemcpyDtoHAsync_v2(void* d, CUdeviceptr s, std::size_t n, void* stream) {
  if (!InDevice(s, n)) return Fail(kInvalidValue, "cuMemcpyDtoH: the source is not device memory");
  if (InReservation(d)) return Fail(kInvalidValue, "cuMemcpyDtoH: the destination is device memory");
  CUresult result = Submit(stream, [=] {
    std::memcpy(d, reinterpret_cast<const void*>(s), n);
    return kSuccess;
  });
  if (result == kSuccess && !g_stream.capturing && !InPinned(d, n)) result = RunQueued();
  return result;
}
int cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, std::size_t n, void* stream) {
  if (!InDevice(d, n)) return Fail(kInvalidValue, "cuMemcpyDtoD: the destination is not device memory");
  if (!InDevice(s, n)) return Fail(kInvalidValue, "cuMemcpyDtoD: the source is not device memory");
  return Submit(stream, [=] {
    if (!Skipping()) std::memmove(reinterpret_cast<void*>(d), reinterpret_cast<const void*>(s), n);
    return kSuccess;
  });
}
int cuMemsetD8Async(CUdeviceptr d, unsigned char v, std::size_t n, void* stream) {
  if (!InDevice(d, n)) return Fail(kInvalidValue, "cuMemsetD8: the destination is not device memory");
  return Submit(stream, [=] {
    std::memset(reinterpret_cast<void*>(d), v, n);
    return kSuccess;
  });
}

// The image is what the fake NVRTC returned as a cubin: a marker line, then the module library's path.
int cuModuleLoadData(void** module, const void* image) {
  static const char kMarker[] = "FTEMU-MODULE\n";
  const char* text = static_cast<const char*>(image);
  if (std::strncmp(text, kMarker, sizeof(kMarker) - 1) != 0)
    return Fail(kInvalidImage, "the image is not a module of the fake NVRTC");
  void* handle = dlopen(text + sizeof(kMarker) - 1, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) return Fail(kInvalidImage, std::string("cannot load the module: ") + dlerror());
  *module = handle;
  return 0;
}

int cuModuleGetFunction(void** fn, void* module, const char* name) {
  const std::string symbol = std::string("ftemu_kernel_") + name;
  const auto* entry = static_cast<const ftemu::KernelEntry*>(dlsym(module, symbol.c_str()));
  if (entry == nullptr) return Fail(kNotFound, std::string("the module has no kernel ") + name);
  *fn = new Function{name, entry};  // functions live as long as their module, which is never unloaded
  return 0;
}

// Takes CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES (8) only, up to the device's opt-in limit.
int cuFuncSetAttribute(void* f, int attribute, int value) {
  auto* fn = static_cast<Function*>(f);
  if (fn == nullptr) return Fail(kInvalidHandle, "cuFuncSetAttribute of a null function");
  if (attribute != 8) return Fail(kInvalidValue, "cuFuncSetAttribute: the fake driver knows no attribute " + std::to_string(attribute));
  int major = 0, minor = 0;
  cuDeviceGetAttribute(&major, 75, 0);
  cuDeviceGetAttribute(&minor, 76, 0);
  if (value < 0 || static_cast<unsigned>(value) > OptInSharedBytes(major, minor))
    return Fail(kInvalidValue, "cuFuncSetAttribute: " + std::to_string(value) + " bytes of dynamic shared memory");
  fn->max_dynamic_shared = static_cast<unsigned>(value);
  return 0;
}

// cuLaunchKernel, and cuLaunchKernelEx with `programmatic` (programmatic stream serialization).
static int LaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shared_bytes, void* stream, void** params, void** extra, bool programmatic) {
  const auto* fn = static_cast<const Function*>(f);
  if (fn == nullptr) return Fail(kInvalidHandle, "cuLaunchKernel of a null function");
  const std::string what = "launch of " + fn->name;
  if (extra != nullptr || params == nullptr) return Fail(kInvalidValue, what + ": arguments must come as kernelParams");
  if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0)
    return Fail(kInvalidValue, what + ": a grid or block dimension is 0");
  if (gx > 0x7fffffffu || gy > 65535 || gz > 65535)
    return Fail(kInvalidValue, what + ": grid (" + std::to_string(gx) + ", " + std::to_string(gy) + ", " +
                                   std::to_string(gz) + ") exceeds (2^31 - 1, 65535, 65535)");
  if (bx > 1024 || by > 1024 || bz > 64 || 1ull * bx * by * bz > 1024)
    return Fail(kInvalidValue, what + ": block (" + std::to_string(bx) + ", " + std::to_string(by) + ", " +
                                   std::to_string(bz) + ") exceeds 1024 threads");
  if (shared_bytes > fn->max_dynamic_shared)
    return Fail(kInvalidValue, what + ": " + std::to_string(shared_bytes) + " bytes of dynamic shared memory, above the " +
                                   std::to_string(fn->max_dynamic_shared) + " cuFuncSetAttribute allowed");
  void* bound = fn->entry->bind(params);
  const ftemu::KernelEntry* entry = fn->entry;
  std::string name = fn->name;
  return Submit(
      stream,
      [=] {
        ftemu::LaunchConfig config{{gx, gy, gz}, {bx, by, bz}, DynamicShared(shared_bytes), shared_bytes,
                                   g_launches++, IsDevicePointer, {}, programmatic};
        const auto start = std::chrono::steady_clock::now();
        const int result = Skipping() ? 0 : entry->run(bound, &config);
        if (std::getenv("FTEMU_TRACE") != nullptr) {
          const std::chrono::duration<double, std::milli> took = std::chrono::steady_clock::now() - start;
          std::fprintf(stderr, "ftemu: %s grid (%u, %u, %u) block (%u, %u, %u)%s: %.3f ms\n", name.c_str(), gx, gy,
                       gz, bx, by, bz, programmatic ? " programmatic" : "", took.count());
        }
        if (result == 0) return kSuccess;
        return Fail(result == 4 ? kIllegalAddress : kLaunchFailed, "launch of " + name + ": " + config.error);
      },
      [=] { entry->release(bound); });
}

int cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned shared_bytes, void* stream, void** params, void** extra) {
  return LaunchKernel(f, gx, gy, gz, bx, by, bz, shared_bytes, stream, params, extra, false);
}

// Takes programmatic stream serialization only: the one attribute the addon sets.
int cuLaunchKernelEx(const ft::cuda::LaunchConfigEx* config, void* f, void** params, void** extra) {
  if (config == nullptr) return Fail(kInvalidValue, "cuLaunchKernelEx without a config");
  if (config->attribute_count > 0 && config->attributes == nullptr)
    return Fail(kInvalidValue, "cuLaunchKernelEx: attributes missing");
  bool programmatic = false;
  for (unsigned i = 0; i < config->attribute_count; ++i) {
    const ft::cuda::LaunchAttribute& a = config->attributes[i];
    if (a.id != ft::cuda::kLaunchAttributeProgrammaticStreamSerialization)
      return Fail(kInvalidValue, "cuLaunchKernelEx: the fake driver knows no attribute " + std::to_string(a.id));
    programmatic = a.value.programmatic_stream_serialization != 0;
  }
  // As a driver that cannot capture programmatic launches would (the addon then captures plain ones): refused as
  // unsupported, or ("invalid-value") as an invalid value, which the addon takes for a driver without the
  // attribute and retries plainly, into a capture the refusal has invalidated all the same.
  const char* refuse = std::getenv("FTEMU_REFUSE_PROGRAMMATIC_CAPTURE");
  if (programmatic && g_stream.capturing && refuse != nullptr) {
    if (std::string(refuse) != "invalid-value") return RefuseWhileCapturing("a programmatic launch");
    g_stream.invalidated = true;
    return Fail(kInvalidValue, "a programmatic launch while the stream is being captured");
  }
  return LaunchKernel(f, config->grid_x, config->grid_y, config->grid_z, config->block_x, config->block_y,
                      config->block_z, config->shared_bytes, config->stream, params, extra, programmatic);
}

int cuStreamBeginCapture_v2(void* stream, int mode) {
  if (stream != &g_stream) return Fail(kInvalidHandle, "capture of an unknown stream");
  if (mode < 0 || mode > 2) return Fail(kInvalidValue, "unknown capture mode");
  if (g_stream.capturing) return Fail(kIllegalState, "the stream is already being captured");
  g_stream.capturing = true;
  g_stream.invalidated = false;
  g_stream.captured.clear();
  return 0;
}

int cuStreamEndCapture(void* stream, void** graph) {
  if (stream != &g_stream) return Fail(kInvalidHandle, "end of capture on an unknown stream");
  if (!g_stream.capturing) return Fail(kIllegalState, "the stream is not being captured");
  g_stream.capturing = false;
  OpList ops = std::move(g_stream.captured);
  g_stream.captured.clear();
  *graph = nullptr;
  if (g_side_forked) {
    g_side_forked = false;  // the capture ends anyway, the side stream's captured work with it
    g_side_ops.clear();
    return Fail(kCaptureUnjoined, "the capture ends with the side stream not joined");
  }
  if (g_stream.invalidated) return Fail(kCaptureInvalidated, "the capture was invalidated by an unsupported call");
  *graph = new Graph{std::move(ops)};
  return 0;
}

// Status: 0 none, 1 active, 2 invalidated (CUstreamCaptureStatus).
int cuStreamIsCapturing(void* stream, int* status) {
  if (stream != &g_stream) return Fail(kInvalidHandle, "capture status of an unknown stream");
  *status = !g_stream.capturing ? 0 : g_stream.invalidated ? 2 : 1;
  return 0;
}

int cuGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long) {
  if (graph == nullptr) return Fail(kInvalidValue, "instantiation of a null graph");
  *exec = new Graph{static_cast<Graph*>(graph)->ops};
  return 0;
}

int cuGraphLaunch(void* exec, void* stream) {
  if (exec == nullptr) return Fail(kInvalidValue, "launch of a null graph");
  if (stream != &g_stream) return Fail(kInvalidHandle, "graph launch on an unknown stream");
  if (g_stream.capturing) return RefuseWhileCapturing("cuGraphLaunch");
  return Submit(stream, [ops = static_cast<Graph*>(exec)->ops] {
    for (const auto& op : ops) {
      if (CUresult result = op->run(); result != kSuccess) return result;
    }
    return kSuccess;
  });
}

int cuGraphExecDestroy(void* exec) {
  delete static_cast<Graph*>(exec);
  return 0;
}

int cuGraphDestroy(void* graph) {
  delete static_cast<Graph*>(graph);
  return 0;
}

}  // extern "C"
