// The safetensors container format, independent of the tensor engine: bytes in, bytes out.
export {
  DTYPE_BITS,
  DTYPE_ITEMSIZE,
  MAX_HEADER_SIZE,
  SafetensorsError,
  isDtype,
  type Dtype,
  type TensorInfo,
} from "./format.js";
export {
  readSafetensors,
  readSafetensorsBuffer,
  readShardedIndex,
  type SafetensorsFile,
  type ShardedIndex,
} from "./read.js";
export {
  DEFAULT_METADATA,
  serializeSafetensors,
  writeSafetensors,
  type NamedTensor,
  type TensorToWrite,
  type TensorsToWrite,
} from "./write.js";
