// The torch surface: creation, dtypes, views, printing, autograd rules and error messages.
import { test } from "node:test";
import assert from "node:assert/strict";
import { torch } from "../../src/torch.js";
import * as F from "../../src/nn/functional.js";
import { record } from "../../src/ops/record.js";
import type { Tensor } from "../../src/tensor/tensor.js";
import { Linear, ReLU, Sequential } from "../../src/nn/index.js";

test("creation infers PyTorch's dtypes and shapes", () => {
  assert.equal(torch.tensor([1, 2, 3]).dtype, torch.int64);
  assert.equal(torch.tensor([1.5, 2]).dtype, torch.float32);
  assert.equal(torch.tensor([true, false]).dtype, torch.bool);
  assert.deepEqual(torch.tensor([[1, 2], [3, 4]]).shape, [2, 2]);
  assert.deepEqual(torch.arange(1, 7, 2).tolist(), [1, 3, 5]);
  assert.equal(torch.arange(0, 1, 0.25).dtype, torch.float32);
  assert.deepEqual(torch.full([2], 7).tolist(), [7, 7]);
  assert.equal(torch.zeros([2, 3]).dtype, torch.float32);
  assert.equal(torch.tensor(new BigInt64Array([5n, 6n])).dtype, torch.int64);
  assert.deepEqual(torch.tensor([1, 2], { dtype: torch.bfloat16 }).to(torch.float32).tolist(), [1, 2]);
  assert.equal(torch.tensor([1.0]).dtype, torch.int64, "JS has no float literal: whole numbers make int64 tensors");
  assert.deepEqual(torch.tensor([[7]]).reshape([]).shape, []);
  assert.throws(() => torch.tensor([1, 2]).reshape([]), /shape '\[\]' is invalid for input of size 2/);
  assert.throws(() => torch.tensor([[1, 2], [3]]), /ragged nested sequence/);
});

test("printing matches PyTorch", () => {
  assert.equal(String(torch.tensor([[1, 2], [3, 4]]).float()), "tensor([[1., 2.],\n        [3., 4.]])");
  assert.equal(String(torch.tensor([0.1, -2.5])), "tensor([ 0.1000, -2.5000])");
  assert.equal(String(torch.tensor([1, 2, 3])), "tensor([1, 2, 3])");
  assert.equal(String(torch.tensor([true, false])), "tensor([ True, False])");
  assert.equal(String(torch.tensor([1, 2]).float().requires_grad_()), "tensor([1., 2.], requires_grad=True)");
  assert.equal(String(torch.tensor([1, 2]).float().requires_grad_().sum()), "tensor(3., grad_fn=<SumBackward0>)");
  assert.equal(String(torch.tensor([1.5]).to(torch.bfloat16)), "tensor([1.5000], dtype=torch.bfloat16)");
  assert.equal(String(torch.float32), "torch.float32");
});

test("views share memory; reshape copies only when it must", () => {
  const a = torch.arange(6).float();
  const v = a.view(2, 3);
  torch.no_grad(() => v.select(0, 1).fill_(9));
  assert.deepEqual(a.tolist(), [0, 1, 2, 9, 9, 9]);
  const t = v.t();
  assert.equal(t.is_contiguous(), false);
  assert.throws(() => t.view(6), /view size is not compatible .* Use \.reshape\(\.\.\.\) instead/);
  assert.deepEqual(t.reshape(6).tolist(), [0, 9, 1, 9, 2, 9]);
  assert.deepEqual(v.index(":", [1, null]).tolist(), [[1, 2], [9, 9]]);
  assert.deepEqual(v.index(-1, 0).item(), 9);
  assert.deepEqual(torch.cat([v, v], 0).shape, [4, 3]);
  assert.deepEqual(torch.stack([a, a], 1).shape, [6, 2]);
});

test("broadcasting and type promotion", () => {
  assert.deepEqual(torch.ones([2, 1]).add(torch.arange(3)).tolist(), [[1, 2, 3], [1, 2, 3]]);
  assert.equal(torch.tensor([1, 2]).add(torch.tensor([0.5])).dtype, torch.float32);
  assert.deepEqual(torch.tensor([3, 4]).div(2).tolist(), [1.5, 2]);
  assert.deepEqual(torch.tensor([1, 5]).eq(torch.tensor([1, 2])).tolist(), [true, false]);
  assert.throws(() => torch.ones([2, 3]).add(torch.ones([4])), /The size of tensor a \(3\) must match the size of tensor b \(4\) at non-singleton dimension 1/);
});

