// native.cuda.sgemm: the CPU sgemm contract (native/cpu/gemm.cc) on cuBLASLt, loaded at run time.
//
// cuBLASLt is column-major. A row-major matrix read column-major is its transpose, so row-major
// C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLASLt's "A" is our B, its "B" is our A, and M and N
// swap. The types and enum values below are cublasLt.h's (CUDA 12 and 13 agree on all of them).
//
// Under autocast A and B are both bfloat16 or float16 (tensor-core GEMMs) while C stays float32 and the
// products accumulate in float32: a combination cuBLASLt supports with CUBLAS_COMPUTE_32F. Where the product's
// only reader takes 16-bit values (the query/key/value projections feeding the attention), C is of A and B's dtype
// instead, rounded from the float32 result. A linear layer's bias is the BIAS epilogue (a vector over D's
// column-major rows, our N, of D's type), so no broadcast copy and no beta = 1 pass.
#include <dlfcn.h>
#include <napi.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "binding/registry.h"
#include "common/args.h"
#include "common/gemm_args.h"
#include "cuda/loader.h"
#include "cuda/runtime.h"

namespace ft {
namespace {

using cublasStatus_t = int;
using cublasLtHandle_t = struct cublasLtContext*;
using cublasLtMatmulDesc_t = struct cublasLtMatmulDescOpaque_t*;
using cublasLtMatrixLayout_t = struct cublasLtMatrixLayoutOpaque_t*;
using cublasLtMatmulPreference_t = struct cublasLtMatmulPreferenceOpaque_t*;
struct cublasLtMatmulAlgo_t {
  uint64_t data[8];
};
struct cublasLtMatmulHeuristicResult_t {
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
};
static_assert(sizeof(cublasLtMatmulHeuristicResult_t) == 96, "cublasLtMatmulHeuristicResult_t is 96 bytes");

constexpr cublasStatus_t kCublasSuccess = 0;
constexpr int kCudaR32F = 0;                // cudaDataType CUDA_R_32F
constexpr int kCudaR16F = 2;                // CUDA_R_16F
constexpr int kCudaR16BF = 14;              // CUDA_R_16BF
constexpr int kComputeF32 = 68;             // CUBLAS_COMPUTE_32F
constexpr int kComputeF32FastTf32 = 77;     // CUBLAS_COMPUTE_32F_FAST_TF32
constexpr int kOpN = 0, kOpT = 1;           // cublasOperation_t
constexpr int kDescTransA = 3;              // CUBLASLT_MATMUL_DESC_TRANSA (int32)
constexpr int kDescTransB = 4;              // CUBLASLT_MATMUL_DESC_TRANSB (int32)
constexpr int kDescEpilogue = 7;            // CUBLASLT_MATMUL_DESC_EPILOGUE (uint32)
constexpr int kDescBiasPointer = 8;         // CUBLASLT_MATMUL_DESC_BIAS_POINTER (const void*)
constexpr uint32_t kEpilogueBias = 4;       // CUBLASLT_EPILOGUE_BIAS: + bias[row of D], D's type
constexpr int kLayoutBatchCount = 5;        // CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT (int32)
constexpr int kLayoutBatchOffset = 6;       // CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET (int64, elements)
constexpr int kPrefMaxWorkspace = 1;        // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES (uint64)
constexpr int kPrefMinAlignmentA = 5;       // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_{A,B,C,D}_BYTES = 5..8 (uint32)
constexpr size_t kWorkspaceBytes = size_t{32} << 20;

struct CublasLtApi {
  cublasStatus_t (*cublasLtCreate)(cublasLtHandle_t*) = nullptr;
  cublasStatus_t (*cublasLtMatmulDescCreate)(cublasLtMatmulDesc_t*, int compute_type, int scale_type) = nullptr;
  cublasStatus_t (*cublasLtMatmulDescSetAttribute)(cublasLtMatmulDesc_t, int attr, const void* buf, size_t) = nullptr;
  cublasStatus_t (*cublasLtMatrixLayoutCreate)(cublasLtMatrixLayout_t*, int type, uint64_t rows, uint64_t cols,
                                               int64_t ld) = nullptr;
  cublasStatus_t (*cublasLtMatrixLayoutSetAttribute)(cublasLtMatrixLayout_t, int attr, const void* buf,
                                                     size_t) = nullptr;
  cublasStatus_t (*cublasLtMatmulPreferenceCreate)(cublasLtMatmulPreference_t*) = nullptr;
  cublasStatus_t (*cublasLtMatmulPreferenceSetAttribute)(cublasLtMatmulPreference_t, int attr, const void* buf,
                                                         size_t) = nullptr;
  cublasStatus_t (*cublasLtMatmulPreferenceDestroy)(cublasLtMatmulPreference_t) = nullptr;
  cublasStatus_t (*cublasLtMatmulAlgoGetHeuristic)(cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t a,
                                                   cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                                   cublasLtMatrixLayout_t d, cublasLtMatmulPreference_t,
                                                   int requested, cublasLtMatmulHeuristicResult_t* results,
                                                   int* returned) = nullptr;
  cublasStatus_t (*cublasLtMatmulAlgoCheck)(cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t a,
                                            cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                            cublasLtMatrixLayout_t d, const cublasLtMatmulAlgo_t* algo,
                                            cublasLtMatmulHeuristicResult_t* result) = nullptr;
  cublasStatus_t (*cublasLtMatmul)(cublasLtHandle_t, cublasLtMatmulDesc_t, const void* alpha, const void* A,
                                   cublasLtMatrixLayout_t, const void* B, cublasLtMatrixLayout_t, const void* beta,
                                   const void* C, cublasLtMatrixLayout_t, void* D, cublasLtMatrixLayout_t,
                                   const cublasLtMatmulAlgo_t* algo, void* workspace, size_t workspace_bytes,
                                   cuda::CUstream stream) = nullptr;
};

// The workspace is as large as the largest any plan's algorithm needs (often none: Nsight profiles of BERT's steps
// on an H100 show no split-K reduction kernels), not the 32 MiB the heuristic may assume, which would count in
// every step's peak memory. A workspace that grows keeps its old block for the life of the process, as it keeps
// the current one: a CUDA graph's captured GEMMs still use it. GEMMs on the side stream (side_stream.cc) have a
// workspace of their own, as they may run while the main stream's use the other.
struct Lt {
  CublasLtApi api;
  cublasLtHandle_t handle = nullptr;
  cuda::RawBlock workspace, side_workspace;
  std::vector<cuda::RawBlock> outgrown;
};

// The current stream's workspace, at least `bytes` long (a null address for none).
uint64_t Workspace(Napi::Env env, Lt& lt, size_t bytes) {
  cuda::RawBlock& current = cuda::Stream() == cuda::MainStream() ? lt.workspace : lt.side_workspace;
  if (bytes <= current.bytes) return current.ptr;
  cuda::RawBlock grown = cuda::TakeDeviceMemory(env, bytes);
  if (current.ptr != 0) lt.outgrown.push_back(current);
  current = grown;
  return grown.ptr;
}

bool g_allow_tf32 = false;

template <typename Fn>
void Resolve(Napi::Env env, const char* name, Fn& fn) {
  void* symbol = dlsym(cuda::GetCuda().cublas_lt.handle, name);
  if (symbol == nullptr)
    throw Napi::Error::New(env, cuda::GetCuda().cublas_lt.path + " lacks " + name +
                                    ": install a cuBLAS matching the CUDA toolkit (12 or 13)");
  fn = reinterpret_cast<Fn>(symbol);
}

void CheckLt(Napi::Env env, cublasStatus_t status, const char* what) {
  if (status != kCublasSuccess)
    throw Napi::Error::New(env, std::string("cuBLASLt ") + what + " failed with status " + std::to_string(status));
}

Lt g_lt;

Lt& GetLt(Napi::Env env) {
  Lt& lt = g_lt;
  if (lt.handle != nullptr) return lt;
  CublasLtApi& a = lt.api;
  Resolve(env, "cublasLtCreate", a.cublasLtCreate);
  Resolve(env, "cublasLtMatmulDescCreate", a.cublasLtMatmulDescCreate);
  Resolve(env, "cublasLtMatmulDescSetAttribute", a.cublasLtMatmulDescSetAttribute);
  Resolve(env, "cublasLtMatrixLayoutCreate", a.cublasLtMatrixLayoutCreate);
  Resolve(env, "cublasLtMatrixLayoutSetAttribute", a.cublasLtMatrixLayoutSetAttribute);
  Resolve(env, "cublasLtMatmulPreferenceCreate", a.cublasLtMatmulPreferenceCreate);
  Resolve(env, "cublasLtMatmulPreferenceSetAttribute", a.cublasLtMatmulPreferenceSetAttribute);
  Resolve(env, "cublasLtMatmulPreferenceDestroy", a.cublasLtMatmulPreferenceDestroy);
  Resolve(env, "cublasLtMatmulAlgoGetHeuristic", a.cublasLtMatmulAlgoGetHeuristic);
  Resolve(env, "cublasLtMatmulAlgoCheck", a.cublasLtMatmulAlgoCheck);
  Resolve(env, "cublasLtMatmul", a.cublasLtMatmul);
  CheckLt(env, a.cublasLtCreate(&lt.handle), "cublasLtCreate");
  return lt;
}

// Everything that selects a plan. Alignments matter: cuBLASLt assumes 256-byte aligned matrices unless told
// otherwise, and element offsets (views) break that. All fields are 64-bit so that the struct has no padding
// to spoil the byte-wise hash and comparison.
struct PlanKey {
  int64_t transA, transB, tf32, abDtype, cDtype, bias;
  int64_t M, N, K, lda, ldb, ldc, strideA, strideB, strideC, batch;
  int64_t alignA, alignB, alignC;
  bool operator==(const PlanKey& o) const { return std::memcmp(this, &o, sizeof(PlanKey)) == 0; }
};

struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const { return static_cast<size_t>(cuda::Fnv1a(&k, sizeof(PlanKey))); }
};

// Descriptors and algorithm for one key; kept for the life of the process (a training run has a few hundred
// shapes at most, and each costs a heuristic query to build).
struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;  // the algorithm's workspace for this problem, at most kWorkspaceBytes
};

