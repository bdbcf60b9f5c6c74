// finetune's public API: the names of PyTorch, transformers, datasets, evaluate and accelerate.
export { torch } from "./torch.js";
export { Tensor } from "./tensor/tensor.js";
export * as nn from "./nn/index.js";
export { AdamW, SGD, Optimizer, LambdaLR, get_scheduler } from "./optim/index.js";
export * from "./models/index.js";
export * from "./training_api.js";
export * from "./data_api.js";
