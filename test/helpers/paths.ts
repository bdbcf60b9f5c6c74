// Locations the tests read: the repository root and ../shared beside it.
import path from "node:path";
import { fileURLToPath } from "node:url";

// Compiled tests live in dist/test/helpers: the repository root is three levels up.
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const SHARED = path.resolve(REPO_ROOT, "..", "shared");
export const GOLDEN = path.join(SHARED, "golden");
export const TINY_BERT_SEQCLS = path.join(GOLDEN, "tiny-bert-seqcls");
export const TINY_BERT = path.join(SHARED, "hub", "models", "fixtures", "tiny-bert");
