// torch.autocast on the CPU: matrix products read 16-bit operands and write float32; their gradients are the
// products of the 16-bit values; everything else is untouched; nothing leaks.
import assert from "node:assert/strict";
import { test } from "node:test";
import { torch } from "../../src/torch.js";
import { DTypeCode, native } from "../../src/backend/native.js";
import * as F from "../../src/nn/functional.js";
import { linear_gelu } from "../../src/ops/matmul.js";
import type { Tensor } from "../../src/tensor/tensor.js";
import { maxAbsDiff } from "../helpers/compare.js";

const gen = () => new torch.Generator().manual_seed(7);

/** The float32 tensor of `t`'s values rounded to `dtype` */
function rounded(t: Tensor, dtype = torch.bfloat16): Tensor {
  return t.to(dtype).to(torch.float32);
}

test("autocast regions: enabled inside only, nested enabled:false, default dtypes, bad arguments", () => {
  assert.equal(torch.is_autocast_enabled("cpu"), false);
  torch.autocast("cpu", () => {
    assert.equal(torch.is_autocast_enabled("cpu"), true);
    assert.equal(torch.is_autocast_enabled("cuda"), false);
    assert.equal(torch.get_autocast_dtype("cpu"), torch.bfloat16);
    torch.autocast("cpu", { enabled: false }, () => assert.equal(torch.is_autocast_enabled("cpu"), false));
    assert.equal(torch.is_autocast_enabled("cpu"), true);
  });
  assert.equal(torch.get_autocast_dtype("cuda"), torch.float16);
  torch.amp.autocast("cpu", { dtype: "float16" }, () => assert.equal(torch.get_autocast_dtype("cpu"), torch.float16));
  assert.throws(() => torch.autocast("cpu", { dtype: torch.float32 }, () => 0), /dtype must be torch.bfloat16 or torch.float16, got torch.float32/);
  assert.throws(() => torch.autocast("tpu", () => 0), /device_type must be "cpu" or "cuda", got "tpu"/);
  assert.throws(() => torch.autocast("cpu", async () => 0), /fn must be synchronous/);
  assert.equal(torch.is_autocast_enabled("cpu"), false, "a throwing region restores the state");
  assert.throws(() => torch.autocast("cpu", () => { throw new Error("inside"); }), /inside/);
  assert.equal(torch.is_autocast_enabled("cpu"), false);
});

test("under autocast matmul and linear multiply the bf16/fp16 values and return float32", () => {
  const g = gen();
  const a = torch.randn([3, 5, 40], { generator: g });
  const b = torch.randn([40, 24], { generator: g });
  const w = torch.randn([24, 40], { generator: g });
  const bias = torch.randn([24], { generator: g });
  for (const dtype of [torch.bfloat16, torch.float16]) {
    const [p, y] = torch.autocast("cpu", { dtype }, () => [torch.matmul(a, b), F.linear(a, w, bias)]);
    assert.equal(p.dtype, torch.float32);
    assert.equal(y.dtype, torch.float32);
    assert.ok(maxAbsDiff(p, torch.matmul(rounded(a, dtype), rounded(b, dtype))) <= 1e-5, `${dtype} matmul`);
    assert.ok(maxAbsDiff(y, F.linear(rounded(a, dtype), rounded(w, dtype), bias)) <= 1e-5, `${dtype} linear`);
    // and that is not the float32 product: the operands were rounded
    assert.ok(maxAbsDiff(p, torch.matmul(a, b)) > 1e-3, `${dtype} rounds`);
  }
  // Other ops keep float32 precision under autocast
  const s = torch.autocast("cpu", () => torch.softmax(a, -1));
  assert.equal(maxAbsDiff(s, torch.softmax(a, -1)), 0);
});

