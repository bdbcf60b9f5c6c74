// Fingerprints name a dataset state: a transform's fingerprint hashes the previous one with the
// transform's name and arguments (functions by their source), as datasets' update_fingerprint does.
import crypto from "node:crypto";

export function hash_value(...parts: unknown[]): string {
  const hash = crypto.createHash("sha256");
  for (const part of parts) hash.update(stable(part)).update("\0");
  return hash.digest("hex").slice(0, 16);
}

function stable(value: unknown): string {
  if (typeof value === "function") return `fn:${value.toString()}`;
  if (value === undefined) return "undefined";
  if (ArrayBuffer.isView(value)) return `typed:${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64")}`;
  if (Array.isArray(value)) return `[${value.map(stable).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${k}:${stable((value as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

export function update_fingerprint(previous: string, transform: string, args: unknown): string {
  return hash_value(previous, transform, args);
}
