// The safetensors container: an 8-byte little-endian header length N, N bytes of UTF-8 JSON describing each
// tensor, then one byte buffer the tensors' `data_offsets` point into. Validation follows the reference Rust
// crate (huggingface/safetensors), so that a file we accept is one Python accepts, and the other way round.

/**
 * Bits per element of every safetensors dtype. The key order is the Rust crate's `Dtype` enum order (increasing
 * alignment); writers lay tensors out in the reverse of this order, so keep it in step with the crate.
 */
export const DTYPE_BITS = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
} as const;

export type Dtype = keyof typeof DTYPE_BITS;

/** Bytes per element (fractional for the packed sub-byte dtypes F4 and F6_*). */
export const DTYPE_ITEMSIZE: Readonly<Record<Dtype, number>> = Object.fromEntries(
  Object.entries(DTYPE_BITS).map(([dtype, bits]) => [dtype, bits / 8]),
) as Record<Dtype, number>;

const DTYPE_RANK: ReadonlyMap<string, number> = new Map(Object.keys(DTYPE_BITS).map((d, i) => [d, i]));

export function isDtype(value: unknown): value is Dtype {
  return typeof value === "string" && DTYPE_RANK.has(value);
}

/** Position in the Rust enum: higher means stricter alignment, and such tensors are written first. */
export function dtypeRank(dtype: Dtype): number {
  return DTYPE_RANK.get(dtype)!;
}

/** Same cap as the Rust crate: a larger header is taken as a corrupt or hostile file, not parsed. */
export const MAX_HEADER_SIZE = 100_000_000;

export const HEADER_LENGTH_BYTES = 8;

/** Where one tensor lies in the data buffer (offsets relative to the buffer's start). */
export interface TensorInfo {
  dtype: Dtype;
  shape: number[];
  byteOffset: number;
  byteLength: number;
}

export interface Header {
  metadata: Record<string, string>;
  /** tensors in buffer order */
  tensors: Map<string, TensorInfo>;
}

export class SafetensorsError extends Error {
  override name = "SafetensorsError";
}

const CORRUPT = "the file is truncated or corrupt: download or save it again";

/**
 * Reads and checks the header length N from the first 8 bytes. `fileSize` is the whole file's size.
 * Returns N; the header occupies bytes [8, 8 + N) and the data buffer the rest.
 */
export function readHeaderLength(first8: Uint8Array, fileSize: number, label: string): number {
  if (fileSize < HEADER_LENGTH_BYTES || first8.byteLength < HEADER_LENGTH_BYTES) {
    throw new SafetensorsError(
      `${label}: only ${fileSize} bytes, shorter than the 8-byte header length every safetensors file starts with; ` +
        `${CORRUPT}`,
    );
  }
  const n = new DataView(first8.buffer, first8.byteOffset, HEADER_LENGTH_BYTES).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_SIZE)) {
    throw new SafetensorsError(
      `${label}: header length ${n} bytes is over the ${MAX_HEADER_SIZE}-byte limit; ` +
        `this is not a safetensors file, or ${CORRUPT}`,
    );
  }
  const size = Number(n);
  if (HEADER_LENGTH_BYTES + size > fileSize) {
    throw new SafetensorsError(
      `${label}: header length ${size} bytes runs past the end of the ${fileSize}-byte file; ${CORRUPT}`,
    );
  }
  return size;
}

/**
 * Parses and validates the JSON header against a data buffer of `dataSize` bytes: known dtypes, shapes of
 * non-negative integers, offsets inside the buffer, sizes matching shape × dtype, and tensors tiling the
 * buffer from 0 to its end with no overlap and no hole (the Rust crate refuses anything else).
 */