test("autocast gradients are the products of the 16-bit values, in float32, for every operand", () => {
  const g = gen();
  const x = torch.randn([4, 6, 32], { generator: g }).requires_grad_();
  const w = torch.randn([16, 32], { generator: g }).requires_grad_();
  const bias = torch.randn([16], { generator: g }).requires_grad_();
  const k = torch.randn([4, 32, 6], { generator: g }).requires_grad_();
  const r = torch.randn([4, 6, 16], { generator: g });
  const r2 = torch.randn([4, 6, 6], { generator: g });
  for (const fused of [false, true]) {
    torch.autocast("cpu", () => {
      const h = fused ? linear_gelu(x, w, bias) : F.linear(x, w, bias);
      return h.mul(r).sum().add(torch.matmul(x, k).mul(r2).sum());
    }).backward();
    const [gx, gw, gb, gk] = [x.grad!, w.grad!, bias.grad!, k.grad!];
    assert.equal(gx.dtype, torch.float32);
    assert.equal(gw.dtype, torch.float32);

    // the same computation by hand on rounded values, without autocast: the backward GEMMs read the incoming
    // gradient (after GELU's derivative, in float32) in bf16 too
    const xr = rounded(x.detach());
    const wr = rounded(w.detach());
    const kr = rounded(k.detach());
    const pre = F.linear(xr, wr, bias.detach()).requires_grad_();
    F.gelu(pre).mul(r).sum().backward();
    const dpre = fused ? pre.grad! : r;
    const dh = rounded(dpre);
    const dx = torch.matmul(dh, wr).add(torch.matmul(rounded(r2), kr.transpose(1, 2)));
    const dw = torch.matmul(dh.reshape([24, 16]).transpose(0, 1), xr.reshape([24, 32]));
    const db = dpre.sum([0, 1]);
    const dk = torch.matmul(xr.transpose(1, 2), rounded(r2));
    assert.ok(maxAbsDiff(gx, dx) <= 1e-4, `fused=${fused} dx ${maxAbsDiff(gx, dx)}`);
    assert.ok(maxAbsDiff(gw, dw) <= 1e-4, `fused=${fused} dw ${maxAbsDiff(gw, dw)}`);
    assert.ok(maxAbsDiff(gb, db) <= 1e-4, `fused=${fused} db ${maxAbsDiff(gb, db)}`);
    assert.ok(maxAbsDiff(gk, dk) <= 1e-4, `fused=${fused} dk ${maxAbsDiff(gk, dk)}`);
    for (const p of [x, w, bias, k]) p.grad = null;
  }
});

test("a 16-bit tensor's gradient has its dtype, with and without autocast, as PyTorch's engine casts it", () => {
  const g = gen();
  for (const region of [null, torch.bfloat16, torch.float16]) {
    for (const dtype of [torch.float16, torch.bfloat16]) {
      const x = torch.randn([3, 8], { generator: g }).to(dtype).requires_grad_();
      const b = torch.randn([8, 4], { generator: g }).to(dtype).requires_grad_();
      const w = torch.randn([4, 8], { generator: g }).to(dtype).requires_grad_();
      const bias = torch.randn([4], { generator: g }).to(dtype).requires_grad_();
      // x reaches the loss through a linear layer and a product: its two gradients meet in its dtype
      const loss = () => F.linear(x, w, bias).float().sum().add(torch.matmul(x, b).float().sum());
      (region ? torch.autocast("cpu", { dtype: region }, loss) : loss()).backward();
      for (const [name, t] of [["x", x], ["b", b], ["w", w], ["bias", bias]] as const) {
        assert.equal(t.grad!.dtype, dtype, `${name} under ${region ?? "no autocast"}`);
      }
      // the values: the float32 gradients rounded once
      const expected = torch.ones([3, 4]).matmul(w.detach().float()).add(torch.ones([3, 4]).matmul(b.detach().float().t()));
      assert.ok(maxAbsDiff(x.grad!.float(), expected.to(dtype).float()) <= 0.05 * (1 + maxAbsDiff(expected, torch.zeros([3, 8]))));
    }
  }
});

test("autocast forward and backward release their 16-bit copies", () => {
  const g = gen();
  // a module call is a scope: what it makes and does not return is released when it ends or after backward
  const layer = new torch.nn.Sequential(new torch.nn.Linear(64, 64), new torch.nn.GELU(), new torch.nn.Linear(64, 64));
  const step = () => {
    const x = torch.randn([8, 64], { generator: g });
    const loss = torch.autocast("cpu", () => {
      const y = layer(x);
      const s = y.sum();
      y.dispose();
      return s;
    });
    loss.backward();
    loss.dispose();
    torch.no_grad(() => torch.autocast("cpu", () => layer(x))).dispose();
    x.dispose();
    layer.zero_grad();
  };
  step();
  const before = native.liveBytes();
  for (let i = 0; i < 20; i++) step();
  assert.equal(native.liveBytes(), before);
});

test("the CPU sgemm refuses float16 operands, bfloat16 ones without AVX512-BF16, 16-bit outputs and unknown dtypes", () => {
  const buf = native.alloc(64);
  const call = (code: number, cCode?: number) => () =>
    native.sgemm(false, false, 2, 2, 2, 1, buf, 0, 2, 0, buf, 0, 2, 0, 0, buf, 0, 2, 0, 1, code, undefined, undefined, cCode);
  const refused = /CPU kernels read float32 \(or bfloat16 on CPUs with AVX512-BF16\) and write float32/;
  assert.throws(call(DTypeCode.F16), refused);
  if (native.cpuFeatures().avx512bf16) assert.doesNotThrow(call(DTypeCode.BF16));
  else assert.throws(call(DTypeCode.BF16), refused);
  assert.throws(call(DTypeCode.I64), /abDtype must be float32, float16 or bfloat16, got dtype code 3/);
  assert.throws(call(DTypeCode.F32, DTypeCode.BF16), /cDtype must be float32, or A and B's 16-bit dtype with beta 0, got dtype code 2/);
  assert.throws(call(DTypeCode.BF16, DTypeCode.BF16), refused);
  assert.doesNotThrow(call(DTypeCode.F32, DTypeCode.F32));
  native.free(buf);
});
