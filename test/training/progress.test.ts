import { test } from "node:test";
import assert from "node:assert/strict";
import { format_interval, format_meter, Tqdm } from "../../src/training_api.js";
import { floatRepr, formatFixed, formatG, pyRepr } from "../../src/util/pyformat.js";

test("Python float formatting", () => {
  // f"{x:.4g}" as transformers prints the logs
  assert.equal(formatG(0.6908109188079834, 4), "0.6908");
  assert.equal(formatG(0.0, 4), "0");
  assert.equal(formatG(0.03125, 4), "0.03125");
  assert.equal(formatG(3.571428571428571e-5, 4), "3.571e-05");
  assert.equal(formatG(264.568, 4), "264.6");
  assert.equal(formatG(12345.6, 4), "1.235e+04");
  assert.equal(formatG(1.0, 4), "1");
  assert.equal(formatG(9.99995, 4), "10");
  // exact ties round half to even, on the double's exact value: 0.15625 = 5/32
  assert.equal(formatG(0.15625, 4), "0.1562");
  assert.equal(formatG(0.28125, 4), "0.2812");
  assert.equal(formatFixed(12.5, 0), "12");
  assert.equal(formatFixed(13.5, 0), "14");
  // 2.675 is stored as 2.67499999…, so Python prints 2.67
  assert.equal(formatFixed(2.675, 2), "2.67");
  // repr(float)
  assert.equal(floatRepr(5e-5), "5e-05");
  assert.equal(floatRepr(3), "3.0");
  assert.equal(floatRepr(0.0001), "0.0001");
  assert.equal(floatRepr(1e16), "1e+16");
  assert.equal(floatRepr(123456789.5), "123456789.5");
  assert.equal(pyRepr({ a: "it's", b: [1, null, true], c: 0.5 }), `{'a': "it's", 'b': [1, None, True], 'c': 0.5}`);
});

test("format_interval", () => {
  assert.equal(format_interval(0), "00:00");
  assert.equal(format_interval(75.9), "01:15");
  assert.equal(format_interval(3723), "1:02:03");
});

test("format_meter lines, checked by hand against tqdm's layout", () => {
  // 620/1377 = 45.03% → " 45"; bar: int(.4503·10·8) = 36 eighths = 4 full cells + ▌ (4/8) + 5 blanks;
  // remaining (1377 − 620)/50.2 = 15.08 s
  assert.equal(
    format_meter(620, 1377, 12.3, { prefix: "desc", rate: 50.2, postfix: "loss=0.41" }),
    "desc:  45%|████▌     | 620/1377 [00:12<00:15, 50.20it/s, loss=0.41]",
  );
  assert.equal(format_meter(0, 100, 0), "  0%|          | 0/100 [00:00<?, ?it/s]");
  // 0.4 it/s is shown inverted: 2.50 s/it; remaining 7/0.4 = 17.5 s
  assert.equal(format_meter(3, 10, 7.5), " 30%|███       | 3/10 [00:07<00:17,  2.50s/it]");
  assert.equal(format_meter(10, 10, 5), "100%|██████████| 10/10 [00:05<00:00,  2.00it/s]");
  // 1/8 = 12.5% rounds half to even
  assert.equal(format_meter(1, 8, 1), " 12%|█▎        | 1/8 [00:01<00:07,  1.00it/s]");
  // no total: count, elapsed and rate only; 3723 s / 42 = 88.64 s/it
  assert.equal(format_meter(42, null, 3723), "42it [1:02:03, 88.64s/it]");
  // with ncols the bar fills the line
  const line = format_meter(5, 10, 1, { ncols: 60, unit: "step" });
  assert.equal([...line].length, 60);
  assert.match(line, /^ 50%\|█+ +\| 5\/10 \[00:01<00:01,  5.00step\/s\]$/);
});

function fakeStream(isTTY: boolean) {
  const chunks: string[] = [];
  return { stream: { write: (s: string) => chunks.push(s), isTTY, columns: 80 }, chunks };
}

test("non-TTY output: a line per tenth and the final state, no carriage returns", () => {
  const { stream, chunks } = fakeStream(false);
  const bar = new Tqdm({ total: 20, file: stream, mininterval: 0 });
  for (let i = 0; i < 20; i++) bar.update();
  bar.set_postfix({ loss: 0.41234 });
  bar.close();
  const lines = chunks.join("").split("\n").filter(Boolean);
  assert.equal(lines.length, 10); // 10%, 20%, …, 90%, then the final 100% from close()
  assert.ok(lines.every((l) => !l.includes("\r")));
  assert.match(lines.at(-1)!, /^100%\|██████████\| 20\/20 \[00:00<00:00, .*, loss=0.412\]$/);
  assert.equal(bar.n, 20);
});

test("TTY output redraws in place; disable prints nothing", () => {
  const { stream, chunks } = fakeStream(true);
  const bar = new Tqdm({ total: 4, desc: "Training", file: stream, mininterval: 0 });
  bar.update(2);
  bar.close();
  const out = chunks.join("");
  assert.ok(out.startsWith("\rTraining:   0%|"));
  // the terminal is 80 columns wide: the bar stretches so that each line fills it
  const last = /\rTraining:  50%\|([^|]+)\| 2\/4 \[00:00<[^\]]+\]\n$/.exec(out);
  assert.ok(last, out);
  // the bar's width follows the rate's printed width, so an odd width ends in a half cell
  const cells = [...last[1]!];
  const full = Math.floor(cells.length / 2);
  assert.equal(cells.slice(0, full).join(""), "█".repeat(full));
  assert.equal(cells.slice(full).join("").trim(), cells.length % 2 ? "▌" : "");
  assert.ok(out.split("\r").slice(1).every((line) => [...line.trimEnd()].length === 80));
  assert.ok(chunks.every((c) => c.startsWith("\r") || c === "\n"));
  const quiet = fakeStream(true);
  const off = new Tqdm({ total: 4, disable: true, file: quiet.stream });
  off.update(4);
  off.close();
  assert.deepEqual(quiet.chunks, []);
});
