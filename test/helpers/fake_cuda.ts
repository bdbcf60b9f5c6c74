// A fake CUDA installation for machines without a GPU: a libcuda whose "device memory" is host memory (malloc,
// memcpy, memset), an NVRTC that only reports its version and a cuBLASLt that only reports its version. It runs
// native.cuda's memory paths (handles, cache, copies, statistics, argument checks) for real; kernels fail to
// compile, with a clear error. Stream capture records the device-to-device copies and memsets queued while
// capturing, and a graph launch runs them again; host copies refuse to be captured, as the driver's would.
// Built with g++ into a CUDA_HOME folder that the caller removes.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export const HAS_GXX = spawnSync("g++", ["--version"]).status === 0;

const FAKE_LIBCUDA = `
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <cstdint>
#include <functional>
#include <vector>
using Ops = std::vector<std::function<void()>>;
static Ops* capturing = nullptr;
// Runs op now, or records it for the graph being captured.
static int Queue(std::function<void()> op) {
  if (capturing != nullptr) capturing->push_back(op); else op();
  return 0;
}
constexpr int kCaptureUnsupported = 900;
extern "C" {
int cuInit(unsigned) { return 0; }
int cuDriverGetVersion(int* v) { *v = 13000; return 0; }
int cuGetErrorString(int, const char** s) { *s = "fake error"; return 0; }
int cuDeviceGetCount(int* n) { *n = 1; return 0; }
int cuDeviceGet(int* d, int ordinal) { *d = ordinal; return 0; }
int cuDeviceGetName(char* name, int len, int) { std::strncpy(name, "Fake GPU", len); return 0; }
int cuDeviceGetAttribute(int* v, int attribute, int) { *v = attribute == 75 ? 9 : 0; return 0; }
int cuDeviceTotalMem_v2(std::size_t* bytes, int) { *bytes = std::size_t{80} << 30; return 0; }
static int context, stream;
int cuDevicePrimaryCtxRetain(void** ctx, int) { *ctx = &context; return 0; }
int cuCtxSetCurrent(void*) { return 0; }
int cuStreamCreate(void** s, unsigned) { *s = &stream; return 0; }
int cuStreamSynchronize(void*) { return 0; }
int cuMemAlloc_v2(std::uint64_t* p, std::size_t n) { *p = reinterpret_cast<std::uint64_t>(std::malloc(n)); return *p ? 0 : 2; }
int cuMemFree_v2(std::uint64_t p) { std::free(reinterpret_cast<void*>(p)); return 0; }
int cuMemGetInfo_v2(std::size_t* free, std::size_t* total) { *free = *total = std::size_t{80} << 30; return 0; }
int cuMemcpyHtoDAsync_v2(std::uint64_t d, const void* s, std::size_t n, void*) { if (capturing) return kCaptureUnsupported; std::memcpy(reinterpret_cast<void*>(d), s, n); return 0; }
int cuMemcpyDtoHAsync_v2(void* d, std::uint64_t s, std::size_t n, void*) { if (capturing) return kCaptureUnsupported; std::memcpy(d, reinterpret_cast<void*>(s), n); return 0; }
int cuMemcpyDtoDAsync_v2(std::uint64_t d, std::uint64_t s, std::size_t n, void*) { return Queue([=] { std::memmove(reinterpret_cast<void*>(d), reinterpret_cast<void*>(s), n); }); }
int cuMemsetD8Async(std::uint64_t d, unsigned char v, std::size_t n, void*) { return Queue([=] { std::memset(reinterpret_cast<void*>(d), v, n); }); }
int cuStreamBeginCapture_v2(void*, int) { if (capturing) return kCaptureUnsupported; capturing = new Ops; return 0; }
int cuStreamEndCapture(void*, void** graph) { *graph = capturing; capturing = nullptr; return *graph ? 0 : 901; }
int cuGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long) { *exec = new Ops(*static_cast<Ops*>(graph)); return 0; }
int cuGraphLaunch(void* exec, void*) { for (auto& op : *static_cast<Ops*>(exec)) op(); return 0; }
int cuGraphExecDestroy(void* exec) { delete static_cast<Ops*>(exec); return 0; }
int cuGraphDestroy(void* graph) { delete static_cast<Ops*>(graph); return 0; }
int cuModuleLoadData(void**, const void*) { return 200; }
int cuModuleGetFunction(void**, void*, const char*) { return 500; }
int cuLaunchKernel(void*, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void*, void**, void**) { return 98; }
}
`;

function compile(source: string, output: string): void {
  execFileSync("g++", ["-shared", "-fPIC", "-x", "c++", "-", "-o", output], { input: source, timeout: 60_000 });
}

/** Builds the fake toolkit into a new CUDA_HOME, runs `body` with it, removes it. */
export function withFakeCuda<T>(body: (home: string) => T): T {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-fake-cuda-"));
  try {
    const lib64 = path.join(home, "lib64");
    fs.mkdirSync(lib64);
    compile(FAKE_LIBCUDA, path.join(lib64, "libcuda.so.1"));
    compile(`extern "C" int nvrtcVersion(int* a, int* b) { *a = 13; *b = 0; return 0; }`, path.join(lib64, "libnvrtc.so.13"));
    compile(`#include <cstddef>\nextern "C" std::size_t cublasLtGetVersion() { return 130001; }`, path.join(lib64, "libcublasLt.so.13"));
    return body(home);
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
}
