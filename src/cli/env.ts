// `finetune env`: what `accelerate env` / `transformers env` print — versions, backends, threads, devices.
import os from "node:os";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { native, type CudaInfo, type CudaLibrary } from "../backend/native.js";
import { cudaInfo } from "../backend/cuda.js";
import { load_config } from "../accelerate/config.js";

function packageVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const file = path.join(dir, "package.json");
    if (fs.existsSync(file)) return (JSON.parse(fs.readFileSync(file, "utf8")) as { version: string }).version;
    dir = path.dirname(dir);
  }
  return "unknown";
}

function libraryText(lib: CudaLibrary): string {
  return "path" in lib ? `${lib.path}${lib.version === null ? "" : ` (${lib.version})`}` : "not loaded";
}

// What CUDA the addon found and, when it cannot be used, why: the first thing to read on a GPU machine.
function cudaReport(): Record<string, string> {
  const info = cudaInfo();
  const driver = info.driver_version;
  const device = (d: CudaInfo["devices"][number], i: number): string =>
    `${i}: ${d.name} (${(d.total_memory / 2 ** 30).toFixed(2)} GB, compute ${d.major}.${d.minor})`;
  const { cuda, nvrtc, cublasLt } = info.libraries;
  return {
    "CUDA available": info.available ? "true" : `false (${info.reason})`,
    "CUDA driver": driver === null ? "none" : `CUDA ${Math.floor(driver / 1000)}.${Math.floor((driver % 1000) / 10)}`,
    "GPU devices": info.devices.length === 0 ? "none" : info.devices.map(device).join("; "),
    "CUDA libraries": `libcuda ${libraryText(cuda)}; NVRTC ${libraryText(nvrtc)}; cuBLASLt ${libraryText(cublasLt)}`,
    "CUDA search folders": info.searched.join(", ") || "(none)",
  };
}

function mpiText(): string {
  const mpi = native.mpi.load();
  return mpi.available ? `${mpi.implementation} (${mpi.library})` : `not available (${mpi.reason})`;
}

function ncclText(): string {
  const nccl = native.nccl.load();
  const v = nccl.version;
  return nccl.available ? `${Math.floor(v / 10000)}.${Math.floor(v / 100) % 100}.${v % 100} (${nccl.library})` : `not available (${nccl.reason})`;
}

export function envReport(): Record<string, string> {
  const f = native.cpuFeatures();
  const simd = f.avx512f ? `AVX-512${f.avx512bf16 ? " (bf16)" : ""}` : f.avx2 ? "AVX2" : "scalar";
  return {
    "`finetune` version": packageVersion(),
    Platform: `${os.type()} ${os.release()} ${os.arch()}`,
    "Node.js version": process.version,
    "CPU": `${os.cpus()[0]?.model ?? "unknown"} (${os.cpus().length} logical cores)`,
    "CPU kernels": simd,
    "Compute threads": String(native.getNumThreads()),
    "System RAM": `${(os.totalmem() / 2 ** 30).toFixed(2)} GB`,
    ...cudaReport(),
    "MPI (several processes)": mpiText(),
    "NCCL (several GPU processes)": ncclText(),
    "HF_ENDPOINT": process.env.HF_ENDPOINT ?? "(default)",
    "HF_HOME": process.env.HF_HOME ?? path.join(os.homedir(), ".cache", "huggingface"),
  };
}

export function envCommand(): void {
  console.log("\nCopy-and-paste the text below in your GitHub issue\n");
  for (const [k, v] of Object.entries(envReport())) console.log(`- ${k}: ${v}`);
  // as `accelerate env`: the config file launch reads, setting by setting
  const config = load_config();
  console.log(`- \`Accelerate\` default config:${config ? "" : " Not found"}`);
  if (config) for (const [k, v] of Object.entries(config)) console.log(`\t- ${k}: ${Array.isArray(v) ? JSON.stringify(v) : v}`);
}
