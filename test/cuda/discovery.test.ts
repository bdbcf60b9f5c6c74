// CUDA discovery on machines without CUDA: the addon looks for libcuda, NVRTC and cuBLASLt, says why CUDA cannot be
// used, and never throws or crashes over a missing, broken or too-old library. The loader runs once per process,
// so every environment-dependent case runs in a child process; fake drivers are built here with g++.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { torch } from "../../src/torch.js";
import { cudaInfo } from "../../src/backend/cuda.js";
import type { CudaInfo } from "../../src/backend/native.js";
import { REPO_ROOT } from "../helpers/paths.js";

const NATIVE_JS = pathToFileURL(path.join(REPO_ROOT, "dist/src/backend/native.js")).href;
const TORCH_JS = pathToFileURL(path.join(REPO_ROOT, "dist/src/torch.js")).href;
const CUDA_JS = pathToFileURL(path.join(REPO_ROOT, "dist/src/backend/cuda.js")).href;
const HAS_GXX = spawnSync("g++", ["--version"]).status === 0;
const NO_GXX = "g++ is not installed: the fake libcuda cases need it";
// Where the real driver loads, a candidate that fails to dlopen is passed over for it: those cases cannot be seen.
const SYSTEM_DRIVER = "path" in cudaInfo().libraries.cuda;

function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  if (!("CUDA_HOME" in extra)) delete env.CUDA_HOME;
  if (!("FINETUNE_DISABLE_CUDA" in extra)) delete env.FINETUNE_DISABLE_CUDA;
  return env;
}

/** Runs an ES module script in a fresh node with `env` and parses the JSON it prints; a crash fails the test. */
function runChild<T>(script: string, env: Record<string, string>): T {
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
    env: childEnv(env),
    encoding: "utf8",
    timeout: 30_000,
  });
  return JSON.parse(out) as T;
}

function childCudaInfo(env: Record<string, string>): CudaInfo {
  return runChild<CudaInfo>(
    `import { native } from ${JSON.stringify(NATIVE_JS)}; console.log(JSON.stringify(native.cudaInfo()));`,
    env,
  );
}

/** A CUDA_HOME whose lib64 holds `libcuda.so.1` made by `make`; removed afterwards. */
function withCudaHome<T>(make: (libcuda: string) => void, body: (home: string, libcuda: string) => T): T {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-cuda-"));
  try {
    const lib64 = path.join(home, "lib64");
    fs.mkdirSync(lib64);
    const libcuda = path.join(lib64, "libcuda.so.1");
    make(libcuda);
    return body(home, libcuda);
  } finally {
    fs.rmSync(home, { recursive: true, force: true });
  }
}

// One fake driver source; -D flags choose which entry points it has and what they answer.
const FAKE_DRIVER = `
#include <cstddef>
#include <cstring>
extern "C" {
int cuInit(unsigned) { return FAKE_INIT_RESULT; }
#ifdef FAKE_VERSION
int cuDriverGetVersion(int* v) { *v = FAKE_VERSION; return 0; }
#endif
#ifdef FAKE_DEVICE_API
int cuGetErrorString(int, const char** s) { *s = "fake error"; return 0; }
int cuDeviceGetCount(int* n) { *n = 1; return 0; }
int cuDeviceGet(int* d, int ordinal) { *d = ordinal; return 0; }
int cuDeviceGetName(char* name, int len, int) { std::strncpy(name, "Fake GPU", len); return 0; }
int cuDeviceGetAttribute(int* v, int attribute, int) { *v = attribute == 75 ? 9 : 0; return 0; }
int cuDeviceTotalMem_v2(std::size_t* bytes, int) { *bytes = std::size_t{80} << 30; return 0; }
#endif
}
`;

function compile(source: string, output: string, defines: string[] = []): void {
  execFileSync("g++", ["-shared", "-fPIC", "-x", "c++", "-", "-o", output, ...defines.map((d) => `-D${d}`)], {
    input: source,
    timeout: 60_000,
  });
}

function fakeDriver(defines: string[]): (libcuda: string) => void {
  return (libcuda) => compile(FAKE_DRIVER, libcuda, defines);
}

