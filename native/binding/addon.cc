// The addon's entry: host memory management and the registration of every kernel family.
//
// Tensor memory is allocated here (64-byte aligned, zero-filled) and handed to JS as an external ArrayBuffer.
// Ownership is explicit: `free` releases the memory at once and detaches the ArrayBuffer, so JS can no longer
// reach it; the finalizer frees only what was never freed explicitly.
#include <napi.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "binding/registry.h"
#include "cpu/cpu_features.h"
#include "cpu/threadpool.h"

namespace ft {
namespace {

std::atomic<int64_t> g_live_bytes{0};

struct HostBlock {
  void* data;
  size_t bytes;
  std::atomic<bool> released{false};
};

void ReleaseBlock(HostBlock* block) {
  if (!block->released.exchange(true)) {
    std::free(block->data);
    g_live_bytes -= static_cast<int64_t>(block->bytes);
  }
}

void FinalizeBlock(Napi::Env, void*, HostBlock* block) {
  ReleaseBlock(block);
  delete block;
}



Napi::Value Alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "alloc(nbytes): nbytes must be a number");
  double requested = info[0].As<Napi::Number>().DoubleValue();
  if (!(requested >= 0) || requested > 1ull << 40 || requested != static_cast<double>(static_cast<uint64_t>(requested)))
    throw Napi::RangeError::New(env, "alloc(nbytes): nbytes must be a whole number of bytes below 1 TiB");
  size_t bytes = static_cast<size_t>(requested);
  size_t padded = ((bytes + 63) / 64) * 64;
  if (padded == 0) padded = 64;
  void* data = std::aligned_alloc(64, padded);
  if (data == nullptr)
    throw Napi::Error::New(env, "out of host memory allocating " + std::to_string(bytes) + " bytes");
  std::memset(data, 0, padded);
  auto* block = new HostBlock{data, padded};
  g_live_bytes += static_cast<int64_t>(padded);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, data, bytes, FinalizeBlock, block);
  napi_wrap(env, ab, block, nullptr, nullptr, nullptr);
  return ab;
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) throw Napi::TypeError::New(env, "free(buffer): buffer must be an ArrayBuffer");
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  if (ab.IsDetached()) return env.Undefined();  // only free() detaches: already released
  void* raw = nullptr;
  if (napi_unwrap(env, ab, &raw) != napi_ok || raw == nullptr)
    throw Napi::TypeError::New(env, "free(buffer): not a buffer allocated by alloc()");
  auto* block = static_cast<HostBlock*>(raw);
  ReleaseBlock(block);
  ab.Detach();
  return env.Undefined();
}

Napi::Value LiveBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(g_live_bytes.load()));
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  if (!info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "set_num_threads(n): n must be a number");
  int n = info[0].As<Napi::Number>().Int32Value();
  if (n < 1 || n > 1024) throw Napi::RangeError::New(info.Env(), "set_num_threads(n): n must be in 1..1024");
  SetNumThreads(n);
  return info.Env().Undefined();
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), GetNumThreads()); }

Napi::Value Features(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  const CpuFeatures& f = GetCpuFeatures();
  o.Set("avx2", f.avx2);
  o.Set("fma", f.fma);
  o.Set("avx512f", f.avx512f);
  o.Set("avx512bf16", f.avx512bf16);
  return o;
}

}  // namespace

void RegisterMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("alloc", Napi::Function::New(env, Alloc, "alloc"));
  exports.Set("free", Napi::Function::New(env, Free, "free"));
  exports.Set("liveBytes", Napi::Function::New(env, LiveBytes, "liveBytes"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetThreads, "setNumThreads"));
  exports.Set("getNumThreads", Napi::Function::New(env, GetThreads, "getNumThreads"));
  exports.Set("cpuFeatures", Napi::Function::New(env, Features, "cpuFeatures"));
}

}  // namespace ft

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  ft::RegisterMemory(env, exports);
  ft::RegisterGemm(env, exports);
  ft::RegisterCopy(env, exports);
  ft::RegisterElementwise(env, exports);
  ft::RegisterReduce(env, exports);
  ft::RegisterSoftmax(env, exports);
  ft::RegisterLayerNorm(env, exports);
  ft::RegisterEmbedding(env, exports);
  ft::RegisterCrossEntropy(env, exports);
  ft::RegisterOptim(env, exports);
  ft::RegisterRandom(env, exports);
  return exports;
}

NODE_API_MODULE(finetune_native, Init)