test("autograd rules: accumulation, no_grad, detach, retain_graph", () => {
  const x = torch.tensor([1, 2, 3]).float().requires_grad_();
  x.mul(x).sum().backward();
  x.mul(2).sum().backward();
  assert.deepEqual(x.grad!.tolist(), [4, 6, 8], "gradients accumulate into .grad");
  // add's backward hands one gradient to both inputs: x's .grad must not be that memory, which x.mul(x)'s backward
  // reads after x.mul(3)'s has accumulated into .grad
  const shared = torch.tensor([1, 2, 3]).float().requires_grad_();
  shared.mul(shared).add(shared.mul(3)).add(shared).sum().backward();
  assert.deepEqual(shared.grad!.tolist(), [6, 8, 10], "2x + 3 + 1");
  const y = torch.no_grad(() => x.mul(2));
  assert.equal(y.requires_grad, false);
  assert.equal(y.grad_fn, null);
  assert.equal(x.detach().requires_grad, false);
  const loss = x.exp().sum();
  loss.backward(undefined, { retain_graph: true });
  loss.backward();
  assert.throws(() => loss.backward(), /Trying to backward through the graph a second time/);
  assert.throws(() => x.mul(2).backward(), /grad can be implicitly created only for scalar outputs/);
  assert.throws(() => torch.ones([2]).sum().backward(), /does not require grad/);
  assert.throws(() => x.add_(1), /a leaf Variable that requires grad is being used in an in-place operation/);
  assert.throws(() => torch.tensor([1, 2]).requires_grad_(), /only Tensors of floating point dtype can require gradients/);
});

