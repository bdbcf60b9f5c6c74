// MPI processes for tests: whether they can be started (an MPI library the addon loads and a launcher), and a
// script run as several processes under mpirun.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { native } from "../../src/backend/native.js";
import { mpiProcessEnv, mpirunCommand } from "../../src/accelerate/mpirun.js";
import { REPO_ROOT } from "./paths.js";

function why(): string | false {
  const library = native.mpi.load();
  if (!library.available) return library.reason;
  const launcher = process.env.FINETUNE_MPIRUN || "mpirun";
  if (spawnSync(launcher, ["--version"]).error) return `${launcher} is not installed (apt-get install openmpi-bin)`;
  return false;
}

/** Why a test that starts MPI processes skips, or false where it runs. */
export const NO_MPI: string | false = why();

/** Asserts every value of `got` (a flat list) lies within rtol * (1 + |want|) of `want`'s value at its index. */
export function assertCloseValues(got: number[], want: number[], rtol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: ${got.length} values against ${want.length}`);
  got.forEach((v, i) => assert.ok(Math.abs(v - want[i]!) <= rtol * (1 + Math.abs(want[i]!)), `${what} ${i}: ${v} against ${want[i]} in one process`));
}

/**
 * Runs `source` (an ES module; `dist` is the path of dist/src in it) as `n` processes under mpirun; each process's
 * stdout lines that parse as JSON objects with a `rank` are returned in rank order, with the exit code and output.
 */
export function runMpi(n: number, source: string, env: Record<string, string> = {}): { code: number | null; reports: Record<string, any>[]; stdout: string; stderr: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "finetune-mpi-"));
  try {
    const script = path.join(dir, "worker.mjs");
    fs.writeFileSync(script, `const dist = ${JSON.stringify(path.join(REPO_ROOT, "dist/src"))};\n${source}`);
    const { command, args } = mpirunCommand(n, [process.execPath, script]);
    const run = spawnSync(command, args, { cwd: dir, env: mpiProcessEnv({ ...process.env, ...env }, n), encoding: "utf8", timeout: 120_000 });
    const reports = run.stdout.split("\n").flatMap((line) => {
      try {
        const r = JSON.parse(line) as Record<string, any>;
        return typeof r === "object" && r !== null && "rank" in r ? [r] : [];
      } catch {
        return [];
      }
    });
    reports.sort((a, b) => a.rank - b.rank);
    return { code: run.status, reports, stdout: run.stdout, stderr: `${run.stderr}${run.error ? `\n${run.error.message}` : ""}` };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
