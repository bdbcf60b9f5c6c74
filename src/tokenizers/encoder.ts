// Text → ids for one sequence, driving the pieces of @huggingface/tokenizers (normalizer, pre-tokenizer,
// model) ourselves: words repeat a lot in a corpus, so each word's ids are computed once and cached, and
// character offsets can be recovered (the library keeps none).
import { Tokenizer } from "@huggingface/tokenizers";
import type { Offset, Sequence } from "./post_processor.js";

interface AddedTokenInfo {
  id: number;
  lstrip: boolean;
  rstrip: boolean;
}

/** The library's Tokenizer members we use; they are private in its typings but stable in its code. */
interface LibraryTokenizer {
  normalizer: ((text: string) => string) | null;
  pre_tokenizer: ((text: string, options?: object) => string[]) | null;
  model: ((words: string[]) => string[]) & {
    tokens_to_ids: Map<string, number>;
    unk_token_id?: number;
    unk_token?: string;
    vocab: string[];
    continuing_subword_prefix?: string;
  };
  splitter_unnormalized: { split(text: string): string[] };
  splitter_normalized: { split(text: string): string[] };
  added_tokens_map: Map<string, AddedTokenInfo>;
  remove_space?: boolean;
  do_lowercase_and_remove_accent?: boolean;
}

/** A stretch of the input that became tokens together: an added token, or one pre-tokenized word. */
interface Piece {
  /** the text the ids came from: the added token itself, or the normalized word */
  text: string;
  ids: number[];
  added: boolean;
  section: number;
}

const WORD_CACHE_LIMIT = 200_000;

export class SequenceEncoder {
  readonly library: Tokenizer;
  private readonly lib: LibraryTokenizer;
  private readonly words = new Map<string, number[]>();

  constructor(tokenizer_json: object, tokenizer_config: object) {
    this.library = new Tokenizer(tokenizer_json, tokenizer_config);
    this.lib = this.library as unknown as LibraryTokenizer;
  }

  token_to_id(token: string): number | undefined {
    return this.lib.added_tokens_map.get(token)?.id ?? this.lib.model.tokens_to_ids.get(token);
  }

  id_to_token(id: number): string | undefined {
    return this.lib.model.vocab[id];
  }

  get unk_token_id(): number | undefined {
    return this.lib.model.unk_token_id;
  }

  /**
   * `stop_at`: with truncation on, Hugging Face tokenizers stops encoding a sequence after the first
   * word that brings it to max_length tokens; the truncation rules then see that shorter length, so
   * we must stop at the same place to split a pair the same way.
   */
  encode(text: string, with_offsets = false, stop_at = Infinity): Sequence {
    const pieces = this.pieces(text);
    const ids: number[] = [];
    let used = 0;
    while (used < pieces.length && ids.length < stop_at) for (const id of pieces[used++]!.ids) ids.push(id);
    return with_offsets ? { ids, offsets: this.offsets(text, pieces.slice(0, used)) } : { ids };
  }

  /** The library's encode_text, piece by piece (added tokens split out, then normalize, pre-tokenize, model). */
  private pieces(text: string): Piece[] {
    const lib = this.lib;
    const pieces: Piece[] = [];
    const sections = strip_around_added(lib.splitter_unnormalized.split(text), lib.added_tokens_map);
    sections.forEach((section, section_index) => {
      if (section.length === 0) return;
      const added = lib.added_tokens_map.get(section);
      if (added) return void pieces.push({ text: section, ids: [added.id], added: true, section: section_index });
      let normalized = section;
      if (lib.remove_space === true) normalized = normalized.trim().split(/\s+/).join(" ");
      if (lib.do_lowercase_and_remove_accent) normalized = normalized.normalize("NFD").replace(/\p{Mn}/gu, "").toLowerCase();
      if (lib.normalizer) normalized = lib.normalizer(normalized);
      if (normalized.length === 0) return;
      for (const sub of strip_around_added(lib.splitter_normalized.split(normalized), lib.added_tokens_map)) {
        if (sub.length === 0) continue;
        const added_normalized = lib.added_tokens_map.get(sub);
        if (added_normalized) {
          pieces.push({ text: sub, ids: [added_normalized.id], added: true, section: section_index });
          continue;
        }
        const words = lib.pre_tokenizer ? lib.pre_tokenizer(sub, { section_index }) : [sub];
        for (const word of words) pieces.push({ text: word, ids: this.word_ids(word), added: false, section: section_index });
      }
    });
    return pieces;
  }

  private word_ids(word: string): number[] {
    let ids = this.words.get(word);
    if (ids === undefined) {
      const lib = this.lib;
      ids = lib.model([word]).map(
        (t) => lib.added_tokens_map.get(t)?.id ?? lib.model.tokens_to_ids.get(t) ?? lib.model.unk_token_id!,
      );
      if (this.words.size >= WORD_CACHE_LIMIT) this.words.clear();
      this.words.set(word, ids);
    }
    return ids;
  }

  /**
   * Character offsets (in code points, as Python reports them) of every token, found by normalizing the
   * text one character at a time and locating each word and sub-word in that normalized copy.
   */
  private offsets(text: string, pieces: Piece[]): Offset[] {
    const lib = this.lib;
    const chars = Array.from(text);
    const normalized: string[] = [];
    const origin: number[] = []; // code point index in `text` of each UTF-16 unit of `normalized`
    chars.forEach((ch, i) => {
      const n = lib.normalizer && !lib.added_tokens_map.has(ch) ? lib.normalizer(ch) : ch;
      for (let k = 0; k < n.length; k++) origin.push(i);
      normalized.push(n);
    });
    const flat = normalized.join("");
    const prefix = lib.model.continuing_subword_prefix ?? "##";
    const out: Offset[] = [];
    let cursor = 0;
    for (const piece of pieces) {
      const at = flat.indexOf(piece.added ? lib.normalizer?.(piece.text) ?? piece.text : piece.text, cursor);
      const found = at >= 0 ? at : flat.indexOf(piece.text, cursor);
      if (found < 0) {
        throw new Error("return_offsets_mapping is not available for this tokenizer: its normalizer does not work character by character");
      }
      const span = (s: number, e: number): Offset => [origin[s]!, origin[Math.max(s, e - 1)]! + 1];
      const word_len = piece.added ? (lib.normalizer?.(piece.text) ?? piece.text).length : piece.text.length;
      if (piece.added || piece.ids.length === 1 && piece.ids[0] === lib.model.unk_token_id) {
        out.push(span(found, found + word_len));
      } else {
        let pos = found;
        piece.ids.forEach((id, k) => {
          let token = lib.model.vocab[id] ?? "";
          if (k > 0 && token.startsWith(prefix)) token = token.slice(prefix.length);
          const len = id === lib.model.unk_token_id ? found + word_len - pos : Math.min(token.length, found + word_len - pos);
          out.push(span(pos, pos + len));
          pos += len;
        });
      }
      cursor = found + word_len;
    }
    return out;
  }
}

/** Applies the lstrip / rstrip flags of added tokens to the text around them, as the library does. */
function strip_around_added(sections: string[], added: Map<string, AddedTokenInfo>): string[] {
  sections.forEach((section, i) => {
    const token = added.get(section);
    if (!token) return;
    if (token.lstrip && i > 0) sections[i - 1] = sections[i - 1]!.trimEnd();
    if (token.rstrip && i < sections.length - 1) sections[i + 1] = sections[i + 1]!.trimStart();
  });
  return sections;
}