std::unordered_map<PlanKey, Plan, PlanKeyHash> g_plans;

// A training run's GEMMs come in families that differ only in the token count (M of a layer's forward and input
// gradient, K of its weight gradient), which changes with every padded batch length. A family keeps the first
// algorithm the heuristic chose for it and later shapes reuse it where cuBLASLt accepts it. The heuristic picks
// other kernels for other token counts, and a kernel's first use is slow (CUDA 12 loads modules lazily): reusing
// took the time a bf16 epoch's CUDA graph captures spent inside cublasLtMatmul on an H100 from 0.41 s to 0.015 s.
// Token counts within a factor of 4 (the same CountClass) share a family, so a pooler's 8 rows do not choose the
// tiles of a layer's 512.
int64_t CountClass(int64_t n) { return (63 - __builtin_clzll(static_cast<uint64_t>(n))) / 2; }

PlanKey FamilyOf(PlanKey k) {
  k.M = CountClass(k.M);
  k.K = CountClass(k.K);
  if (k.batch == 1) k.strideA = k.strideB = k.strideC = 0;
  return k;
}

std::unordered_map<PlanKey, cublasLtMatmulAlgo_t, PlanKeyHash> g_family_algos;

// Host time spent building plans (cuBLASLt's heuristic query) and inside cublasLtMatmul: what a CUDA graph capture
// of new shapes pays for its GEMMs; how many plans asked the heuristic rather than reusing their family's
// algorithm, how many families took theirs from the on-disk cache, how many were tuned and, per rank in cuBLASLt's
// list, how many tuned families found their fastest there (gemmStats).
struct GemmHostTime {
  double plan_seconds = 0, matmul_seconds = 0;
  int64_t heuristic_queries = 0, disk_algos = 0, autotuned = 0;
  std::vector<int64_t> autotune_ranks;
};
GemmHostTime g_host_time;

