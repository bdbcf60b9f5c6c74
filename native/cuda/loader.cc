// Loads the CUDA driver API, NVRTC and cuBLASLt once per process. Every failure (library missing, not a library,
// lacking a symbol, driver too old, no GPU) becomes a sentence in the state rather than an exception or a crash:
// finetune must run on the CPU wherever CUDA cannot.
#include "cuda/loader.h"

#include <dlfcn.h>

#include <cstdlib>
#include <string>

#include "cuda/search.h"

namespace ft::cuda {
namespace {

constexpr const char* kDisabled = "disabled by FINETUNE_DISABLE_CUDA";
constexpr const char* kBrokenDriverHint =
    ": reinstall the NVIDIA driver, or take this file out of CUDA_HOME and LD_LIBRARY_PATH";
constexpr const char* kDriverFailedHint = ": check the GPU and driver with nvidia-smi";

bool DisabledByEnv() {
  const char* value = std::getenv("FINETUNE_DISABLE_CUDA");
  return value != nullptr && *value != '\0' && std::string(value) != "0";
}

// CUDA encodes versions as 1000 * major + 10 * minor.
std::string CudaVersionText(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

// Resolves `name` into `fn`; on failure says which library lacks which symbol, with dlerror()'s words.
template <typename Fn>
bool Resolve(const Library& lib, const char* name, Fn& fn, std::string& error) {
  dlerror();
  void* symbol = dlsym(lib.handle, name);
  if (symbol == nullptr) {
    const char* why = dlerror();
    error = lib.path + " is not a usable library: it lacks " + name;
    if (why != nullptr) error += std::string(" (") + why + ")";
    return false;
  }
  fn = reinterpret_cast<Fn>(symbol);
  return true;
}

// A library that loaded but cannot be used is closed and reported instead of its path.
void Reject(Library& lib, const std::string& error) {
  dlclose(lib.handle);
  lib = Library{};
  lib.error = error;
}

std::string ErrorText(const DriverApi& api, CUresult result) {
  const char* text = nullptr;
  if (api.cuGetErrorString != nullptr && api.cuGetErrorString(result, &text) == kCudaSuccess && text != nullptr)
    return "error " + std::to_string(result) + " (" + text + ")";
  return "error " + std::to_string(result);
}

// Fills s.devices, or s.problem with why there are none.
void LoadDriver(CudaState& s, const SearchFolders& folders) {
  s.cuda = OpenFirst({"libcuda.so.1"}, folders);
  if (s.cuda.handle == nullptr) {
    s.problem = "the CUDA driver library was not found: " + s.cuda.error +
                ". Install the NVIDIA driver, or set CUDA_HOME or LD_LIBRARY_PATH to the folder that holds "
                "libcuda.so.1";
    return;
  }
  DriverApi& api = s.api;
  std::string error;
  // The version comes first, before the other entry points, so that an old driver is reported as old.
  if (!Resolve(s.cuda, "cuDriverGetVersion", api.cuDriverGetVersion, error) ||
      !Resolve(s.cuda, "cuInit", api.cuInit, error)) {
    Reject(s.cuda, error + kBrokenDriverHint);
    s.problem = s.cuda.error;
    return;
  }
  CUresult result = api.cuDriverGetVersion(&s.driver_version);
  if (result != kCudaSuccess) {
    s.driver_version = 0;
    s.problem = "the CUDA driver at " + s.cuda.path + " could not report its version: cuDriverGetVersion returned " +
                ErrorText(api, result) + kDriverFailedHint;
    return;
  }
  s.cuda.version = CudaVersionText(s.driver_version);
  if (s.driver_version < kMinDriverVersion) {
    s.problem = "the NVIDIA driver supports CUDA " + s.cuda.version + "; finetune needs " +
                CudaVersionText(kMinDriverVersion) + " or newer: update the driver";
    return;
  }
  if (!Resolve(s.cuda, "cuGetErrorString", api.cuGetErrorString, error) ||
      !Resolve(s.cuda, "cuDeviceGetCount", api.cuDeviceGetCount, error) ||
      !Resolve(s.cuda, "cuDeviceGet", api.cuDeviceGet, error) ||
      !Resolve(s.cuda, "cuDeviceGetName", api.cuDeviceGetName, error) ||
      !Resolve(s.cuda, "cuDeviceGetAttribute", api.cuDeviceGetAttribute, error) ||
      !Resolve(s.cuda, "cuDeviceTotalMem_v2", api.cuDeviceTotalMem_v2, error)) {
    s.api = DriverApi{};
    s.driver_version = 0;
    Reject(s.cuda, error + kBrokenDriverHint);
    s.problem = s.cuda.error;
    return;
  }
  result = api.cuInit(0);
  if (result == kCudaErrorNoDevice) {
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    s.problem = "no CUDA GPU found: the driver (CUDA " + s.cuda.version + ") sees no device" +
                (visible != nullptr ? std::string(" (CUDA_VISIBLE_DEVICES=") + visible + ")" : "");
    return;
  }
  if (result != kCudaSuccess) {
    s.problem =
        "the CUDA driver failed to initialise: cuInit(0) returned " + ErrorText(api, result) + kDriverFailedHint;
    return;
  }
  int count = 0;
  if ((result = api.cuDeviceGetCount(&count)) != kCudaSuccess) {
    s.problem = "the CUDA driver could not count devices: cuDeviceGetCount returned " + ErrorText(api, result) +
                kDriverFailedHint;
    return;
  }
  for (int i = 0; i < count; ++i) {
    CUdevice device = 0;
    char name[256] = {};
    Device d;
    if ((result = api.cuDeviceGet(&device, i)) != kCudaSuccess ||
        (result = api.cuDeviceGetName(name, sizeof(name) - 1, device)) != kCudaSuccess ||
        (result = api.cuDeviceTotalMem_v2(&d.total_memory, device)) != kCudaSuccess ||
        (result = api.cuDeviceGetAttribute(&d.major, kAttributeComputeCapabilityMajor, device)) != kCudaSuccess ||
        (result = api.cuDeviceGetAttribute(&d.minor, kAttributeComputeCapabilityMinor, device)) != kCudaSuccess ||
        (result = api.cuDeviceGetAttribute(&d.multiprocessors, kAttributeMultiprocessorCount, device)) != kCudaSuccess) {
      s.devices.clear();
      s.problem = "the CUDA driver could not describe device " + std::to_string(i) + ": " + ErrorText(api, result) +
                  kDriverFailedHint;
      return;
    }
    d.name = name;
    s.devices.push_back(d);
  }
  if (s.devices.empty()) s.problem = "no CUDA GPU found: the driver (CUDA " + s.cuda.version + ") reports 0 devices";
}

void LoadNvrtc(CudaState& s, const SearchFolders& folders) {
  s.nvrtc = OpenFirst({"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"}, folders);
  if (s.nvrtc.handle == nullptr) return;
  int (*nvrtc_version)(int* major, int* minor) = nullptr;
  std::string error;
  if (!Resolve(s.nvrtc, "nvrtcVersion", nvrtc_version, error)) return Reject(s.nvrtc, error);
  int major = 0, minor = 0;
  if (nvrtc_version(&major, &minor) != 0) return Reject(s.nvrtc, s.nvrtc.path + ": nvrtcVersion failed");
  s.nvrtc.version = std::to_string(major) + "." + std::to_string(minor);
}

void LoadCublasLt(CudaState& s, const SearchFolders& folders) {
  s.cublas_lt = OpenFirst({"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}, folders);
  if (s.cublas_lt.handle == nullptr) return;
  size_t (*get_version)() = nullptr;
  std::string error;
  if (!Resolve(s.cublas_lt, "cublasLtGetVersion", get_version, error)) return Reject(s.cublas_lt, error);
  // cuBLAS encodes its version as 10000 * major + 100 * minor + patch.
  size_t v = get_version();
  s.cublas_lt.version = std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

CudaState Load() {
  CudaState s;
  if (DisabledByEnv()) {
    s.problem = kDisabled;
    s.cuda.error = s.nvrtc.error = s.cublas_lt.error = std::string("not loaded: ") + kDisabled;
    return s;
  }
  SearchFolders folders = FindSearchFolders();
  s.searched = folders.preferred;
  s.searched.insert(s.searched.end(), folders.others.begin(), folders.others.end());
  LoadDriver(s, folders);
  // NVRTC and cuBLASLt are looked for even without a driver: `finetune env` then shows the whole picture.
  LoadNvrtc(s, folders);
  LoadCublasLt(s, folders);
  return s;
}

}  // namespace

const CudaState& GetCuda() {
  static const CudaState state = Load();
  return state;
}

}  // namespace ft::cuda
