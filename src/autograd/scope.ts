// Deterministic release of tensor memory.
//
// Every tensor created while a scope is open is recorded in it. When the scope closes, each recorded tensor is
//  - kept (handed to the enclosing scope) if it is part of the scope's result,
//  - left alone if it is persistent (parameters, buffers, .grad, optimizer state),
//  - handed to the autograd graph if a graph node saved it: backward() releases it,
//  - released at once otherwise.
// Module calls, each node of backward() and optimizer steps run in a scope, so the memory of a training step is
// released as soon as it is dead. Tensors created outside any scope (the user's top-level code) are released
// by the garbage collector through a FinalizationRegistry, or by dispose().
import type { Tensor } from "../tensor/tensor.js";

interface Scope {
  created: Tensor[];
}

const stack: Scope[] = [];

export function trackTensor(t: Tensor): void {
  const scope = stack[stack.length - 1];
  if (scope) scope.created.push(t);
}

export function inScope(): boolean {
  return stack.length > 0;
}

export function withScope<T>(fn: () => T): T {
  const scope: Scope = { created: [] };
  stack.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (err) {
    stack.pop();
    closeScope(scope, new Set());
    throw err;
  }
  stack.pop();
  const keep = collectTensors(result);
  // a kept tensor's 16-bit copy and column sums (amp/lowp_copy.ts) live as long as it does
  for (const t of [...keep]) {
    if (t._lowp) keep.add(t._lowp.copy);
    if (t._lowp?.column_sums) keep.add(t._lowp.column_sums);
  }
  closeScope(scope, keep);
  return result;
}

function closeScope(scope: Scope, keep: Set<Tensor>): void {
  const parent = stack[stack.length - 1];
  for (const t of scope.created) {
    if (t._disposed || t._persistent) continue;
    if (keep.has(t)) {
      parent?.created.push(t);
    } else if (t._savedCount > 0) {
      t._graphOwned = true;
    } else {
      t.dispose();
    }
  }
}

/** The tensors reachable from a value: itself, array items, object and Map values, recursively. */
export function collectTensors(value: unknown, found: Set<Tensor> = new Set(), seen: Set<object> = new Set()): Set<Tensor> {
  if (value === null || typeof value !== "object") return found;
  if (seen.has(value)) return found;
  seen.add(value);
  if (isTensor(value)) {
    found.add(value);
    return found;
  }
  if (Array.isArray(value)) {
    for (const v of value) collectTensors(v, found, seen);
  } else if (value instanceof Map) {
    for (const v of value.values()) collectTensors(v, found, seen);
  } else {
    for (const v of Object.values(value)) collectTensors(v, found, seen);
  }
  return found;
}

function isTensor(v: object): v is Tensor {
  return (v as { _isTensor?: boolean })._isTensor === true;
}