test("register_post_accumulate_grad_hook: once a backward, after all of the leaf's gradients; it may change .grad", () => {
  const x = torch.tensor([1, 2, 3]).float().requires_grad_();
  const seen: number[][] = [];
  const handle = x.register_post_accumulate_grad_hook((p) => seen.push(p.grad!.tolist() as number[]));
  // x reaches the loss three ways: its gradient is 2x + 3 + 1, accumulated from three edges
  x.mul(x).add(x.mul(3)).add(x).sum().backward();
  assert.deepEqual(seen, [[6, 8, 10]], "one call, with the whole gradient");
  x.sum().backward();
  assert.deepEqual(seen, [[6, 8, 10], [7, 9, 11]], "each backward calls it again, after .grad accumulated");
  const zeroing = x.register_post_accumulate_grad_hook((p) => p.grad!.zero_());
  x.mul(2).sum().backward();
  assert.deepEqual(x.grad!.tolist(), [0, 0, 0], "a hook may change .grad");
  handle.remove();
  zeroing.remove();
  x.mul(2).sum().backward();
  assert.equal(seen.length, 3, "a removed hook is not called");
  assert.deepEqual(x.grad!.tolist(), [2, 2, 2]);
  // backward on the leaf itself, and a hook that removes itself while running
  const once = x.register_post_accumulate_grad_hook(() => {
    seen.push([]);
    once.remove();
  });
  x.backward(torch.ones([3]));
  x.backward(torch.ones([3]));
  assert.equal(seen.length, 4);
  assert.throws(() => x.mul(2).register_post_accumulate_grad_hook(() => {}), /cannot be registered on non-leaf tensors/);
  assert.throws(() => torch.ones([2]).register_post_accumulate_grad_hook(() => {}), /doesn't require gradient/);
});

test("register_post_accumulate_grad_hook: an optimizer stepping each parameter in the backward equals stepping after it", () => {
  const make = () => {
    torch.manual_seed(5);
    return new Sequential(new Linear(6, 5), new ReLU(), new Linear(5, 3));
  };
  const input = torch.randn([4, 6]);
  const [after, during] = [make(), make()];
  const opt = new torch.optim.AdamW(after.parameters(), { lr: 0.1 });
  // PyTorch's optimizer-in-backward recipe: an optimizer per parameter, stepped and zeroed by the parameter's hook
  for (const p of during.parameters()) {
    const own = new torch.optim.AdamW([p], { lr: 0.1 });
    p.register_post_accumulate_grad_hook(() => {
      own.step();
      own.zero_grad();
    });
  }
  for (let step = 0; step < 3; step++) {
    after(input).pow(2).sum().backward();
    opt.step();
    opt.zero_grad();
    during(input).pow(2).sum().backward();
  }
  after.parameters().forEach((p, i) => assert.deepEqual(during.parameters()[i]!.tolist(), p.tolist(), `parameter ${i}`));
  assert.ok(during.parameters().every((p) => p.grad === null), "each hook zeroed its gradient");
});

test("a backward may add its gradient into the one the engine already summed for that input (never a shared one)", () => {
  // h feeds two ops; whichever backward runs second is offered the first's gradient for h and adds its own into it
  const x = torch.tensor([1, 2, 3]).float().requires_grad_();
  const offered: (Tensor | null)[] = [];
  const twice = (h: Tensor, factor: number, shareWith: Tensor | null) =>
    record(h.mul(factor).detach(), "Probe", [h, shareWith], (g, into) => {
      offered.push(into[0] ?? null);
      const mine = g.mul(factor);
      if (!into[0]) return [mine, shareWith ? mine : null];
      into[0].add_(mine);
      return [into[0], shareWith ? mine : null];
    });
  let h = x.mul(1);
  twice(h, 2, null).sum().add(twice(h, 3, null).sum()).backward();
  assert.deepEqual(x.grad!.tolist(), [5, 5, 5], "2 + 3 from the two uses");
  assert.equal(offered.filter((t) => t !== null).length, 1, "the second backward is offered the first's gradient");
  // a backward that hands one tensor to two inputs (the engine gives the second an alias): while both are pending,
  // neither may be added into. The backward of the last operand runs first.
  x.grad = null;
  offered.length = 0;
  h = x.mul(1);
  const other = x.mul(1);
  other.sum().add(twice(h, 3, null).sum()).add(twice(h, 2, other).sum()).backward();
  assert.deepEqual(offered, [null, null], "h's gradient shares its memory with other's when h's second user runs");
  assert.deepEqual(x.grad!.tolist(), [8, 8, 8], "h: 2 + 3; other: 2 + 1");
  // a linear layer's backward adds x's gradient into the summed one with its GEMM (beta 1): the same values
  const w = torch.randn([5, 3]), b = torch.randn([5]);
  const run = (accumulate: boolean) => {
    x.grad = null;
    const hx = x.mul(1);
    const viaLinear = F.linear(hx, w, b).sum();
    const viaMul = hx.mul(4).sum();
    (accumulate ? viaLinear.add(viaMul) : viaMul.add(viaLinear)).backward();
    return x.grad!.tolist() as number[];
  };
  const [one, other2] = [run(true), run(false)];
  one.forEach((v, i) => assert.ok(Math.abs(v - other2[i]!) < 1e-5, `element ${i}: ${v} vs ${other2[i]}`));
});

test("wrong dtypes and bad indices give clear errors, not crashes", () => {
  const w = torch.randn([5, 3]);
  assert.throws(() => F.embedding(torch.tensor([0.5]), w), /Expected tensor for argument #1 'indices'/);
  assert.throws(() => F.embedding(torch.tensor([7]), w), RangeError);
  assert.throws(() => torch.tensor([1, 2]).matmul(torch.tensor([3, 4])), /expected floating point tensors/);
  assert.throws(() => F.cross_entropy(torch.randn([2, 3]), torch.tensor([0, 3])), RangeError);
  assert.throws(() => F.cross_entropy(torch.randn([2, 3]), torch.tensor([0, 1, 2])), /Expected input batch_size \(2\) to match target batch_size \(3\)/);
  assert.throws(() => torch.ones([2, 3]).matmul(torch.ones([2, 3])), /mat1 and mat2 shapes cannot be multiplied \(2x3 and 2x3\)/);
  assert.throws(() => torch.ones([2]).to("cuda"), /CUDA is not available/);
  assert.throws(() => torch.ones([2]).select(0, 5), /index 5 is out of bounds for dimension 0 with size 2/);
  assert.throws(() => torch.ones([2]).sum(3), /Dimension out of range/);
  assert.throws(() => torch.zeros([300000, 300000]), /can't allocate memory: you tried to allocate 360000000000 bytes/);
  const freed = torch.ones([2]);
  freed.dispose();
  assert.throws(() => freed.add(1), /memory has been released/);
});

test("reductions, argmax and losses on known values", () => {
  const t = torch.tensor([[1, 5, 3], [4, 2, 6]]).float();
  assert.deepEqual(t.sum(0).tolist(), [5, 7, 9]);
  assert.deepEqual(t.mean(1, true).tolist(), [[3], [4]]);
  assert.deepEqual(torch.argmax(t, -1).tolist(), [1, 2]);
  const { values, indices } = t.max(1);
  assert.deepEqual([values.tolist(), indices.tolist()], [[5, 6], [1, 2]]);
  assert.equal(t.max().item(), 6);
  // log(1 + e^-1) for logits [1, 0] and class 0.
  const ce = F.cross_entropy(torch.tensor([[1, 0]]).float(), torch.tensor([0])).item();
  assert.ok(Math.abs(ce - Math.log(1 + Math.exp(-1))) < 1e-6);
  assert.equal(F.cross_entropy(torch.tensor([[1, 0], [0, 1]]).float(), torch.tensor([-100, 1]), { reduction: "sum" }).item(), F.cross_entropy(torch.tensor([[0, 1]]).float(), torch.tensor([1])).item());
  assert.ok(Math.abs(F.mse_loss(torch.tensor([1, 2]).float(), torch.tensor([0, 0]).float()).item() - 2.5) < 1e-7);
});

test("random numbers follow the seed", () => {
  torch.manual_seed(123);
  const a = torch.randn([4]).tolist();
  const b = torch.rand([3]).tolist();
  torch.manual_seed(123);
  assert.deepEqual(torch.randn([4]).tolist(), a);
  assert.deepEqual(torch.rand([3]).tolist(), b);
  const g = new torch.Generator().manual_seed(1);
  const perm = (torch.randperm(10, { generator: g }).tolist() as number[]).sort((x, y) => x - y);
  assert.deepEqual(perm, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const ints = torch.randint(3, 6, [200]).tolist() as number[];
  assert.ok(ints.every((v) => v >= 3 && v < 6) && new Set(ints).size === 3);
  const x = torch.ones([10000]);
  const kept = (F.dropout(x, 0.25).data() as Float32Array).filter((v) => v !== 0);
  assert.ok(kept.every((v) => Math.abs(v - 1 / 0.75) < 1e-6));
  assert.ok(Math.abs(kept.length / 10000 - 0.75) < 0.03, `kept ${kept.length}`);
});
