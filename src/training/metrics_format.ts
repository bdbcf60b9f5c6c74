// Trainer.metrics_format: how log_metrics shows each metric (runtimes as h:mm:ss.cc, flos in GF, 4 decimals).
import { floatRepr } from "../util/pyformat.js";
import { pyRound } from "./trainer_utils.js";

function secs2timedelta(secs: number): string {
  const whole = Math.trunc(secs);
  const centis = Math.trunc(Math.abs(secs - whole) * 100);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = whole % 60;
  return `${h}:${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}.${String(centis).padStart(2, "0")}`;
}

export function metrics_format(metrics: Record<string, number>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(metrics)) {
    if (k.includes("_mem_")) out[k] = `${Math.floor(v / 2 ** 20)}MB`;
    else if (k.includes("_runtime")) out[k] = secs2timedelta(v);
    else if (k === "total_flos") out[k] = `${Math.floor(v / 2 ** 30)}GF`;
    else out[k] = floatRepr(pyRound(v, 4));
  }
  return out;
}