// The workspace a timed candidate may take beyond the first choice's and the workspace held:
// FINETUNE_CUDA_GEMM_TUNE_WORKSPACE MiB (default kDefaultTuneWorkspaceMiB). Split-K algorithms need some; BERT's
// GEMMs with 768 outputs a token leave most of an H100's SMs idle without splitting K (24 tiles of 128 x 128 at 512
// tokens), and each stream holding that much more counts in the step's peak memory: 4 MiB a stream (two ways of a
// 600 x 768 product) keeps bench/gpu-mrpc.sh's bf16 peak 9 MB under transformers' at worst. Tuning takes such an
// algorithm only where it ran faster.
constexpr int64_t kDefaultTuneWorkspaceMiB = 4;

size_t TuneWorkspaceBytes(Napi::Env env) {
  static const int64_t mib = [env] {
    const char* v = std::getenv("FINETUNE_CUDA_GEMM_TUNE_WORKSPACE");
    if (v == nullptr || *v == '\0') return kDefaultTuneWorkspaceMiB;
    char* end = nullptr;
    const long long n = std::strtoll(v, &end, 10);
    if (*end != '\0' || n < 0 || n > static_cast<long long>(kWorkspaceBytes >> 20))
      throw Napi::RangeError::New(env, std::string("FINETUNE_CUDA_GEMM_TUNE_WORKSPACE=") + v +
                                           ": give the MiB of workspace GEMM tuning may add, an integer from 0 to " +
                                           std::to_string(kWorkspaceBytes >> 20));
    return static_cast<int64_t>(n);
  }();
  return static_cast<size_t>(mib) << 20;
}

