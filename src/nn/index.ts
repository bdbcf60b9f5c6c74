// torch.nn
export { Module, type LoadResult } from "./module.js";
export { Parameter } from "./parameter.js";
export { Linear, Embedding, LayerNorm, Dropout, Tanh, ReLU, GELU, Identity, ModuleList, Sequential } from "./layers.js";
export * as init from "./init.js";
export * as functional from "./functional.js";
export * as utils from "./utils.js";
