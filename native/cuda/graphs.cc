// CUDA graphs (torch.cuda.CUDAGraph): the stream is captured into a graph, instantiated once and replayed with
// one launch. A graph owns a memory pool (runtime.cc), constants for what captured kernels read that the host
// wrote (tensor lists: a captured host->device copy would read the host buffer again at every replay), and the
// records of its capture-time index checks. Graphs are numbered; JS holds the numbers.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "binding/registry.h"
#include "common/args.h"
#include "cuda/runtime.h"

namespace ft {
namespace {

using cuda::CUgraph;
using cuda::CUgraphExec;

// CU_STREAM_CAPTURE_MODE_RELAXED: other threads (Node's finalizers, the thread pool) may keep calling CUDA, and
// the allocator may grow the graph's pool with cuMemAlloc; the copies that wait refuse to run.
constexpr int kCaptureModeRelaxed = 2;
// The constants come in chunks of this much, or one of a larger constant's size: a BERT-base step's tensor lists
// take some tens of KiB, and every graph's constants count in the peak memory for as long as it lives.
constexpr size_t kConstantChunk = size_t{64} << 10;
constexpr size_t kConstantAlign = 256;

struct ConstantChunk {
  cuda::RawBlock block;
  size_t bytes;  // the block's usable size
  std::vector<uint8_t> mirror;  // its constants as the host wrote them, uploaded when the capture ends
};

struct IndexCheck {
  uint64_t record;  // its device address, in the constants
  cuda::IndexMessage message;
  int64_t limit, allowed;
};

struct Graph {
  int64_t pool = 0;
  CUgraphExec exec = nullptr;
  std::vector<ConstantChunk> constants;
  std::vector<IndexCheck> checks;
  bool replayed = false;  // since its records were last read
  uint64_t random_base = 0;  // device address of its random base, 0 while no captured kernel draws numbers
};

std::unordered_map<int64_t, Graph> g_graphs;
int64_t g_next_graph = 1;
int64_t g_capturing = 0;

Graph& CapturingGraph(Napi::Env env) {
  if (g_capturing == 0) throw Napi::Error::New(env, "no CUDA graph is being captured");
  return g_graphs.at(g_capturing);
}

Graph& GraphArg(const Napi::CallbackInfo& info, int index) {
  int64_t id = GetInt(info, index, "graph");
  auto it = g_graphs.find(id);
  if (it == g_graphs.end())
    throw Napi::Error::New(info.Env(), "CUDA graph " + std::to_string(id) + " does not exist (it was reset)");
  return it->second;
}

// Frees everything a graph holds. The stream is drained first: a replay in flight still reads its memory.
void DestroyGraph(Napi::Env env, int64_t id) {
  auto it = g_graphs.find(id);
  if (it == g_graphs.end()) return;
  Graph& g = it->second;
  cuda::Api().cuStreamSynchronize(cuda::Stream());
  if (g.exec != nullptr) cuda::GetGraphApi(env).cuGraphExecDestroy(g.exec);
  for (const ConstantChunk& c : g.constants) cuda::GiveDeviceMemory(c.block);
  cuda::ReleasePool(g.pool);
  g_graphs.erase(it);
}

// Ends the capture of graph `id` on error paths: the driver's partial graph is dropped with it.
void AbortCapture(Napi::Env env, int64_t id) {
  cuda::ResetSideStream();
  cuda::SetCapturePool(0);
  g_capturing = 0;
  CUgraph partial = nullptr;
  const cuda::GraphApi& api = cuda::GetGraphApi(env);
  api.cuStreamEndCapture(cuda::Stream(), &partial);
  if (partial != nullptr) api.cuGraphDestroy(partial);
  DestroyGraph(env, id);
}

// graphCaptureBegin(pool): starts capturing into a new graph whose memory comes from `pool` (0: a new private
// pool); returns the graph's number.
Napi::Value CaptureBegin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const cuda::GraphApi& api = cuda::GetGraphApi(env);
  cuda::ForbidDuringCapture(env, "starting a capture (captures do not nest)");
  int64_t pool = GetInt(info, 0, "pool");
  if (pool < 0) throw Napi::RangeError::New(env, "graphCaptureBegin: pool must be a pool handle or 0");
  if (pool == 0) pool = cuda::NewPool();
  const int64_t id = g_next_graph++;
  Graph& g = g_graphs[id];
  g.pool = pool;
  cuda::RetainPool(pool);
  cuda::SetCapturePool(pool);
  g_capturing = id;
  cuda::CUresult result = api.cuStreamBeginCapture_v2(cuda::Stream(), kCaptureModeRelaxed);
  if (result != cuda::kCudaSuccess) {
    cuda::SetCapturePool(0);
    g_capturing = 0;
    DestroyGraph(env, id);
    cuda::Check(env, result, "cuStreamBeginCapture");
  }
  return Napi::Number::New(env, static_cast<double>(id));
}

Napi::Value CaptureEnd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const cuda::GraphApi& api = cuda::GetGraphApi(env);
  const int64_t id = GetInt(info, 0, "graph");
  if (id != g_capturing || id == 0)
    throw Napi::Error::New(env, "graphCaptureEnd: CUDA graph " + std::to_string(id) + " is not being captured");
  Graph& g = g_graphs.at(id);
  // side work whose join was deferred is the graph's too
  cuda::JoinDeferredSideWork(env);
  cuda::SetCapturePool(0);
  g_capturing = 0;
  CUgraph graph = nullptr;
  cuda::CUresult result = api.cuStreamEndCapture(cuda::Stream(), &graph);
  if (result == cuda::kCudaSuccess) {
    try {
      for (const ConstantChunk& c : g.constants) cuda::CopyHostToDevice(env, c.block.ptr, c.mirror.data(), c.mirror.size());
    } catch (...) {
      api.cuGraphDestroy(graph);
      DestroyGraph(env, id);
      throw;
    }
    result = api.cuGraphInstantiateWithFlags(&g.exec, graph, 0);
  }
  // The executable keeps what it needs; the template is not used again.
  if (graph != nullptr) api.cuGraphDestroy(graph);
  if (result != cuda::kCudaSuccess) {
    g.exec = nullptr;
    DestroyGraph(env, id);
    cuda::Check(env, result,
                cuda::ProgrammaticLaunch()
                    ? "capturing the CUDA graph of programmatic launches (without FINETUNE_CUDA_PDL=1, plain ones) "
                      "(cuStreamEndCapture / cuGraphInstantiate)"
                    : "capturing the CUDA graph (cuStreamEndCapture / cuGraphInstantiate)");
  }
  return env.Undefined();
}

