// The CUDA runtime (see runtime.h): context and stream, device memory cache and handles, NVRTC compilation with
// its caches, launches and copies. Everything here runs on the JS thread except GiveDeviceMemory, which
// finalizers may call, so the cache is guarded by a mutex.
#include "cuda/runtime.h"

#include <dlfcn.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <sstream>
#include <sys/stat.h>
#include <unordered_map>
#include <unordered_set>

#include "common/args.h"
#include "cuda/launch_config.h"

namespace ft::cuda {
namespace {

constexpr unsigned kStreamNonBlocking = 0x1;
constexpr CUresult kCudaErrorInvalidValue = 1;
constexpr CUresult kCudaErrorNotSupported = 801;

// ---- driver entry points and the context

struct Runtime {
  bool tried = false;
  std::string error;  // why the runtime could not start, once tried
  RuntimeApi api;
  CUcontext context = nullptr;
  CUstream stream = nullptr;
  CUdeviceptr tickets = 0;
  int arch = 0;
  bool programmatic_supported = false;  // sm_90+ and a driver with cuLaunchKernelEx
  bool programmatic = false;            // launches use programmatic dependent launch (ProgrammaticLaunch)
  int opt_in_shared = 0;                // the most dynamic shared memory a block may opt in to, in bytes
  std::unordered_set<CUfunction> shared_allowed;  // the functions AllowDynamicShared let past 48 KiB
};

Runtime g_runtime;
thread_local bool t_context_current = false;

std::string ErrorText(CUresult result) {
  const char* text = nullptr;
  const DriverApi& api = GetCuda().api;
  if (api.cuGetErrorString != nullptr && api.cuGetErrorString(result, &text) == kCudaSuccess && text != nullptr)
    return "error " + std::to_string(result) + " (" + text + ")";
  return "error " + std::to_string(result);
}

template <typename Fn>
bool ResolveDriver(const char* name, Fn& fn, std::string& error) {
  if (ResolveDriverSymbol(name, fn)) return true;
  error = GetCuda().cuda.path + " lacks " + name + ": update the NVIDIA driver";
  return false;
}

void StartRuntime() {
  Runtime& r = g_runtime;
  r.tried = true;
  r.error = UnusableReason();
  if (!r.error.empty()) return;
  RuntimeApi& a = r.api;
  std::string error;
  if (!ResolveDriver("cuDevicePrimaryCtxRetain", a.cuDevicePrimaryCtxRetain, error) ||
      !ResolveDriver("cuCtxSetCurrent", a.cuCtxSetCurrent, error) ||
      !ResolveDriver("cuStreamCreate", a.cuStreamCreate, error) ||
      !ResolveDriver("cuStreamSynchronize", a.cuStreamSynchronize, error) ||
      !ResolveDriver("cuMemAlloc_v2", a.cuMemAlloc_v2, error) ||
      !ResolveDriver("cuMemFree_v2", a.cuMemFree_v2, error) ||
      !ResolveDriver("cuMemGetInfo_v2", a.cuMemGetInfo_v2, error) ||
      !ResolveDriver("cuMemcpyHtoDAsync_v2", a.cuMemcpyHtoDAsync_v2, error) ||
      !ResolveDriver("cuMemcpyDtoHAsync_v2", a.cuMemcpyDtoHAsync_v2, error) ||
      !ResolveDriver("cuMemcpyDtoDAsync_v2", a.cuMemcpyDtoDAsync_v2, error) ||
      !ResolveDriver("cuMemsetD8Async", a.cuMemsetD8Async, error) ||
      !ResolveDriver("cuModuleLoadData", a.cuModuleLoadData, error) ||
      !ResolveDriver("cuModuleGetFunction", a.cuModuleGetFunction, error) ||
      !ResolveDriver("cuLaunchKernel", a.cuLaunchKernel, error)) {
    r.error = error;
    return;
  }
  const DriverApi& d = GetCuda().api;
  CUdevice device = 0;
  CUresult result = d.cuDeviceGet(&device, 0);
  if (result == kCudaSuccess) result = a.cuDevicePrimaryCtxRetain(&r.context, device);
  if (result != kCudaSuccess) {
    r.error = "could not create a CUDA context on device 0: " + ErrorText(result) +
              ": check the GPU with nvidia-smi (is it in exclusive mode and taken by another process?)";
    return;
  }
  if ((result = a.cuCtxSetCurrent(r.context)) != kCudaSuccess ||
      (result = a.cuStreamCreate(&r.stream, kStreamNonBlocking)) != kCudaSuccess ||
      (result = a.cuMemAlloc_v2(&r.tickets, kTicketWords * sizeof(uint32_t))) != kCudaSuccess ||
      (result = a.cuMemsetD8Async(r.tickets, 0, kTicketWords * sizeof(uint32_t), r.stream)) != kCudaSuccess) {
    r.error = "could not start CUDA on device 0: " + ErrorText(result);
    return;
  }
  t_context_current = true;
  const Device& dev = GetCuda().devices[0];
  r.arch = dev.major * 10 + dev.minor;
  // Letting each kernel's launch overlap the end of the one before (griddepcontrol needs sm_90) is opt-in: on an
  // H100 it made the bf16 BERT update replayed from a CUDA graph slower, 4.49 ms against 4.37 (README).
  ResolveDriverSymbol("cuLaunchKernelEx", a.cuLaunchKernelEx);
  r.programmatic_supported = r.arch >= 90 && a.cuLaunchKernelEx != nullptr;
  r.programmatic = r.programmatic_supported && EnvSwitch("FINETUNE_CUDA_PDL", false);
  if (ResolveDriverSymbol("cuFuncSetAttribute", a.cuFuncSetAttribute) &&
      d.cuDeviceGetAttribute(&r.opt_in_shared, kAttributeMaxSharedPerBlockOptIn, device) != kCudaSuccess)
    r.opt_in_shared = 0;
}

// ---- device handles

// Tells device handles apart from the host buffers native.alloc wraps with a HostBlock.
constexpr napi_type_tag kDeviceHandleTag = {0x6a1c3f0e5b7d4a21ull, 0x9e8d7c6b5a493827ull};

void FinalizeHandle(napi_env, void* data, void*) {
  auto* block = static_cast<DeviceBlock*>(data);
  if (!block->released.exchange(true)) GiveDeviceMemory(RawBlock{block->ptr, block->bytes});
  delete block;
}

// ---- NVRTC

using nvrtcResult = int;
using nvrtcProgram = struct _nvrtcProgram*;
constexpr nvrtcResult kNvrtcSuccess = 0;

struct NvrtcApi {
  nvrtcResult (*nvrtcCreateProgram)(nvrtcProgram*, const char* src, const char* name, int num_headers,
                                    const char* const* headers, const char* const* include_names) = nullptr;
  nvrtcResult (*nvrtcCompileProgram)(nvrtcProgram, int num_options, const char* const* options) = nullptr;
  nvrtcResult (*nvrtcGetProgramLogSize)(nvrtcProgram, size_t*) = nullptr;
  nvrtcResult (*nvrtcGetProgramLog)(nvrtcProgram, char*) = nullptr;
  nvrtcResult (*nvrtcGetCUBINSize)(nvrtcProgram, size_t*) = nullptr;
  nvrtcResult (*nvrtcGetCUBIN)(nvrtcProgram, char*) = nullptr;
  nvrtcResult (*nvrtcGetPTXSize)(nvrtcProgram, size_t*) = nullptr;
  nvrtcResult (*nvrtcGetPTX)(nvrtcProgram, char*) = nullptr;
  nvrtcResult (*nvrtcDestroyProgram)(nvrtcProgram*) = nullptr;
  nvrtcResult (*nvrtcVersion)(int* major, int* minor) = nullptr;
  const char* (*nvrtcGetErrorString)(nvrtcResult) = nullptr;
  // Optional (NVRTC 11.2+): the architectures this NVRTC can build cubins for.
  nvrtcResult (*nvrtcGetNumSupportedArchs)(int*) = nullptr;
  nvrtcResult (*nvrtcGetSupportedArchs)(int*) = nullptr;
};

struct Nvrtc {
  NvrtcApi api;
  std::string error;
  std::string version;
  // The architecture option: sm_XY (a cubin) when NVRTC knows the device, else compute_<newest it knows>
  // (PTX, which the driver compiles for the device).
  std::string arch_option;
  bool cubin = true;
};

template <typename Fn>
bool ResolveNvrtc(const char* name, Fn& fn, std::string& error) {
  void* symbol = dlsym(GetCuda().nvrtc.handle, name);
  if (symbol == nullptr) {
    error = GetCuda().nvrtc.path + " lacks " + name + ": install a complete CUDA toolkit or nvidia-cuda-nvrtc";
    return false;
  }
  fn = reinterpret_cast<Fn>(symbol);
  return true;
}

const Nvrtc& GetNvrtc() {
  static const Nvrtc nvrtc = [] {
    Nvrtc n;
    NvrtcApi& a = n.api;
    if (!ResolveNvrtc("nvrtcCreateProgram", a.nvrtcCreateProgram, n.error) ||
        !ResolveNvrtc("nvrtcCompileProgram", a.nvrtcCompileProgram, n.error) ||
        !ResolveNvrtc("nvrtcGetProgramLogSize", a.nvrtcGetProgramLogSize, n.error) ||
        !ResolveNvrtc("nvrtcGetProgramLog", a.nvrtcGetProgramLog, n.error) ||
        !ResolveNvrtc("nvrtcGetCUBINSize", a.nvrtcGetCUBINSize, n.error) ||
        !ResolveNvrtc("nvrtcGetCUBIN", a.nvrtcGetCUBIN, n.error) ||
        !ResolveNvrtc("nvrtcGetPTXSize", a.nvrtcGetPTXSize, n.error) ||
        !ResolveNvrtc("nvrtcGetPTX", a.nvrtcGetPTX, n.error) ||
        !ResolveNvrtc("nvrtcDestroyProgram", a.nvrtcDestroyProgram, n.error) ||
        !ResolveNvrtc("nvrtcVersion", a.nvrtcVersion, n.error) ||
        !ResolveNvrtc("nvrtcGetErrorString", a.nvrtcGetErrorString, n.error))
      return n;
    std::string ignored;
    ResolveNvrtc("nvrtcGetNumSupportedArchs", a.nvrtcGetNumSupportedArchs, ignored);
    ResolveNvrtc("nvrtcGetSupportedArchs", a.nvrtcGetSupportedArchs, ignored);
    int major = 0, minor = 0;
    a.nvrtcVersion(&major, &minor);
    n.version = std::to_string(major) + "." + std::to_string(minor);
    int arch = g_runtime.arch;
    int count = 0;
    if (a.nvrtcGetNumSupportedArchs != nullptr && a.nvrtcGetSupportedArchs != nullptr &&
        a.nvrtcGetNumSupportedArchs(&count) == kNvrtcSuccess && count > 0) {
      std::vector<int> archs(count);
      if (a.nvrtcGetSupportedArchs(archs.data()) == kNvrtcSuccess) {
        int best = 0;
        for (int v : archs)
          if (v <= arch && v > best) best = v;
        if (best == 0) {
          n.error = "NVRTC " + n.version + " cannot compile for this GPU (sm_" + std::to_string(arch) +
                    "): install the CUDA toolkit that matches the driver";
          return n;
        }
        if (best != arch) {
          n.cubin = false;
          n.arch_option = "--gpu-architecture=compute_" + std::to_string(best);
          return n;
        }
      }
    }
    n.arch_option = "--gpu-architecture=sm_" + std::to_string(arch);
    return n;
  }();
  return nvrtc;
}

// $FINETUNE_CACHE, else ~/.cache/finetune/kernels, created when missing; empty when there is none to use.
std::string CacheFolder() {
  static const std::string folder = [] {
    std::string dir;
    if (const char* env = std::getenv("FINETUNE_CACHE"); env != nullptr && *env != '\0') {
      dir = env;
    } else if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
      dir = std::string(home) + "/.cache/finetune/kernels";
    } else {
      return std::string();
    }
    for (size_t i = 1; i <= dir.size(); ++i) {
      if (i == dir.size() || dir[i] == '/') mkdir(dir.substr(0, i).c_str(), 0755);
    }
    struct stat st;
    return stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) ? dir : std::string();
  }();
  return folder;
}

}  // namespace

