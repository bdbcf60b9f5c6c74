// The device memory cache, built as PyTorch's caching allocator is: memory comes from the driver in segments,
// a request takes the smallest free block that holds it, a larger block is split and the rest stays free, and a
// block given back merges with its free neighbours. So a block is its request rounded up to 512 bytes, whatever
// sizes the cache holds: gradients, optimizer state and activations of every padded length share the segments
// without one size class wasting memory on another. Requests up to 1 MiB come from 2 MiB segments of their own,
// so that small blocks do not pin large segments.
//
// Blocks belong to a pool: the common cache (0) or a graph's private pool (runtime.h). A block only merges with a
// neighbour of its own pool, and a split keeps the rest in the pool the block was taken from.
//
// FINETUNE_CUDA_EXACT_BLOCKS=1 gives every block a segment of its own and reuses only blocks of the same size, so
// that a memory checker (compute-sanitizer, the emulated toolkit of the tests) sees each tensor's bounds.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda/runtime.h"

namespace ft::cuda {
namespace {

constexpr CUresult kErrorOutOfMemory = 2;
constexpr size_t kMinBlock = 512;
constexpr size_t kSmallRequest = size_t{1} << 20;   // up to this: small blocks
constexpr size_t kSmallSegment = size_t{2} << 20;
constexpr size_t kMidRequest = size_t{10} << 20;    // below this a large request gets a 20 MiB segment to share
constexpr size_t kMidSegment = size_t{20} << 20;
constexpr size_t kSegmentStep = size_t{2} << 20;
constexpr size_t kJoinBeforeRequest = size_t{32} << 20;

struct Block {
  CUdeviceptr ptr = 0;
  size_t size = 0;
  int64_t pool = 0;
  bool small = false;
  bool free = false;
  Block* prev = nullptr;  // neighbours in the segment, by address
  Block* next = nullptr;
  bool side_use = false;  // MarkSideUse's: side-stream work may use it until ReleaseHeldMemory
};

struct BySize {
  bool operator()(const Block* a, const Block* b) const {
    return a->size != b->size ? a->size < b->size : a->ptr < b->ptr;
  }
};
using FreeSet = std::set<Block*, BySize>;

struct FreeLists {
  FreeSet small, large;
  FreeSet& For(bool small_block) { return small_block ? small : large; }
};

struct Pool {
  FreeLists free;
  int users = 0;
};

std::mutex g_mutex;
FreeLists g_common;
std::unordered_map<int64_t, Pool> g_pools;
std::unordered_map<CUdeviceptr, Block*> g_live;
MemoryStats g_stats;
int64_t g_next_pool = 1;
int64_t g_capture_pool = 0;
// HoldFreedMemory: blocks given back while work on another stream may still use them (all, or those marked),
// counted as allocated until released.
enum class Holding { kNone, kMarked, kAll };
Holding g_holding = Holding::kNone;
std::vector<Block*> g_marked, g_held;

bool ExactBlocks() {
  static const bool exact = [] {
    const char* v = std::getenv("FINETUNE_CUDA_EXACT_BLOCKS");
    return v != nullptr && std::strcmp(v, "") != 0 && std::strcmp(v, "0") != 0;
  }();
  return exact;
}

// The free lists of `pool`; the caller holds g_mutex. A pool released while its blocks were held hands them to
// the common cache.
FreeLists& ListsOf(int64_t pool) {
  if (pool == 0) return g_common;
  auto it = g_pools.find(pool);
  return it == g_pools.end() ? g_common : it->second.free;
}

size_t RoundedRequest(size_t bytes) { return (std::max<size_t>(bytes, 1) + kMinBlock - 1) / kMinBlock * kMinBlock; }

size_t SegmentSize(size_t size) {
  if (ExactBlocks()) return size;
  if (size <= kSmallRequest) return kSmallSegment;
  if (size < kMidRequest) return kMidSegment;
  return (size + kSegmentStep - 1) / kSegmentStep * kSegmentStep;
}

// Whether what is left of a free block after `size` bytes is worth keeping as a block of its own.
bool ShouldSplit(const Block& b, size_t size) {
  const size_t rest = b.size - size;
  return !ExactBlocks() && rest >= kMinBlock;
}

Block* BestFit(FreeLists& lists, size_t size, bool small) {
  FreeSet& set = lists.For(small);
  Block key;
  key.size = size;
  auto it = set.lower_bound(&key);
  if (it == set.end() || (ExactBlocks() && (*it)->size != size)) return nullptr;
  Block* b = *it;
  set.erase(it);
  return b;
}

// Makes free block `b` (out of every free list) an allocated block of `size` bytes for `pool`, the rest free in
// the pool `b` came from.
void TakeBlock(Block* b, size_t size, int64_t pool) {
  if (ShouldSplit(*b, size)) {
    auto* rest = new Block{b->ptr + size, b->size - size, b->pool, b->small, true, b, b->next};
    if (b->next != nullptr) b->next->prev = rest;
    b->next = rest;
    b->size = size;
    ListsOf(rest->pool).For(rest->small).insert(rest);
  }
  b->free = false;
  b->pool = pool;
  g_live[b->ptr] = b;
  g_stats.cached -= b->size;
  g_stats.allocated += b->size;
  if (g_stats.allocated > g_stats.peak) g_stats.peak = g_stats.allocated;
}

// Joins free block `b` with its free neighbours of the same pool and lists the result as free.
void ListFree(Block* b) {
  for (Block* n : {b->prev, b->next}) {
    if (n == nullptr || !n->free || n->pool != b->pool) continue;
    ListsOf(n->pool).For(n->small).erase(n);
    if (n == b->prev) {
      b->ptr = n->ptr;
      b->prev = n->prev;
      if (n->prev != nullptr) n->prev->next = b;
    } else {
      b->next = n->next;
      if (n->next != nullptr) n->next->prev = b;
    }
    b->size += n->size;
    delete n;
  }
  ListsOf(b->pool).For(b->small).insert(b);
}

// Lists given-back block `b` as free: allocated bytes become cached ones; the caller holds g_mutex.
void Release(Block* b) {
  g_stats.allocated -= b->size;
  g_stats.cached += b->size;
  b->free = true;
  ListFree(b);
}

// Frees the common cache's whole free segments to the driver; the caller holds g_mutex and the stream is idle.
void ReleaseCached() {
  for (FreeSet* set : {&g_common.small, &g_common.large}) {
    for (auto it = set->begin(); it != set->end();) {
      Block* b = *it;
      if (b->prev != nullptr || b->next != nullptr) {
        ++it;
        continue;
      }
      Api().cuMemFree_v2(b->ptr);
      g_stats.cached -= b->size;
      --g_stats.segments;
      ++g_stats.segments_freed;
      it = set->erase(it);
      delete b;
    }
  }
}

std::string Bytes(size_t n) {
  char text[64];
  if (n >= (size_t{1} << 30)) std::snprintf(text, sizeof(text), "%.2f GiB", n / double(size_t{1} << 30));
  else std::snprintf(text, sizeof(text), "%.2f MiB", n / double(size_t{1} << 20));
  return text;
}

// cuMemAlloc, and on out-of-memory outside a capture the cache emptied and a retry; the caller holds g_mutex.
CUresult AllocateSegment(Napi::Env env, CUdeviceptr* p, size_t bytes) {
  CUresult result = Api().cuMemAlloc_v2(p, bytes);
  if (result == kErrorOutOfMemory && g_capture_pool == 0) {
    ++g_stats.alloc_retries;
    // Cached blocks may still be read by queued work of their last owner.
    Synchronize(env);
    ReleaseCached();
    result = Api().cuMemAlloc_v2(p, bytes);
  }
  return result;
}

bool HoldsBlocks() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return !g_held.empty();
}

// A block for `pool`: the capturing graph's (g_capture_pool) or the common cache's (0).
RawBlock TakeFor(Napi::Env env, size_t bytes, int64_t pool) {
  const size_t size = RoundedRequest(bytes);
  const bool small = size <= kSmallRequest;
  // Blocks held for deferred side work count as allocated: a large request (the peaks of a step: BERT's word
  // embeddings' gradient) first makes the join that frees them.
  if (size >= kJoinBeforeRequest && HoldsBlocks()) JoinDeferredSideWork(env);
  std::lock_guard<std::mutex> lock(g_mutex);
  Block* b = nullptr;
  if (pool != 0) b = BestFit(ListsOf(pool), size, small);
  // Blocks of the common cache are idle: queued work that last used them runs before any replay.
  if (b == nullptr) b = BestFit(g_common, size, small);
  if (b == nullptr) {
    // A capture runs in relaxed mode, where cuMemAlloc is allowed (it is not stream work, so the graph does not
    // record it): the new segment is `pool`'s, as PyTorch's private pools grow during a capture. Emptying the
    // cache on out-of-memory would synchronise: not while capturing.
    size_t segment = SegmentSize(size);
    CUdeviceptr p = 0;
    CUresult result = AllocateSegment(env, &p, segment);
    if (result == kErrorOutOfMemory && segment > size) result = AllocateSegment(env, &p, segment = size);
    if (result == kErrorOutOfMemory) {
      ++g_stats.ooms;
      size_t free = 0, total = 0;
      Api().cuMemGetInfo_v2(&free, &total);
      throw Napi::Error::New(env, "CUDA out of memory. Tried to allocate " + Bytes(size) + ". GPU 0 has a total capacity of " +
                                      Bytes(total) + " of which " + Bytes(free) + " is free; " + Bytes(g_stats.allocated) +
                                      " is allocated by finetune. Reduce the batch size or free tensors");
    }
    Check(env, result, "cuMemAlloc");
    b = new Block{p, segment, pool, small, true, nullptr, nullptr};
    g_stats.cached += segment;
    g_stats.reserved_peak = std::max(g_stats.reserved_peak, g_stats.allocated + g_stats.cached);
    ++g_stats.segments;
    ++g_stats.segments_allocated;
  }
  TakeBlock(b, size, pool);
  return RawBlock{b->ptr, b->size};
}

}  // namespace