// graphCaptureAbort(graph): ends a capture that failed part-way and frees the graph; nothing if it is not
// being captured.
Napi::Value CaptureAbort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::EnsureContext(env);
  const int64_t id = GetInt(info, 0, "graph");
  if (id != 0 && id == g_capturing) AbortCapture(env, id);
  return env.Undefined();
}

// graphReplay(graph, randomBase): sets the graph's random base (when it draws random numbers), then launches it.
Napi::Value Replay(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const cuda::GraphApi& api = cuda::GetGraphApi(env);
  cuda::ForbidDuringCapture(env, "replaying a CUDA graph");
  Graph& g = GraphArg(info, 0);
  const double base = GetNumber(info, 1, "randomBase");
  if (!(base >= 0 && base <= 9007199254740992.0) || base != std::floor(base))
    throw Napi::RangeError::New(env, ArgName(1, "randomBase") + " must be an integer in [0, 2^53]");
  if (g.random_base != 0) {
    const uint64_t value = static_cast<uint64_t>(base);
    cuda::CopyHostToDevice(env, g.random_base, &value, sizeof(value));
  }
  cuda::Check(env, api.cuGraphLaunch(g.exec, cuda::Stream()), "cuGraphLaunch");
  g.replayed = !g.checks.empty();
  return env.Undefined();
}

Napi::Value Reset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::GetGraphApi(env);
  // Freeing waits for the stream, which a capture forbids (this graph's own capture included).
  cuda::ForbidDuringCapture(env, "resetting a CUDA graph");
  DestroyGraph(env, GetInt(info, 0, "graph"));
  return env.Undefined();
}