uint64_t Fnv1a(const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

std::string CachePath(const std::string& stem, const std::string& key, const std::string& extension) {
  const std::string folder = CacheFolder();
  if (folder.empty()) return std::string();
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(Fnv1a(key.data(), key.size())));
  return folder + "/" + stem + "-" + hex + extension;
}

bool ReadFile(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream buffer;
  buffer << in.rdbuf();
  out = buffer.str();
  return !out.empty();
}

void WriteFileAtomically(const std::string& path, const std::string& data) {
  std::string temp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) return;
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out) {
      out.close();
      std::remove(temp.c_str());
      return;
    }
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) std::remove(temp.c_str());
}

namespace {

// NVRTC contracts a * b + c into FMAs by default; the kernels' math is the CPU's (native/cpu/vec_math.h), which
// never contracts, and the GELU gradients cancel near their zero, where one ulp of difference in a term is far
// beyond the round-off the backends agree on. Without contraction both compute the same bits.
constexpr const char* kLanguageOption = "-std=c++17";
constexpr const char* kFmadOption = "--fmad=false";

// Compiles `source`; returns the cubin, or PTX with its terminating NUL (cuModuleLoadData needs it).
std::string Compile(Napi::Env env, const Nvrtc& n, const char* module_name, const std::string& source) {
  const NvrtcApi& a = n.api;
  nvrtcProgram program = nullptr;
  nvrtcResult result = a.nvrtcCreateProgram(&program, source.c_str(), module_name, 0, nullptr, nullptr);
  if (result != kNvrtcSuccess)
    throw Napi::Error::New(env, std::string("NVRTC could not create the program ") + module_name + ": " +
                                    a.nvrtcGetErrorString(result));
  std::unique_ptr<nvrtcProgram, void (*)(nvrtcProgram*)> guard(&program, [](nvrtcProgram* p) {
    GetNvrtc().api.nvrtcDestroyProgram(p);
  });
  const char* options[] = {n.arch_option.c_str(), kLanguageOption, kFmadOption};
  result = a.nvrtcCompileProgram(program, 3, options);
  if (result != kNvrtcSuccess) {
    size_t log_size = 0;
    std::string log;
    if (a.nvrtcGetProgramLogSize(program, &log_size) == kNvrtcSuccess && log_size > 1) {
      log.resize(log_size);
      a.nvrtcGetProgramLog(program, log.data());
      log.resize(log_size - 1);
    }
    throw Napi::Error::New(env, std::string("NVRTC ") + n.version + " failed to compile the CUDA kernels of " +
                                    module_name + " (" + n.arch_option + "): " + a.nvrtcGetErrorString(result) +
                                    "\n" + log);
  }
  std::string image;
  size_t size = 0;
  if (n.cubin) {
    if (a.nvrtcGetCUBINSize(program, &size) == kNvrtcSuccess && size > 0) {
      image.resize(size);
      if (a.nvrtcGetCUBIN(program, image.data()) == kNvrtcSuccess) return image;
    }
  }
  // No cubin (compute_XX target, or an NVRTC that gives none): PTX, which the driver compiles at load.
  if ((result = a.nvrtcGetPTXSize(program, &size)) != kNvrtcSuccess || size == 0)
    throw Napi::Error::New(env, std::string("NVRTC produced no code for ") + module_name + ": " +
                                    a.nvrtcGetErrorString(result));
  image.resize(size);
  if ((result = a.nvrtcGetPTX(program, image.data())) != kNvrtcSuccess)
    throw Napi::Error::New(env, std::string("NVRTC could not return the PTX of ") + module_name + ": " +
                                    a.nvrtcGetErrorString(result));
  return image;
}

struct LoadedModule {
  // The caller's string it was compiled from: the kernel families' sources are statics, so a launch finds its
  // module by address instead of comparing tens of kilobytes of source.
  const std::string* origin = nullptr;
  CUmodule module = nullptr;
  std::unordered_map<std::string, CUfunction> functions;
};

// Per module name, the sources compiled under it (usually one; a generator may specialise a source per dtype).
// Modules stay loaded for the life of the process.
std::unordered_map<std::string, std::vector<std::unique_ptr<LoadedModule>>> g_modules;
ModuleLoads g_module_loads;

CUmodule LoadModule(Napi::Env env, const char* module_name, const std::string& source) {
  const Nvrtc& n = GetNvrtc();
  if (!n.error.empty()) throw Napi::Error::New(env, "CUDA kernels cannot be compiled: " + n.error);
  const std::string key =
      source + '\0' + n.arch_option + '\0' + kLanguageOption + '\0' + kFmadOption + '\0' + n.version;
  const std::string path = CachePath(module_name, key, n.cubin ? ".cubin" : ".ptx");
  const RuntimeApi& a = g_runtime.api;
  CUmodule module = nullptr;
  std::string image;
  // A cached file that no longer loads (truncated, another driver) is compiled again and replaced.
  if (!path.empty() && ReadFile(path, image) && a.cuModuleLoadData(&module, image.data()) == kCudaSuccess)
    return module;
  image = Compile(env, n, module_name, source);
  CUresult result = a.cuModuleLoadData(&module, image.data());
  if (result != kCudaSuccess)
    throw Napi::Error::New(env, std::string("the CUDA driver could not load the kernels of ") + module_name +
                                    " compiled by NVRTC " + n.version + " (" + n.arch_option + "): " +
                                    ErrorText(result) + ": the driver may be older than NVRTC; update it");
  if (!path.empty()) WriteFileAtomically(path, image);
  return module;
}

}  // namespace