// The family algorithms outlive the process in the on-disk cache (runtime.h), one file per GPU model, cuBLASLt
// version and record layout: otherwise each process's first GEMM of a family waits for the heuristic (a bert-base
// run's 18 queries took 0.15 s of its first step on an H100). An algorithm read back goes through
// cublasLtMatmulAlgoCheck like any reused one, so a stale or damaged file costs heuristic queries, never a wrong
// GEMM.
struct AlgoRecord {
  PlanKey family;
  cublasLtMatmulAlgo_t algo;
};
static_assert(sizeof(AlgoRecord) == sizeof(PlanKey) + sizeof(cublasLtMatmulAlgo_t), "AlgoRecord has no padding");

// Families read from the file, not yet used by a plan (they count as disk_algos when one is).
std::unordered_map<PlanKey, cublasLtMatmulAlgo_t, PlanKeyHash> g_disk_algos;

const std::string& AlgoFilePath(Napi::Env env) {
  static const std::string path = [env] {
    const cuda::CudaState& s = cuda::GetCuda();
    const std::string id = (s.devices.empty() ? std::string() : s.devices[0].name) + '\0' +
                           std::to_string(cuda::Arch()) + '\0' + s.cublas_lt.version +
                           '\0' + std::to_string(sizeof(AlgoRecord)) + '\0' + std::to_string(kWorkspaceBytes) +
                           '\0' + "timed" + '\0' + std::to_string(TuneWorkspaceBytes(env));
    return cuda::CachePath("gemm-algos", id, ".bin");
  }();
  return path;
}

// Fills g_disk_algos from the file, once; a file that is not whole records is ignored (and rewritten later).
void LoadDiskAlgos(Napi::Env env) {
  static bool loaded = false;
  if (loaded) return;
  loaded = true;
  std::string bytes;
  const std::string& path = AlgoFilePath(env);
  if (path.empty() || !cuda::ReadFile(path, bytes) || bytes.size() % sizeof(AlgoRecord) != 0) return;
  for (size_t at = 0; at < bytes.size(); at += sizeof(AlgoRecord)) {
    AlgoRecord r;
    std::memcpy(&r, bytes.data() + at, sizeof(r));
    g_disk_algos.emplace(r.family, r.algo);
  }
}

