// torch.optim and transformers' schedulers
export { Optimizer, type ParamGroup, type OptimizerStateDict } from "./optimizer.js";
export { AdamW, type AdamWOptions } from "./adamw.js";
export { SGD, type SGDOptions } from "./sgd.js";
export { LambdaLR, get_scheduler, type GetSchedulerOptions } from "./lr_scheduler.js";