std::string UnusableReason() {
  const CudaState& s = GetCuda();
  if (!s.problem.empty()) return s.problem;
  if (s.nvrtc.handle == nullptr)
    return "NVRTC (CUDA's run-time compiler) was not found: " + s.nvrtc.error +
           ". Install the CUDA toolkit or the nvidia-cuda-nvrtc package, or set CUDA_HOME";
  if (s.cublas_lt.handle == nullptr)
    return "cuBLASLt was not found: " + s.cublas_lt.error +
           ". Install the CUDA toolkit or the nvidia-cublas package, or set CUDA_HOME";
  return std::string();
}

void EnsureContext(Napi::Env env) {
  if (!g_runtime.tried) StartRuntime();
  if (!g_runtime.error.empty()) throw Napi::Error::New(env, "CUDA is not available: " + g_runtime.error);
  if (!t_context_current) {
    Check(env, g_runtime.api.cuCtxSetCurrent(g_runtime.context), "cuCtxSetCurrent");
    t_context_current = true;
  }
}

CUstream g_current_stream = nullptr;  // SetCurrentStream's, null for the main stream

CUstream Stream() { return g_current_stream != nullptr ? g_current_stream : g_runtime.stream; }

CUstream MainStream() { return g_runtime.stream; }

void SetCurrentStream(CUstream stream) { g_current_stream = stream; }

