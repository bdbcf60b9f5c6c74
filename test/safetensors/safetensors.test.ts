import { test } from "node:test";
import { TINY_BERT_SEQCLS } from "../helpers/paths.js";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  DTYPE_ITEMSIZE,
  SafetensorsError,
  readSafetensors,
  readSafetensorsBuffer,
  readShardedIndex,
  serializeSafetensors,
  writeSafetensors,
  type Dtype,
  type NamedTensor,
} from "../../src/safetensors/index.js";

const GOLDEN = TINY_BERT_SEQCLS;

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), "finetune-safetensors-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A raw file from a hand-written header (no padding, no checks), to feed the reader broken input. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array()): Uint8Array {
  const json =
    header instanceof Uint8Array ? Buffer.from(header)
    : Buffer.from(typeof header === "string" ? header : JSON.stringify(header), "utf8");
  const out = Buffer.alloc(8 + json.byteLength + data.byteLength);
  out.writeBigUInt64LE(BigInt(json.byteLength), 0);
  json.copy(out, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}

function headerOf(file: Uint8Array): { n: number; text: string } {
  const n = Number(Buffer.from(file.buffer, file.byteOffset, 8).readBigUInt64LE(0));
  return { n, text: Buffer.from(file.buffer, file.byteOffset + 8, n).toString("utf8") };
}

function throwsClearly(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof SafetensorsError, `expected a SafetensorsError, got ${String(err)}`);
    for (const p of patterns) assert.match(err.message, p);
    return true;
  });
}

const f32 = (...values: number[]) => new Uint8Array(new Float32Array(values).buffer);

test("reads the golden tiny BERT checkpoint", () => {
  const file = readSafetensors(join(GOLDEN, "model.safetensors"));
  assert.deepEqual(file.metadata, { format: "pt" });
  const keys = file.keys();
  assert.equal(keys.length, 41);
  assert.deepEqual([...keys].sort(), keys);
  const word = file.info("bert.embeddings.word_embeddings.weight");
  assert.equal(word.dtype, "F32");
  assert.deepEqual(word.shape, [30522, 32]);
  assert.equal(word.byteLength, 30522 * 32 * 4);
  assert.deepEqual(file.info("classifier.weight").shape, [2, 32]);
  assert.deepEqual(file.info("classifier.bias").shape, [2]);

  // A view into the file's single allocation, aligned for a Float32Array.
  const bytes = file.bytes("bert.embeddings.LayerNorm.weight");
  assert.equal(bytes.byteLength, 128);
  assert.equal(bytes.byteOffset % 4, 0);
  const raw = readFileSync(join(GOLDEN, "model.safetensors"));
  const start = 8 + Number(raw.readBigUInt64LE(0)) + file.info("bert.embeddings.LayerNorm.weight").byteOffset;
  assert.deepEqual(Buffer.from(bytes), raw.subarray(start, start + 128));
  assert.equal(file.bytes("classifier.bias").buffer, bytes.buffer);

  const batch = readSafetensors(join(GOLDEN, "batch0.safetensors"));
  assert.deepEqual(batch.metadata, {});
  assert.equal(batch.info("input_ids").dtype, "I64");
  assert.deepEqual(batch.info("labels").shape, [8]);

  throwsClearly(() => file.info("bert.pooler.weight"), /no tensor named "bert\.pooler\.weight"/, /model\.safetensors/);
  file.close();
  throwsClearly(() => file.bytes("classifier.bias"), /closed/);
});

test("rewriting the golden files gives Python's bytes exactly", () => {
  for (const [name, metadata] of [["model.safetensors", { format: "pt" }], ["batch0.safetensors", null]] as const) {
    const original = readFileSync(join(GOLDEN, name));
    const file = readSafetensorsBuffer(original, name);
    const tensors = file.keys().map((key) => ({ name: key, ...file.info(key), data: file.bytes(key) }));
    assert.deepEqual(Buffer.from(serializeSafetensors(tensors, metadata)), original, name);
  }
});

