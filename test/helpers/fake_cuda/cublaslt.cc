// The fake libcublasLt: the descriptor, layout, preference and heuristic calls native/cuda/gemm.cc makes, and
// cublasLtMatmul as a plain column-major GEMM on the fake driver's stream (so graphs capture it): A and B in
// float32, float16 or bfloat16, C and D float32, float accumulation in ascending k, then the BIAS epilogue's
// vector (one float per row of D) when the descriptor asks for it. CUBLAS_COMPUTE_32F_FAST_TF32
// rounds float32 inputs to TF32 (10 mantissa bits, to nearest with ties away, as cvt.rna.tf32.f32 does).
//
// Everything cuBLASLt would refuse or silently get wrong is an error here, explained on stderr: inconsistent
// shapes, ld below the row count, unknown attributes, operands outside one live device allocation, an address
// or batch stride less aligned than the preference promised, an algorithm that did not come from the
// heuristic, and a workspace smaller than the algorithm needs (Algo). A split-K algorithm offered for a short
// reduction (k < kSplitK) takes 2 ms longer, as splitting one that fills the GPU costs its extra pass, so that
// timing the candidates leaves it out (the tests' memory stays as tuning without workspace keeps it);
// FTEMU_SLOW_PLAIN_GEMMS=1 instead makes every algorithm without a workspace take 2 ms longer, so that timing them
// finds the split-K one faster.
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "common/half_bits.h"

extern "C" {
bool ftemu_in_device(std::uint64_t p, std::size_t n);
int ftemu_submit(void* stream, int (*run)(void*), void* data, void (*release)(void*));
}

