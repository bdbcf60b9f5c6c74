// torch.cuda.Event and torch.cuda.Stream (src/backend/cuda_streams.ts, native/cuda/events.cc): their errors
// without CUDA, and against the fake driver (or the GPU, where there is one) recording, querying, waiting and
// timing the stream's work, and what a capture refuses.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { torch } from "../../src/torch.js";
import { cudaInfo } from "../../src/backend/cuda.js";
import { native } from "../../src/backend/native.js";
import { REPO_ROOT } from "../helpers/paths.js";
import { HAS_GXX, withFakeCuda } from "../helpers/fake_cuda.js";

const HAS_CUDA = cudaInfo().available;
const DIST = (file: string): string => JSON.stringify(pathToFileURL(path.join(REPO_ROOT, "dist/src", file)).href);

test("without CUDA, events and streams say why; what needs no GPU works as in PyTorch", { skip: HAS_CUDA && "this machine has CUDA" }, () => {
  const reason = cudaInfo().reason!;
  const e = new torch.cuda.Event({ enable_timing: true });
  assert.equal(e.query(), true, "an event never recorded counts as completed");
  e.synchronize();
  assert.throws(() => e.record(), (err: Error) => err.message === `torch.cuda.Event.record: CUDA is not available: ${reason}`);
  assert.throws(() => torch.cuda.current_stream(), (err: Error) => err.message === `torch.cuda.current_stream: CUDA is not available: ${reason}`);
  assert.throws(() => e.elapsed_time(new torch.cuda.Event({ enable_timing: true })), /^Error: Both events must be recorded before calculating elapsed time\.$/);
  assert.throws(() => e.elapsed_time(new torch.cuda.Event()), /Both events must be created with argument 'enable_timing=True'\./);
  assert.throws(() => new torch.cuda.Event({ interprocess: true }), /interprocess events are not supported/);
  assert.throws(() => new torch.cuda.Stream(), /finetune queues all CUDA work on one stream, torch\.cuda\.current_stream\(\)/);
});