Napi::Value PoolOf(const Napi::CallbackInfo& info) {
  cuda::GetGraphApi(info.Env());
  return Napi::Number::New(info.Env(), static_cast<double>(GraphArg(info, 0).pool));
}

Napi::Value PoolHandle(const Napi::CallbackInfo& info) {
  cuda::GetGraphApi(info.Env());
  return Napi::Number::New(info.Env(), static_cast<double>(cuda::NewPool()));
}

Napi::Value IsCapturing(const Napi::CallbackInfo& info) {
  cuda::EnsureContext(info.Env());
  return Napi::Boolean::New(info.Env(), cuda::Capturing());
}

}  // namespace

namespace cuda {

size_t AlignConstant(size_t offset) { return (offset + kConstantAlign - 1) / kConstantAlign * kConstantAlign; }

uint64_t CaptureConstant(Napi::Env env, const void* data, size_t bytes) {
  Graph& g = CapturingGraph(env);
  if (g.constants.empty() || AlignConstant(g.constants.back().mirror.size()) + bytes > g.constants.back().bytes) {
    const size_t size = std::max(kConstantChunk, AlignConstant(bytes));
    g.constants.push_back(ConstantChunk{TakeCommonMemory(env, size), size, {}});
  }
  ConstantChunk& c = g.constants.back();
  const size_t offset = AlignConstant(c.mirror.size());
  c.mirror.resize(offset + bytes);
  std::memcpy(c.mirror.data() + offset, data, bytes);
  return c.block.ptr + offset;
}

uint64_t CaptureIndexCheck(Napi::Env env, IndexMessage message, int64_t limit, int64_t allowed) {
  const int64_t zeros[3] = {0, 0, 0};
  const uint64_t record = CaptureConstant(env, zeros, sizeof(zeros));
  CapturingGraph(env).checks.push_back(IndexCheck{record, message, limit, allowed});
  return record;
}

uint64_t CaptureRandomBase(Napi::Env env) {
  if (!Capturing()) return 0;
  Graph& g = CapturingGraph(env);
  const uint64_t zero = 0;
  if (g.random_base == 0) g.random_base = CaptureConstant(env, &zero, sizeof(zero));
  return g.random_base;
}

void CheckGraphErrors(Napi::Env env) {
  for (auto& [id, g] : g_graphs) {
    if (!g.replayed) continue;
    g.replayed = false;
    for (const IndexCheck& c : g.checks) {
      int64_t record[3] = {};
      const CUdeviceptr at = c.record;
      Check(env, Api().cuMemcpyDtoHAsync_v2(record, at, sizeof(record), Stream()), "cuMemcpyDtoHAsync");
      Check(env, Api().cuStreamSynchronize(Stream()), "cuStreamSynchronize");
      if (record[0] == 0) continue;
      // Cleared so that the error is reported once; the next replays record afresh.
      Check(env, Api().cuMemsetD8Async(at, 0, sizeof(record), Stream()), "cuMemsetD8Async");
      throw Napi::RangeError::New(env, c.message(record[1], record[2], c.limit, c.allowed) +
                                           " (found by a CUDA graph replay)");
    }
  }
}

}  // namespace cuda

void RegisterCudaGraphs(Napi::Env env, Napi::Object cuda) {
  cuda.Set("graphCaptureBegin", Napi::Function::New(env, CaptureBegin, "graphCaptureBegin"));
  cuda.Set("graphCaptureEnd", Napi::Function::New(env, CaptureEnd, "graphCaptureEnd"));
  cuda.Set("graphCaptureAbort", Napi::Function::New(env, CaptureAbort, "graphCaptureAbort"));
  cuda.Set("graphReplay", Napi::Function::New(env, Replay, "graphReplay"));
  cuda.Set("graphReset", Napi::Function::New(env, Reset, "graphReset"));
  cuda.Set("graphPool", Napi::Function::New(env, PoolOf, "graphPool"));
  cuda.Set("graphPoolHandle", Napi::Function::New(env, PoolHandle, "graphPoolHandle"));
  cuda.Set("isCurrentStreamCapturing", Napi::Function::New(env, IsCapturing, "isCurrentStreamCapturing"));
}

}  // namespace ft
