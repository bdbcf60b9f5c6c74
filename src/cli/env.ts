// `finetune env`: what `accelerate env` / `transformers env` print — versions, backends, threads, devices.
import os from "node:os";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { native } from "../backend/native.js";
import { cuda } from "../backend/cuda.js";

function packageVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const file = path.join(dir, "package.json");
    if (fs.existsSync(file)) return (JSON.parse(fs.readFileSync(file, "utf8")) as { version: string }).version;
    dir = path.dirname(dir);
  }
  return "unknown";
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
    "CUDA available": String(cuda.is_available()),
    "GPU devices": String(cuda.device_count()),
    "HF_ENDPOINT": process.env.HF_ENDPOINT ?? "(default)",
    "HF_HOME": process.env.HF_HOME ?? path.join(os.homedir(), ".cache", "huggingface"),
  };
}

export function envCommand(): void {
  console.log("\nCopy-and-paste the text below in your GitHub issue\n");
  for (const [k, v] of Object.entries(envReport())) console.log(`- ${k}: ${v}`);
}