RawBlock TakeDeviceMemory(Napi::Env env, size_t bytes) { return TakeFor(env, bytes, g_capture_pool); }

RawBlock TakeCommonMemory(Napi::Env env, size_t bytes) { return TakeFor(env, bytes, 0); }

void GiveDeviceMemory(RawBlock raw) noexcept {
  if (raw.ptr == 0) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_live.find(raw.ptr);
  if (it == g_live.end()) return;
  Block* b = it->second;
  g_live.erase(it);
  // Freed during a capture, the block may still be read by captured work: eager code must not reuse it while the
  // graph can replay.
  if (b->pool == 0 && g_capture_pool != 0) b->pool = g_capture_pool;
  if (g_holding == Holding::kAll || (g_holding == Holding::kMarked && b->side_use)) {
    g_held.push_back(b);
    return;
  }
  Release(b);
}

void HoldFreedMemory(bool all) noexcept {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_holding = all ? Holding::kAll : Holding::kMarked;
}

bool MarkSideUse(CUdeviceptr ptr) noexcept {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_live.find(ptr);
  if (it == g_live.end()) return false;
  if (!it->second->side_use) g_marked.push_back(it->second);
  it->second->side_use = true;
  return true;
}

void ReleaseHeldMemory() noexcept {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_holding = Holding::kNone;
  // marked blocks still live are unmarked; held ones (marked or not) are listed free
  for (Block* b : g_marked) b->side_use = false;
  g_marked.clear();
  for (Block* b : g_held) Release(b);
  g_held.clear();
}

