// Special tokens around one or two sequences (tokenizer.json's post_processor), working on ids:
// the library's own post-processor works on token strings, which costs a lookup per token.

interface Piece {
  special?: number[];
  sequence?: 0 | 1;
  type_id: number;
}

export interface Template {
  single: Piece[];
  pair: Piece[];
}

type Json = Record<string, any>;

export function template_from_json(config: Json | null, token_id: (token: string) => number): Template {
  if (!config) return { single: [{ sequence: 0, type_id: 0 }], pair: [{ sequence: 0, type_id: 0 }, { sequence: 1, type_id: 0 }] };
  switch (config.type) {
    case "TemplateProcessing": {
      const specials: Record<string, { ids: number[] }> = config.special_tokens ?? {};
      const parse = (items: Json[]): Piece[] =>
        items.map((item) =>
          item.SpecialToken
            ? { special: specials[item.SpecialToken.id]?.ids ?? [token_id(item.SpecialToken.id)], type_id: item.SpecialToken.type_id }
            : { sequence: item.Sequence.id === "A" ? 0 : 1, type_id: item.Sequence.type_id },
        );
      return { single: parse(config.single), pair: parse(config.pair) };
    }
    case "BertProcessing": {
      const [cls, sep] = [[config.cls[1] as number], [config.sep[1] as number]];
      return {
        single: [{ special: cls, type_id: 0 }, { sequence: 0, type_id: 0 }, { special: sep, type_id: 0 }],
        pair: [{ special: cls, type_id: 0 }, { sequence: 0, type_id: 0 }, { special: sep, type_id: 0 },
          { sequence: 1, type_id: 1 }, { special: sep, type_id: 1 }],
      };
    }
    case "RobertaProcessing": {
      const [cls, sep] = [[config.cls[1] as number], [config.sep[1] as number]];
      return {
        single: [{ special: cls, type_id: 0 }, { sequence: 0, type_id: 0 }, { special: sep, type_id: 0 }],
        pair: [{ special: cls, type_id: 0 }, { sequence: 0, type_id: 0 }, { special: sep, type_id: 0 },
          { special: sep, type_id: 0 }, { sequence: 1, type_id: 0 }, { special: sep, type_id: 0 }],
      };
    }
    case "Sequence": {
      const templated = (config.processors as Json[]).find((p) => p.type !== "ByteLevel");
      return template_from_json(templated ?? null, token_id);
    }
    case "ByteLevel":
      return template_from_json(null, token_id);
    default:
      throw new Error(`post_processor type '${config.type}' of tokenizer.json is not supported`);
  }
}

export function num_special_tokens_to_add(template: Template, pair: boolean): number {
  return (pair ? template.pair : template.single).reduce((n, p) => n + (p.special?.length ?? 0), 0);
}

export type Offset = [number, number];

export interface Sequence {
  ids: number[];
  offsets?: Offset[];
}

export interface Assembled {
  ids: number[];
  type_ids: number[];
  special_tokens_mask: number[];
  offsets: Offset[];
}

export function assemble(template: Template, a: Sequence, b: Sequence | null, add_special_tokens: boolean): Assembled {
  const out: Assembled = { ids: [], type_ids: [], special_tokens_mask: [], offsets: [] };
  const pieces = b === null ? template.single : template.pair;
  for (const piece of pieces) {
    if (piece.special) {
      if (!add_special_tokens) continue;
      for (const id of piece.special) {
        out.ids.push(id);
        out.type_ids.push(piece.type_id);
        out.special_tokens_mask.push(1);
        out.offsets.push([0, 0]);
      }
    } else {
      const seq = piece.sequence === 0 ? a : b!;
      // without special tokens the template is skipped, yet the second sequence keeps type id 1
      const type_id = add_special_tokens ? piece.type_id : piece.sequence!;
      for (let i = 0; i < seq.ids.length; i++) {
        out.ids.push(seq.ids[i]!);
        out.type_ids.push(type_id);
        out.special_tokens_mask.push(0);
        out.offsets.push(seq.offsets?.[i] ?? [0, 0]);
      }
    }
  }
  return out;
}
