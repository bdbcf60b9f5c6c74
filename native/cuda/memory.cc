// native.cuda's memory entry points: device handles (alloc/free), the cache's statistics, and copies between
// host ArrayBuffers and device handles. Every byte range is checked against its buffer before a copy is queued.
#include <napi.h>

#include <string>
#include <utility>

#include "binding/registry.h"
#include "common/args.h"
#include "cuda/runtime.h"

namespace ft {
namespace {

using cuda::DeviceBuffer;

size_t ByteCount(const Napi::CallbackInfo& info, int index, const char* name) {
  int64_t n = GetCount(info, index, name);
  if (n > (int64_t{1} << 40)) throw Napi::RangeError::New(info.Env(), ArgName(index, name) + " must be below 1 TiB");
  return static_cast<size_t>(n);
}

// `nbytes` from byte `offset` must lie inside a buffer of `size` bytes.
void CheckRange(const Napi::CallbackInfo& info, size_t offset, size_t nbytes, size_t size, const char* name) {
  if (offset > size || nbytes > size - offset)
    throw Napi::RangeError::New(info.Env(), std::string(name) + ": " + std::to_string(nbytes) + " bytes at byte " +
                                                std::to_string(offset) + " exceed its " + std::to_string(size) +
                                                " bytes");
}

// A device handle that must not be null.
DeviceBuffer DeviceArg(const Napi::CallbackInfo& info, int index, const char* name) {
  DeviceBuffer b = cuda::GetDeviceBuffer(info, index, name);
  if (b.ptr == 0) throw Napi::TypeError::New(info.Env(), ArgName(index, name) + " must be a CUDA device buffer, not null");
  return b;
}

// A host ArrayBuffer that still holds its memory.
Buffer HostArg(const Napi::CallbackInfo& info, int index, const char* name) {
  if (cuda::UnwrapDeviceHandle(info.Env(), info[index]) != nullptr)
    throw Napi::TypeError::New(info.Env(), ArgName(index, name) + " must be host memory, not a CUDA device buffer");
  return GetBuffer(info, index, name);
}

Napi::Value Alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::EnsureContext(env);
  size_t bytes = ByteCount(info, 0, "nbytes");
  bool zero = !info[1].IsBoolean() || info[1].As<Napi::Boolean>().Value();
  cuda::RawBlock block = cuda::TakeDeviceMemory(env, bytes);
  try {
    if (zero) cuda::MemsetBytes(env, block.ptr, 0, bytes);
  } catch (...) {
    cuda::GiveDeviceMemory(block);
    throw;
  }
  return cuda::NewDeviceHandle(env, block, bytes);
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::EnsureContext(env);
  cuda::DeviceBlock* block = cuda::UnwrapDeviceHandle(env, info[0]);
  if (block == nullptr) throw Napi::TypeError::New(env, "cuda.free(handle): not a device buffer from cuda.alloc()");
  // Stream order makes the memory reusable at once: later work is queued after the last use.
  if (!block->released.exchange(true)) cuda::GiveDeviceMemory(cuda::RawBlock{block->ptr, block->bytes});
  return env.Undefined();
}

Napi::Value CopyHostToDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::EnsureContext(env);
  Buffer host = HostArg(info, 0, "host");
  size_t host_offset = ByteCount(info, 1, "hostByteOffset");
  DeviceBuffer device = DeviceArg(info, 2, "device");
  size_t device_offset = ByteCount(info, 3, "deviceByteOffset");
  size_t nbytes = ByteCount(info, 4, "nbytes");
  CheckRange(info, host_offset, nbytes, host.bytes, "copyHostToDevice host");
  CheckRange(info, device_offset, nbytes, device.bytes, "copyHostToDevice device");
  cuda::CopyHostToDevice(env, device.ptr + device_offset, host.data + host_offset, nbytes);
  return env.Undefined();
}

Napi::Value CopyDeviceToHost(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::EnsureContext(env);
  DeviceBuffer device = DeviceArg(info, 0, "device");
  size_t device_offset = ByteCount(info, 1, "deviceByteOffset");
  Buffer host = HostArg(info, 2, "host");
  size_t host_offset = ByteCount(info, 3, "hostByteOffset");
  size_t nbytes = ByteCount(info, 4, "nbytes");
  CheckRange(info, device_offset, nbytes, device.bytes, "copyDeviceToHost device");
  CheckRange(info, host_offset, nbytes, host.bytes, "copyDeviceToHost host");
  cuda::CopyDeviceToHost(env, host.data + host_offset, device.ptr + device_offset, nbytes);
  return env.Undefined();
}

