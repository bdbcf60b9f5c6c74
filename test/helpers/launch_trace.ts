// The kernels a script launches on the emulated CUDA toolkit (its FTEMU_TRACE), for tests that count launches.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { REPO_ROOT } from "./paths.js";

/** Why a test that reads the launch trace skips, or false where it runs: only the emulator traces launches. */
export const NO_LAUNCH_TRACE = process.env["FINETUNE_CUDA_EMULATED"] !== "1" && "the launch trace needs the emulator";

/**
 * The kernels `script` (an ES module run in a new process, `dist` its path to dist/src) launches after it prints
 * "ftemu: begin". With the side stream off (where a linear layer's GEMMs go side by side, as the emulator's timing
 * happens to choose, ops/side_stream_choice.ts, its backward also launches the clipping's sums of squares) and the
 * attention's backward as one kernel a head where it can (no timing trials, whose launches would vary); `env` adds
 * to the environment (the emulator's FTEMU_COMPUTE_CAPABILITY, say).
 */
export function launches(script: string, env: Record<string, string> = {}): string[] {
  const dist = JSON.stringify(path.join(REPO_ROOT, "dist/src"));
  const run = spawnSync(process.execPath, ["--input-type=module", "-e", `const dist = ${dist};\n${script}`],
    { env: { ...process.env, FTEMU_TRACE: "1", FINETUNE_CUDA_SIDE_STREAM: "0", FINETUNE_CUDA_ATTENTION_HEADS: "1", ...env }, encoding: "utf8", maxBuffer: 64 << 20 });
  assert.equal(run.status, 0, run.stderr.slice(-4000));
  const lines = run.stderr.split("\n");
  return lines.slice(lines.indexOf("ftemu: begin") + 1).flatMap((l) => l.match(/^ftemu: (\S+) grid/)?.[1] ?? []);
}