export function parseHeader(headerBytes: Uint8Array, dataSize: number, label: string): Header {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
  } catch {
    throw new SafetensorsError(`${label}: the header is not valid UTF-8; ${CORRUPT}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new SafetensorsError(`${label}: the header is not valid JSON (${(err as Error).message}); ${CORRUPT}`);
  }
  if (!isPlainObject(json)) {
    throw new SafetensorsError(`${label}: the header is JSON but not an object; ${CORRUPT}`);
  }

  let metadata: Record<string, string> = {};
  const entries: Array<[string, TensorInfo]> = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === "__metadata__") metadata = parseMetadata(value, label);
    else entries.push([name, parseEntry(name, value, dataSize, label)]);
  }

  // Offset order, as the Rust crate sorts before validating; ties (empty tensors) keep a stable order.
  entries.sort(([, a], [, b]) => a.byteOffset - b.byteOffset || a.byteLength - b.byteLength);
  let end = 0;
  let previous: string | undefined;
  for (const [name, info] of entries) {
    if (info.byteOffset < end) {
      throw new SafetensorsError(
        `${label}: tensor ${JSON.stringify(name)} (bytes ${info.byteOffset}..${info.byteOffset + info.byteLength}) overlaps ` +
          `tensor ${JSON.stringify(previous)} (ending at byte ${end}); ${CORRUPT}`,
      );
    }
    if (info.byteOffset > end) {
      throw new SafetensorsError(
        `${label}: ${info.byteOffset - end} bytes at ${end}..${info.byteOffset} of the data buffer belong to no ` +
          `tensor (a hole before tensor ${JSON.stringify(name)}); safetensors requires tensors to cover the buffer contiguously; ` +
          `${CORRUPT}`,
      );
    }
    end = info.byteOffset + info.byteLength;
    previous = name;
  }
  if (end !== dataSize) {
    throw new SafetensorsError(
      `${label}: the tensors end at byte ${end} of the data buffer but the file holds ${dataSize} bytes of data ` +
        `(${dataSize - end} bytes belong to no tensor); ${CORRUPT}`,
    );
  }
  return { metadata, tensors: new Map(entries) };
}

function parseMetadata(value: unknown, label: string): Record<string, string> {
  // serde reads `"__metadata__": null` as no metadata, so accept it too.
  if (value === null) return {};
  if (!isPlainObject(value)) {
    throw new SafetensorsError(`${label}: "__metadata__" must be an object of strings; ${CORRUPT}`);
  }
  const out: Record<string, string> = {};
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== "string") {
      throw new SafetensorsError(
        `${label}: "__metadata__"."${key}" is ${JSON.stringify(v)}, but metadata values must be strings; ${CORRUPT}`,
      );
    }
    Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function parseEntry(name: string, value: unknown, dataSize: number, label: string): TensorInfo {
  const where = `${label}: tensor ${JSON.stringify(name)}`;
  if (!isPlainObject(value)) {
    throw new SafetensorsError(`${where}: the entry is not an object with dtype, shape and data_offsets; ${CORRUPT}`);
  }
  const { dtype, shape, data_offsets: offsets } = value;
  if (!isDtype(dtype)) {
    throw new SafetensorsError(
      `${where}: unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPE_BITS).join(", ")}); ` +
        `the file may come from a newer safetensors version, or ${CORRUPT}`,
    );
  }
  if (!Array.isArray(shape) || !shape.every(isIndex)) {
    throw new SafetensorsError(
      `${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers; ${CORRUPT}`,
    );
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isIndex)) {
    throw new SafetensorsError(
      `${where}: data_offsets ${JSON.stringify(offsets)} is not a pair [begin, end] of non-negative integers; ` +
        `${CORRUPT}`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) {
    throw new SafetensorsError(`${where}: data_offsets [${begin}, ${end}] ends before it begins; ${CORRUPT}`);
  }
  if (end > dataSize) {
    throw new SafetensorsError(
      `${where}: data_offsets [${begin}, ${end}] run past the end of the ${dataSize}-byte data buffer; ${CORRUPT}`,
    );
  }
  const expected = byteLengthOf(dtype, shape, where);
  if (end - begin !== expected) {
    throw new SafetensorsError(
      `${where}: holds ${end - begin} bytes but shape [${shape.join(", ")}] of ${dtype} needs ${expected}; ` +
        `${CORRUPT}`,
    );
  }
  return { dtype, shape: [...shape], byteOffset: begin, byteLength: end - begin };
}

/** numel × itemsize, refusing products past 2^53 and packed dtypes that do not fill whole bytes. */
export function byteLengthOf(dtype: Dtype, shape: readonly number[], where: string): number {
  let bits = DTYPE_BITS[dtype] as number;
  for (const dim of shape) {
    bits *= dim;
    if (!Number.isSafeInteger(bits)) {
      throw new SafetensorsError(`${where}: shape [${shape.join(", ")}] of ${dtype} is too large to address`);
    }
  }
  if (bits % 8 !== 0) {
    throw new SafetensorsError(
      `${where}: shape [${shape.join(", ")}] of packed ${dtype} does not fill a whole number of bytes`,
    );
  }
  return bits / 8;
}

function isIndex(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