CUdeviceptr Tickets() { return g_runtime.tickets; }

void* DriverSymbol(const char* name) { return dlsym(GetCuda().cuda.handle, name); }

const RuntimeApi& Api() { return g_runtime.api; }

int Arch() { return g_runtime.arch; }

int Multiprocessors() { return GetCuda().devices[0].multiprocessors; }

int EnvSetting(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) return -1;
  if (std::strcmp(v, "1") == 0 || std::strcmp(v, "true") == 0) return 1;
  if (std::strcmp(v, "0") == 0 || std::strcmp(v, "false") == 0) return 0;
  return -1;
}

bool EnvSwitch(const char* name, bool fallback) {
  const int setting = EnvSetting(name);
  return setting < 0 ? fallback : setting == 1;
}

int EnvMode(const char* name) {
  const int setting = EnvSetting(name);
  return setting < 0 ? 2 : setting;
}

Napi::Value ModeSetting(const Napi::CallbackInfo& info, int& mode, const char* function) {
  static constexpr const char* kModes[] = {"off", "on", "auto"};
  Napi::Env env = info.Env();
  if (!Omitted(info, 0)) {
    const std::string name = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    int index = 0;
    while (index < 3 && name != kModes[index]) ++index;
    if (index == 3) throw Napi::TypeError::New(env, std::string(function) + ": mode must be \"on\", \"off\" or \"auto\"");
    mode = index;
  }
  return Napi::String::New(env, kModes[mode]);
}

