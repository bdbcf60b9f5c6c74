// torch.amp: autocast regions and the float16 gradient scaler.
export { autocast, is_autocast_enabled, is_autocast_cache_enabled, get_autocast_dtype, type AutocastOptions } from "./autocast_mode.js";
export { GradScaler, type GradScalerOptions, type GradScalerState } from "./grad_scaler.js";
