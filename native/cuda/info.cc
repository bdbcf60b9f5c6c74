// cudaInfo(): what the CUDA loader found, for torch.cuda and `finetune env`. Never throws for a missing or
// broken CUDA installation; those are the `reason`.
#include <napi.h>

#include "binding/registry.h"
#include "cuda/loader.h"
#include "cuda/runtime.h"

namespace ft {
namespace {

Napi::Value LibraryJs(Napi::Env env, const cuda::Library& lib) {
  Napi::Object o = Napi::Object::New(env);
  if (lib.handle == nullptr) {
    o.Set("error", lib.error);
  } else {
    o.Set("path", lib.path);
    o.Set("version", lib.version.empty() ? env.Null() : Napi::String::New(env, lib.version));
  }
  return o;
}

Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const cuda::CudaState& s = cuda::GetCuda();
  Napi::Object o = Napi::Object::New(env);
  // Usable means driver, device, NVRTC and cuBLASLt found; the context starts on first use (native.cuda).
  std::string reason = cuda::UnusableReason();
  o.Set("available", reason.empty());
  o.Set("backend", true);
  o.Set("reason", reason.empty() ? env.Null() : Napi::String::New(env, reason));
  o.Set("driver_version", s.driver_version > 0 ? Napi::Number::New(env, s.driver_version) : env.Null());
  o.Set("device_count", static_cast<double>(s.devices.size()));
  Napi::Array devices = Napi::Array::New(env, s.devices.size());
  for (size_t i = 0; i < s.devices.size(); ++i) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", s.devices[i].name);
    d.Set("total_memory", static_cast<double>(s.devices[i].total_memory));
    d.Set("major", s.devices[i].major);
    d.Set("minor", s.devices[i].minor);
    devices.Set(static_cast<uint32_t>(i), d);
  }
  o.Set("devices", devices);
  Napi::Object libraries = Napi::Object::New(env);
  libraries.Set("cuda", LibraryJs(env, s.cuda));
  libraries.Set("nvrtc", LibraryJs(env, s.nvrtc));
  libraries.Set("cublasLt", LibraryJs(env, s.cublas_lt));
  o.Set("libraries", libraries);
  Napi::Array searched = Napi::Array::New(env, s.searched.size());
  for (size_t i = 0; i < s.searched.size(); ++i) searched.Set(static_cast<uint32_t>(i), s.searched[i]);
  o.Set("searched", searched);
  return o;
}

}  // namespace

void RegisterCuda(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaInfo", Napi::Function::New(env, CudaInfo, "cudaInfo"));
}

}  // namespace ft
