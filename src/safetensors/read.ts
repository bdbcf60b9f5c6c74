// Reading safetensors files. Node has no mmap in core, so a file is read once into a single allocation and every
// tensor is a view into it: no per-tensor copies, and the data buffer starts at offset 0 of its own ArrayBuffer so
// a writer's alignment (each tensor at a multiple of its item size) carries over to typed-array views.
import { closeSync, fstatSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { constants as bufferConstants } from "node:buffer";
import { dirname, isAbsolute, relative, resolve, sep } from "node:path";
import {
  HEADER_LENGTH_BYTES,
  SafetensorsError,
  parseHeader,
  isPlainObject,
  readHeaderLength,
  type Header,
  type TensorInfo,
} from "./format.js";

export interface SafetensorsFile {
  /** the path or label errors name */
  readonly label: string;
  /** `__metadata__` (empty when the file has none) */
  readonly metadata: Record<string, string>;
  /** tensor names, sorted */
  keys(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  /** the tensor's bytes: a view into the file's data, not a copy */
  bytes(name: string): Uint8Array;
  /** drops the file's data; later calls on this object throw */
  close(): void;
}

export function readSafetensors(path: string): SafetensorsFile {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    throw new SafetensorsError(`${path}: cannot open the file (${describeIoError(err)}); check the path`);
  }
  try {
    const fileSize = fstatSync(fd).size;
    const first8 = readExactly(fd, 0, Math.min(HEADER_LENGTH_BYTES, fileSize), path);
    const headerLength = readHeaderLength(first8, fileSize, path);
    const dataStart = HEADER_LENGTH_BYTES + headerLength;
    const dataSize = fileSize - dataStart;
    // Validate the header before allocating the data, so a wrong or corrupt file fails fast and cheaply.
    const header = parseHeader(readExactly(fd, HEADER_LENGTH_BYTES, headerLength, path), dataSize, path);
    if (dataSize > bufferConstants.MAX_LENGTH) {
      throw new SafetensorsError(
        `${path}: ${dataSize} bytes of tensor data do not fit one Node.js buffer (at most ` +
          `${bufferConstants.MAX_LENGTH}); save the checkpoint in smaller shards (max_shard_size) and load those`,
      );
    }
    return openedFile(path, header, readExactly(fd, dataStart, dataSize, path));
  } finally {
    closeSync(fd);
  }
}

/** Parses safetensors bytes already in memory; tensors are views into `buf`. */
export function readSafetensorsBuffer(buf: Uint8Array, label: string): SafetensorsFile {
  const headerLength = readHeaderLength(buf.subarray(0, HEADER_LENGTH_BYTES), buf.byteLength, label);
  const dataStart = HEADER_LENGTH_BYTES + headerLength;
  const header = parseHeader(buf.subarray(HEADER_LENGTH_BYTES, dataStart), buf.byteLength - dataStart, label);
  return openedFile(label, header, buf.subarray(dataStart));
}

function openedFile(label: string, header: Header, data: Uint8Array): SafetensorsFile {
  let live: Uint8Array | undefined = data;
  const names = [...header.tensors.keys()].sort();

  const lookup = (name: string): TensorInfo => {
    if (live === undefined) {
      throw new SafetensorsError(`${label}: the file was closed; read it again to use tensor ${JSON.stringify(name)}`);
    }
    const info = header.tensors.get(name);
    if (info === undefined) {
      throw new SafetensorsError(
        `${label}: no tensor named ${JSON.stringify(name)} (the file has ${names.length}: ` +
          `${preview(names)}); check the name, or the prefix the model adds to it`,
      );
    }
    return info;
  };

  return {
    label,
    metadata: header.metadata,
    keys: () => [...names],
    has: (name) => header.tensors.has(name),
    info: (name) => {
      const { dtype, shape, byteOffset, byteLength } = lookup(name);
      return { dtype, shape: [...shape], byteOffset, byteLength };
    },
    bytes: (name) => {
      const { byteOffset, byteLength } = lookup(name);
      return new Uint8Array(live!.buffer, live!.byteOffset + byteOffset, byteLength);
    },
    close: () => {
      live = undefined;
    },
  };
}

/** A sharded checkpoint's `model.safetensors.index.json`, checked against the shard files beside it. */
export interface ShardedIndex {
  readonly path: string;
  /** the index's `metadata` (transformers writes `total_size` there) */
  readonly metadata: Record<string, unknown>;
  /** tensor name → absolute path of the shard holding it */
  readonly weightMap: Map<string, string>;
  /** absolute shard paths, sorted */
  readonly shards: string[];
}

export function readShardedIndex(indexPath: string): ShardedIndex {
  let text: string;
  try {
    text = readFileSync(indexPath, "utf8");
  } catch (err) {
    throw new SafetensorsError(`${indexPath}: cannot read the shard index (${describeIoError(err)}); check the path`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new SafetensorsError(
      `${indexPath}: the shard index is not valid JSON (${(err as Error).message}); download it again`,
    );
  }
  const weightMapJson = isPlainObject(json) ? json["weight_map"] : undefined;
  if (!isPlainObject(weightMapJson)) {
    throw new SafetensorsError(
      `${indexPath}: the shard index has no "weight_map" object mapping tensor names to shard files; ` +
        `download it again`,
    );
  }
  const metadataJson = (json as Record<string, unknown>)["metadata"] ?? {};
  if (!isPlainObject(metadataJson)) {
    throw new SafetensorsError(`${indexPath}: the shard index's "metadata" is not an object; download it again`);
  }

  const dir = dirname(resolve(indexPath));
  const weightMap = new Map<string, string>();
  for (const [name, file] of Object.entries(weightMapJson)) {
    if (typeof file !== "string" || file === "") {
      throw new SafetensorsError(
        `${indexPath}: weight_map[${JSON.stringify(name)}] is ${JSON.stringify(file)}, not a shard file name; ` +
          `download the index again`,
      );
    }
    const shard = resolve(dir, file);
    // A shard outside the checkpoint folder would let a downloaded index make us read arbitrary files.
    const rel = relative(dir, shard);
    if (isAbsolute(file) || rel === "" || rel.startsWith(`..${sep}`) || rel === "..") {
      throw new SafetensorsError(
        `${indexPath}: weight_map[${JSON.stringify(name)}] points to ${JSON.stringify(file)}, outside the ` +
          `checkpoint folder; shard files must sit beside the index`,
      );
    }
    weightMap.set(name, shard);
  }
  if (weightMap.size === 0) {
    throw new SafetensorsError(`${indexPath}: the shard index lists no tensors; download it again`);
  }

  const shards = [...new Set(weightMap.values())].sort();
  const missing = shards.filter((shard) => !isFile(shard));
  if (missing.length > 0) {
    throw new SafetensorsError(
      `${indexPath}: ${missing.length} of ${shards.length} shard files listed in the index are missing: ` +
        `${missing.map((m) => relative(dir, m)).join(", ")}; download them into ${dir}`,
    );
  }
  return { path: indexPath, metadata: metadataJson, weightMap, shards };
}

/**
 * Reads `length` bytes at `position` into a fresh, unpooled allocation (pooled Buffers may start at an odd
 * offset of a shared ArrayBuffer, which would misalign typed-array views).
 */
function readExactly(fd: number, position: number, length: number, path: string): Uint8Array {
  const out = Buffer.allocUnsafeSlow(length);
  // readSync moves at most 2 GiB per call, and may move less than asked.
  const chunk = 1 << 30;
  let done = 0;
  while (done < length) {
    let n: number;
    try {
      n = readSync(fd, out, done, Math.min(chunk, length - done), position + done);
    } catch (err) {
      throw new SafetensorsError(`${path}: reading failed at byte ${position + done} (${describeIoError(err)})`);
    }
    if (n === 0) {
      throw new SafetensorsError(
        `${path}: the file ended at byte ${position + done} while reading; it was truncated or is being written ` +
          `by another process: wait for that to finish, or download it again`,
      );
    }
    done += n;
  }
  return out;
}

function describeIoError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code === "ENOENT") return "it does not exist";
  if (e.code === "EISDIR") return "it is a directory";
  if (e.code === "EACCES" || e.code === "EPERM") return "permission denied";
  return e.message ?? String(err);
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function preview(names: string[]): string {
  const shown = names.slice(0, 5).map((n) => JSON.stringify(n)).join(", ");
  return names.length > 5 ? `${shown}, ...` : shown || "none";
}
