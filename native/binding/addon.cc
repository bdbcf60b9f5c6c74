// The addon's entry: host memory management and the registration of every kernel family.
//
// Tensor memory is allocated here (64-byte aligned, zero-filled on request) and handed to JS as an external
// ArrayBuffer. Ownership is explicit: `free` returns the memory at once and detaches the ArrayBuffer, so JS can
// no longer reach it; the finalizer frees only what was never freed explicitly.
#include <napi.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sys/mman.h>
#include <unistd.h>
#include <map>

#include "binding/registry.h"
#include "common/args.h"
#include "cpu/cpu_features.h"
#include "cpu/threadpool.h"

namespace ft {
namespace {

// Host memory is recycled: a training step allocates the same sizes step after step, and fresh pages from the
// OS cost a page fault each (over half of a BERT step's time without this cache). Freed blocks wait in the
// cache by size; sizes are rounded up to one of 8 steps per power of two. A request takes the smallest cached
// block of its size or up to kMaxOversize times it, so that a batch shorter than one seen before reuses the
// longer batch's blocks: in a shuffled epoch only the longest batch so far then needs fresh pages (a new
// length's activations took about 90,000 faults, 40% of a bert-base step, each time a size was new). The
// cache holds at most kMaxCachedBytes; beyond that blocks go back to the OS at once. Thread-safe: every worker
// thread that loads the addon shares the cache.
constexpr size_t kAlignment = 64;
constexpr size_t kMaxCachedBytes = size_t{4} << 30;
constexpr double kMaxOversize = 1.5;

// V8 counts every ArrayBuffer's bytes as external memory and starts a full collection whenever that count has grown
// by some 64 MB since the last one. A training step's activations, which their scopes free and the collector never
// needs to, then took a collection every step and its concurrent marking a fifth of the CPU (a 4-layer model's
// Trainer step: 110 against 84 ms; whether V8 fell into that state depended on when its first collection came).
// So a block that the program freed itself (`free`) and that comes back from the cache is taken off V8's count
// while it lives again: memory the program frees itself does not call for collections. A block the collector
// freed (the buffer's finalizer, or `free(buffer, true)` from a tensor's FinalizationRegistry) is counted again
// when reused, so memory only the collector frees still calls for them. V8 adds a buffer's bytes as it makes the
// buffer, before they can be taken off: a block over 64 MB (bert-base's word-embedding gradient, 94 MB) still makes
// it collect when the block changes hands, one or two collections in a 1.6 s step (against one every 80 ms step of
// the 4-layer model before).
struct CachedBlock {
  void* data;
  bool freed_explicitly;
};

std::mutex g_cache_mutex;
std::multimap<size_t, CachedBlock> g_free_blocks;
size_t g_cached_bytes = 0;
std::atomic<int64_t> g_live_bytes{0};

size_t RoundedSize(size_t bytes) {
  if (bytes <= 4096) return ((bytes + kAlignment - 1) / kAlignment) * kAlignment;
  size_t power = size_t{1} << (63 - __builtin_clzll(bytes - 1));  // largest power of two below bytes
  size_t step = power / 8;
  return ((bytes + step - 1) / step) * step;
}

// A large block's pages come as 2 MiB huge pages where the kernel allows it (transparent huge pages in "madvise" or
// "always" mode): the first touch of a fresh block then costs one fault per 2 MiB instead of one per 4 KiB.
constexpr size_t kHugePage = size_t{2} << 20;

void* NewBlock(size_t size) {
  if (size < kHugePage) return std::aligned_alloc(kAlignment, size);
  void* block = std::aligned_alloc(kHugePage, size);
#ifdef MADV_HUGEPAGE
  if (block != nullptr) madvise(block, size, MADV_HUGEPAGE);
#endif
  return block;
}

/** A block of at least `size` bytes: a cached one (whose size replaces `size`) or, with data null, none. */
CachedBlock TakeCachedBlock(size_t& size) {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  auto it = g_free_blocks.lower_bound(size);
  if (it == g_free_blocks.end() || static_cast<double>(it->first) > static_cast<double>(size) * kMaxOversize)
    return CachedBlock{nullptr, false};
  CachedBlock block = it->second;
  size = it->first;
  g_free_blocks.erase(it);
  g_cached_bytes -= size;
  return block;
}

void GiveBlock(CachedBlock block, size_t size) {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  if (g_cached_bytes + size > kMaxCachedBytes) {
    std::free(block.data);
    return;
  }
  g_free_blocks.emplace(size, block);
  g_cached_bytes += size;
}

void EmptyCache() {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  for (auto& [size, block] : g_free_blocks) std::free(block.data);
  g_free_blocks.clear();
  g_cached_bytes = 0;
}

struct HostBlock {
  void* data;
  size_t bytes;
  /** The bytes taken off V8's count while the block lives (its buffer's length, or 0). */
  int64_t uncounted;
  std::atomic<bool> released{false};
};

// Moves V8's external-memory count by `delta` bytes. The count only guides the collector, and a finalizer must not
// throw, so a failure (an environment being torn down) is ignored.
void AdjustV8Count(Napi::Env env, int64_t delta) {
  int64_t adjusted = 0;
  napi_adjust_external_memory(env, delta, &adjusted);
}

// V8 takes a buffer's bytes off its count itself when the buffer is detached or collected; the bytes this block
// took off are given back. N-API runs an external buffer's finalizer on the JS thread, so it may adjust the count.
void ReleaseBlock(Napi::Env env, HostBlock* block, bool explicitly) {
  if (!block->released.exchange(true)) {
    GiveBlock(CachedBlock{block->data, explicitly}, block->bytes);
    g_live_bytes -= static_cast<int64_t>(block->bytes);
    if (block->uncounted != 0) AdjustV8Count(env, block->uncounted);
  }
}

void FinalizeBlock(Napi::Env env, void*, HostBlock* block) {
  ReleaseBlock(env, block, false);
  delete block;
}

Napi::Value Alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "alloc(nbytes, zero = true): nbytes must be a number");
  double requested = info[0].As<Napi::Number>().DoubleValue();
  if (!(requested >= 0) || requested > 1ull << 40 || requested != static_cast<double>(static_cast<uint64_t>(requested)))
    throw Napi::RangeError::New(env, "alloc(nbytes, zero = true): nbytes must be a whole number of bytes below 1 TiB");
  bool zero = !info[1].IsBoolean() || info[1].As<Napi::Boolean>().Value();
  size_t bytes = static_cast<size_t>(requested);
  // Linux overcommits: a block larger than the machine's memory would be handed out, then kill the process
  // when touched. Refuse it here, as PyTorch's allocator does.
  static const size_t physical = static_cast<size_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (bytes > physical)
    throw Napi::RangeError::New(env, "can't allocate memory: you tried to allocate " + std::to_string(bytes) +
                                         " bytes, more than this machine's " + std::to_string(physical) + " bytes of RAM");
  size_t size = RoundedSize(bytes == 0 ? 1 : bytes);
  CachedBlock cached = TakeCachedBlock(size);
  void* data = cached.data != nullptr ? cached.data : NewBlock(size);
  if (data == nullptr) {
    EmptyCache();
    data = NewBlock(size);
  }
  if (data == nullptr)
    throw Napi::Error::New(env, "out of host memory allocating " + std::to_string(bytes) + " bytes");
  if (zero) std::memset(data, 0, bytes);
  const int64_t uncounted = cached.freed_explicitly ? static_cast<int64_t>(bytes) : 0;
  auto* block = new HostBlock{data, size, uncounted};
  g_live_bytes += static_cast<int64_t>(size);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, data, bytes, FinalizeBlock, block);
  napi_wrap(env, ab, block, nullptr, nullptr, nullptr);
  if (uncounted != 0) AdjustV8Count(env, -uncounted);
  return ab;
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) throw Napi::TypeError::New(env, "free(buffer): buffer must be an ArrayBuffer");
  if (!Omitted(info, 1) && !info[1].IsBoolean())
    throw Napi::TypeError::New(env, "free(buffer, collected = false): collected must be a boolean");
  const bool collected = !Omitted(info, 1) && info[1].As<Napi::Boolean>().Value();
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  if (ab.IsDetached()) return env.Undefined();  // only free() detaches: already released
  void* raw = nullptr;
  if (napi_unwrap(env, ab, &raw) != napi_ok || raw == nullptr)
    throw Napi::TypeError::New(env, "free(buffer): not a buffer allocated by alloc()");
  auto* block = static_cast<HostBlock*>(raw);
  ReleaseBlock(env, block, !collected);
  ab.Detach();
  return env.Undefined();
}

Napi::Value EmptyCacheJs(const Napi::CallbackInfo& info) {
  EmptyCache();
  return info.Env().Undefined();
}

Napi::Value CachedBytes(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(g_cache_mutex);
  return Napi::Number::New(info.Env(), static_cast<double>(g_cached_bytes));
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
  exports.Set("cachedBytes", Napi::Function::New(env, CachedBytes, "cachedBytes"));
  exports.Set("emptyCache", Napi::Function::New(env, EmptyCacheJs, "emptyCache"));
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
  ft::RegisterCuda(env, exports);
  ft::RegisterMpi(env, exports);
  ft::RegisterNccl(env, exports);
  Napi::Object cuda = Napi::Object::New(env);
  ft::RegisterCudaMemory(env, cuda);
  ft::RegisterCudaGraphs(env, cuda);
  ft::RegisterCudaEvents(env, cuda);
  ft::RegisterCudaSideStream(env, cuda);
  ft::RegisterCudaGemm(env, cuda);
  ft::RegisterCudaKernels(env, cuda);
  exports.Set("cuda", cuda);
  return exports;
}

NODE_API_MODULE(finetune_native, Init)
