// CUDA discovery: the driver API (libcuda), NVRTC and cuBLASLt are opened with dlopen at run time, so the addon
// builds and runs on machines without CUDA; GetCuda() says what was found and, when CUDA cannot be used, why.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace ft::cuda {

// The driver API's types as plain integers, so no CUDA header is needed to build.
using CUresult = int;
using CUdevice = int;
constexpr CUresult kCudaSuccess = 0;
constexpr CUresult kCudaErrorNoDevice = 100;
constexpr int kAttributeComputeCapabilityMajor = 75;
constexpr int kAttributeComputeCapabilityMinor = 76;
constexpr int kAttributeMultiprocessorCount = 16;
constexpr int kAttributeMaxSharedPerBlockOptIn = 97;
constexpr int kFuncAttributeMaxDynamicShared = 8;  // CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
// The oldest driver API finetune works with (CUDA 12.0, as cuDriverGetVersion encodes it).
constexpr int kMinDriverVersion = 12000;

struct DriverApi {
  CUresult (*cuInit)(unsigned flags) = nullptr;
  CUresult (*cuDriverGetVersion)(int* version) = nullptr;
  CUresult (*cuDeviceGetCount)(int* count) = nullptr;
  CUresult (*cuDeviceGet)(CUdevice* device, int ordinal) = nullptr;
  CUresult (*cuDeviceGetName)(char* name, int len, CUdevice device) = nullptr;
  CUresult (*cuDeviceGetAttribute)(int* value, int attribute, CUdevice device) = nullptr;
  CUresult (*cuDeviceTotalMem_v2)(size_t* bytes, CUdevice device) = nullptr;
  CUresult (*cuGetErrorString)(CUresult error, const char** text) = nullptr;
};

// One library: on success `handle`, `path` (the file the loader opened) and `version` ("13.0"); otherwise
// `error`, which names every candidate tried and why each failed.
struct Library {
  void* handle = nullptr;
  std::string path;
  std::string version;
  std::string error;
};

struct Device {
  std::string name;
  size_t total_memory = 0;
  int major = 0;
  int minor = 0;
  int multiprocessors = 0;
};

struct CudaState {
  // Why no GPU can be used, as far as the driver tells: empty when libcuda loaded, is new enough, initialised
  // and reports at least one device.
  std::string problem;
  int driver_version = 0;  // cuDriverGetVersion's number (13000 = CUDA 13.0); 0 when unknown
  DriverApi api;
  std::vector<Device> devices;
  Library cuda, nvrtc, cublas_lt;
  std::vector<std::string> searched;  // the folders looked in, in search order
};

// Loads on the first call (thread-safe) and returns the same state for the life of the process.
const CudaState& GetCuda();

}  // namespace ft::cuda
