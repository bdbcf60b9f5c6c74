// `finetune hub serve DIR`: starts, prints its endpoint, serves, and rejects bad arguments.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { it } from "node:test";
import { hubServeCommand } from "../../src/cli/hub.js";
import { REPO_ROOT, SHARED_HUB } from "../helpers/paths.js";

it("serves a folder from the command line", async () => {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, "dist/src/cli/main.js"), "hub", "serve", SHARED_HUB, "--port", "0"]);
  try {
    const line = await new Promise<string>((resolve, reject) => {
      child.stdout.once("data", (d: Buffer) => resolve(d.toString()));
      child.once("exit", (code) => reject(new Error(`exited with ${code}`)));
    });
    const endpoint = /HF_ENDPOINT=(http:\/\/127\.0\.0\.1:\d+)/.exec(line)![1]!;
    const info = await (await fetch(`${endpoint}/api/models/bert-base-uncased/revision/main`)).json();
    assert.equal(info.id, "google-bert/bert-base-uncased");
  } finally {
    child.kill("SIGTERM");
  }
});

it("says what is wrong with the arguments", async () => {
  await assert.rejects(hubServeCommand([]), /Missing DIR\. usage: finetune hub serve DIR/);
  await assert.rejects(hubServeCommand(["/definitely/not/here"]), /is not a folder/);
  await assert.rejects(hubServeCommand([SHARED_HUB, "--port", "x"]), /--port must be/);
  await assert.rejects(hubServeCommand([SHARED_HUB, "--bogus"]), /Unknown argument '--bogus'/);
});
