#!/usr/bin/env node
// The `finetune` command: dispatches sub-commands to their modules.
import { hubServeCommand } from "./hub.js";
import { trainCommand } from "./train.js";
import { envCommand } from "./env.js";
import { configCommand, launchCommand } from "./launch.js";

const USAGE =
  "usage: finetune train --model ID --dataset ID [...] | launch [...] SCRIPT.js | config [default] | env | hub serve DIR [--port N] [--host 127.0.0.1]";

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === "train") return trainCommand(rest);
  if (command === "hub" && rest[0] === "serve") return hubServeCommand(rest.slice(1));
  if (command === "env") return envCommand();
  if (command === "launch") return launchCommand(rest);
  if (command === "config") return configCommand(rest);
  console.error(USAGE);
  process.exitCode = 2;
}

main(process.argv.slice(2)).catch((err: Error) => {
  console.error(`finetune: ${err.message}`);
  process.exitCode = 1;
});