namespace {

// The host's and the kernels' 16-bit conversions
FT_HALF_BITS(inline, std::uint16_t, std::uint32_t)

constexpr int kSuccess = 0, kNotInitialized = 1, kInvalidValue = 7, kExecutionFailed = 13, kNotSupported = 15;
constexpr int kR32F = 0, kR16F = 2, kR16BF = 14;
constexpr int kCompute32F = 68, kCompute32FFastTf32 = 77;
constexpr std::uint64_t kAlgoMagic = 0x66616b65616c676full;
constexpr std::uint32_t kEpilogueDefault = 1, kEpilogueBias = 4;

struct Desc {
  int compute, scale;
  std::int32_t transa = 0, transb = 0;
  std::uint32_t epilogue = kEpilogueDefault;
  std::uint64_t bias = 0;  // CUBLASLT_MATMUL_DESC_BIAS_POINTER: of D's type, one value per row of D
};

struct Layout {
  int type;
  std::uint64_t rows, cols;
  std::int64_t ld;
  std::int32_t batch = 1;
  std::int64_t stride = 0;
};

struct Preference {
  std::uint64_t workspace = 0;
  std::uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D: cuBLASLt's default assumption
};

// An algorithm for one family of problems. Like a split-K kernel, one for a long reduction (k >= kSplitK, where
// the preference allows the workspace) needs kSplitKWorkspace bytes of workspace; the others need none. The
// heuristic offers up to kVariants of them, all computing alike; the last needs the workspace for any k (where the
// preference allows it), so that callers meet a later choice needing more than the first.
struct Algo {
  std::uint64_t magic;
  std::uint32_t align[4];
  std::uint64_t workspace;
  std::uint64_t variant;
};
constexpr std::uint64_t kSplitK = 4096, kSplitKWorkspace = 16384;
constexpr int kVariants = 3;

struct HeuristicResult {
  std::uint64_t algo[8];
  std::size_t workspaceSize;
  int state;
  float wavesCount;
  int reserved[4];
};
static_assert(sizeof(Algo) <= 64, "the algorithm fits cublasLtMatmulAlgo_t");

int Fail(int status, const std::string& why) {
  std::fprintf(stderr, "fake cuBLASLt: %s\n", why.c_str());
  return status;
}

std::size_t ElementSize(int type) { return type == kR32F ? 4 : 2; }

// The problem's m, n, k, or an error status.
int Check(const Desc& d, const Layout& a, const Layout& b, const Layout& c, const Layout& dd, std::uint64_t& m,
          std::uint64_t& n, std::uint64_t& k) {
  if (d.scale != kR32F) return Fail(kNotSupported, "scale type must be CUDA_R_32F");
  if (a.type != b.type || (a.type != kR32F && a.type != kR16F && a.type != kR16BF))
    return Fail(kNotSupported, "A and B must both be 32F, 16F or 16BF");
  if (c.type != dd.type || (c.type != kR32F && c.type != a.type))
    return Fail(kNotSupported, "C and D must both be 32F, or both of A and B's 16-bit type");
  if (d.compute != kCompute32F && !(d.compute == kCompute32FFastTf32 && a.type == kR32F))
    return Fail(kNotSupported, "compute type " + std::to_string(d.compute) + " with these types");
  m = dd.rows;
  n = dd.cols;
  k = d.transa ? a.rows : a.cols;
  if ((d.transa ? a.cols : a.rows) != m) return Fail(kInvalidValue, "op(A) has not m rows");
  if ((d.transb ? b.cols : b.rows) != k || (d.transb ? b.rows : b.cols) != n)
    return Fail(kInvalidValue, "op(B) is not k x n");
  if (c.rows != m || c.cols != n) return Fail(kInvalidValue, "C and D differ in shape");
  for (const Layout* l : {&a, &b, &c, &dd}) {
    if (l->ld < static_cast<std::int64_t>(l->rows > 0 ? l->rows : 1))
      return Fail(kInvalidValue, "a leading dimension below the row count");
    if (l->batch != dd.batch) return Fail(kInvalidValue, "batch counts differ");
    if (l->stride < 0) return Fail(kNotSupported, "negative batch stride");
  }
  if (m == 0 || n == 0 || k == 0) return Fail(kInvalidValue, "an empty dimension");
  return kSuccess;
}

std::size_t Extent(const Layout& l) {
  return ((l.batch - 1) * l.stride + (l.cols - 1) * l.ld + l.rows) * ElementSize(l.type);
}

float Load(const void* p, int type, std::size_t i, bool tf32) {
  std::uint32_t bits;
  if (type == kR32F) {
    std::memcpy(&bits, static_cast<const char*>(p) + 4 * i, 4);
    if (tf32 && (bits & 0x7f800000u) != 0x7f800000u) bits = (bits + 0x1000u) & ~0x1fffu;
  } else {
    std::uint16_t h;
    std::memcpy(&h, static_cast<const char*>(p) + 2 * i, 2);
    bits = type == kR16BF ? Bf16ToF32Bits(h) : F16ToF32Bits(h);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

struct Job {
  Desc d;
  Layout a, b, c;
  std::uint64_t m, n, k;
  float alpha, beta;
  const void *pa, *pb, *pc;
  void* pd;
  bool slow;  // 2 ms longer (see the top)
};

// v stored as element i of type `type`, rounded to nearest even where 16-bit (as cuBLASLt's epilogue converts).
void Store(void* p, int type, std::size_t i, float v) {
  std::uint32_t bits;
  std::memcpy(&bits, &v, 4);
  if (type == kR32F) {
    std::memcpy(static_cast<char*>(p) + 4 * i, &bits, 4);
    return;
  }
  const std::uint16_t h = type == kR16BF ? F32BitsToBf16(bits) : F32BitsToF16(bits);
  std::memcpy(static_cast<char*>(p) + 2 * i, &h, 2);
}

int RunJob(void* data) {
  const Job& j = *static_cast<Job*>(data);
  if (j.slow) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const bool tf32 = j.d.compute == kCompute32FFastTf32;
  for (std::int32_t batch = 0; batch < j.c.batch; ++batch) {
    const std::size_t oa = batch * j.a.stride, ob = batch * j.b.stride, oc = batch * j.c.stride;
    for (std::uint64_t col = 0; col < j.n; ++col) {
      for (std::uint64_t row = 0; row < j.m; ++row) {
        float acc = 0.0f;
        for (std::uint64_t p = 0; p < j.k; ++p) {
          const std::size_t ia = oa + (j.d.transa ? p + row * j.a.ld : row + p * j.a.ld);
          const std::size_t ib = ob + (j.d.transb ? col + p * j.b.ld : p + col * j.b.ld);
          acc += Load(j.pa, j.a.type, ia, tf32) * Load(j.pb, j.b.type, ib, tf32);
        }
        const std::size_t ic = oc + row + col * j.c.ld;
        // beta == 0 does not read C, so NaNs there do not propagate.
        float d = j.beta == 0.0f ? j.alpha * acc : j.alpha * acc + j.beta * Load(j.pc, j.c.type, ic, false);
        if (j.d.epilogue == kEpilogueBias) d += Load(reinterpret_cast<const void*>(j.d.bias), j.c.type, row, false);
        Store(j.pd, j.c.type, ic, d);
      }
    }
  }
  return 0;
}

int handle_object;

}  // namespace

extern "C" {

std::size_t cublasLtGetVersion() { return 130001; }

int cublasLtCreate(void** handle) {
  *handle = &handle_object;
  return 0;
}
int cublasLtDestroy(void*) { return 0; }

int cublasLtMatmulDescCreate(Desc** desc, int compute, int scale) {
  *desc = new Desc{compute, scale};
  return 0;
}
int cublasLtMatmulDescDestroy(Desc* desc) {
  delete desc;
  return 0;
}
int cublasLtMatmulDescSetAttribute(Desc* desc, int attr, const void* buf, std::size_t size) {
  if (attr == 7 && size == sizeof(std::uint32_t)) {
    std::memcpy(&desc->epilogue, buf, size);
    return desc->epilogue == kEpilogueDefault || desc->epilogue == kEpilogueBias
               ? 0
               : Fail(kNotSupported, "epilogue " + std::to_string(desc->epilogue));
  }
  if (attr == 8 && size == sizeof(std::uint64_t)) {
    std::memcpy(&desc->bias, buf, size);
    return 0;
  }
  if ((attr != 3 && attr != 4) || size != sizeof(std::int32_t))
    return Fail(kInvalidValue, "unsupported matmul attribute " + std::to_string(attr));
  std::int32_t op;
  std::memcpy(&op, buf, sizeof(op));
  if (op != 0 && op != 1) return Fail(kInvalidValue, "transpose must be N or T");
  (attr == 3 ? desc->transa : desc->transb) = op;
  return 0;
}

int cublasLtMatrixLayoutCreate(Layout** layout, int type, std::uint64_t rows, std::uint64_t cols, std::int64_t ld) {
  *layout = new Layout{type, rows, cols, ld};
  return 0;
}
int cublasLtMatrixLayoutDestroy(Layout* layout) {
  delete layout;
  return 0;
}
int cublasLtMatrixLayoutSetAttribute(Layout* layout, int attr, const void* buf, std::size_t size) {
  if (attr == 5 && size == sizeof(std::int32_t)) {
    std::memcpy(&layout->batch, buf, size);
    return layout->batch >= 1 ? 0 : Fail(kInvalidValue, "batch count below 1");
  }
  if (attr == 6 && size == sizeof(std::int64_t)) {
    std::memcpy(&layout->stride, buf, size);
    return 0;
  }
  return Fail(kInvalidValue, "unsupported layout attribute " + std::to_string(attr));
}

int cublasLtMatmulPreferenceCreate(Preference** pref) {
  *pref = new Preference;
  return 0;
}
int cublasLtMatmulPreferenceDestroy(Preference* pref) {
  delete pref;
  return 0;
}
int cublasLtMatmulPreferenceSetAttribute(Preference* pref, int attr, const void* buf, std::size_t size) {
  if (attr == 1 && size == sizeof(std::uint64_t)) {
    std::memcpy(&pref->workspace, buf, size);
    return 0;
  }
  if (attr >= 5 && attr <= 8 && size == sizeof(std::uint32_t)) {
    std::memcpy(&pref->align[attr - 5], buf, size);
    const std::uint32_t a = pref->align[attr - 5];
    return a != 0 && (a & (a - 1)) == 0 ? 0 : Fail(kInvalidValue, "alignment must be a power of two");
  }
  return Fail(kInvalidValue, "unsupported preference attribute " + std::to_string(attr));
}

int cublasLtMatmulAlgoGetHeuristic(void* handle, Desc* d, Layout* a, Layout* b, Layout* c, Layout* dd,
                                   Preference* pref, int requested, HeuristicResult* results, int* returned) {
  if (handle != &handle_object) return Fail(kNotInitialized, "unknown handle");
  if (requested < 1) return Fail(kInvalidValue, "requested no algorithm");
  std::uint64_t m, n, k;
  if (int status = Check(*d, *a, *b, *c, *dd, m, n, k); status != kSuccess) return status;
  const Layout* layouts[4] = {a, b, c, dd};
  for (int i = 0; i < 4; ++i) {
    if (pref->align[i] < ElementSize(layouts[i]->type)) return Fail(kInvalidValue, "alignment below the element size");
  }
  const int count = requested < kVariants ? requested : kVariants;
  for (int v = 0; v < count; ++v) {
    HeuristicResult& r = results[v];
    std::memset(&r, 0, sizeof(HeuristicResult));
    const bool split = (k >= kSplitK || (v == kVariants - 1 && v > 0)) && pref->workspace >= kSplitKWorkspace;
    const std::uint64_t workspace = split ? kSplitKWorkspace : 0;
    Algo algo{kAlgoMagic, {pref->align[0], pref->align[1], pref->align[2], pref->align[3]}, workspace,
              static_cast<std::uint64_t>(v)};
    std::memcpy(r.algo, &algo, sizeof(algo));
    r.workspaceSize = workspace;
    r.wavesCount = 1.0f;
  }
  *returned = count;
  return 0;
}

int cublasLtMatmulAlgoCheck(void* handle, Desc* d, Layout* a, Layout* b, Layout* c, Layout* dd, const Algo* algo,
                            HeuristicResult* result) {
  if (handle != &handle_object) return Fail(kNotInitialized, "unknown handle");
  std::uint64_t m, n, k;
  if (int status = Check(*d, *a, *b, *c, *dd, m, n, k); status != kSuccess) return status;
  if (algo == nullptr || algo->magic != kAlgoMagic) return Fail(kInvalidValue, "an algorithm not from the heuristic");
  std::memset(result, 0, sizeof(HeuristicResult));
  std::memcpy(result->algo, algo, sizeof(Algo));
  result->workspaceSize = algo->workspace;
  result->wavesCount = 1.0f;
  return 0;
}

int cublasLtMatmul(void* handle, Desc* d, const float* alpha, const void* A, Layout* a, const void* B, Layout* b,
                   const float* beta, const void* C, Layout* c, void* D, Layout* dd, const Algo* algo,
                   void* workspace, std::size_t workspace_bytes, void* stream) {
  if (handle != &handle_object) return Fail(kNotInitialized, "unknown handle");
  std::uint64_t m, n, k;
  if (int status = Check(*d, *a, *b, *c, *dd, m, n, k); status != kSuccess) return status;
  if (algo == nullptr || algo->magic != kAlgoMagic) return Fail(kInvalidValue, "an algorithm not from the heuristic");
  const void* pointers[4] = {A, B, C, D};
  const Layout* layouts[4] = {a, b, c, dd};
  const char* names[4] = {"A", "B", "C", "D"};
  for (int i = 0; i < 4; ++i) {
    const auto p = reinterpret_cast<std::uint64_t>(pointers[i]);
    if (!ftemu_in_device(p, Extent(*layouts[i])))
      return Fail(kInvalidValue, std::string(names[i]) + " is not inside one device allocation");
    const std::uint64_t stride_bytes = layouts[i]->stride * ElementSize(layouts[i]->type);
    if (p % algo->align[i] != 0 || (layouts[i]->batch > 1 && stride_bytes % algo->align[i] != 0))
      return Fail(kInvalidValue, std::string(names[i]) + " is less aligned than the preference promised");
  }
  if (d->epilogue == kEpilogueBias &&
      (d->bias % 16 != 0 || !ftemu_in_device(d->bias, m * ElementSize(dd->type)) || dd->batch != 1))
    return Fail(kInvalidValue, "the bias vector is not 16-byte aligned device memory of m values, or D is batched");
  if (workspace_bytes < algo->workspace) return Fail(kInvalidValue, "a workspace smaller than the algorithm needs");
  if (workspace_bytes > 0 && !ftemu_in_device(reinterpret_cast<std::uint64_t>(workspace), workspace_bytes))
    return Fail(kInvalidValue, "the workspace is not device memory");
  if (C != D && (c->ld != dd->ld || c->stride != dd->stride))
    return Fail(kNotSupported, "C and D differ in layout");
  if (std::getenv("FTEMU_SKIP")) return kSuccess;  // FTEMU_SKIP (fake_cuda.ts): checked, not run
  const bool slow = std::getenv("FTEMU_SLOW_PLAIN_GEMMS") != nullptr ? algo->workspace == 0
                                                                    : algo->workspace != 0 && k < kSplitK;
  auto* job = new Job{*d, *a, *b, *c, m, n, k, *alpha, *beta, A, B, C, D, slow};
  const int result = ftemu_submit(stream, RunJob, job, [](void* data) { delete static_cast<Job*>(data); });
  if (result == 0) return kSuccess;
  return Fail(kExecutionFailed, "the fake driver refused the work: error " + std::to_string(result));
}

}  // extern "C"
