// Whether operations record an autograd graph (torch.no_grad / torch.enable_grad / torch.is_grad_enabled).
let enabled = true;

export function is_grad_enabled(): boolean {
  return enabled;
}

export function set_grad_enabled(mode: boolean): void {
  enabled = mode;
}

function withGradMode<T>(mode: boolean, fn: () => T): T {
  const previous = enabled;
  enabled = mode;
  try {
    const result = fn();
    if (result instanceof Promise) {
      throw new TypeError("torch.no_grad(fn): fn must be synchronous (the grad mode is global to the thread)");
    }
    return result;
  } finally {
    enabled = previous;
  }
}

/** `with torch.no_grad(): ...` is `torch.no_grad(() => ...)` */
export function no_grad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}

export function enable_grad<T>(fn: () => T): T {
  return withGradMode(true, fn);
}