// Rewrites the file with every family algorithm known: this process's and the file's unused ones.
void SaveDiskAlgos(Napi::Env env) {
  if (AlgoFilePath(env).empty()) return;
  std::string bytes;
  const auto append = [&bytes](const PlanKey& family, const cublasLtMatmulAlgo_t& algo) {
    const AlgoRecord r{family, algo};
    bytes.append(reinterpret_cast<const char*>(&r), sizeof(r));
  };
  for (const auto& [family, algo] : g_family_algos) append(family, algo);
  for (const auto& [family, algo] : g_disk_algos) append(family, algo);
  cuda::WriteFileAtomically(AlgoFilePath(env), bytes);
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

uint32_t Alignment(uint64_t address, int64_t stride_elements, size_t element_size) {
  uint64_t bits = address | (static_cast<uint64_t>(stride_elements) * element_size) | 256;
  return static_cast<uint32_t>(bits & (~bits + 1));  // the lowest set bit: the largest power of two dividing all
}

int CudaDataType(int dtype) { return dtype == kF16 ? kCudaR16F : dtype == kBF16 ? kCudaR16BF : kCudaR32F; }

cublasLtMatrixLayout_t LtLayout(Napi::Env env, const CublasLtApi& a, int type, uint64_t rows, uint64_t cols,
                                  int64_t ld, int32_t batch, int64_t stride) {
  cublasLtMatrixLayout_t layout = nullptr;
  CheckLt(env, a.cublasLtMatrixLayoutCreate(&layout, type, rows, cols, ld), "cublasLtMatrixLayoutCreate");
  CheckLt(env, a.cublasLtMatrixLayoutSetAttribute(layout, kLayoutBatchCount, &batch, sizeof(batch)),
          "setting the batch count");
  CheckLt(env, a.cublasLtMatrixLayoutSetAttribute(layout, kLayoutBatchOffset, &stride, sizeof(stride)),
          "setting the batch stride");
  return layout;
}

// cuBLASLt's choices for the plan's problem with `k`'s alignments and a workspace of up to kWorkspaceBytes, best
// first, at most `requested` (at least one).
std::vector<cublasLtMatmulHeuristicResult_t> Heuristics(Napi::Env env, Lt& lt, const PlanKey& k, const Plan& plan,
                                                        int requested) {
  const CublasLtApi& a = lt.api;
  cublasLtMatmulPreference_t pref = nullptr;
  CheckLt(env, a.cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  uint64_t workspace = kWorkspaceBytes;
  const uint32_t align[4] = {static_cast<uint32_t>(k.alignB), static_cast<uint32_t>(k.alignA),
                             static_cast<uint32_t>(k.alignC), static_cast<uint32_t>(k.alignC)};  // cuBLASLt's A, B, C, D
  cublasStatus_t status = a.cublasLtMatmulPreferenceSetAttribute(pref, kPrefMaxWorkspace, &workspace, sizeof(workspace));
  for (int i = 0; i < 4 && status == kCublasSuccess; ++i)
    status = a.cublasLtMatmulPreferenceSetAttribute(pref, kPrefMinAlignmentA + i, &align[i], sizeof(uint32_t));
  std::vector<cublasLtMatmulHeuristicResult_t> results(static_cast<size_t>(requested));
  int returned = 0;
  if (status == kCublasSuccess)
    status = a.cublasLtMatmulAlgoGetHeuristic(lt.handle, plan.desc, plan.a, plan.b, plan.c, plan.c, pref, requested,
                                              results.data(), &returned);
  a.cublasLtMatmulPreferenceDestroy(pref);
  CheckLt(env, status, "cublasLtMatmulAlgoGetHeuristic");
  if (returned == 0)
    throw Napi::Error::New(env, "cuBLASLt has no algorithm for sgemm M=" + std::to_string(k.M) + " N=" +
                                    std::to_string(k.N) + " K=" + std::to_string(k.K) +
                                    " batch=" + std::to_string(k.batch));
  results.resize(static_cast<size_t>(returned));
  return results;
}

// Where a GEMM call's operands are, for timing candidate algorithms on them: A, B, the bias (0 for none), and the
// bytes C spans from its start.
struct Operands {
  uint64_t a, b, bias;
  size_t c_bytes;
};

// A new family's algorithm is the fastest on the GPU of cuBLASLt's first kAutotuneCandidates choices, each timed
// over kAutotuneRuns runs after one untimed run (cuBLASLt loads a kernel's module at its first use), writing to
// scratch memory the size of C; candidates needing more workspace than the first choice, the workspace already
// held and TuneWorkspaceBytes() are left out, so that tuning grows the memory a step keeps by that much at most. The
// heuristic ranks by a model of the GPU, and BERT's GEMMs are short (hundreds of tokens), where tile shapes and
// waves decide. FINETUNE_CUDA_GEMM_AUTOTUNE=0 keeps the first choice, as does a plan built during a CUDA graph
// capture (nothing runs then).
constexpr int kAutotuneCandidates = 8;
constexpr int kAutotuneRuns = 5;

bool AutotuneEnabled() {
  static const bool enabled = cuda::EnvSwitch("FINETUNE_CUDA_GEMM_AUTOTUNE", true);
  return enabled;
}

cublasLtMatmulHeuristicResult_t Fastest(Napi::Env env, Lt& lt, const PlanKey& k, const Plan& plan,
                                        const std::vector<cublasLtMatmulHeuristicResult_t>& candidates,
                                        const Operands& ops) {
  const CublasLtApi& a = lt.api;
  const size_t workspace_cap = std::max({candidates[0].workspaceSize, lt.workspace.bytes, TuneWorkspaceBytes(env)});
  size_t workspace_bytes = 0;
  for (const auto& c : candidates)
    if (c.workspaceSize <= workspace_cap) workspace_bytes = std::max(workspace_bytes, c.workspaceSize);
  cuda::ScratchBuffer out(env, ops.c_bytes);
  cuda::ScratchBuffer workspace(env, workspace_bytes);
  if (k.bias)
    CheckLt(env, a.cublasLtMatmulDescSetAttribute(plan.desc, kDescBiasPointer, &ops.bias, sizeof(ops.bias)),
            "setting the bias pointer");
  const float alpha = 1.0f, beta = 0.0f;
  size_t best = 0;  // the first choice, where none runs (the call's own GEMM then reports why)
  double best_ms = 0;
  bool timed = false;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const cublasLtMatmulHeuristicResult_t& c = candidates[i];
    if (c.workspaceSize > workspace_cap) continue;
    const auto run = [&] {
      return a.cublasLtMatmul(lt.handle, plan.desc, &alpha, reinterpret_cast<const void*>(ops.b), plan.a,
                              reinterpret_cast<const void*>(ops.a), plan.b, &beta, reinterpret_cast<void*>(out.ptr()),
                              plan.c, reinterpret_cast<void*>(out.ptr()), plan.c, &c.algo,
                              reinterpret_cast<void*>(workspace.ptr()), c.workspaceSize, cuda::Stream());
    };
    if (run() != kCublasSuccess) continue;
    bool ran = true;
    const double ms = cuda::StreamMilliseconds(env, [&] {
      for (int r = 0; r < kAutotuneRuns && ran; ++r) ran = run() == kCublasSuccess;
    });
    if (ran && (!timed || ms < best_ms)) {
      best = i;
      best_ms = ms;
      timed = true;
    }
  }
  ++g_host_time.autotuned;
  std::vector<int64_t>& ranks = g_host_time.autotune_ranks;
  if (ranks.size() < candidates.size()) ranks.resize(candidates.size());
  ++ranks[best];
  return candidates[best];
}

// Builds the column-major problem: cuBLASLt's A is our B (op transB, m = N), its B is our A (op transA, n = M).
// Descriptors of a plan that fails half-way are not freed: this only fails on a broken cuBLASLt.
const Plan& GetPlan(Napi::Env env, Lt& lt, const PlanKey& k, const Operands& ops) {
  auto it = g_plans.find(k);
  if (it != g_plans.end()) return it->second;
  const auto start = std::chrono::steady_clock::now();
  const CublasLtApi& a = lt.api;
  Plan plan;
  // TF32 only concerns float32 operands (16-bit ones always run on tensor cores), on GPUs that have it (sm_80
  // on): elsewhere allow_tf32 changes nothing, as in PyTorch.
  const bool tf32 = k.tf32 && k.abDtype == kF32 && cuda::Arch() >= 80;
  CheckLt(env, a.cublasLtMatmulDescCreate(&plan.desc, tf32 ? kComputeF32FastTf32 : kComputeF32, kCudaR32F),
          "cublasLtMatmulDescCreate");
  int32_t opA = k.transB ? kOpT : kOpN, opB = k.transA ? kOpT : kOpN;
  CheckLt(env, a.cublasLtMatmulDescSetAttribute(plan.desc, kDescTransA, &opA, sizeof(opA)), "setting transa");
  CheckLt(env, a.cublasLtMatmulDescSetAttribute(plan.desc, kDescTransB, &opB, sizeof(opB)), "setting transb");
  if (k.bias)
    CheckLt(env, a.cublasLtMatmulDescSetAttribute(plan.desc, kDescEpilogue, &kEpilogueBias, sizeof(kEpilogueBias)),
            "setting the bias epilogue");
  const int32_t batch = static_cast<int32_t>(k.batch);
  const uint64_t m = k.N, n = k.M, kk = k.K;
  const int ab = CudaDataType(static_cast<int>(k.abDtype));
  plan.a = k.transB ? LtLayout(env, a, ab, kk, m, k.ldb, batch, k.strideB)
                    : LtLayout(env, a, ab, m, kk, k.ldb, batch, k.strideB);
  plan.b = k.transA ? LtLayout(env, a, ab, n, kk, k.lda, batch, k.strideA)
                    : LtLayout(env, a, ab, kk, n, k.lda, batch, k.strideA);
  plan.c = LtLayout(env, a, CudaDataType(static_cast<int>(k.cDtype)), m, n, k.ldc, batch, k.strideC);
  const PlanKey family = FamilyOf(k);
  // Whether cuBLASLt takes `algo` for this problem; if so the plan takes it with its workspace.
  const auto accepts = [&](const cublasLtMatmulAlgo_t& algo) {
    cublasLtMatmulHeuristicResult_t checked{};
    if (a.cublasLtMatmulAlgoCheck(lt.handle, plan.desc, plan.a, plan.b, plan.c, plan.c, &algo, &checked) !=
            kCublasSuccess ||
        checked.workspaceSize > kWorkspaceBytes)
      return false;
    plan.algo = algo;
    plan.workspace = checked.workspaceSize;
    return true;
  };
  LoadDiskAlgos(env);
  const auto reusable = g_family_algos.find(family);
  const auto stored = g_disk_algos.find(family);
  if (reusable != g_family_algos.end() && accepts(reusable->second)) {
    // the family's algorithm
  } else if (reusable == g_family_algos.end() && stored != g_disk_algos.end() && accepts(stored->second)) {
    ++g_host_time.disk_algos;
    g_family_algos.emplace(family, plan.algo);
    g_disk_algos.erase(stored);
  } else {
    const bool tune = reusable == g_family_algos.end() && AutotuneEnabled() && !cuda::Capturing();
    const auto candidates = Heuristics(env, lt, k, plan, tune ? kAutotuneCandidates : 1);
    const cublasLtMatmulHeuristicResult_t chosen =
        tune && candidates.size() > 1 ? Fastest(env, lt, k, plan, candidates, ops) : candidates[0];
    plan.algo = chosen.algo;
    plan.workspace = chosen.workspaceSize;
    ++g_host_time.heuristic_queries;
    if (reusable == g_family_algos.end()) {
      // (a stored algorithm cuBLASLt refused is replaced by the heuristic's)
      g_disk_algos.erase(family);
      g_family_algos.emplace(family, plan.algo);
      SaveDiskAlgos(env);
    }
  }
  g_host_time.plan_seconds += SecondsSince(start);
  return g_plans.emplace(k, plan).first->second;
}

// Argument order as the CPU sgemm: transA, transB, M, N, K, alpha, A, offA, lda, strideA, B, offB, ldb, strideB,
// beta, C, offC, ldc, strideC, batch, [abDtype, [bias, offBias]].
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::EnsureContext(env);
  const GemmArgs g = DecodeGemmArgs(info);
  const cuda::DeviceBuffer a = cuda::GetDeviceBuffer(info, kGemmA, "A");
  const cuda::DeviceBuffer b = cuda::GetDeviceBuffer(info, kGemmB, "B");
  const cuda::DeviceBuffer c = cuda::GetDeviceBuffer(info, kGemmC, "C");
  PlanKey k{};
  k.transA = g.transA;
  k.transB = g.transB;
  k.M = g.M;
  k.N = g.N;
  k.K = g.K;
  float alpha = g.alpha;
  const float beta = g.beta;
  k.lda = g.lda;
  k.strideA = g.strideA;
  k.ldb = g.ldb;
  k.strideB = g.strideB;
  k.ldc = g.ldc;
  k.strideC = g.strideC;
  k.batch = g.batch;
  // cuBLASLt takes 32-bit batch counts and, in practice, leading dimensions.
  constexpr int64_t kMax32 = int64_t{1} << 31;
  if (k.batch >= kMax32 || k.lda >= kMax32 || k.ldb >= kMax32 || k.ldc >= kMax32)
    throw Napi::RangeError::New(env, "sgemm: batch and leading dimensions must be below 2^31");
  const size_t ab_size = ItemSize(g.abDtype), c_size = ItemSize(g.cDtype);
  k.abDtype = g.abDtype;
  k.cDtype = g.cDtype;
  uint64_t pa = cuda::DeviceElementsBytes(info, a, g.offA, g.extA, ab_size, "A");
  uint64_t pb = cuda::DeviceElementsBytes(info, b, g.offB, g.extB, ab_size, "B");
  const uint64_t pc = cuda::DeviceElementsBytes(info, c, g.offC, g.extC, c_size, "C");
  uint64_t pbias = 0;
  if (g.bias) {
    pbias = cuda::DeviceElementsBytes(info, cuda::GetDeviceBuffer(info, kGemmBias, "bias"), g.offBias, g.N, c_size,
                                      "bias");
    if (pbias % 16 != 0)
      throw Napi::RangeError::New(env, "sgemm: the bias must start on a 16-byte boundary (cuBLASLt's vector loads)");
  }
  k.bias = g.bias;
  if (k.M == 0 || k.N == 0 || k.batch == 0) return env.Undefined();
  Lt& lt = GetLt(env);
  // K = 0 leaves C = beta * C. cuBLASLt does not take k = 0, so multiply by a zero column with alpha 0 instead.
  cuda::RawBlock zeros;
  struct ZerosGuard {
    cuda::RawBlock& block;
    ~ZerosGuard() { cuda::GiveDeviceMemory(block); }
  } zeros_guard{zeros};
  if (k.K == 0) {
    int64_t longest = k.M > k.N ? k.M : k.N;
    zeros = cuda::TakeDeviceMemory(env, static_cast<size_t>(longest) * sizeof(float));
    cuda::MemsetBytes(env, zeros.ptr, 0, static_cast<size_t>(longest) * sizeof(float));
    k.K = 1;
    alpha = 0.0f;
    k.transA = k.transB = 0;
    k.lda = 1;
    k.ldb = k.N;
    k.strideA = k.strideB = 0;
    pa = pb = zeros.ptr;
  }
  k.tf32 = g_allow_tf32;
  // One matrix has no batch stride to align
  const bool batched = k.batch > 1;
  k.alignA = Alignment(pa, batched ? k.strideA : 0, ab_size);
  k.alignB = Alignment(pb, batched ? k.strideB : 0, ab_size);
  k.alignC = Alignment(pc, batched ? k.strideC : 0, c_size);
  const Plan& plan = GetPlan(env, lt, k, Operands{pa, pb, pbias, static_cast<size_t>(g.extC) * c_size});
  const uint64_t workspace = Workspace(env, lt, plan.workspace);
  // The pointer is the call's, set on the plan's descriptor before each use (graphs capture it with the launch).
  if (k.bias)
    CheckLt(env, lt.api.cublasLtMatmulDescSetAttribute(plan.desc, kDescBiasPointer, &pbias, sizeof(pbias)),
            "setting the bias pointer");
  // beta == 0: cuBLAS then does not read C, so NaNs in C do not propagate (the CPU contract).
  const auto start = std::chrono::steady_clock::now();
  CheckLt(env,
          lt.api.cublasLtMatmul(lt.handle, plan.desc, &alpha, reinterpret_cast<const void*>(pb), plan.a,
                                reinterpret_cast<const void*>(pa), plan.b, &beta, reinterpret_cast<const void*>(pc),
                                plan.c, reinterpret_cast<void*>(pc), plan.c, &plan.algo,
                                reinterpret_cast<void*>(workspace), plan.workspace, cuda::Stream()),
          "cublasLtMatmul");
  g_host_time.matmul_seconds += SecondsSince(start);
  return env.Undefined();
}