Napi::Value FlagSetting(const Napi::CallbackInfo& info, bool& flag) {
  if (!Omitted(info, 0)) flag = GetBool(info, 0, "enabled");
  return Napi::Boolean::New(info.Env(), flag);
}

bool ProgrammaticLaunch() { return g_runtime.programmatic; }

bool SetProgrammaticLaunch(bool on) { return g_runtime.programmatic = on && g_runtime.programmatic_supported; }

void Check(Napi::Env env, CUresult result, const char* what) {
  if (result != kCudaSuccess) throw Napi::Error::New(env, std::string(what) + " failed: " + ErrorText(result));
}

const GraphApi& GetGraphApi(Napi::Env env) {
  static GraphApi api;
  static std::string error;
  static bool resolved = false;
  EnsureContext(env);
  if (!resolved) {
    resolved = true;
    if (!ResolveDriver("cuStreamBeginCapture_v2", api.cuStreamBeginCapture_v2, error) ||
        !ResolveDriver("cuStreamEndCapture", api.cuStreamEndCapture, error) ||
        !ResolveDriver("cuGraphInstantiateWithFlags", api.cuGraphInstantiateWithFlags, error) ||
        !ResolveDriver("cuGraphLaunch", api.cuGraphLaunch, error) ||
        !ResolveDriver("cuGraphExecDestroy", api.cuGraphExecDestroy, error) ||
        !ResolveDriver("cuGraphDestroy", api.cuGraphDestroy, error))
      api = GraphApi{};
  }
  if (!error.empty()) throw Napi::Error::New(env, "CUDA graphs are not available: " + error);
  return api;
}

