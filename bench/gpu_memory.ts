// Peak GPU memory of finetune's MRPC benchmark variants (bench/gpu_mrpc.ts) on a machine without a GPU: each
// variant trains its epoch against the emulated CUDA toolkit (test/helpers/fake_cuda) with every kernel and GEMM
// skipped (FTEMU_SKIP), so the host code, the caching allocator and the CUDA graphs run as on a GPU, in seconds.
// The tensors' values are garbage, but what is allocated when is not: max_memory_allocated comes out as a GPU
// run's (bf16: 1.981 GB on the H200 at b41683f, and 1.981 here with its allocator). Times and losses mean nothing here
// and are not printed. The last line is one JSON object: { peak_mem_gb: { ft_fp32, ft_bf16 }, cuda_graphs }.
//   npm run bench:gpu-memory
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { REPO_ROOT } from "../test/helpers/paths.js";
import { withFakeCuda } from "../test/helpers/fake_cuda.js";

const SCRIPT = path.join(REPO_ROOT, "dist/bench/gpu_mrpc.js");
const PRECISIONS = ["fp32", "bf16"] as const;

const work = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-gpu-memory-"));
try {
  execFileSync(process.execPath, [SCRIPT, "prepare", work], { stdio: ["ignore", "ignore", "inherit"] });
  const results = withFakeCuda((home) => PRECISIONS.map((precision) => {
    const env: NodeJS.ProcessEnv = {
      ...process.env, CUDA_HOME: home, FINETUNE_CACHE: path.join(work, "kernels"), FINETUNE_CUDA_EMULATED: "1", FTEMU_SKIP: "1",
    };
    delete env.FINETUNE_DISABLE_CUDA;
    const out = execFileSync(process.execPath, [SCRIPT, "train", work, precision], { env, encoding: "utf8", maxBuffer: 64 << 20 });
    const last = out.trimEnd().split("\n").at(-1)!;
    const { peak_mem_gb, cuda_graphs } = JSON.parse(last) as { peak_mem_gb: number; cuda_graphs: number };
    console.log(`ft_${precision}: peak ${peak_mem_gb} GB, ${cuda_graphs} CUDA graphs`);
    return { precision, peak_mem_gb, cuda_graphs };
  }), { emulate: true });
  console.log(JSON.stringify({
    peak_mem_gb: Object.fromEntries(results.map((r) => [`ft_${r.precision}`, r.peak_mem_gb])),
    cuda_graphs: results[0]!.cuda_graphs,
  }));
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
