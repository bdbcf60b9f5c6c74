// A fake CUDA installation for machines without a GPU, built with g++ into a CUDA_HOME folder that the caller
// removes (sources in test/helpers/fake_cuda/). Its libcuda keeps "device memory" in a separate address range
// of the process and checks every copy's direction and bounds (driver.cc). By default NVRTC and cuBLASLt only
// report their versions, so kernels fail to compile with a clear error; with `emulate` they run: the fake NVRTC
// builds kernel sources with g++ against a CPU model of the CUDA built-ins (nvrtc.cc, device.h) and the fake
// cuBLASLt multiplies on the CPU (cublaslt.cc), so native.cuda runs end to end, and the fake NCCL does its
// collectives on the processes' MPI world (nccl.cc). With FTEMU_SKIP=1 in the
// environment of the process using it, device-side work (launches, GEMMs, device-to-device copies) is checked
// and then not done: the host side (the caching allocator, CUDA graphs, the JS
// around each op) runs as on a GPU, fast, for bench/gpu_memory.ts and host profiles. With FTEMU_DEFER=1 queued work
// runs only when the host waits for it (driver.cc), as on a GPU.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { REPO_ROOT } from "./paths.js";

export const HAS_GXX = spawnSync("g++", ["--version"]).status === 0;

const SOURCES = path.join(REPO_ROOT, "test/helpers/fake_cuda");

const VERSION_ONLY_NVRTC = `extern "C" int nvrtcVersion(int* a, int* b) { *a = 13; *b = 0; return 0; }`;
const VERSION_ONLY_CUBLASLT = `#include <cstddef>\nextern "C" std::size_t cublasLtGetVersion() { return 130001; }`;

function gxx(args: string[], input?: string): void {
  execFileSync("g++", ["-std=c++20", "-O2", "-shared", "-fPIC", ...args], { input, timeout: 120_000, stdio: "pipe" });
}

export interface FakeCudaOptions {
  /** Real kernels and GEMMs on the CPU instead of version-only NVRTC and cuBLASLt. */
  emulate?: boolean;
}

/** Builds the fake toolkit into a new CUDA_HOME, runs `body` with it, removes it. */
export function withFakeCuda<T>(body: (home: string) => T, options: FakeCudaOptions = {}): T {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-fake-cuda-"));
  try {
    const lib64 = path.join(home, "lib64");
    const include = path.join(home, "include");
    fs.mkdirSync(lib64);
    fs.mkdirSync(include);
    for (const header of ["device.h", "launch.h"]) {
      fs.copyFileSync(path.join(SOURCES, header), path.join(include, header));
    }
    // device.h's 16-bit conversions are the host's and the kernels' own
    fs.copyFileSync(path.join(REPO_ROOT, "native/common/half_bits.h"), path.join(include, "half_bits.h"));
    const libcuda = path.join(lib64, "libcuda.so.1");
    gxx([path.join(SOURCES, "driver.cc"), `-I${path.join(REPO_ROOT, "native")}`, "-Wl,-soname,libcuda.so.1", "-ldl", "-o", libcuda]);
    const nvrtc = path.join(lib64, "libnvrtc.so.13");
    const cublasLt = path.join(lib64, "libcublasLt.so.13");
    if (options.emulate) {
      gxx([path.join(SOURCES, "nvrtc.cc"), "-ldl", "-o", nvrtc]);
      // Linked to the fake libcuda (found next to it) for its stream and its device memory checks.
      gxx([path.join(SOURCES, "cublaslt.cc"), `-I${path.join(REPO_ROOT, "native")}`, libcuda, "-Wl,-rpath,$ORIGIN", "-o", cublasLt]);
      // NCCL's calls on the processes' MPI world, queued on the fake stream
      gxx([path.join(SOURCES, "nccl.cc"), `-I${path.join(REPO_ROOT, "native")}`, libcuda, "-Wl,-rpath,$ORIGIN", "-ldl", "-o", path.join(lib64, "libnccl.so.2")]);
    } else {
      gxx(["-x", "c++", "-", "-o", nvrtc], VERSION_ONLY_NVRTC);
      gxx(["-x", "c++", "-", "-o", cublasLt], VERSION_ONLY_CUBLASLT);
    }
    return body(home);
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
}
