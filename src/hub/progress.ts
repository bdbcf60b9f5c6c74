// Download progress on stderr for large files, like huggingface_hub's tqdm bars (silent when not a terminal).
import cliProgress from "cli-progress";

const LARGE_FILE = 10 * 1024 * 1024;

export interface Progress {
  advance(bytes: number): void;
  stop(): void;
}

export function download_progress(label: string, total: number, already: number): Progress {
  const wanted = total >= LARGE_FILE && process.stderr.isTTY && !process.env.HF_HUB_DISABLE_PROGRESS_BARS;
  if (!wanted) return { advance() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      format: `${label}: {percentage}%|{bar}| {value_mb}/{total_mb} MB [{duration_formatted}<{eta_formatted}]`,
      stream: process.stderr, hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const mb = (n: number) => (n / 1e6).toFixed(1);
  let done = already;
  bar.start(total, done, { value_mb: mb(done), total_mb: mb(total) });
  return {
    advance(bytes) {
      done += bytes;
      bar.update(done, { value_mb: mb(done) });
    },
    stop: () => bar.stop(),
  };
}