test("write then read round-trips bytes, with an 8-aligned header in Python's layout", (t) => {
  const dir = tempDir(t);
  const path = join(dir, "mixed.safetensors");
  const tensors: NamedTensor[] = [
    { name: "b.f32", dtype: "F32", shape: [2, 3], data: f32(1, 2, 3, 4, 5, 6) },
    { name: "a.f32", dtype: "F32", shape: [1], data: f32(-1.5) },
    { name: "mask", dtype: "BOOL", shape: [3], data: new Uint8Array([1, 0, 1]) },
    { name: "ids", dtype: "I64", shape: [2], data: new Uint8Array(new BigInt64Array([7n, -9n]).buffer) },
    { name: "f64", dtype: "F64", shape: [1], data: new Float64Array([Math.PI]) },
    { name: "half", dtype: "BF16", shape: [3], data: new Uint8Array([1, 2, 3, 4, 5, 6]) },
    { name: "empty", dtype: "F32", shape: [0, 4], data: new Uint8Array() },
    { name: "0", dtype: "U8", shape: [], data: new Uint8Array([42]) },
  ];
  writeSafetensors(path, tensors, { format: "pt", note: "ünïcode \"quoted\"" });
  assert.deepEqual(readdirSync(dir), ["mixed.safetensors"]);

  const raw = readFileSync(path);
  const { n, text } = headerOf(raw);
  // The invariants Python's reader relies on: header a multiple of 8, JSON object padded with spaces only,
  // tensors tiling the data from 0 to the end of the file in (alignment desc, name) order, each aligned.
  assert.equal(n % 8, 0);
  assert.match(text, /} *$/);
  const header = JSON.parse(text) as Record<string, { dtype: Dtype; data_offsets: [number, number] }>;
  assert.ok(text.startsWith('{"__metadata__":{"format":"pt","note":'));
  // Object.keys would put the integer-like "0" first, so take the file order from the offsets.
  const order = Object.keys(header)
    .filter((k) => k !== "__metadata__")
    .sort((a, b) => header[a]!.data_offsets[0] - header[b]!.data_offsets[0] || header[a]!.data_offsets[1] - header[b]!.data_offsets[1]);
  assert.deepEqual(order, ["ids", "f64", "a.f32", "b.f32", "empty", "half", "0", "mask"]);
  let end = 0;
  for (const name of order) {
    const [begin, stop] = header[name]!.data_offsets;
    assert.equal(begin, end);
    assert.equal(begin % DTYPE_ITEMSIZE[header[name]!.dtype], 0, name);
    end = stop;
  }
  assert.equal(8 + n + end, raw.byteLength);

  const back = readSafetensors(path);
  assert.deepEqual(back.metadata, { format: "pt", note: "ünïcode \"quoted\"" });
  assert.deepEqual(back.keys(), [...tensors.map((x) => x.name)].sort());
  for (const x of tensors) {
    assert.equal(back.info(x.name).dtype, x.dtype);
    assert.deepEqual(back.info(x.name).shape, x.shape);
    const expected = new Uint8Array(x.data.buffer, x.data.byteOffset, x.data.byteLength);
    assert.deepEqual(back.bytes(x.name), expected, x.name);
  }
  assert.deepEqual([...new Float32Array(back.bytes("b.f32").slice().buffer)], [1, 2, 3, 4, 5, 6]);

  // A record works as input too, and an existing file is replaced.
  writeSafetensors(path, { only: { dtype: "I32", shape: [1], data: new Uint8Array(4) } }, null);
  assert.deepEqual(readSafetensors(path).keys(), ["only"]);
  assert.equal(headerOf(readFileSync(path)).text.trimEnd(), '{"only":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}');
});