Napi::Value CopyDeviceToDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::EnsureContext(env);
  DeviceBuffer src = DeviceArg(info, 0, "src");
  size_t src_offset = ByteCount(info, 1, "srcByteOffset");
  DeviceBuffer dst = DeviceArg(info, 2, "dst");
  size_t dst_offset = ByteCount(info, 3, "dstByteOffset");
  size_t nbytes = ByteCount(info, 4, "nbytes");
  CheckRange(info, src_offset, nbytes, src.bytes, "copyDeviceToDevice src");
  CheckRange(info, dst_offset, nbytes, dst.bytes, "copyDeviceToDevice dst");
  cuda::CopyDeviceToDevice(env, dst.ptr + dst_offset, src.ptr + src_offset, nbytes);
  return env.Undefined();
}

Napi::Value MemoryAllocated(const Napi::CallbackInfo& info) {
  cuda::EnsureContext(info.Env());
  return Napi::Number::New(info.Env(), static_cast<double>(cuda::GetMemoryStats().allocated));
}

Napi::Value MaxMemoryAllocated(const Napi::CallbackInfo& info) {
  cuda::EnsureContext(info.Env());
  return Napi::Number::New(info.Env(), static_cast<double>(cuda::GetMemoryStats().peak));
}

Napi::Value CachedBytes(const Napi::CallbackInfo& info) {
  cuda::EnsureContext(info.Env());
  return Napi::Number::New(info.Env(), static_cast<double>(cuda::GetMemoryStats().cached));
}

// The allocator's counters, under torch.cuda.memory_stats' names (src/backend/cuda.ts picks them).
Napi::Value MemoryStatsObject(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::EnsureContext(env);
  const cuda::MemoryStats s = cuda::GetMemoryStats();
  Napi::Object o = Napi::Object::New(env);
  const std::pair<const char*, size_t> entries[] = {
      {"allocated_bytes.all.current", s.allocated}, {"allocated_bytes.all.peak", s.peak},
      {"reserved_bytes.all.current", s.allocated + s.cached}, {"reserved_bytes.all.peak", s.reserved_peak},
      {"segment.all.current", s.segments},
      {"segment.all.allocated", s.segments_allocated}, {"segment.all.freed", s.segments_freed},
      {"num_alloc_retries", s.alloc_retries}, {"num_ooms", s.ooms}};
  for (const auto& [key, value] : entries) o.Set(key, Napi::Number::New(env, static_cast<double>(value)));
  return o;
}

Napi::Value ResetPeak(const Napi::CallbackInfo& info) {
  cuda::EnsureContext(info.Env());
  cuda::ResetPeakMemory();
  return info.Env().Undefined();
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  cuda::EnsureContext(info.Env());
  cuda::EmptyDeviceCache(info.Env());
  return info.Env().Undefined();
}

// memGetInfo(): [free, total] bytes of the device, as the driver counts them (torch.cuda.mem_get_info).
Napi::Value MemGetInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::EnsureContext(env);
  size_t free = 0, total = 0;
  cuda::Check(env, cuda::Api().cuMemGetInfo_v2(&free, &total), "cuMemGetInfo");
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(0u, Napi::Number::New(env, static_cast<double>(free)));
  result.Set(1u, Napi::Number::New(env, static_cast<double>(total)));
  return result;
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  cuda::EnsureContext(info.Env());
  cuda::Synchronize(info.Env());
  return info.Env().Undefined();
}

}  // namespace

void RegisterCudaMemory(Napi::Env env, Napi::Object cuda) {
  cuda.Set("alloc", Napi::Function::New(env, Alloc, "alloc"));
  cuda.Set("free", Napi::Function::New(env, Free, "free"));
  // liveBytes mirrors the host contract's name; memoryAllocated is torch.cuda's.
  cuda.Set("liveBytes", Napi::Function::New(env, MemoryAllocated, "liveBytes"));
  cuda.Set("memoryAllocated", Napi::Function::New(env, MemoryAllocated, "memoryAllocated"));
  cuda.Set("maxMemoryAllocated", Napi::Function::New(env, MaxMemoryAllocated, "maxMemoryAllocated"));
  cuda.Set("resetPeakMemoryStats", Napi::Function::New(env, ResetPeak, "resetPeakMemoryStats"));
  cuda.Set("memoryStats", Napi::Function::New(env, MemoryStatsObject, "memoryStats"));
  cuda.Set("cachedBytes", Napi::Function::New(env, CachedBytes, "cachedBytes"));
  cuda.Set("emptyCache", Napi::Function::New(env, EmptyCache, "emptyCache"));
  cuda.Set("memGetInfo", Napi::Function::New(env, MemGetInfo, "memGetInfo"));
  cuda.Set("synchronize", Napi::Function::New(env, Synchronize, "synchronize"));
  cuda.Set("copyHostToDevice", Napi::Function::New(env, CopyHostToDevice, "copyHostToDevice"));
  cuda.Set("copyDeviceToHost", Napi::Function::New(env, CopyDeviceToHost, "copyDeviceToHost"));
  cuda.Set("copyDeviceToDevice", Napi::Function::New(env, CopyDeviceToDevice, "copyDeviceToDevice"));
}

}  // namespace ft
