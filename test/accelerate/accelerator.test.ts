// The one-process Accelerator: prepare() in order, batches on the device, models under autocast in mixed
// precision, fp16 loss scaling through backward() and the prepared optimizer, launch-environment checks.
import assert from "node:assert/strict";
import { test } from "node:test";
import { torch } from "../../src/torch.js";
import { Module } from "../../src/nn/module.js";
import { Linear } from "../../src/nn/layers.js";
import { DataLoader } from "../../src/data/dataloader.js";
import { AdamW, get_scheduler } from "../../src/optim/index.js";
import * as F from "../../src/nn/functional.js";
import { Accelerator, AcceleratedOptimizer, DataLoaderShard, notebook_launcher } from "../../src/accelerate/index.js";
import type { Tensor } from "../../src/tensor/tensor.js";
import { maxAbsDiff } from "../helpers/compare.js";

/** A linear layer that notes whether autocast was on when it ran. */
class Probe extends Module {
  readonly lin = new Linear(16, 4);
  autocast_seen: boolean[] = [];
  forward(x: Tensor): Tensor {
    this.autocast_seen.push(torch.is_autocast_enabled("cpu"));
    return this.lin(x);
  }
}

function probe(): Probe {
  torch.manual_seed(0);
  return new Probe();
}

const input = () => torch.randn([8, 16], { generator: new torch.Generator().manual_seed(1) });

test("prepare returns each object ready, in the order given", () => {
  const accelerator = new Accelerator({ cpu: true });
  assert.equal(accelerator.device.type, "cpu");
  assert.equal(accelerator.mixed_precision, "no");
  assert.equal(accelerator.num_processes, 1);
  assert.equal(accelerator.is_main_process && accelerator.is_local_main_process, true);
  const model = probe();
  const optimizer = new torch.optim.AdamW(model.parameters(), { lr: 1e-3 });
  const dl = new DataLoader([{ x: 1 }, { x: 2 }, { x: 3 }], { batch_size: 2 });
  const [pdl, pmodel, popt, other] = accelerator.prepare(dl, model, optimizer, 42);
  assert.ok(pdl instanceof DataLoaderShard);
  assert.equal(pdl.length, 2);
  assert.equal(pmodel, model);
  assert.ok(popt instanceof AcceleratedOptimizer);
  assert.equal(popt.param_groups, optimizer.param_groups);
  assert.equal(other, 42);
  const scheduler = get_scheduler("linear", { optimizer: popt, num_warmup_steps: 0, num_training_steps: 4 });
  scheduler.step();
  assert.equal(optimizer.param_groups[0]!.lr, 0.75e-3);
  const t = torch.ones([2]);
  assert.equal(accelerator.gather_for_metrics(t), t);
});

test("bf16: the prepared model runs under autocast and trains as the same model under torch.autocast", () => {
  const accelerator = new Accelerator({ cpu: true, mixed_precision: "bf16" });
  const model = accelerator.prepare(probe());
  const out = model(input());
  assert.deepEqual(model.autocast_seen, [true]);
  const reference = torch.autocast("cpu", () => probe().lin(input()));
  assert.equal(maxAbsDiff(out, reference), 0);
  assert.ok(maxAbsDiff(out, probe().lin(input())) > 0, "bf16 products differ from float32's");
  assert.equal(accelerator.autocast(() => torch.is_autocast_enabled("cpu")), true);
});

test("fp16: backward scales the loss, the prepared optimizer unscales and skips steps on inf", () => {
  const accelerator = new Accelerator({ cpu: true, mixed_precision: "fp16" });
  const plain = probe();
  const plainOpt = new torch.optim.SGD(plain.parameters(), { lr: 0.1 });
  torch.autocast("cpu", { dtype: torch.float16 }, () => plain(input()).pow(2).mean()).backward();
  const plainGrad = plain.lin.weight.grad!.clone();
  plainOpt.step();

  const model = accelerator.prepare(probe());
  const popt = accelerator.prepare(new torch.optim.SGD(model.parameters(), { lr: 0.1 }));
  accelerator.backward(model(input()).pow(2).mean());
  // scaling by a power of two is exact, in float32 as in float16
  assert.equal(maxAbsDiff(model.lin.weight.grad!, plainGrad.mul(65536)), 0, "gradients carry the loss scale");
  const norm = accelerator.clip_grad_norm_(model.parameters(), 1e9);
  assert.ok(Number.isFinite(norm.item()));
  assert.equal(maxAbsDiff(model.lin.weight.grad!, plainGrad), 0, "clip_grad_norm_ unscaled them first");
  popt.step();
  assert.equal(accelerator.optimizer_step_was_skipped, false);
  assert.equal(maxAbsDiff(model.lin.weight, plain.lin.weight), 0);

  popt.zero_grad();
  const before = model.lin.weight.clone();
  accelerator.backward(model(input()).mul(Infinity).sum());
  popt.step();
  assert.equal(accelerator.optimizer_step_was_skipped, true);
  assert.equal(maxAbsDiff(model.lin.weight, before), 0);
  assert.equal(accelerator.scaler!.get_scale(), 32768);
});

