// The GPU test files, run against the CPU emulation of the CUDA toolkit (test/helpers/fake_cuda): the real
// native.cuda code (NVRTC compilation and its disk cache, launches, cuBLASLt plans, copies, the caching
// allocator) end to end, with the kernels' CUDA source executed thread by thread. Every test in those files
// must pass here, none may skip: they skip only where CUDA is missing, and here it is not. First the emulator's
// own checks (fake_cuda/selftest.cc): that it orders, refuses and captures what a GPU would.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { torch } from "../../src/torch.js";
import { REPO_ROOT } from "../helpers/paths.js";
import { HAS_GXX, withFakeCuda } from "../helpers/fake_cuda.js";
import { NO_MPI } from "../helpers/mpi.js";

const GPU_TEST_FILES = ["ops_parity", "kernels_parity", "attention_parity", "amp_parity", "graphs_parity"].map((name) =>
  path.join(REPO_ROOT, "dist/test/cuda", `${name}.test.js`),
);

// Where a real GPU is available the GPU tests run on it directly (bench/gpu-check.sh): the emulator is not needed.
const SKIP = (!HAS_GXX && "g++ is missing") || (torch.cuda.is_available() && "a real GPU is available: the GPU tests run on it");

test("the GPU tests pass on the emulated CUDA toolkit", { skip: SKIP, timeout: 900_000 }, () => {
  withFakeCuda(
    (home) => {
      const selftest = path.join(home, "selftest");
      const source = path.join(REPO_ROOT, "test/helpers/fake_cuda/selftest.cc");
      execFileSync("g++", ["-std=c++20", "-O1", source, "-ldl", "-o", selftest], { stdio: "pipe" });
      const self = spawnSync(selftest, [home], { encoding: "utf8", timeout: 120_000 });
      assert.equal(self.status, 0, `the emulator's self-test failed:\n${self.stdout}${self.stderr}`);

      const cache = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-emulated-cache-"));
      try {
        // FTEMU_DEFER: queued work runs when the host waits for it, as on a GPU, so that host code relying on
        // work having run (or not yet) fails here too. FINETUNE_CUDA_PDL=1: every launch programmatic, which the
        // emulator fails where a thread never waited for the previous kernel (AwaitPriorGrid).
        const env: NodeJS.ProcessEnv = {
          ...process.env, CUDA_HOME: home, FINETUNE_CACHE: cache, FINETUNE_CUDA_EMULATED: "1", FTEMU_DEFER: "1",
          FINETUNE_CUDA_PDL: "1",
        };
        delete env.FINETUNE_DISABLE_CUDA;
        delete env.NODE_TEST_CONTEXT;  // a nested node --test reports as a top-level run
        const nodeTest = (args: string[], extraEnv: NodeJS.ProcessEnv = {}) => {
          const run = spawnSync(process.execPath, ["--test", "--test-concurrency=1", "--test-reporter=tap", ...args],
            { env: { ...env, ...extraEnv }, encoding: "utf8", timeout: 840_000, maxBuffer: 64 << 20 });
          const output = `${run.stdout}\n${run.stderr}`;
          const count = (what: string): number => Number(output.match(new RegExp(`^# ${what} (\\d+)$`, "m"))?.[1]);
          const tail = output.slice(-8000);
          assert.equal(run.status, 0, `the GPU tests failed on the emulator:\n${tail}`);
          assert.equal(count("fail"), 0, tail);
          assert.equal(count("cancelled"), 0, tail);
          return { count, tail };
        };
        // Each tensor its own device allocation, so that the emulator's bounds checks see every tensor's end
        const gpu = nodeTest(GPU_TEST_FILES, { FINETUNE_CUDA_EXACT_BLOCKS: "1" });
        assert.equal(gpu.count("skipped"), 0, `GPU tests skipped on the emulator:\n${gpu.tail}`);
        assert.ok(gpu.count("pass") >= GPU_TEST_FILES.length, gpu.tail);
        // A GPU before Ampere (sm_75, a T4's): 16-bit attention on the CUDA-core kernels and no programmatic launch
        // (its test skips), eager, under autocast and in graphs.
        const turingFiles = ["attention_parity", "amp_parity", "graphs_parity"].map((name) =>
          path.join(REPO_ROOT, "dist/test/cuda", `${name}.test.js`));
        const turing = nodeTest(turingFiles, { FINETUNE_CUDA_EXACT_BLOCKS: "1", FTEMU_COMPUTE_CAPABILITY: "7.5" });
        assert.equal(turing.count("skipped"), 1, `only the programmatic-launch test skips on sm_75:\n${turing.tail}`);
        // The Trainer on the GPU end to end: bf16 autocast on cuBLASLt's bf16 GEMMs, the step captured in CUDA
        // graphs and replayed, against transformers' float32 trajectory (the file's other runs take too long here),
        // with the allocator as on a GPU: blocks cut from shared segments.
        const trainer = nodeTest(["--test-name-pattern=^bf16: the golden", path.join(REPO_ROOT, "dist/test/training/trainer_mixed_precision.test.js")]);
        assert.equal(trainer.count("pass"), 1, trainer.tail);
        // Two GPU processes under finetune launch, on two fake GPUs whose NCCL runs on MPI (where MPI is installed)
        if (!NO_MPI) {
          const multi = nodeTest([path.join(REPO_ROOT, "dist/test/cuda/multi_gpu.test.js")]);
          assert.equal(multi.count("pass"), 3, multi.tail);
        }
        // Each kernel module was compiled once (and then read from the disk cache by the later files).
        assert.ok(fs.readdirSync(cache).some((f) => f.endsWith(".cubin")), "compiled kernels are cached");
      } finally {
        fs.rmSync(cache, { recursive: true, force: true });
      }
    },
    { emulate: true },
  );
});
