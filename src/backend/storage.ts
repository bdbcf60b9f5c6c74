// A block of device memory shared by a tensor and its views, reference-counted so that it is released the moment
// its last tensor is disposed (see autograd/scope.ts for who disposes what), not when the garbage collector runs.
// Host memory is an ArrayBuffer from native.alloc; CUDA memory a device handle from native.cuda.alloc.
import { native } from "./native.js";
import { Device } from "../tensor/device.js";
import { cudaInfo, cudaUnavailableReason } from "./cuda.js";

/**
 * What a storage's maker knew of its contents, kept with it: `memory` holds an entry per `unit` elements of
 * [begin, end), true while the storage is at `version` (a write through the public API moves it on).
 */
export interface Derived {
  memory: Storage;
  begin: number;
  end: number;
  unit: number;
  version: number;
}

/** The kinds kept: the clipping's sums of squares per chunk (ops/chunk_squares.ts), a gradient's rows that may be
 * nonzero (ops/row_flags.ts). */
export type DerivedKind = "chunk squares" | "row flags";

export class Storage {
  private refs = 1;
  /** Counts the in-place writes through the public API (copy_, fill_, add_, ...): copies made before are stale. */
  version = 0;
  /** What its makers knew of this memory's contents (released with it). */
  #derived: Map<DerivedKind, Derived> | null = null;

  private constructor(
    readonly buffer: ArrayBuffer,
    readonly nbytes: number,
    readonly device: Device,
  ) {}

  /** New memory: zero-filled when `zero`, else uninitialised (every caller then writes all of it). */
  static allocate(nbytes: number, device: Device, zero = false): Storage {
    if (device.type === "cpu") return new Storage(native.alloc(nbytes, zero), nbytes, device);
    if (!cudaInfo().available) throw new Error(`device ${device} is not available: ${cudaUnavailableReason()}`);
    if ((device.index ?? 0) !== 0) {
      throw new Error(`device ${device} is not available: finetune drives one GPU, cuda:0 (set CUDA_VISIBLE_DEVICES to choose it)`);
    }
    return new Storage(native.cuda.alloc(nbytes, zero), nbytes, device);
  }

  get released(): boolean {
    return this.refs === 0;
  }

  /** Whether more than one tensor holds this memory. */
  get shared(): boolean {
    return this.refs > 1;
  }

  retain(): this {
    if (this.refs === 0) throw new Error("internal error: retaining released storage");
    this.refs++;
    return this;
  }

  /** Drops one reference; the last frees the memory. `collected`: the garbage collector dropped it (a tensor's
   * FinalizationRegistry), so the host allocator keeps the memory counted for V8 (native/binding/addon.cc). */
  release(collected = false): void {
    if (this.refs === 0) return;
    if (--this.refs > 0) return;
    for (const d of this.#derived?.values() ?? []) d.memory.release(collected);
    this.#derived = null;
    if (this.device.type === "cpu") native.free(this.buffer, collected);
    else native.cuda.free(this.buffer);
  }

  /** What is kept of `kind`, whether still true or not (compare its version), or null. */
  derived(kind: DerivedKind): Derived | null {
    return this.#derived?.get(kind) ?? null;
  }

  /** Keeps `d` as what is known of `kind` (releasing what was kept before). */
  keepDerived(kind: DerivedKind, d: Derived): void {
    this.#derived ??= new Map();
    this.#derived.get(kind)?.memory.release();
    this.#derived.set(kind, d);
  }
}