test("this machine: CUDA is unavailable, with a reason naming libcuda and the folders searched", { skip: cudaInfo().available && "this machine has CUDA" }, () => {
  const info = cudaInfo();
  assert.equal(info.available, false);
  assert.equal(info.backend, true);
  assert.ok(info.reason);
  if (!SYSTEM_DRIVER) {
    assert.match(info.reason, /libcuda\.so\.1/);
    assert.match(info.reason, /Install the NVIDIA driver, or set CUDA_HOME or LD_LIBRARY_PATH/);
    for (const folder of info.searched) assert.ok(info.reason.includes(folder), `the reason names ${folder}`);
    assert.equal(info.driver_version, null);
    assert.deepEqual(info.devices, []);
  }
  for (const lib of Object.values(info.libraries)) assert.ok("path" in lib || lib.error.length > 0);
});

test("torch.cuda answers like PyTorch without CUDA", { skip: cudaInfo().available && "this machine has CUDA" }, () => {
  const reason = cudaInfo().reason!;
  assert.equal(torch.cuda.is_available(), false);
  assert.equal(torch.cuda.device_count(), 0);
  const calls = [() => torch.cuda.current_device(), () => torch.cuda.synchronize(), () => torch.cuda.get_device_name()];
  for (const call of calls) {
    assert.throws(call, (e: Error) => e.message.includes("CUDA is not available") && e.message.includes(reason));
  }
  assert.equal(torch.cuda.memory_allocated(), 0);
  assert.equal(torch.cuda.max_memory_allocated(), 0);
  torch.cuda.manual_seed_all(0);
  assert.throws(() => torch.ones([1]).to("cuda"), (e: Error) => e.message.includes(reason));
  assert.throws(() => torch.zeros([1], { device: "cuda" }), (e: Error) => e.message.includes(reason));
});

test("CUDA_HOME is searched first", () => {
  withCudaHome(() => {}, (home) => {
    const info = childCudaInfo({ CUDA_HOME: home });
    assert.equal(info.searched[0], path.join(home, "lib64"));
    if (!SYSTEM_DRIVER) assert.ok(info.reason!.includes(path.join(home, "lib64")));
  });
});

test("FINETUNE_DISABLE_CUDA=1 loads nothing", () => {
  const info = childCudaInfo({ FINETUNE_DISABLE_CUDA: "1" });
  assert.equal(info.available, false);
  assert.equal(info.reason, "disabled by FINETUNE_DISABLE_CUDA");
  assert.deepEqual(info.searched, []);
  for (const lib of Object.values(info.libraries)) {
    assert.deepEqual(lib, { error: "not loaded: disabled by FINETUNE_DISABLE_CUDA" });
  }
});

const BROKEN_SKIP = SYSTEM_DRIVER && "a real libcuda loads after the broken one here";
test("a libcuda.so.1 that is not a library: the dlerror text, no crash", { skip: BROKEN_SKIP }, () => {
  withCudaHome((libcuda) => fs.writeFileSync(libcuda, "not a shared library\n".repeat(8)), (home, libcuda) => {
    const info = childCudaInfo({ CUDA_HOME: home });
    assert.equal(info.available, false);
    assert.ok(info.reason!.includes(`${libcuda}: invalid ELF header`), info.reason!);
    assert.ok("error" in info.libraries.cuda && info.libraries.cuda.error.includes(libcuda));
  });
});

test("a driver for CUDA 11.8 is too old", { skip: !HAS_GXX && NO_GXX }, () => {
  withCudaHome(fakeDriver(["FAKE_INIT_RESULT=0", "FAKE_VERSION=11080"]), (home, libcuda) => {
    const info = childCudaInfo({ CUDA_HOME: home });
    assert.equal(info.available, false);
    assert.equal(info.reason, "the NVIDIA driver supports CUDA 11.8; finetune needs 12.0 or newer: update the driver");
    assert.equal(info.driver_version, 11080);
    assert.deepEqual(info.libraries.cuda, { path: libcuda, version: "11.8" });
  });
});

