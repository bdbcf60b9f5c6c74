// The op library, one module per family.
export * from "./convert.js";
export * from "./view.js";
export * from "./elementwise.js";
export * from "./reduce.js";
export * from "./matmul.js";
export * from "./functional.js";
export * from "./join.js";
export * from "./random.js";
export { normDim } from "../tensor/shape.js";
