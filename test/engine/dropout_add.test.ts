// dropout_add (BERT's residual connections) against the composition it replaces, and dropout's one-kernel
// backward against the where(mask, g * scale, 0) it replaced: the same bits, masks and generator draws.
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { torch } from "../../src/torch.js";
import * as F from "../../src/nn/functional.js";
import { dropout_add } from "../../src/ops/functional.js";
import type { Tensor } from "../../src/tensor/tensor.js";
import type { DType } from "../../src/tensor/dtype.js";
import type { Node } from "../../src/autograd/node.js";
import { BertForSequenceClassification } from "../../src/models/index.js";
import { BertOutput, BertSelfOutput } from "../../src/models/bert/modeling_bert.js";
import { load_file } from "../../src/safetensors/tensors.js";
import { TINY_BERT_SEQCLS } from "../helpers/paths.js";

const randn = (shape: number[], seed: number, dtype: DType = torch.float32): Tensor =>
  torch.randn(shape, { generator: new torch.Generator().manual_seed(seed) }).to(dtype);

/** The raw values (float32 bits or 16-bit words), so that -0 and +0 differ. */
function assertSameBits(got: Tensor | null, want: Tensor | null, what: string): void {
  assert.ok(got && want, `${what}: missing`);
  assert.equal(got.dtype, want.dtype, `${what}: dtype`);
  assert.deepEqual(got.shape, want.shape, `${what}: shape`);
  const raw = (t: Tensor) => {
    const d = t.contiguous().data() as Float32Array | Uint16Array;
    return Array.from(d instanceof Float32Array ? new Uint32Array(Float32Array.from(d).buffer) : d);
  };
  const a = raw(got), b = raw(want);
  const i = a.findIndex((v, k) => v !== b[k]);
  assert.equal(i, -1, `${what}[${i}]: got ${a[i]}, want ${b[i]}`);
}

/** y = f(x, r, generator) with x and r leaves, then backward with a fixed gradient. */
function run(f: (x: Tensor, r: Tensor, g: InstanceType<typeof torch.Generator>) => Tensor, shape: number[],
  rShape: number[], dtype: DType) {
  const x = randn(shape, 1, dtype).requires_grad_(true);
  const r = randn(rShape, 2, dtype).requires_grad_(true);
  const generator = new torch.Generator().manual_seed(7);
  const y = f(x, r, generator);
  y.backward(randn(shape, 3, dtype));
  return { y, x, r, state: generator.get_state() };
}

test("dropout_add is add(dropout(x), residual) to the bit: values, gradients, generator draws", () => {
  for (const [shape, p] of [[[3, 5, 7], 0.1], [[2, 64, 300], 0.5]] as const) {
    const want = run((x, r, g) => F.dropout(x, p, true, g).add(r), [...shape], [...shape], torch.float32);
    const got = run((x, r, g) => dropout_add(x, r, p, true, g), [...shape], [...shape], torch.float32);
    assert.equal(got.y.grad_fn?.name(), "DropoutAddBackward0", "the fused kernel ran");
    assertSameBits(got.y, want.y, `y ${shape}`);
    assertSameBits(got.x.grad, want.x.grad, `x.grad ${shape}`);
    assertSameBits(got.r.grad, want.r.grad, `residual.grad ${shape}`);
    assertSameBits(got.r.grad, randn([...shape], 3), `residual.grad is the incoming gradient ${shape}`);
    assert.deepEqual(got.state, want.state, "the same counters drawn");
  }
});

test("dropout_add falls back to the composition for half dtypes, broadcasting, eval and p of 0 or 1", () => {
  const cases: [string, number[], number[], DType, number, boolean][] = [
    ["bfloat16", [4, 6], [4, 6], torch.bfloat16, 0.3, true],
    ["float16", [4, 6], [4, 6], torch.float16, 0.3, true],
    ["broadcast residual", [4, 6], [6], torch.float32, 0.3, true],
    ["eval", [4, 6], [4, 6], torch.float32, 0.3, false],
    ["p = 0", [4, 6], [4, 6], torch.float32, 0, true],
    ["p = 1", [4, 6], [4, 6], torch.float32, 1, true],
  ];
  for (const [what, shape, rShape, dtype, p, training] of cases) {
    const want = run((x, r, g) => F.dropout(x, p, training, g).add(r), shape, rShape, dtype);
    const got = run((x, r, g) => dropout_add(x, r, p, training, g), shape, rShape, dtype);
    assert.equal(got.y.grad_fn?.name(), "AddBackward0", `${what}: the composition ran`);
    assertSameBits(got.y, want.y, `${what}: y`);
    assertSameBits(got.x.grad, want.x.grad, `${what}: x.grad`);
    assertSameBits(got.r.grad, want.r.grad, `${what}: residual.grad`);
    assert.deepEqual(got.state, want.state, `${what}: the same counters drawn`);
  }
  assert.throws(() => dropout_add(randn([2], 1), randn([2], 2), 1.5), RangeError);
});

test("dropout's backward is where(mask, g * scale, 0) to the bit, half dtypes rounded once", () => {
  const p = 0.4;
  for (const dtype of [torch.float32, torch.bfloat16, torch.float16]) {
    const x = randn([5, 33], 4, dtype).requires_grad_(true);
    const y = F.dropout(x, p, true, new torch.Generator().manual_seed(9));
    const g = randn([5, 33], 5, dtype);
    y.backward(g);
    // x has no zeros, so the kept elements are those where y is not zero.
    const want = torch.no_grad(() => torch.where(y.ne(0), g.mul(1 / (1 - p)), 0));
    assertSameBits(x.grad, want, `${dtype}`);
  }
});

/** The names of the backward nodes that t's gradient runs through. */
function backwardNames(t: Tensor): Set<string> {
  const seen = new Set<Node>();
  const stack = [t.grad_fn];
  for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
    if (node === null || seen.has(node)) continue;
    seen.add(node);
    for (const edge of node.next) if (edge && "node" in edge) stack.push(edge.node);
  }
  return new Set([...seen].map((n) => n.name()));
}

// The golden traces run with dropout 0, where dropout_add is a plain add: here dropout is on.
test("tiny BERT with dropout: the fused residual gives the composition's logits, loss and gradients bit for bit", async () => {
  const batch = load_file(path.join(TINY_BERT_SEQCLS, "batch0.safetensors"));
  const run = async (fused: boolean) => {
    const model = await BertForSequenceClassification.from_pretrained(TINY_BERT_SEQCLS, { hidden_dropout_prob: 0.2, attention_probs_dropout_prob: 0.1 });
    model.train();
    for (const m of model.modules()) {
      if (!fused && (m instanceof BertSelfOutput || m instanceof BertOutput)) {
        m.forward = (hidden: Tensor, input: Tensor) => m.LayerNorm(m.dropout(m.dense(hidden)).add(input));
      }
    }
    torch.manual_seed(11);
    const out = model(batch);
    assert.equal(backwardNames(out.loss).has("DropoutAddBackward0"), fused, `fused ${fused}`);
    out.loss.backward();
    return { logits: out.logits, loss: out.loss, params: [...model.named_parameters()] };
  };
  const want = await run(false);
  const got = await run(true);
  assertSameBits(got.logits, want.logits, "logits");
  assertSameBits(got.loss, want.loss, "loss");
  got.params.forEach(([name, p], i) => assertSameBits(p.grad, want.params[i][1].grad, `grad of ${name}`));
});
