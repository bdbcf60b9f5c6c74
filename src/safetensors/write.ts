// Writing safetensors files laid out exactly as the Python library (Rust crate) lays them out, so our files are
// byte-identical to Python's for the same tensors and metadata.
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { basename, dirname, join } from "node:path";
import {
  HEADER_LENGTH_BYTES,
  MAX_HEADER_SIZE,
  SafetensorsError,
  byteLengthOf,
  dtypeRank,
  isDtype,
  type Dtype,
} from "./format.js";

export interface TensorToWrite {
  dtype: Dtype;
  shape: readonly number[];
  /** little-endian, C-order element bytes; any typed array is taken as its bytes */
  data: ArrayBufferView;
}

export type NamedTensor = TensorToWrite & { name: string };

export type TensorsToWrite = readonly NamedTensor[] | Readonly<Record<string, TensorToWrite>>;

/**
 * transformers' `save_pretrained` writes `{"format": "pt"}`, and loaders check for it; pass `null` to write no
 * `__metadata__` at all (as Python's `save_file` without metadata does).
 */
export const DEFAULT_METADATA: Readonly<Record<string, string>> = { format: "pt" };

interface Prepared {
  header: Uint8Array;
  /** tensor bytes, in file order */
  chunks: Uint8Array[];
  dataSize: number;
}

/** The whole file in memory: header length, header, data. */
export function serializeSafetensors(
  tensors: TensorsToWrite,
  metadata: Record<string, string> | null = DEFAULT_METADATA,
  label = "safetensors data",
): Uint8Array {
  const { header, chunks, dataSize } = prepare(tensors, metadata, label);
  const out = new Uint8Array(header.byteLength + dataSize);
  out.set(header, 0);
  let offset = header.byteLength;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/**
 * Writes atomically: into a temporary file in the same folder, flushed to disk, then renamed over `path`, so a
 * crash or error never leaves a half-written checkpoint under the real name. On error the temp file is removed.
 */
export function writeSafetensors(
  path: string,
  tensors: TensorsToWrite,
  metadata: Record<string, string> | null = DEFAULT_METADATA,
): void {
  const { header, chunks } = prepare(tensors, metadata, path);
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  let fd: number;
  try {
    fd = openSync(temp, "wx");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === "ENOENT" ? `the folder ${dir} does not exist; create it first` : e.message;
    throw new SafetensorsError(`${path}: cannot create the file (${why})`);
  }
  try {
    try {
      writeAll(fd, header);
      for (const chunk of chunks) writeAll(fd, chunk);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
  } catch (err) {
    try {
      unlinkSync(temp);
    } catch {
      // Already gone, or the folder itself went away: nothing is left behind either way.
    }
    throw new SafetensorsError(
      `${path}: writing failed (${(err as Error).message}); nothing was written: free disk space or fix ` +
        `the path, then save again`,
    );
  }
  syncFolder(dir);
}

function prepare(tensors: TensorsToWrite, metadata: Record<string, string> | null, label: string): Prepared {
  const list: NamedTensor[] = Array.isArray(tensors)
    ? [...(tensors as readonly NamedTensor[])]
    : Object.entries(tensors).map(([name, t]) => ({ ...t, name }));

  const seen = new Set<string>();
  const checked = list.map((t) => {
    const where = `${label}: tensor ${JSON.stringify(t.name)}`;
    if (typeof t.name !== "string" || t.name === "__metadata__") {
      throw new SafetensorsError(`${where}: invalid tensor name; "__metadata__" is reserved, choose another`);
    }
    if (seen.has(t.name)) throw new SafetensorsError(`${where}: given twice; tensor names must be unique`);
    seen.add(t.name);
    if (!isDtype(t.dtype)) {
      throw new SafetensorsError(`${where}: unknown dtype ${JSON.stringify(t.dtype)}; use a safetensors dtype name`);
    }
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError(`${where}: shape ${JSON.stringify(t.shape)} is not a list of non-negative integers`);
    }
    if (!ArrayBuffer.isView(t.data)) {
      throw new SafetensorsError(`${where}: data must be a Uint8Array (or another typed array) of the tensor's bytes`);
    }
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const expected = byteLengthOf(t.dtype, t.shape, where);
    if (bytes.byteLength !== expected) {
      throw new SafetensorsError(
        `${where}: data has ${bytes.byteLength} bytes but shape [${t.shape.join(", ")}] of ${t.dtype} needs ` +
          `${expected}; pass the tensor's contiguous bytes`,
      );
    }
    return { name: t.name, dtype: t.dtype, shape: [...t.shape], bytes, nameUtf8: Buffer.from(t.name, "utf8") };
  });

  // The Rust crate's order: strictest alignment first, so every tensor starts at a multiple of its item size;
  // then by name, compared as UTF-8 bytes as Rust compares strings.
  checked.sort((a, b) => dtypeRank(b.dtype) - dtypeRank(a.dtype) || Buffer.compare(a.nameUtf8, b.nameUtf8));

  // Built by hand, not from an object: objects put integer-like keys ("0", "1") first, and the order here must
  // be __metadata__ first, then tensors in file order. JSON.stringify escapes strings exactly as serde_json does.
  const members: string[] = [];
  if (metadata !== null) members.push(`"__metadata__":${jsonObject(checkedMetadata(metadata, label))}`);
  let offset = 0;
  for (const t of checked) {
    const info = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.byteLength] };
    members.push(`${JSON.stringify(t.name)}:${JSON.stringify(info)}`);
    offset += t.bytes.byteLength;
  }
  const text = Buffer.from(`{${members.join(",")}}`, "utf8");
  // Pad with spaces to a multiple of 8 so the data buffer, hence every tensor, is 8-byte aligned in the file.
  const padded = Math.ceil(text.byteLength / 8) * 8;
  if (padded > MAX_HEADER_SIZE) {
    throw new SafetensorsError(
      `${label}: the header would be ${padded} bytes, over the ${MAX_HEADER_SIZE}-byte limit readers accept; ` +
        `save fewer tensors per file (shard the checkpoint) or shorten the metadata`,
    );
  }
  const header = Buffer.alloc(HEADER_LENGTH_BYTES + padded, 0x20);
  header.writeBigUInt64LE(BigInt(padded), 0);
  text.copy(header, HEADER_LENGTH_BYTES);
  return { header, chunks: checked.map((t) => t.bytes), dataSize: offset };
}

/** Metadata entries with keys sorted, for deterministic output (the Rust crate writes a HashMap's order). */
function checkedMetadata(metadata: Record<string, string>, label: string): Array<[string, string]> {
  return Object.keys(metadata)
    .sort()
    .map((key) => {
      const value = metadata[key];
      if (typeof value !== "string") {
        throw new SafetensorsError(
          `${label}: metadata ${JSON.stringify(key)} is ${JSON.stringify(value)}; safetensors metadata values ` +
            `must be strings: convert it (e.g. JSON.stringify) first`,
        );
      }
      return [key, value];
    });
}

function jsonObject(entries: Array<[string, string]>): string {
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",")}}`;
}

function writeAll(fd: number, bytes: Uint8Array): void {
  // writeSync may write less than asked, and moves at most 2 GiB per call.
  const chunk = 1 << 30;
  let done = 0;
  while (done < bytes.byteLength) {
    done += writeSync(fd, bytes, done, Math.min(chunk, bytes.byteLength - done));
  }
}

/** Makes the rename itself durable; some platforms cannot fsync a folder, and the data is safe regardless. */
function syncFolder(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // Best effort only, see above.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
