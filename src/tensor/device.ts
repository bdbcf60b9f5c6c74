// Devices, as torch.device: "cpu", "cuda", "cuda:N".
export type DeviceType = "cpu" | "cuda";

export class Device {
  readonly type: DeviceType;
  readonly index: number | null;

  constructor(spec: string | Device, index?: number) {
    if (spec instanceof Device) {
      this.type = spec.type;
      this.index = spec.index;
      return;
    }
    const m = /^(cpu|cuda)(?::(\d+))?$/.exec(spec);
    if (!m) throw new TypeError(`invalid device '${spec}': expected "cpu", "cuda" or "cuda:N"`);
    this.type = m[1] as DeviceType;
    this.index = m[2] !== undefined ? Number(m[2]) : index ?? null;
  }

  equals(other: Device): boolean {
    return this.type === other.type && (this.index ?? 0) === (other.index ?? 0);
  }

  toString(): string {
    return this.index === null ? this.type : `${this.type}:${this.index}`;
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `device(type='${this.type}'${this.index === null ? "" : `, index=${this.index}`})`;
  }
}

export const CPU = new Device("cpu");

export function toDevice(d: string | Device): Device {
  return d instanceof Device ? d : new Device(d);
}
