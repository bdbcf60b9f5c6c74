// accelerate: the Accelerator, its prepared DataLoader and its launcher.
export { Accelerator, AcceleratedOptimizer, AcceleratedScheduler, type AcceleratorOptions, type MixedPrecision } from "./accelerator.js";
export { DataLoaderShard, send_to_device } from "./data_loader.js";
export { notebook_launcher, type NotebookLauncherOptions } from "./launchers.js";
