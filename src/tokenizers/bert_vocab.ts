// The tokenizer.json that transformers' converter makes from a BERT vocab.txt (a folder without tokenizer.json).
import type { Json } from "./tokenization.js";

const SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

export function bert_tokenizer_json(vocab_txt: string, config: Json): Json {
  const vocab: Record<string, number> = {};
  vocab_txt.split("\n").forEach((line, i) => {
    const token = line.replace(/\r$/, "");
    if (token !== "" || i < vocab_txt.split("\n").length - 1) vocab[token] ??= i;
  });
  const special = (key: string, fallback: string) => (typeof config[key] === "string" ? config[key] : config[key]?.content) ?? fallback;
  const [cls, sep, unk] = [special("cls_token", "[CLS]"), special("sep_token", "[SEP]"), special("unk_token", "[UNK]")];
  const lowercase = config.do_lower_case ?? true;
  const added = [...new Set([...SPECIALS, cls, sep, unk, special("pad_token", "[PAD]"), special("mask_token", "[MASK]")])]
    .filter((t) => t in vocab)
    .map((content) => ({ id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }))
    .sort((a, b) => a.id! - b.id!);
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: {
      type: "BertNormalizer", clean_text: true, handle_chinese_chars: config.tokenize_chinese_chars ?? true,
      strip_accents: config.strip_accents ?? null, lowercase,
    },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: cls, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: sep, type_id: 0 } }],
      pair: [
        { SpecialToken: { id: cls, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: sep, type_id: 0 } },
        { Sequence: { id: "B", type_id: 1 } }, { SpecialToken: { id: sep, type_id: 1 } },
      ],
      special_tokens: {
        [cls]: { id: cls, ids: [vocab[cls]], tokens: [cls] },
        [sep]: { id: sep, ids: [vocab[sep]], tokens: [sep] },
      },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: { type: "WordPiece", unk_token: unk, continuing_subword_prefix: "##", max_input_chars_per_word: 100, vocab },
  };
}
