// `finetune launch [options] SCRIPT [ARGS...]` (= `accelerate launch`) and `finetune config [default]`
// (= `accelerate config`): the launcher runs SCRIPT in a child process with the launch environment Accelerator
// and notebook_launcher read, its defaults taken from accelerate's config file; several processes are started by
// MPI's launcher, one a GPU (accelerate's MULTI_GPU, joined by NCCL) or on the CPU (MULTI_CPU, joined by MPI).
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import { cuda } from "../backend/cuda.js";
import {
  config_dir,
  default_config,
  load_config,
  save_config,
  type AccelerateConfig,
} from "../accelerate/config.js";
import { MIXED_PRECISION, type MixedPrecision } from "../accelerate/accelerator.js";
import { processDevice, runProcesses, runToExit } from "../accelerate/mpirun.js";

const LAUNCH_USAGE =
  "usage: finetune launch [--config_file FILE] [--num_processes N] [--mixed_precision no|fp16|bf16] [--cpu] SCRIPT.js [ARGS...]";

interface LaunchOptions {
  config_file: string | null;
  num_processes: number | null;
  mixed_precision: MixedPrecision | null;
  cpu: boolean;
  script: string;
  script_args: string[];
}

function parseLaunch(argv: string[]): LaunchOptions {
  const options: LaunchOptions = { config_file: null, num_processes: null, mixed_precision: null, cpu: false, script: "", script_args: [] };
  let i = 0;
  const value = (flag: string): string => {
    const v = argv[++i];
    if (v === undefined) throw new Error(`${flag} needs a value\n${LAUNCH_USAGE}`);
    return v;
  };
  for (; i < argv.length && argv[i]!.startsWith("--"); i++) {
    const [flag, inline] = argv[i]!.split("=", 2) as [string, string | undefined];
    const arg = (): string => inline ?? value(flag);
    if (flag === "--config_file") options.config_file = arg();
    else if (flag === "--num_processes") options.num_processes = Number(arg());
    else if (flag === "--mixed_precision") options.mixed_precision = arg() as MixedPrecision;
    else if (flag === "--cpu") options.cpu = true;
    else throw new Error(`unknown option ${flag}\n${LAUNCH_USAGE}`);
  }
  if (i >= argv.length) throw new Error(`no script given\n${LAUNCH_USAGE}`);
  options.script = argv[i]!;
  options.script_args = argv.slice(i + 1);
  return options;
}

export async function launchCommand(argv: string[]): Promise<void> {
  const options = parseLaunch(argv);
  let config = default_config();
  if (options.config_file) {
    const loaded = load_config(options.config_file);
    if (!loaded) throw new Error(`--config_file ${options.config_file} does not exist`);
    config = loaded;
  } else {
    config = load_config() ?? config;
  }
  const num_processes = options.num_processes ?? config.num_processes;
  const mixed_precision = options.mixed_precision ?? config.mixed_precision;
  if (!Number.isInteger(num_processes) || num_processes < 1) throw new Error(`--num_processes must be a positive integer, got ${num_processes}`);
  if (!MIXED_PRECISION.includes(mixed_precision)) throw new Error(`--mixed_precision must be no, fp16 or bf16, got ${mixed_precision}`);
  if (options.script.endsWith(".ts")) {
    throw new Error(`${options.script} is TypeScript, which Node.js ${process.versions.node} does not run: compile it (tsc) and launch the .js file`);
  }
  const use_cpu = options.cpu || config.use_cpu;
  const env = { ...process.env, ACCELERATE_MIXED_PRECISION: mixed_precision, ACCELERATE_USE_CPU: String(use_cpu) };
  const command = { node_options: [], script: options.script, args: options.script_args };
  process.exitCode = num_processes > 1
    ? await runProcesses(num_processes, command, env, processDevice(num_processes, use_cpu))
    : await runOne([process.execPath, options.script, ...options.script_args], env);
}

