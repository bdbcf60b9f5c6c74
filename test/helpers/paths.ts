// Locations the tests read: the repository root and ../shared beside it.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

// Compiled tests live in dist/test/helpers: the repository root is three levels up.
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
// The project's reference data: ../shared beside the checkout (CI, developers), or shared/ inside it (a copy made
// for machines where only the checkout travels), or wherever FINETUNE_SHARED points.
export const SHARED = process.env.FINETUNE_SHARED
  ? path.resolve(process.env.FINETUNE_SHARED)
  : fs.existsSync(path.resolve(REPO_ROOT, "..", "shared")) ? path.resolve(REPO_ROOT, "..", "shared") : path.join(REPO_ROOT, "shared");
export const SHARED_HUB = path.join(SHARED, "hub");
export const GOLDEN = path.join(SHARED, "golden");
export const TINY_BERT_SEQCLS = path.join(GOLDEN, "tiny-bert-seqcls");
export const TINY_BERT = path.join(SHARED, "hub", "models", "fixtures", "tiny-bert");