Napi::ArrayBuffer NewDeviceHandle(Napi::Env env, RawBlock raw, size_t requested) {
  auto* block = new DeviceBlock;
  block->ptr = raw.ptr;
  block->bytes = raw.bytes;
  block->requested = requested;
  Napi::ArrayBuffer handle;
  try {
    handle = Napi::ArrayBuffer::New(env, 0);
    NAPI_THROW_IF_FAILED(env, napi_type_tag_object(env, handle, &kDeviceHandleTag), Napi::ArrayBuffer());
  } catch (...) {
    GiveDeviceMemory(raw);
    delete block;
    throw;
  }
  napi_status status = napi_wrap(env, handle, block, FinalizeHandle, nullptr, nullptr);
  if (status != napi_ok) {
    GiveDeviceMemory(raw);
    delete block;
    NAPI_THROW_IF_FAILED(env, status, Napi::ArrayBuffer());
  }
  return handle;
}

DeviceBlock* UnwrapDeviceHandle(Napi::Env env, Napi::Value value) {
  if (!value.IsArrayBuffer()) return nullptr;
  bool tagged = false;
  if (napi_check_object_type_tag(env, value, &kDeviceHandleTag, &tagged) != napi_ok || !tagged) return nullptr;
  void* raw = nullptr;
  if (napi_unwrap(env, value, &raw) != napi_ok) return nullptr;
  return static_cast<DeviceBlock*>(raw);
}

DeviceBuffer GetDeviceBuffer(const Napi::CallbackInfo& info, int index, const char* name) {
  Napi::Env env = info.Env();
  Napi::Value v = info[index];
  if (v.IsNull()) return DeviceBuffer{};
  DeviceBlock* block = UnwrapDeviceHandle(env, v);
  if (block == nullptr) {
    throw Napi::TypeError::New(env, ArgName(index, name) + " must be a CUDA device buffer (from cuda.alloc)" +
                                        (v.IsArrayBuffer() ? ", not host memory: move the tensor with .to(\"cuda\")"
                                                           : ""));
  }
  if (block->released.load())
    throw Napi::Error::New(env, ArgName(index, name) + ": the device memory has been released");
  return DeviceBuffer{block->ptr, block->requested};
}

uint64_t DeviceElementsBytes(const Napi::CallbackInfo& info, const DeviceBuffer& b, int64_t offset, int64_t extent,
                             size_t element_size, const char* name) {
  constexpr int64_t kMaxElements = int64_t{1} << 48;
  if (offset < 0 || extent < 0 || offset > kMaxElements || extent > kMaxElements ||
      static_cast<uint64_t>(offset + extent) * element_size > b.bytes) {
    throw Napi::RangeError::New(info.Env(), std::string(name) + ": " + std::to_string(extent) +
                                                " elements at offset " + std::to_string(offset) +
                                                " exceed the device buffer of " +
                                                std::to_string(b.bytes / element_size) + " elements" +
                                                (b.ptr == 0 ? " (null)" : ""));
  }
  return b.ptr + static_cast<uint64_t>(offset) * element_size;
}

Layout MakeLayout(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides) {
  Layout l;
  l.rank = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size() && i < 8; ++i) {
    l.shape[i] = shape[i];
    l.strides[i] = strides[i];
  }
  return l;
}

ModuleLoads ModuleLoadStats() { return g_module_loads; }

