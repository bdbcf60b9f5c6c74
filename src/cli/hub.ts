// `finetune hub serve DIR [--port N] [--host H]`: a Hub mirror for air-gapped machines and tests.
import fs from "node:fs";
import { HubServer } from "../hub/server.js";

const USAGE = "usage: finetune hub serve DIR [--port N] [--host 127.0.0.1]";

export async function hubServeCommand(argv: string[]): Promise<void> {
  const args = argv[0] === "serve" ? argv.slice(1) : argv;
  let dir: string | undefined;
  let port = 8080;
  let host = "127.0.0.1";
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const [flag, inline] = arg.split("=", 2) as [string, string | undefined];
    if (flag === "--port" || flag === "--host") {
      const value = inline ?? args[++i];
      if (value === undefined) throw new Error(`${flag} needs a value. ${USAGE}`);
      if (flag === "--port") port = Number(value);
      else host = value;
    } else if (arg === "-h" || arg === "--help") {
      console.log(USAGE);
      return;
    } else if (dir === undefined && !arg.startsWith("-")) {
      dir = arg;
    } else {
      throw new Error(`Unknown argument '${arg}'. ${USAGE}`);
    }
  }
  if (!dir) throw new Error(`Missing DIR. ${USAGE}`);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`'${dir}' is not a folder. ${USAGE}`);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be 0..65535. ${USAGE}`);
  const server = new HubServer(dir);
  const endpoint = await server.listen({ port, host });
  console.log(`Serving ${dir} as a Hub at ${endpoint} (use HF_ENDPOINT=${endpoint}); Ctrl+C to stop.`);
  await new Promise<void>((resolve) => process.once("SIGINT", resolve).once("SIGTERM", resolve));
  await server.close();
}
