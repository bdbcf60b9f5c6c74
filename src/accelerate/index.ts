// accelerate: the Accelerator and its launcher, for one process.
export { Accelerator, AcceleratedOptimizer, DataLoaderShard, send_to_device, type AcceleratorOptions, type MixedPrecision } from "./accelerator.js";
export { notebook_launcher, type NotebookLauncherOptions } from "./launchers.js";
