// A block of device memory shared by a tensor and its views, reference-counted so that it is released the moment
// its last tensor is disposed (see autograd/scope.ts for who disposes what), not when the garbage collector runs.
// Host memory is an ArrayBuffer from native.alloc; CUDA memory a device handle from native.cuda.alloc.
import { native } from "./native.js";
import { Device } from "../tensor/device.js";
import { cudaInfo, cudaUnavailableReason } from "./cuda.js";

/** Sums of squares of a storage's float32 elements [begin, end), a double per 4096-element chunk (sumSquaresChunks')
 * in `partials`, valid while the storage is at `version` (ops/chunk_squares.ts). */
export interface ChunkSquares {
  partials: Storage;
  begin: number;
  end: number;
  version: number;
}

export class Storage {
  private refs = 1;
  /** Counts the in-place writes through the public API (copy_, fill_, add_, ...): copies made before are stale. */
  version = 0;
  /** The clipping's sums of squares of this memory, where its maker summed them (released with it). */
  #chunkSquares: ChunkSquares | null = null;

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

  release(): void {
    if (this.refs === 0) return;
    if (--this.refs > 0) return;
    this.#chunkSquares?.partials.release();
    this.#chunkSquares = null;
    (this.device.type === "cpu" ? native : native.cuda).free(this.buffer);
  }

  get chunkSquares(): ChunkSquares | null {
    return this.#chunkSquares;
  }

  /** Keeps `sums` with this memory (releasing the sums it kept before). */
  keepChunkSquares(sums: ChunkSquares): void {
    this.#chunkSquares?.partials.release();
    this.#chunkSquares = sums;
  }
}
