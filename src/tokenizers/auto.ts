// AutoTokenizer.from_pretrained: a local folder or a Hub repository → the tokenizer class it names.
import fs from "node:fs";
import path from "node:path";
import { hf_hub_download, type DownloadOptions } from "../hub/download.js";
import { EntryNotFoundError, LocalEntryNotFoundError } from "../hub/errors.js";
import { bert_tokenizer_json } from "./bert_vocab.js";
import { BertTokenizerFast, PreTrainedTokenizerFast, type Json } from "./tokenization.js";

export interface FromPretrainedOptions extends Omit<DownloadOptions, "repo_type"> {
  [init_kwarg: string]: unknown;
}

const BERT_LIKE = /^(bert|distilbert|electra|mobilebert|funnel|layoutlm|lxmert|squeezebert|convbert|retribert|splinter)/i;
const DOWNLOAD_KEYS = new Set(["revision", "cache_dir", "local_files_only", "force_download", "token"]);

/** Reads one optional file of the tokenizer from a folder or the Hub; undefined when the repo has none. */
async function reader(id: string, opts: FromPretrainedOptions) {
  const local = fs.existsSync(id) && fs.statSync(id).isDirectory();
  const download: DownloadOptions = Object.fromEntries(Object.entries(opts).filter(([k]) => DOWNLOAD_KEYS.has(k)));
  return async (file: string): Promise<string | undefined> => {
    if (local) {
      const p = path.join(id, file);
      return fs.existsSync(p) ? fs.readFileSync(p, "utf8") : undefined;
    }
    try {
      return fs.readFileSync(await hf_hub_download(id, file, download), "utf8");
    } catch (err) {
      if (err instanceof EntryNotFoundError) return undefined;
      if (err instanceof LocalEntryNotFoundError && file !== "tokenizer_config.json" && /no such file/.test(err.message)) return undefined;
      throw err;
    }
  };
}

export class AutoTokenizer {
  static async from_pretrained(pretrained_model_name_or_path: string, options: FromPretrainedOptions = {}): Promise<PreTrainedTokenizerFast> {
    const id = pretrained_model_name_or_path;
    const read = await reader(id, options);
    const parse = async (file: string): Promise<Json | undefined> => {
      const text = await read(file);
      if (text === undefined) return undefined;
      try {
        return JSON.parse(text);
      } catch (err) {
        throw new Error(`${file} of '${id}' is not valid JSON: ${(err as Error).message}`);
      }
    };
    const kwargs = Object.fromEntries(Object.entries(options).filter(([k]) => !DOWNLOAD_KEYS.has(k)));
    const tokenizer_config = await parse("tokenizer_config.json");
    const config: Json = { ...(await parse("special_tokens_map.json")), ...tokenizer_config, ...kwargs };
    let tokenizer_json = await parse("tokenizer.json");
    let bert = BERT_LIKE.test(String(config.tokenizer_class ?? ""));
    if (!tokenizer_json) {
      const vocab = await read("vocab.txt");
      if (vocab === undefined) {
        throw new Error(
          `'${id}' has neither tokenizer.json nor vocab.txt, so no tokenizer can be built from it. ` +
            "Check the name (a Hub repo id or a folder saved with save_pretrained).",
        );
      }
      tokenizer_json = bert_tokenizer_json(vocab, config);
      bert = true;
    }
    if (!config.tokenizer_class && !bert) {
      const model_config = await parse("config.json");
      bert = BERT_LIKE.test(String(model_config?.model_type ?? ""));
    }
    const cls = bert ? BertTokenizerFast : PreTrainedTokenizerFast;
    return new cls(tokenizer_json, config, id);
  }
}