/** Runs `argv` as the launch's one process; resolves to its exit code. */
function runOne([command, ...args]: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return runToExit(command!, args, { ...env, WORLD_SIZE: "1", RANK: "0", LOCAL_RANK: "0", LOCAL_WORLD_SIZE: "1" });
}

/**
 * Asks one question until the answer is one of `choices` (the first is the default, taken on an empty line).
 * Lines are read through the interface's iterator, which buffers them: piped answers arrive before the questions.
 */
async function ask(lines: AsyncIterator<string>, question: string, choices: string[]): Promise<string> {
  for (;;) {
    process.stdout.write(`${question} [${choices.join("/")}]: `);
    const next = await lines.next();
    if (next.done) {
      process.stdout.write("\n");
      throw new Error("the input ended before every question was answered; nothing was written");
    }
    const answer = next.value.trim();
    if (answer === "") return choices[0]!;
    if (choices.includes(answer)) return answer;
    console.log(`Please answer one of ${choices.join(", ")}.`);
  }
}

/** Asks for a positive integer until given one (1 on an empty line). */
async function askCount(lines: AsyncIterator<string>, question: string): Promise<number> {
  for (;;) {
    process.stdout.write(`${question} [1]: `);
    const next = await lines.next();
    if (next.done) {
      process.stdout.write("\n");
      throw new Error("the input ended before every question was answered; nothing was written");
    }
    const answer = next.value.trim();
    const n = answer === "" ? 1 : Number(answer);
    if (Number.isInteger(n) && n >= 1) return n;
    console.log("Please answer a positive integer.");
  }
}

async function interactiveConfig(): Promise<AccelerateConfig> {
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  const lines = rl[Symbol.asyncIterator]();
  try {
    const config = default_config();
    config.use_cpu = (await ask(lines, "Do you want to run your training on CPU only (even if a GPU is available)?", ["no", "yes"])) === "yes";
    config.num_processes = await askCount(lines, `How many ${config.use_cpu ? "CPU processes" : "GPU(s)"} should be used for distributed training?`);
    if (config.num_processes > 1) config.distributed_type = config.use_cpu ? "MULTI_CPU" : "MULTI_GPU";
    config.mixed_precision = (await ask(lines, "Do you wish to use mixed precision?", [...MIXED_PRECISION])) as MixedPrecision;
    return config;
  } finally {
    rl.close();
  }
}

const CONFIG_USAGE = "usage: finetune config [--config_file FILE] | finetune config default [--mixed_precision no|fp16|bf16] [--config_file FILE]";

/** `finetune config` asks (the CPU or GPUs, how many processes, mixed precision); `config default` writes defaults. */
export async function configCommand(argv: string[]): Promise<void> {
  const isDefault = argv[0] === "default";
  const rest = isDefault ? argv.slice(1) : argv;
  // as accelerate: `config default` writes default_config.json and never overwrites; `config` writes the YAML
  let file = isDefault ? path.join(config_dir(), "default_config.json") : path.join(config_dir(), "default_config.yaml");
  let mixed: MixedPrecision = "no";
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === "--config_file" && rest[i + 1]) file = rest[++i]!;
    else if (isDefault && rest[i] === "--mixed_precision" && rest[i + 1]) mixed = rest[++i] as MixedPrecision;
    else throw new Error(`unknown argument ${rest[i]}\n${CONFIG_USAGE}`);
  }
  if (!MIXED_PRECISION.includes(mixed)) throw new Error(`--mixed_precision must be no, fp16 or bf16, got ${mixed}`);
  if (isDefault && fs.existsSync(file)) {
    console.log(`Configuration already exists at ${file}, will not override. Run \`finetune config\` manually or pass a different --config_file.`);
    return;
  }
  const config = isDefault ? { ...default_config(), mixed_precision: mixed } : await interactiveConfig();
  if (config.mixed_precision !== "no" && !config.use_cpu && !cuda.is_available()) {
    console.log(`No GPU here: ${config.mixed_precision} will run on the CPU (16-bit matrix products, float32 elsewhere).`);
  }
  save_config(config, file);
  console.log(`accelerate configuration saved at ${file}`);
}