CUfunction GetKernel(Napi::Env env, const char* module_name, const std::string& source, const char* function_name) {
  EnsureContext(env);
  std::vector<std::unique_ptr<LoadedModule>>& list = g_modules[module_name];
  LoadedModule* loaded = nullptr;
  for (auto& m : list) {
    if (m->origin == &source) {
      loaded = m.get();
      break;
    }
  }
  if (loaded == nullptr) {
    const auto start = std::chrono::steady_clock::now();
    auto m = std::make_unique<LoadedModule>();
    m->module = LoadModule(env, module_name, source);
    ++g_module_loads.modules;
    g_module_loads.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    m->origin = &source;
    loaded = m.get();
    list.push_back(std::move(m));
  }
  auto it = loaded->functions.find(function_name);
  if (it != loaded->functions.end()) return it->second;
  CUfunction fn = nullptr;
  CUresult result = g_runtime.api.cuModuleGetFunction(&fn, loaded->module, function_name);
  if (result != kCudaSuccess)
    throw Napi::Error::New(env, std::string("the CUDA kernels of ") + module_name + " have no function " +
                                    function_name + " (is it extern \"C\" __global__?): " + ErrorText(result));
  loaded->functions.emplace(function_name, fn);
  return fn;
}

bool AllowDynamicShared(CUfunction fn, unsigned bytes) {
  constexpr unsigned kDefaultShared = 48 * 1024;
  Runtime& r = g_runtime;
  if (bytes <= kDefaultShared || r.shared_allowed.count(fn) != 0) return true;
  if (r.api.cuFuncSetAttribute == nullptr || bytes > static_cast<unsigned>(r.opt_in_shared) ||
      r.api.cuFuncSetAttribute(fn, kFuncAttributeMaxDynamicShared, static_cast<int>(bytes)) != kCudaSuccess)
    return false;
  r.shared_allowed.insert(fn);
  return true;
}

void Launch(Napi::Env env, CUfunction fn, Dim3 grid, Dim3 block, unsigned shared_bytes, void** args) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  Runtime& r = g_runtime;
  if (r.programmatic) {
    LaunchAttribute attribute{};
    attribute.id = kLaunchAttributeProgrammaticStreamSerialization;
    attribute.value.programmatic_stream_serialization = 1;
    LaunchConfigEx config{grid.x, grid.y, grid.z, block.x, block.y, block.z, shared_bytes, Stream(), &attribute, 1};
    const CUresult result = r.api.cuLaunchKernelEx(&config, fn, args, nullptr);
    if (result == kCudaSuccess) return;
    // A driver that takes the call but not the attribute: launch as before, from now on.
    if (result != kCudaErrorInvalidValue && result != kCudaErrorNotSupported)
      Check(env, result, "cuLaunchKernelEx (programmatic dependent launch, which FINETUNE_CUDA_PDL=1 turned on)");
    r.programmatic = r.programmatic_supported = false;
  }
  Check(env,
        r.api.cuLaunchKernel(fn, grid.x, grid.y, grid.z, block.x, block.y, block.z, shared_bytes, Stream(), args,
                             nullptr),
        "cuLaunchKernel");
}

void Synchronize(Napi::Env env) {
  ForbidDuringCapture(env, "waiting for the GPU (synchronize)");
  Check(env, g_runtime.api.cuStreamSynchronize(g_runtime.stream), "cuStreamSynchronize");
  CheckGraphErrors(env);
}

void CopyHostToDevice(Napi::Env env, CUdeviceptr dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  // A captured copy would read the host buffer at every replay, long after the caller let it go.
  ForbidDuringCapture(env, "copying host memory to the GPU",
                      ": copy new inputs into the graph's static tensors before replay()");
  StageHostToDevice(env, dst, src, bytes);
}

void CopyDeviceToHost(Napi::Env env, void* dst, CUdeviceptr src, size_t bytes) {
  if (bytes == 0) return;
  ForbidDuringCapture(env, "reading device memory on the host (item(), tolist(), .cpu())",
                      ": captured work only runs at replay(); read results after it");
  Check(env, g_runtime.api.cuMemcpyDtoHAsync_v2(dst, src, bytes, g_runtime.stream), "cuMemcpyDtoHAsync");
  Synchronize(env);
}

void CopyDeviceToDevice(Napi::Env env, CUdeviceptr dst, CUdeviceptr src, size_t bytes) {
  if (bytes == 0) return;
  Check(env, g_runtime.api.cuMemcpyDtoDAsync_v2(dst, src, bytes, Stream()), "cuMemcpyDtoDAsync");
}

void MemsetBytes(Napi::Env env, CUdeviceptr dst, uint8_t value, size_t bytes) {
  if (bytes == 0) return;
  Check(env, g_runtime.api.cuMemsetD8Async(dst, value, bytes, Stream()), "cuMemsetD8Async");
}

}  // namespace ft::cuda
