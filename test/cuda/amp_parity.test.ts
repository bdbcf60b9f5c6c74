// Autocast on CUDA against the CPU: cuBLASLt's bf16/fp16 tensor-core GEMMs (float32 accumulation and output)
// give what the CPU computes from the same 16-bit values, for products and their gradients. Runs only where
// torch.cuda.is_available(); the Trainer's bf16/fp16 runs (test/training/trainer_mixed_precision.test.ts) run on
// the GPU there too, since the Trainer then picks it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { torch } from "../../src/torch.js";
import * as F from "../../src/nn/functional.js";
import { linear_gelu } from "../../src/ops/matmul.js";
import type { Tensor } from "../../src/tensor/tensor.js";
import { cudaInfo } from "../../src/backend/cuda.js";
import { maxAbsDiff, maxAbs } from "../helpers/compare.js";

const SKIP = !torch.cuda.is_available() && `no CUDA device: ${cudaInfo().reason}`;

function within(a: Tensor, b: Tensor, rtol: number, label: string): void {
  const got = a.cpu();
  const d = maxAbsDiff(got, b);
  assert.ok(d <= rtol * Math.max(1, maxAbs(b)), `${label}: max abs difference ${d}`);
}

test("autocast products and gradients on CUDA equal the CPU's from the same 16-bit values", { skip: SKIP }, () => {
  for (const dtype of [torch.bfloat16, torch.float16]) {
    const g = new torch.Generator().manual_seed(3);
    const x = torch.randn([4, 67, 96], { generator: g });
    const w = torch.randn([160, 96], { generator: g }).mul(0.1);
    const b = torch.randn([160], { generator: g });
    const k = torch.randn([4, 96, 67], { generator: g });
    const run = (device: string) => {
      const [xd, wd, bd, kd] = [x, w, b, k].map((t) => t.detach().to(device).requires_grad_());
      const [y, z, p] = torch.autocast(device, { dtype }, () => [F.linear(xd!, wd!, bd!), linear_gelu(xd!, wd!, bd!), torch.matmul(xd!, kd!)]);
      assert.equal(y!.dtype, torch.float32);
      y!.sum().add(z!.mul(z!).sum()).add(p!.sum()).backward();
      return [y!, z!, p!, xd!.grad!, wd!.grad!, bd!.grad!, kd!.grad!];
    };
    const cpu = run("cpu");
    const cuda = run("cuda");
    ["linear", "linear_gelu", "matmul", "dx", "dW", "db", "dk"].forEach((name, i) => within(cuda[i]!, cpu[i]!, 1e-4, `${dtype} ${name}`));
  }
});
