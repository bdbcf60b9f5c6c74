// Starts the local Hub server for a test, with HF_ENDPOINT pointing at it and a temporary HF_HOME;
// close() stops it and restores the environment.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { HubServer } from "../../src/hub/server.js";

export interface TestHub {
  endpoint: string;
  /** a fresh HF_HOME (hub cache and datasets cache inside), removed by close() */
  hf_home: string;
  server: HubServer;
  requestCount(): number;
  close(): Promise<void>;
}

/** The repository root: npm test runs there; compiled tests live in dist/test/. */
import { SHARED_HUB } from "./paths.js";

const ENV_KEYS = ["HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_DISABLE_PROGRESS_BARS"];

export async function startHub(dir: string = SHARED_HUB, options: { hf_home?: string } = {}): Promise<TestHub> {
  const saved = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
  const server = new HubServer(dir);
  const endpoint = await server.listen({ host: "127.0.0.1", port: 0 });
  const hf_home = options.hf_home ?? fs.mkdtempSync(path.join(os.tmpdir(), "finetune-hf-home-"));
  for (const k of ENV_KEYS) delete process.env[k];
  process.env.HF_ENDPOINT = endpoint;
  process.env.HF_HOME = hf_home;
  process.env.HF_HUB_DISABLE_PROGRESS_BARS = "1";
  return {
    endpoint, hf_home, server,
    requestCount: () => server.requests.length,
    async close() {
      await server.close();
      if (!options.hf_home) fs.rmSync(hf_home, { recursive: true, force: true });
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    },
  };
}
