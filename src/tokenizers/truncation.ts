// Truncation of one encoded input or a pair, with the rules (and the refusal) of Hugging Face tokenizers.
import type { Sequence } from "./post_processor.js";

export type TruncationStrategy = "longest_first" | "only_first" | "only_second";
export type Side = "left" | "right";

function cut(seq: Sequence, keep: number, side: Side): Sequence {
  if (seq.ids.length <= keep) return seq;
  const [start, end] = side === "right" ? [0, keep] : [seq.ids.length - keep, seq.ids.length];
  return { ids: seq.ids.slice(start, end), offsets: seq.offsets?.slice(start, end) };
}

/**
 * Shortens `a` (and `b`) so that together they hold at most `budget` tokens, `budget` being max_length
 * less the special tokens. only_first / only_second refuse when the chosen sequence cannot give enough.
 */
export function truncate_pair(
  a: Sequence, b: Sequence | null, strategy: TruncationStrategy, budget: number, side: Side, max_length: number,
): [Sequence, Sequence | null] {
  const total = a.ids.length + (b?.ids.length ?? 0);
  if (budget <= 0) return [cut(a, 0, side), b && cut(b, 0, side)];
  if (total <= budget) return [a, b];
  const to_remove = total - budget;
  if (strategy === "longest_first") {
    if (!b) return [cut(a, budget, side), null];
    // the shorter one is kept whole if the longer can absorb the cut; otherwise both get half
    let [n1, n2] = [a.ids.length, b.ids.length];
    const swap = n1 > n2;
    if (swap) [n1, n2] = [n2, n1];
    n2 = n1 > budget ? n1 : Math.max(n1, budget - n1);
    if (n1 + n2 > budget) {
      n1 = Math.floor(budget / 2);
      n2 = n1 + (budget % 2);
    }
    if (swap) [n1, n2] = [n2, n1];
    return [cut(a, n1, side), cut(b, n2, side)];
  }
  const first = strategy === "only_first";
  const target = first ? a : b;
  if (!target) return [a, b];
  if (target.ids.length <= to_remove) {
    const which = first ? "first" : "second";
    throw new Error(
      "Truncation error: Sequence to truncate too short to respect the provided max_length " +
        `(truncation='${strategy}', max_length=${max_length}: the ${which} sequence has ${target.ids.length} tokens ` +
        `but ${to_remove} must go). Use truncation='longest_first' or a larger max_length.`,
    );
  }
  const shortened = cut(target, target.ids.length - to_remove, side);
  return first ? [shortened, b] : [a, shortened];
}