void EmptyDeviceCache(Napi::Env env) {
  if (Stream() == nullptr) return;
  ForbidDuringCapture(env, "emptying the CUDA cache");
  // Cached blocks may still be read by queued work of their last owner.
  Synchronize(env);
  std::lock_guard<std::mutex> lock(g_mutex);
  ReleaseCached();
}

MemoryStats GetMemoryStats() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_stats;
}

void ResetPeakMemory() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_stats.peak = g_stats.allocated;
  g_stats.reserved_peak = g_stats.allocated + g_stats.cached;
}

bool Capturing() { return g_capture_pool != 0; }

void ForbidDuringCapture(Napi::Env env, const char* what, const char* hint) {
  if (g_capture_pool != 0)
    throw Napi::Error::New(env, std::string(what) + " is not allowed while capturing a CUDA graph" + hint);
}

int64_t NewPool() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_pools[g_next_pool];
  return g_next_pool++;
}

void RetainPool(int64_t pool) {
  std::lock_guard<std::mutex> lock(g_mutex);
  ++g_pools[pool].users;
}

void ReleasePool(int64_t pool) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_pools.find(pool);
  if (it == g_pools.end() || --it->second.users > 0) return;
  FreeLists lists = std::move(it->second.free);
  g_pools.erase(it);
  // Blocks still held (tensors made during the capture) join the common cache when given back (ListsOf).
  for (auto& [ptr, b] : g_live) {
    if (b->pool == pool) b->pool = 0;
  }
  // One at a time: a block joins its common neighbours, and the pool's blocks after it join it in turn
  std::vector<Block*> blocks(lists.small.begin(), lists.small.end());
  blocks.insert(blocks.end(), lists.large.begin(), lists.large.end());
  for (Block* b : blocks) {
    b->pool = 0;
    ListFree(b);
  }
}

void SetCapturePool(int64_t pool) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_capture_pool = pool;
}

}  // namespace ft::cuda
