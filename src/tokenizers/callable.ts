// Lets a class instance be called like a function, as `tokenizer(text)` is in Python.
export abstract class Callable<Args extends unknown[], Result> extends Function {
  constructor() {
    super();
    const self = function (this: unknown, ...args: Args): Result {
      return (self as unknown as Callable<Args, Result>)._call(...args);
    };
    return Object.setPrototypeOf(self, new.target.prototype) as Callable<Args, Result>;
  }

  protected abstract _call(...args: Args): Result;
}
