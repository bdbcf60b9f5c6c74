// torch.cuda.Event and torch.cuda.Stream. finetune queues all CUDA work, in order, on one stream of device 0
// (native/cuda/runtime.h), which current_stream() and default_stream() return: work on it is already ordered, so
// waiting for an event or another stream of it has nothing to do. Events time and track that work as PyTorch's do
// (native/cuda/events.cc).
import { native, type CudaEventHandle } from "./native.js";
import { requireCuda, requireDeviceZero } from "./cuda_info.js";
import { Device } from "../tensor/device.js";

export interface EventOptions {
  /** whether elapsed_time() can measure from this event (default false, as in PyTorch) */
  enable_timing?: boolean;
  /** whether synchronize() sleeps until the event completes instead of spinning (default false) */
  blocking?: boolean;
  /** events shared with other processes: not supported */
  interprocess?: boolean;
}

/**
 * torch.cuda.Event: a marker in the stream's work. record() places it after the work queued so far; query() says
 * whether that work has run, synchronize() waits for it, and elapsed_time() gives the milliseconds between two
 * completed events created with `enable_timing`. As in PyTorch the driver's event is created at the first
 * record(); an event never recorded counts as completed. Recording during a CUDA graph capture is refused.
 */
export class Event {
  readonly enable_timing: boolean;
  readonly blocking: boolean;
  readonly interprocess = false;
  #handle: CudaEventHandle | null = null;

  constructor(options: EventOptions = {}) {
    const { enable_timing = false, blocking = false, interprocess = false } = options;
    if (interprocess) throw new Error("torch.cuda.Event: interprocess events are not supported: leave interprocess false");
    this.enable_timing = enable_timing;
    this.blocking = blocking;
  }

  /** Records the event on `stream` (the current stream when omitted). */
  record(stream?: Stream): void {
    requireCuda("Event.record");
    checkStream("Event.record", stream ?? current_stream());
    this.#handle ??= native.cuda.eventCreate(this.enable_timing, this.blocking);
    native.cuda.eventRecord(this.#handle);
  }

  /** Makes the work queued next on `stream` wait for this event: already so on the one stream. */
  wait(stream?: Stream): void {
    requireCuda("Event.wait");
    checkStream("Event.wait", stream ?? current_stream());
  }

  /** Whether the work before the event has run (true for an event never recorded). */
  query(): boolean {
    return this.#handle === null || native.cuda.eventQuery(this.#handle);
  }

  /** Waits until the work before the event has run (returns at once for an event never recorded). */
  synchronize(): void {
    if (this.#handle !== null) native.cuda.eventSynchronize(this.#handle);
  }

  /** Milliseconds from this event to `end_event`, both recorded with enable_timing and completed. */
  elapsed_time(end_event: Event): number {
    if (!(end_event instanceof Event)) throw new TypeError("Event.elapsed_time: end_event must be a torch.cuda.Event");
    if (!this.enable_timing || !end_event.enable_timing) {
      throw new Error("Both events must be created with argument 'enable_timing=True'.");
    }
    if (this.#handle === null || end_event.#handle === null) {
      throw new Error("Both events must be recorded before calculating elapsed time.");
    }
    return native.cuda.eventElapsedTime(this.#handle, end_event.#handle);
  }
}

/** Only the one stream's object exists: Stream's constructor refuses callers without it. */
const STREAM_TOKEN = Symbol("the stream");
let theStream: Stream | null = null;

/**
 * torch.cuda.Stream: the queue that CUDA work runs from, in order. finetune has one, current_stream(), and cannot
 * create more: `new torch.cuda.Stream()` throws.
 */
export class Stream {
  readonly device = new Device("cuda", 0);
  readonly priority = 0;

  constructor(token?: symbol) {
    if (token !== STREAM_TOKEN) {
      throw new Error("torch.cuda.Stream: finetune queues all CUDA work on one stream, torch.cuda.current_stream(); " +
        "it cannot create another: use that one");
    }
  }

  /** Whether all work queued on the stream has run. */
  query(): boolean {
    requireCuda("Stream.query");
    return native.cuda.streamQuery();
  }

  /** Waits until all work queued on the stream has run. */
  synchronize(): void {
    requireCuda("Stream.synchronize");
    native.cuda.synchronize();
  }

  /** Makes the stream's next work wait for `event`: already so on the one stream. */
  wait_event(event: Event): void {
    if (!(event instanceof Event)) throw new TypeError("Stream.wait_event: event must be a torch.cuda.Event");
    event.wait(this);
  }

  /** Makes the stream's next work wait for `stream`'s work so far: already so on the one stream. */
  wait_stream(stream: Stream): void {
    checkStream("Stream.wait_stream", stream);
  }

  /** Records `event` (a new one when omitted) on the stream and returns it. */
  record_event(event: Event = new Event()): Event {
    event.record(this);
    return event;
  }
}

function checkStream(what: string, stream: Stream): void {
  requireCuda(what);
  if (!(stream instanceof Stream)) throw new TypeError(`torch.cuda.${what}: stream must be a torch.cuda.Stream`);
}

/** torch.cuda.current_stream(device?): the stream CUDA work is queued on. */
export function current_stream(device?: number | string | Device | null): Stream {
  requireDeviceZero("current_stream", device);
  theStream ??= new Stream(STREAM_TOKEN);
  return theStream;
}

/** torch.cuda.default_stream(device?): the same stream. */
export function default_stream(device?: number | string | Device | null): Stream {
  requireDeviceZero("default_stream", device);
  return current_stream();
}

/** torch.cuda.stream(stream, fn): runs `fn` with `stream` current (null: as it is) and returns its result. */
export function stream<T>(s: Stream | null, fn: () => T): T {
  if (s !== null) checkStream("stream", s);
  return fn();
}
