// Arrow cache files: written as an IPC stream (as datasets writes them) under a temporary name and
// renamed into place; read back as one buffer whose columns are views, never as row objects.
import * as arrow from "apache-arrow";
import fs from "node:fs";
import path from "node:path";
import { arrow_schema, type Features } from "./features.js";

export function read_arrow_file(file: string): arrow.Table {
  try {
    return arrow.tableFromIPC(fs.readFileSync(file));
  } catch (err) {
    throw new Error(`Cannot read the Arrow file ${file}: ${(err as Error).message}. Delete it to have it rebuilt.`);
  }
}

/**
 * Streams record batches into `file` as the IPC stream format: the schema message once, each batch
 * as it comes, then the end-of-stream marker; nothing appears under that name until finish().
 */
export class ArrowFileWriter {
  private readonly tmp: string;
  private readonly fd: number;
  private readonly schema: arrow.Schema;
  /** bytes of the schema message, which tableToIPC puts before every batch it serializes */
  private readonly schema_bytes: number;
  rows = 0;

  constructor(readonly file: string, readonly features: Features) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    this.tmp = `${file}.${process.pid}.tmp`;
    this.schema = arrow_schema(features);
    const header = arrow.tableToIPC(new arrow.Table(this.schema), "stream");
    this.schema_bytes = header.length - EOS_BYTES;
    this.fd = fs.openSync(this.tmp, "w");
    fs.writeSync(this.fd, header.subarray(0, this.schema_bytes));
  }

  write(columns: Record<string, arrow.Vector>): void {
    const length = Object.values(columns)[0]?.length ?? 0;
    const children = this.schema.fields.map((f) => {
      const v = columns[f.name];
      if (!v) throw new Error(`internal: batch lacks column '${f.name}'`);
      return single_chunk(v, f.name);
    });
    this.write_data(arrow.makeData({ type: new arrow.Struct(this.schema.fields), length, nullCount: 0, children }));
  }

  write_data(data: arrow.Data<arrow.Struct>): void {
    const bytes = arrow.tableToIPC(new arrow.Table([new arrow.RecordBatch(this.schema, data)]), "stream");
    fs.writeSync(this.fd, bytes.subarray(this.schema_bytes, bytes.length - EOS_BYTES));
    this.rows += data.length;
  }

  /** Completes the file and renames it into place. */
  finish(): void {
    fs.writeSync(this.fd, EOS);
    fs.closeSync(this.fd);
    fs.renameSync(this.tmp, this.file);
  }

  abort(): void {
    try {
      fs.closeSync(this.fd);
    } catch { /* already closed */ }
    fs.rmSync(this.tmp, { force: true });
  }
}

/** The IPC end-of-stream marker: continuation token and a zero length. */
const EOS = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
const EOS_BYTES = EOS.length;

function single_chunk(v: arrow.Vector, column: string): arrow.Data {
  if (v.data.length !== 1) throw new Error(`internal: column '${column}' of a batch has ${v.data.length} chunks`);
  return v.data[0]!;
}

/** Writes a whole table (its columns in the order of `features`) batch by batch. */
export function write_table(file: string, table: arrow.Table, features: Features): void {
  const writer = new ArrowFileWriter(file, features);
  try {
    const ordered = table.select(Object.keys(features));
    for (const batch of ordered.batches) writer.write_data(batch.data);
    writer.finish();
  } catch (err) {
    writer.abort();
    throw err;
  }
}

/** Where a transform's output batches go: a cache file, or memory for datasets that have no cache. */
export interface TableSink {
  write(columns: Record<string, arrow.Vector>): void;
  finish(): arrow.Table;
  abort(): void;
}

export function file_sink(file: string, features: Features): TableSink {
  const writer = new ArrowFileWriter(file, features);
  return {
    write: (columns) => writer.write(columns),
    finish: () => {
      writer.finish();
      return read_arrow_file(file);
    },
    abort: () => writer.abort(),
  };
}

export function memory_sink(features: Features): TableSink {
  const schema = arrow_schema(features);
  const batches: arrow.RecordBatch[] = [];
  return {
    write(columns) {
      const length = Object.values(columns)[0]?.length ?? 0;
      const children = schema.fields.map((f) => {
        return single_chunk(columns[f.name]!, f.name);
      });
      batches.push(new arrow.RecordBatch(schema, arrow.makeData({ type: new arrow.Struct(schema.fields), length, nullCount: 0, children })));
    },
    finish: () => new arrow.Table(schema, batches),
    abort() {},
  };
}