test("a libcuda missing an entry point names it", { skip: !HAS_GXX && NO_GXX }, () => {
  withCudaHome(fakeDriver(["FAKE_INIT_RESULT=0"]), (home, libcuda) => {
    const info = childCudaInfo({ CUDA_HOME: home });
    assert.equal(info.available, false);
    assert.match(info.reason!, /lacks cuDriverGetVersion/);
    assert.ok(info.reason!.includes(libcuda));
    assert.match(info.reason!, /reinstall the NVIDIA driver/);
    assert.deepEqual(info.libraries.cuda, { error: info.reason });
  });
});

test("a driver without devices says so", { skip: !HAS_GXX && NO_GXX }, () => {
  withCudaHome(fakeDriver(["FAKE_INIT_RESULT=100", "FAKE_VERSION=13000", "FAKE_DEVICE_API"]), (home) => {
    const info = childCudaInfo({ CUDA_HOME: home, CUDA_VISIBLE_DEVICES: "" });
    assert.equal(info.reason, "no CUDA GPU found: the driver (CUDA 13.0) sees no device (CUDA_VISIBLE_DEVICES=)");
    assert.equal(info.device_count, 0);
  });
});

// A working driver beside NVRTC 13.0 and two cuBLASLt versions, of which the newer must win.
function fakeToolkit(libcuda: string): void {
  fakeDriver(["FAKE_INIT_RESULT=0", "FAKE_VERSION=13000", "FAKE_DEVICE_API"])(libcuda);
  const lib64 = path.dirname(libcuda);
  const nvrtc = `extern "C" int nvrtcVersion(int* a, int* b) { *a = 13; *b = 0; return 0; }`;
  compile(nvrtc, path.join(lib64, "libnvrtc.so.13"));
  for (const [soname, version] of [["libcublasLt.so.12", 120804], ["libcublasLt.so.13", 130001]] as const) {
    const cublasLt = `#include <cstddef>\nextern "C" std::size_t cublasLtGetVersion() { return ${version}; }`;
    compile(cublasLt, path.join(lib64, soname));
  }
}

test("a working driver lists its GPU; one lacking the runtime's entry points fails on first use, clearly", { skip: !HAS_GXX && NO_GXX }, () => {
  withCudaHome(fakeToolkit, (home, libcuda) => {
    const out = runChild<{ info: CudaInfo; available: boolean; count: number; moveError: string }>(
      `import { torch } from ${JSON.stringify(TORCH_JS)};
       import { cudaInfo } from ${JSON.stringify(CUDA_JS)};
       let moveError = "";
       try { torch.ones([1]).to("cuda"); } catch (e) { moveError = e.message; }
       const [available, count] = [torch.cuda.is_available(), torch.cuda.device_count()];
       console.log(JSON.stringify({ info: cudaInfo(), available, count, moveError }));`,
      { CUDA_HOME: home },
    );
    const { info } = out;
    assert.deepEqual(info.devices, [{ name: "Fake GPU", total_memory: 80 * 2 ** 30, major: 9, minor: 0 }]);
    assert.equal(info.driver_version, 13000);
    assert.deepEqual(info.libraries, {
      cuda: { path: libcuda, version: "13.0" },
      nvrtc: { path: path.join(home, "lib64", "libnvrtc.so.13"), version: "13.0" },
      cublasLt: { path: path.join(home, "lib64", "libcublasLt.so.13"), version: "13.0.1" },
    });
    assert.equal(info.available, true);
    assert.equal(info.reason, null);
    assert.equal(out.available, true);
    assert.equal(out.count, 1);
    assert.equal(out.moveError, `CUDA is not available: ${libcuda} lacks cuDevicePrimaryCtxRetain: update the NVIDIA driver`);
  });
});

test("a driver without NVRTC: CUDA is unavailable and the reason says what to install", { skip: !HAS_GXX && NO_GXX }, () => {
  withCudaHome(fakeToolkit, (home) => {
    fs.rmSync(path.join(home, "lib64", "libnvrtc.so.13"));
    const info = childCudaInfo({ CUDA_HOME: home });
    if ("path" in info.libraries.nvrtc) return;  // a system NVRTC was found instead
    assert.equal(info.available, false);
    assert.match(info.reason!, /^NVRTC \(CUDA's run-time compiler\) was not found: .*Install the CUDA toolkit or the nvidia-cuda-nvrtc package/);
  });
});