test("gradient_accumulation_steps divides the loss in backward()", () => {
  const a = probe();
  a(input()).sum().backward();
  const b = probe();
  new Accelerator({ cpu: true, gradient_accumulation_steps: 4 }).backward(b(input()).sum());
  assert.ok(maxAbsDiff(b.lin.weight.grad!, a.lin.weight.grad!.div(4)) <= 1e-7);
});

test("accumulate(): the optimizer and a prepared scheduler step on every second micro-batch and at the dataloader's end, as one step on the batches joined", () => {
  const rows = (n: number) => Array.from({ length: n }, (_, i) => ({ x: [Math.sin(i), Math.cos(i), i / 10], y: (i % 3) / 3 }));
  const train = (rows: object[], batch_size: number, accumulation: number) => {
    torch.manual_seed(5);
    const model = new torch.nn.Sequential(new torch.nn.Linear(3, 4), new torch.nn.Tanh(), new torch.nn.Linear(4, 1));
    const optimizer = new AdamW(model.parameters(), { lr: 0.1 });
    const scheduler = get_scheduler("linear", { optimizer, num_warmup_steps: 0, num_training_steps: 10 });
    const accelerator = new Accelerator({ cpu: true, gradient_accumulation_steps: accumulation });
    const [m, opt, dl, sched] = accelerator.prepare(model, optimizer, new DataLoader(rows, { batch_size }), scheduler);
    const syncs: boolean[] = [];
    for (let epoch = 0; epoch < 2; epoch++) {
      for (const batch of dl) {
        accelerator.accumulate(m, () => {
          accelerator.backward(F.mse_loss(m(batch.x).squeeze(-1), batch.y.float()));
          syncs.push(accelerator.sync_gradients);
          opt.step();
          sched.step();
          opt.zero_grad();
        });
      }
    }
    return { params: [...model.parameters()].flatMap((p) => [...(p.data() as Float32Array)]), lr: sched.get_last_lr()[0], syncs };
  };
  // 12 samples: micro-batches of 2 accumulated in pairs take the steps of batches of 4, epoch after epoch
  const accumulated = train(rows(12), 2, 2);
  const joined = train(rows(12), 4, 1);
  assert.deepEqual(accumulated.syncs, [false, true, false, true, false, true, false, true, false, true, false, true]);
  assert.equal(accumulated.lr, joined.lr, "the scheduler stepped once a sync: 6 steps");
  accumulated.params.forEach((v, i) => assert.ok(Math.abs(v - joined.params[i]!) <= 1e-6, `parameter value ${i}: ${v} against ${joined.params[i]}`));
  // 10 samples: the fifth micro-batch ends the dataloader and syncs alone; the next epoch counts afresh
  assert.deepEqual(train(rows(10), 2, 2).syncs, [false, true, false, true, true, false, true, false, true, true]);
});

test("launch environment: mixed precision from it, a broken one and bad options named", async () => {
  process.env.ACCELERATE_MIXED_PRECISION = "bf16";
  try {
    assert.equal(new Accelerator({ cpu: true }).mixed_precision, "bf16");
  } finally {
    delete process.env.ACCELERATE_MIXED_PRECISION;
  }
  assert.equal(await notebook_launcher(() => new Accelerator({ cpu: true }).mixed_precision, { mixed_precision: "fp16", num_processes: 1 }), "fp16");
  assert.equal(process.env.ACCELERATE_MIXED_PRECISION, undefined, "the launcher restores the environment");
  await assert.rejects(notebook_launcher(() => 0, { num_processes: 0 }), /num_processes must be a positive integer, got 0/);
  process.env.WORLD_SIZE = "2";
  try {
    assert.throws(() => new Accelerator(), /the launch environment has no RANK: set it, or start the processes with finetune launch/);
    process.env.RANK = "2";
    assert.throws(() => new Accelerator(), /RANK=2 in the launch environment is not below WORLD_SIZE=2/);
  } finally {
    delete process.env.WORLD_SIZE;
    delete process.env.RANK;
  }
  assert.throws(() => new Accelerator({ mixed_precision: "fp8" as never }), /mixed_precision must be one of "no", "fp16", "bf16", got "fp8"/);
  assert.throws(() => new Accelerator({ gradient_accumulation_steps: 0 }), /gradient_accumulation_steps must be a positive integer/);
});
