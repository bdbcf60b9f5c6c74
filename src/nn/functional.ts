// torch.nn.functional
export { softmax, log_softmax, layer_norm, embedding, dropout, cross_entropy, mse_loss, binary_cross_entropy_with_logits } from "../ops/functional.js";
export { gelu, relu, tanh, sigmoid, softplus } from "../ops/elementwise.js";
export { linear } from "../ops/matmul.js";
export { scaled_dot_product_attention } from "../ops/attention.js";
