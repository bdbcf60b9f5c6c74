// nn.Module bookkeeping and the optimizers / schedulers / clipping with PyTorch semantics.
import { test } from "node:test";
import assert from "node:assert/strict";
import { torch } from "../../src/torch.js";
import { Linear, LayerNorm, Module, Sequential, ReLU, Parameter } from "../../src/nn/index.js";
import { AdamW, SGD, get_scheduler } from "../../src/optim/index.js";
import { clip_grad_norm_ } from "../../src/nn/utils.js";
import type { Tensor } from "../../src/tensor/tensor.js";

class Net extends Module {
  fc1 = new Linear(4, 3);
  norm = new LayerNorm(3);
  head = new Sequential(new ReLU(), new Linear(3, 2, { bias: false }));

  forward(x: Tensor): Tensor {
    return this.head(this.norm(this.fc1(x)));
  }
}

test("Module: parameters in registration order, state_dict, train/eval, calling, printing", () => {
  const net = new Net();
  assert.deepEqual([...net.named_parameters()].map(([n]) => n), ["fc1.weight", "fc1.bias", "norm.weight", "norm.bias", "head.1.weight"]);
  assert.deepEqual(Object.keys(net.state_dict()), ["fc1.weight", "fc1.bias", "norm.weight", "norm.bias", "head.1.weight"]);
  assert.deepEqual(net(torch.ones([5, 4])).shape, [5, 2]);
  net.eval();
  assert.ok(net.modules().every((m) => !m.training));
  net.train();
  assert.ok(net.modules().every((m) => m.training));
  assert.match(String(net), /^Net\(\n {2}\(fc1\): Linear\(in_features=4, out_features=3, bias=True\)\n {2}\(norm\): LayerNorm\(\(3,\), eps=1e-05, elementwise_affine=True\)/);
  net(torch.ones([1, 4])).sum().backward();
  assert.ok(net.parameters().every((p) => p.grad));
  net.zero_grad();
  assert.ok(net.parameters().every((p) => p.grad === null));
  const half = new Net().to(torch.bfloat16);
  assert.ok(half.parameters().every((p) => p.dtype === torch.bfloat16 && p instanceof Parameter));
});

test("AdamW: decoupled weight decay per group, state_dict round trip continues identically", () => {
  const make = () => {
    torch.manual_seed(0);
    const net = new Net();
    const decay = net.parameters().filter((p) => p.ndim > 1);
    const noDecay = net.parameters().filter((p) => p.ndim === 1);
    return { net, opt: new AdamW([{ params: decay, weight_decay: 0.1 }, { params: noDecay, weight_decay: 0 }], { lr: 0.01 }) };
  };
  const x = torch.randn([6, 4], { generator: new torch.Generator().manual_seed(3) });
  const step = (net: Net, opt: AdamW) => {
    net(x).pow(2).mean().backward();
    opt.step();
    opt.zero_grad();
  };
  const a = make();
  for (let i = 0; i < 4; i++) step(a.net, a.opt);
  const b = make();
  for (let i = 0; i < 2; i++) step(b.net, b.opt);
  const c = make();
  c.net.load_state_dict(b.net.state_dict());
  c.opt.load_state_dict(b.opt.state_dict());
  assert.equal(c.opt.param_groups[0].weight_decay, 0.1);
  for (let i = 0; i < 2; i++) step(c.net, c.opt);
  for (const [k, v] of Object.entries(a.net.state_dict())) {
    assert.deepEqual(c.net.state_dict()[k].tolist(), v.tolist(), `${k} after resuming`);
  }
});

test("AdamW one step by hand: p - lr*wd*p - lr * m_hat / (sqrt(v_hat) + eps)", () => {
  const p = new Parameter(torch.tensor([1.0, -2.0], { dtype: torch.float32 }));
  p.grad = torch.tensor([0.5, 0.25]);
  new AdamW([p], { lr: 0.1, weight_decay: 0.01 }).step();
  // First step: m_hat = g, v_hat = g^2, so the update is lr * sign(g) (up to eps).
  const expected = [1 - 0.1 * 0.01 * 1 - 0.1 * 0.5 / (0.5 + 1e-8), -2 - 0.1 * 0.01 * -2 - 0.1 * 0.25 / (0.25 + 1e-8)];
  (p.tolist() as number[]).forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-6, `${v} vs ${expected[i]}`));
});

test("SGD with momentum and Nesterov, by hand", () => {
  const p = new Parameter(torch.tensor([1.0], { dtype: torch.float32 }));
  const opt = new SGD([p], { lr: 0.1, momentum: 0.9 });
  for (const g of [1, 1]) {
    p.grad = torch.tensor([g]).float();
    opt.step();
  }
  // buf1 = 1, p = 1 - 0.1 = 0.9; buf2 = 0.9*1 + 1 = 1.9, p = 0.9 - 0.19 = 0.71
  assert.ok(Math.abs(p.item() - 0.71) < 1e-6);
  const q = new Parameter(torch.tensor([1.0], { dtype: torch.float32 }));
  const nesterov = new SGD([q], { lr: 0.1, momentum: 0.5, nesterov: true });
  q.grad = torch.tensor([2.0], { dtype: torch.float32 });
  nesterov.step();
  // buf = 2, d = g + 0.5*buf = 3, q = 1 - 0.3
  assert.ok(Math.abs(q.item() - 0.7) < 1e-6);
});

test("schedulers drive the optimizer's lr; clip_grad_norm_ returns the norm and scales", () => {
  const p = new Parameter(torch.zeros([2]));
  const opt = new AdamW([p], { lr: 1.0 });
  const sched = get_scheduler("linear", { optimizer: opt, num_warmup_steps: 2, num_training_steps: 6 });
  const lrs: number[] = [];
  for (let i = 0; i < 6; i++) {
    lrs.push(opt.param_groups[0].lr);
    sched.step();
  }
  assert.deepEqual(lrs, [0, 0.5, 1, 0.75, 0.5, 0.25]);
  assert.throws(() => get_scheduler("warp", { optimizer: opt }), /warp is not a valid SchedulerType/);
  p.grad = torch.tensor([3.0, 4.0], { dtype: torch.float32 });
  const norm = clip_grad_norm_([p], 1.0);
  assert.ok(Math.abs(norm.item() - 5) < 1e-6);
  assert.ok(Math.abs(p.grad.norm().item() - 1) < 1e-5);
});
