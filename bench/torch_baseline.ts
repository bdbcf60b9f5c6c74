// PyTorch on the CPU as the baseline of bench/engine.ts and bench/train.ts: bench/torch_step.py trains a copy of
// finetune's model on the batches finetune trains on, in a child process with the same thread count. The benchmarks
// alternate windows of steps of the two sides, so load from elsewhere on the machine falls on both alike (not single
// steps: each side would then start every step on caches the other evicted and on sleeping threads, which cost
// finetune's L4/H256 step 10 of its 80 ms). Requests are synchronous (the Trainer's callbacks are): a worker thread
// talks to the child and wakes the caller through a shared buffer, and reports the child's exit instead of leaving
// the caller waiting.
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import type { Tensor } from "../src/tensor/tensor.js";
import type { PreTrainedModel } from "../src/models/index.js";

const TORCH_STEP_SCRIPT = fileURLToPath(new URL("../../bench/torch_step.py", import.meta.url));

/** Debian's and Ubuntu's OpenMP build of OpenBLAS, whose threads are torch's own OpenMP threads. */
const OPENBLAS_OPENMP_DIR = `/usr/lib/${process.arch === "arm64" ? "aarch64" : "x86_64"}-linux-gnu/openblas-openmp`;

const REPLY_BYTES = 1 << 16;
const WAITING = 0;
const REPLIED = 1;
const EXITED = 2;

export interface TorchSettings {
  lr: number;
  weight_decay: number;
  max_grad_norm: number | null;
  linear_schedule_steps: number | null;
  /** the forward under torch.autocast("cpu", dtype=torch.bfloat16) */
  bf16: boolean;
}

export interface TorchInfo {
  torch_version: string;
  threads: number;
  cpu_capability: string | null;
  blas: string[];
}

export const NO_TORCH = process.env.FINETUNE_BENCH_PYTHON
  ? `PyTorch: FINETUNE_BENCH_PYTHON (${process.env.FINETUNE_BENCH_PYTHON}) does not import torch`
  : "PyTorch: no python3 with torch (apt-get install python3-torch, or set FINETUNE_BENCH_PYTHON)";

/** FINETUNE_BENCH_PYTHON where set, else the first of python3 and the system's python3, if it imports torch. */
export function findTorchPython(): string | undefined {
  const chosen = process.env.FINETUNE_BENCH_PYTHON;
  const candidates = chosen ? [chosen] : ["python3", "/usr/bin/python3"];
  return candidates.find((python) => spawnSync(python, ["-c", "import torch"], { stdio: "ignore" }).status === 0);
}

/** A figure for a benchmark's JSON line, rounded: null where it could not be measured (NaN: no baseline found). */
export function figure(v: number, digits = 1): number | null {
  return Number.isFinite(v) ? Number(v.toFixed(digits)) : null;
}

/** A batch as JSON lists, as the child reads it. */
export type BatchLists = Record<string, unknown>;

export function batchLists(batch: Record<string, Tensor>): BatchLists {
  return Object.fromEntries(Object.entries(batch).map(([key, t]) => [key, t.tolist()]));
}

/** PyTorch at its best: distributions build torch on the system's BLAS, OpenBLAS, which here picks its own kernel
 * (OPENBLAS_CORETYPE dropped, as for the GEMM baseline) and runs in torch's OpenMP threads where its OpenMP build is
 * installed (libopenblas0-openmp): the pthread build's threads compete for the cores with torch's OpenMP threads,
 * which spin between parallel regions, and a step takes up to three times as long. */
export class TorchBaseline {
  readonly info: TorchInfo;
  private readonly workDir: string;
  private readonly worker: Worker;
  private readonly state = new Int32Array(new SharedArrayBuffer(8));
  private readonly reply = new Uint8Array(new SharedArrayBuffer(REPLY_BYTES));

  /** Starts PyTorch on a copy of `model` as it is now. */
  constructor(python: string, model: PreTrainedModel, settings: TorchSettings, threads: number) {
    this.workDir = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-bench-torch-"));
    model.save_pretrained(this.workDir);
    fs.writeFileSync(path.join(this.workDir, "settings.json"), JSON.stringify(settings));
    const env = { ...process.env };
    delete env.OPENBLAS_CORETYPE;
    delete env.OPENBLAS_L2_SIZE;
    if (fs.existsSync(OPENBLAS_OPENMP_DIR)) env.LD_LIBRARY_PATH = [OPENBLAS_OPENMP_DIR, env.LD_LIBRARY_PATH].filter(Boolean).join(":");
    this.worker = new Worker(fileURLToPath(import.meta.url), {
      workerData: { python, args: [TORCH_STEP_SCRIPT, this.workDir, String(threads)], env, state: this.state, reply: this.reply },
    });
    this.info = this.wait() as TorchInfo;
  }

  /** The evaluation-mode loss on `batch`. */
  evalLoss(batch: BatchLists): number {
    return (this.request({ op: "eval", batch }) as { loss: number }).loss;
  }

  /** Milliseconds of `count` training steps, timed by the child: step i trains on batches[i % batches.length]. */
  steps(batches: BatchLists[], count = batches.length): number {
    return (this.request({ op: "steps", batches, count }) as { ms: number }).ms;
  }

  describe(): string {
    return `PyTorch ${this.info.torch_version} (${this.info.cpu_capability ?? "?"}, BLAS in ${this.info.blas.join(", ") || "?"})`;
  }

  close(): void {
    this.worker.postMessage(null);
    fs.rmSync(this.workDir, { recursive: true, force: true });
  }

  private request(message: object): unknown {
    Atomics.store(this.state, 0, WAITING);
    this.worker.postMessage(JSON.stringify(message));
    return this.wait();
  }

  private wait(): unknown {
    Atomics.wait(this.state, 0, WAITING);
    if (Atomics.load(this.state, 0) === EXITED) {
      fs.rmSync(this.workDir, { recursive: true, force: true });
      void this.worker.terminate();
      throw new Error(`bench/torch_step.py exited (code ${this.state[1]}) before answering; its error output says why`);
    }
    return JSON.parse(new TextDecoder().decode(this.reply.slice(0, this.state[1])));
  }
}

/** The worker: forwards request lines to the child and its answers back through the shared buffer. */
function serve(): void {
  const { python, args, env, state, reply } = workerData as { python: string; args: string[]; env: NodeJS.ProcessEnv; state: Int32Array; reply: Uint8Array };
  const child = spawn(python, args, { env, stdio: ["pipe", "pipe", "inherit"] });
  const wake = (status: number, length: number) => {
    state[1] = length;
    Atomics.store(state, 0, status);
    Atomics.notify(state, 0);
  };
  createInterface({ input: child.stdout }).on("line", (line) => {
    const bytes = new TextEncoder().encode(line);
    if (bytes.length > REPLY_BYTES) throw new Error(`bench/torch_step.py answered ${bytes.length} bytes, over ${REPLY_BYTES}`);
    reply.set(bytes);
    wake(REPLIED, bytes.length);
  });
  child.on("exit", (code) => {
    wake(EXITED, code ?? -1);
    parentPort!.close();
  });
  parentPort!.on("message", (message: string | null) => {
    if (message === null) {
      child.stdin.end();
    } else {
      child.stdin.write(`${message}\n`);
    }
  });
}

if (!isMainThread && (workerData as { python?: string } | null)?.python !== undefined) serve();