// gemmStats(): {plan_s, matmul_s, heuristic_queries, disk_algos, autotuned, autotune_ranks, workspace_bytes}: since
// the process started, the host seconds spent building plans (timing candidates included) and inside
// cublasLtMatmul, the plans that took a new algorithm from cuBLASLt's heuristic, the families whose algorithm came
// from the on-disk cache, the families whose algorithm was the fastest of several timed and how many of those found
// it at each rank of cuBLASLt's list (whether more candidates could pay); and the workspace the streams hold now.
Napi::Value GemmStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::EnsureContext(env);
  Napi::Object out = Napi::Object::New(env);
  out.Set("plan_s", Napi::Number::New(env, g_host_time.plan_seconds));
  out.Set("matmul_s", Napi::Number::New(env, g_host_time.matmul_seconds));
  out.Set("heuristic_queries", Napi::Number::New(env, static_cast<double>(g_host_time.heuristic_queries)));
  out.Set("disk_algos", Napi::Number::New(env, static_cast<double>(g_host_time.disk_algos)));
  out.Set("autotuned", Napi::Number::New(env, static_cast<double>(g_host_time.autotuned)));
  Napi::Array ranks = Napi::Array::New(env, g_host_time.autotune_ranks.size());
  for (size_t i = 0; i < g_host_time.autotune_ranks.size(); ++i)
    ranks.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(g_host_time.autotune_ranks[i])));
  out.Set("autotune_ranks", ranks);
  const size_t workspace = g_lt.workspace.bytes + g_lt.side_workspace.bytes;
  out.Set("workspace_bytes", Napi::Number::New(env, static_cast<double>(workspace)));
  return out;
}

Napi::Value SetAllowTf32(const Napi::CallbackInfo& info) {
  g_allow_tf32 = GetBool(info, 0, "allow");
  return info.Env().Undefined();
}

Napi::Value GetAllowTf32(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), g_allow_tf32); }

}  // namespace

void RegisterCudaGemm(Napi::Env env, Napi::Object cuda) {
  cuda.Set("sgemm", Napi::Function::New(env, Sgemm, "sgemm"));
  cuda.Set("gemmStats", Napi::Function::New(env, GemmStats, "gemmStats"));
  cuda.Set("setAllowTf32", Napi::Function::New(env, SetAllowTf32, "setAllowTf32"));
  cuda.Set("getAllowTf32", Napi::Function::New(env, GetAllowTf32, "getAllowTf32"));
}

}  // namespace ft