test("an empty file of tensors matches the Rust crate's bytes", () => {
  const bytes = serializeSafetensors([], null);
  assert.deepEqual([...bytes], [8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
  assert.deepEqual(readSafetensorsBuffer(bytes, "empty").keys(), []);
});

test("corrupt files fail with messages that name the file, the tensor and the fix", (t) => {
  const dir = tempDir(t);
  const good = readFileSync(join(GOLDEN, "batch0.safetensors"));
  const n = Number(good.readBigUInt64LE(0));
  const cases: Array<[string, Uint8Array, RegExp[]]> = [
    ["too-short", good.subarray(0, 5), [/only 5 bytes/, /download or save it again/]],
    ["cut-in-header", good.subarray(0, 8 + n - 10), [/header length 288 bytes runs past the end/]],
    ["cut-in-data", good.subarray(0, good.byteLength - 3), [/"token_type_ids"/, /run past the end/, /truncated/]],
    ["huge-header", Buffer.from([0, 0, 0, 0, 0, 0, 0, 1, 0x7b]), [/over the 100000000-byte limit/]],
    ["bad-json", rawFile('{"a": {"dtype": '), [/not valid JSON/]],
    ["not-object", rawFile("[1, 2]"), [/not an object/]],
    ["bad-utf8", rawFile(new Uint8Array([0x7b, 0xff, 0x7d])), [/not valid UTF-8/]],
    ["unknown-dtype", rawFile({ x: { dtype: "F33", shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)),
      [/tensor "x"/, /unknown dtype "F33"/, /known: BOOL/]],
    ["bad-shape", rawFile({ x: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4)),
      [/tensor "x"/, /shape \[-1\]/]],
    ["offsets-out", rawFile({ x: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, new Uint8Array(4)),
      [/tensor "x"/, /\[0, 8\] run past the end of the 4-byte data buffer/]],
    ["offsets-reversed", rawFile({ x: { dtype: "F32", shape: [0], data_offsets: [4, 0] } }, new Uint8Array(4)),
      [/ends before it begins/]],
    ["overlap", rawFile({
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    }, new Uint8Array(12)), [/tensor "b"/, /overlaps tensor "a"/]],
    ["hole", rawFile({
      a: { dtype: "F32", shape: [1], data_offsets: [0, 4] },
      b: { dtype: "F32", shape: [1], data_offsets: [8, 12] },
    }, new Uint8Array(12)), [/4 bytes at 4\.\.8/, /hole before tensor "b"/, /contiguously/]],
    ["trailing", rawFile({ a: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, new Uint8Array(6)),
      [/end at byte 4/, /2 bytes belong to no tensor/]],
    ["size-mismatch", rawFile({ a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)),
      [/tensor "a"/, /holds 8 bytes but shape \[3\] of F32 needs 12/]],
    ["metadata-number", rawFile({ __metadata__: { epoch: 3 } }), [/"__metadata__"\."epoch" is 3/]],
  ];
  for (const [name, bytes, patterns] of cases) {
    const path = join(dir, `${name}.safetensors`);
    writeFileSync(path, bytes);
    throwsClearly(() => readSafetensors(path), new RegExp(`${name}\\.safetensors`), ...patterns);
    throwsClearly(() => readSafetensorsBuffer(bytes, `mem:${name}`), new RegExp(`mem:${name}`), ...patterns);
  }

  throwsClearly(() => readSafetensors(join(dir, "absent.safetensors")), /absent\.safetensors/, /does not exist/);
  throwsClearly(() => readSafetensors(dir), /is a directory/);
});

test("a failed write leaves nothing behind", (t) => {
  const dir = tempDir(t);
  const tensor = { name: "w", dtype: "F32" as const, shape: [1], data: f32(1) };

  throwsClearly(() => writeSafetensors(join(dir, "missing", "m.safetensors"), [tensor]), /missing.*does not exist/);
  assert.deepEqual(readdirSync(dir), []);

  // Renaming onto a folder fails after the data is fully written: the temp file must still go.
  mkdirSync(join(dir, "taken"));
  writeFileSync(join(dir, "taken", "keep"), "x");
  throwsClearly(() => writeSafetensors(join(dir, "taken"), [tensor]), /writing failed/, /nothing was written/);
  assert.deepEqual(readdirSync(dir), ["taken"]);

  // Bad input is refused before any file is created.
  const path = join(dir, "bad.safetensors");
  throwsClearly(() => writeSafetensors(path, [{ ...tensor, shape: [2] }]), /tensor "w"/, /4 bytes but shape \[2\]/);
  throwsClearly(() => writeSafetensors(path, [tensor, tensor]), /given twice/);
  throwsClearly(() => writeSafetensors(path, [{ ...tensor, dtype: "F8" as Dtype }]), /unknown dtype "F8"/);
  throwsClearly(
    () => writeSafetensors(path, [tensor], { epoch: 3 as unknown as string }),
    /metadata "epoch" is 3/,
  );
  assert.equal(existsSync(path), false);
  assert.deepEqual(readdirSync(dir), ["taken"]);
});

test("sharded index: shards resolved, missing ones named", (t) => {
  const dir = tempDir(t);
  const index = join(dir, "model.safetensors.index.json");
  writeFileSync(index, JSON.stringify({
    metadata: { total_size: 16 },
    weight_map: {
      "a.weight": "model-00001-of-00002.safetensors",
      "b.weight": "model-00002-of-00002.safetensors",
      "c.weight": "model-00001-of-00002.safetensors",
    },
  }));
  throwsClearly(() => readShardedIndex(index), /2 of 2 shard files/, /model-00001-of-00002\.safetensors, model-00002/);

  writeSafetensors(join(dir, "model-00001-of-00002.safetensors"), [
    { name: "a.weight", dtype: "F32", shape: [1], data: f32(1) },
    { name: "c.weight", dtype: "F32", shape: [1], data: f32(3) },
  ]);
  throwsClearly(() => readShardedIndex(index), /1 of 2 shard files/, /: model-00002-of-00002\.safetensors;/);

  writeSafetensors(join(dir, "model-00002-of-00002.safetensors"), [
    { name: "b.weight", dtype: "F32", shape: [2], data: f32(2, 2) },
  ]);
  const sharded = readShardedIndex(index);
  assert.deepEqual(sharded.metadata, { total_size: 16 });
  assert.equal(sharded.shards.length, 2);
  assert.equal(sharded.weightMap.get("c.weight"), join(dir, "model-00001-of-00002.safetensors"));
  const shard = readSafetensors(sharded.weightMap.get("b.weight")!);
  assert.deepEqual(shard.info("b.weight").shape, [2]);

  writeFileSync(index, JSON.stringify({ weight_map: { x: "../elsewhere.safetensors" } }));
  throwsClearly(() => readShardedIndex(index), /outside the checkpoint folder/);
  writeFileSync(index, "{not json");
  throwsClearly(() => readShardedIndex(index), /index\.json/, /not valid JSON/);
  writeFileSync(index, JSON.stringify({ metadata: {} }));
  throwsClearly(() => readShardedIndex(index), /no "weight_map"/);
  throwsClearly(() => readShardedIndex(join(dir, "nope.json")), /nope\.json/, /does not exist/);
});