// Runs the checks on the fake driver (FTEMU_DEFER: queued work runs when the host waits for it) or, with no
// CUDA_HOME, on this machine's GPU; `deferred` adds what only the fake makes deterministic.
function runEventScript(env: NodeJS.ProcessEnv, deferred: boolean): Record<string, unknown> {
  const script = `
    import { native } from ${DIST("backend/native.js")};
    import { torch } from ${DIST("torch.js")};
    const r = {};
    const errorOf = (f) => { try { f(); return null; } catch (e) { return e.constructor.name + ": " + e.message; } };
    const c = native.cuda;
    const s = torch.cuda.current_stream();
    r.sameStream = s === torch.cuda.default_stream() && s === torch.cuda.current_stream("cuda:0") && s === torch.cuda.current_stream(0);
    r.otherDevice = errorOf(() => torch.cuda.current_stream(1));
    r.device = String(s.device);
    const src = c.alloc(1 << 20), dst = c.alloc(1 << 20);
    const host = new Float32Array(1 << 18).fill(3);
    const start = new torch.cuda.Event({ enable_timing: true }), end = new torch.cuda.Event({ enable_timing: true });
    start.record();
    c.copyHostToDevice(host.buffer, 0, src, 0, 1 << 20);
    c.copyDeviceToDevice(src, 0, dst, 0, 1 << 20);
    end.record(s);
    r.pendingQuery = end.query();
    r.pendingStream = s.query();
    r.pendingElapsed = errorOf(() => start.elapsed_time(end));
    end.synchronize();
    r.doneQuery = end.query() && start.query() && s.query();
    r.elapsed = start.elapsed_time(end);
    // The fake driver runs work when it is queued unless deferred: the host's sleep lies between the two records.
    const a = s.record_event(new torch.cuda.Event({ enable_timing: true }));
    const until = Date.now() + 30;
    while (Date.now() < until) {}
    const b = s.record_event(new torch.cuda.Event({ enable_timing: true }));
    b.synchronize();
    r.slept = a.elapsed_time(b);
    const untimed = s.record_event();
    s.synchronize();
    r.untimed = errorOf(() => untimed.elapsed_time(b));
    r.waits = errorOf(() => { untimed.wait(); s.wait_event(untimed); s.wait_stream(s); });
    r.waitNotEvent = errorOf(() => s.wait_event({}));
    r.notAnEvent = errorOf(() => c.eventRecord({}));
    r.streamContext = torch.cuda.stream(s, () => 7) + torch.cuda.stream(null, () => 1);
    const g = new torch.cuda.CUDAGraph();
    g.capture_begin();
    r.recordInCapture = errorOf(() => start.record());
    r.syncInCapture = errorOf(() => start.synchronize());
    r.queryInCapture = errorOf(() => s.query());
    g.capture_end();
    g.reset();
    const back = new Float32Array(1 << 18);
    c.copyDeviceToHost(dst, 0, back.buffer, 0, 1 << 20);
    r.copied = back.every((v) => v === 3);
    console.log(JSON.stringify(r));
  `;
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { env, encoding: "utf8", timeout: 60_000 });
  const r = JSON.parse(out) as Record<string, unknown>;
  assert.equal(r.sameStream, true);
  assert.match(r.otherDevice as string, /^RangeError: torch\.cuda\.current_stream: invalid device 1: finetune runs CUDA work on device 0/);
  assert.equal(r.device, "cuda:0");
  if (deferred) {
    assert.equal(r.pendingQuery, false, "an event recorded after work not yet run is pending");
    assert.equal(r.pendingStream, false, "the stream has work pending");
    assert.match(r.pendingElapsed as string, /^Error: elapsed_time: the events have not completed yet: call synchronize\(\) on the end event first/);
  }
  assert.equal(r.doneQuery, true, "after synchronize() both events and the stream are done");
  assert.ok(typeof r.elapsed === "number" && r.elapsed >= 0, `elapsed ${r.elapsed}`);
  if (!deferred) {
    // The fake runs each record as it is queued: the host's 30 ms between them, in milliseconds
    assert.ok((r.slept as number) >= 25 && (r.slept as number) < 1000, `slept ${r.slept} ms`);
  }
  assert.match(r.untimed as string, /Both events must be created with argument 'enable_timing=True'/);
  assert.equal(r.waits, null, "waiting on the one stream has nothing to do");
  assert.match(r.waitNotEvent as string, /^TypeError: Stream\.wait_event: event must be a torch\.cuda\.Event/);
  assert.match(r.notAnEvent as string, /^TypeError: argument 0 \(event\) must be an event from eventCreate/);
  assert.equal(r.streamContext, 8);
  assert.match(r.recordInCapture as string, /^Error: recording a CUDA event is not allowed while capturing a CUDA graph/);
  assert.match(r.syncInCapture as string, /^Error: waiting for a CUDA event is not allowed while capturing a CUDA graph/);
  assert.match(r.queryInCapture as string, /^Error: querying the CUDA stream is not allowed while capturing a CUDA graph/);
  assert.equal(r.copied, true);
  return r;
}

test("events on the fake driver: pending until the work runs, elapsed time in milliseconds, refused in a capture", { skip: (HAS_CUDA || !HAS_GXX) && "needs g++ and no real CUDA" }, () => {
  withFakeCuda((home) => {
    const env: NodeJS.ProcessEnv = { ...process.env, CUDA_HOME: home, FINETUNE_CACHE: path.join(home, "cache") };
    delete env.FINETUNE_DISABLE_CUDA;
    runEventScript({ ...env, FTEMU_DEFER: "1" }, true);
    runEventScript(env, false);
  });
});

test("events on this machine's GPU", { skip: !HAS_CUDA && "no GPU here: the fake driver's test covers events" }, () => {
  assert.equal(typeof native.cuda.eventCreate, "function");
  runEventScript({ ...process.env }, false);
});
