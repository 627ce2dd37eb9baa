/**
 * @module protocols/text/tokenizer — a Hugging Face `tokenizer.json` (WordPiece, BPE, Unigram) run in
 * the Worker with `@huggingface/tokenizers`, and what that library leaves to its caller: truncation to
 * `max_length` tokens with the special tokens kept, and padding with the tokenizer's pad id.
 *
 * Truncation is done as Hugging Face's `truncation=True` does for one sequence: the text's own tokens
 * are cut to leave room for the special tokens the post-processor adds (`[CLS] … [SEP]`, `<s> … </s>`),
 * then the post-processor runs, so a truncated text still ends with its closing token.
 */
import { Tokenizer } from '@huggingface/tokenizers'

/** The three fields an encoding feeds, as `config.json` names them (`inputs.<name>.text.field`). */
export type TextField = 'ids' | 'attention_mask' | 'token_type_ids'

/** Texts encoded into one `[rows, length]` matrix per field. */
export interface TextBatch {
  rows: number
  length: number
  fields: Record<TextField, Int32Array>
  /** How many texts lost tokens to `max_length`. */
  truncated: number
}

/** Token names a pad token is known by, when tokenizer.json's `padding` does not say. */
const PAD_TOKENS = ['[PAD]', '<pad>', '<|padding|>', '<|endoftext|>']

export class TextTokenizer {
  private readonly tokenizer: Tokenizer
  /** The id padding fills `ids` with. */
  readonly padId: number
  /** Tokens the post-processor adds around one sequence. */
  readonly specialCount: number
  /** Tokens in the vocabulary, added tokens included: the least embedding size that can take every id. */
  readonly vocabSize: number

  /** Throws an Error saying what is wrong when `json` is not a tokenizer this library can run. */
  constructor(json: unknown) {
    if (typeof json !== 'object' || json === null || !('model' in json))
      throw new Error('not a tokenizer.json: it has no "model"')
    this.tokenizer = new Tokenizer(json, {})
    const padding = (json as { padding?: { pad_id?: unknown } | null }).padding
    const named = PAD_TOKENS.map((t) => this.tokenizer.token_to_id(t)).find((id) => id !== undefined)
    this.padId = typeof padding?.pad_id === 'number' ? padding.pad_id : (named ?? 0)
    // What the post-processor adds around an empty sequence: the room truncation leaves for it.
    this.specialCount = this.tokenizer.post_processor?.([]).tokens.length ?? 0
    let highest = -1
    for (const id of this.tokenizer.get_vocab(true).values()) highest = Math.max(highest, id)
    this.vocabSize = highest + 1
  }

  /** One text's ids and token type ids, at most `maxLength` tokens with the special tokens; `cut` when tokens were dropped. */
  encodeOne(text: string, maxLength: number): { ids: number[]; typeIds: number[]; cut: boolean } {
    const words = this.tokenizer.tokenize(text, { add_special_tokens: false })
    const room = Math.max(0, maxLength - this.specialCount)
    const cut = words.length > room
    const kept = cut ? words.slice(0, room) : words
    const processor = this.tokenizer.post_processor
    const processed = processor ? processor(kept) : { tokens: kept, token_type_ids: undefined }
    const unknown = this.unknownId()
    const ids = processed.tokens.map((t) => this.tokenizer.token_to_id(t) ?? unknown)
    // A post-processor that adds more tokens than max_length leaves room for (max_length below it) is cut here.
    const length = Math.min(ids.length, maxLength)
    const typeIds = processed.token_type_ids ?? new Array<number>(ids.length).fill(0)
    return { ids: ids.slice(0, length), typeIds: typeIds.slice(0, length), cut: cut || ids.length > maxLength }
  }

  /**
   * Encodes `texts` into `[texts.length, length]` matrices: `length` is `maxLength` when padding to
   * it, else the longest encoding of the request (`padding: "longest"`).
   */
  encode(texts: readonly string[], maxLength: number, padding: 'max_length' | 'longest'): TextBatch {
    const encoded = texts.map((text) => this.encodeOne(text, maxLength))
    const length = padding === 'max_length' ? maxLength : Math.max(1, ...encoded.map((e) => e.ids.length))
    const fields: Record<TextField, Int32Array> = {
      ids: new Int32Array(texts.length * length).fill(this.padId),
      attention_mask: new Int32Array(texts.length * length),
      token_type_ids: new Int32Array(texts.length * length),
    }
    encoded.forEach((e, row) => {
      fields.ids.set(e.ids, row * length)
      fields.attention_mask.fill(1, row * length, row * length + e.ids.length)
      fields.token_type_ids.set(e.typeIds, row * length)
    })
    return { rows: texts.length, length, fields, truncated: encoded.filter((e) => e.cut).length }
  }

  private unknownId(): number {
    const model = this.tokenizer.model as unknown as { unk_token_id?: number } | null
    return model?.unk_token_id ?? this.padId
  }
}
